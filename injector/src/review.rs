//! One admission decision, independent of transport: a pod in, a patch or a denial out. The webhook
//! server and the offline `inject` command both go through [`admit`]; [`review`] wraps it in the
//! AdmissionReview (admission.k8s.io/v1) exchange the API server speaks.

use std::collections::BTreeMap;
use std::time::Duration;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use sidecar_proxy::config::{excerpt, RawSettings, Setting};

use crate::containers::SidecarOptions;
use crate::patch::injection_patch;
use crate::plan::{decide, Decision, Denial, Plan};
use crate::service_ports::app_port_warnings;

/// What admission does with one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Allowed as it is (not annotated for injection, or already injected).
    Unchanged,
    /// Allowed with the sidecar added by this patch.
    Patched(Patch),
}

/// An admission with what the injection was planned from (for injected pods), and the warnings for the
/// pod's owner.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub admission: Admission,
    pub plan: Option<Box<Plan>>,
    /// Sentences that do not stop the injection (TCP probes on serving ports, and for the webhook the
    /// app's declared port a Service may target; see `probe_ports` and `service_ports`).
    pub warnings: Vec<String>,
}

/// Decides for one pod.
pub fn admit(pod: &Pod, options: &SidecarOptions) -> Result<Admission, Denial> {
    admit_planned(pod, options).map(|admitted| admitted.admission)
}

/// [`admit`], with the plan and the plan's own warnings.
pub fn admit_planned(pod: &Pod, options: &SidecarOptions) -> Result<Admitted, Denial> {
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    // Init containers too: a native sidecar is one.
    let containers: Vec<Container> = pod
        .spec
        .iter()
        .flat_map(|spec| {
            spec.init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
        })
        .cloned()
        .collect();
    match decide(annotations, &containers)? {
        Decision::NotRequested | Decision::AlreadyInjected => Ok(Admitted {
            admission: Admission::Unchanged,
            plan: None,
            warnings: Vec::new(),
        }),
        Decision::Inject(plan) => {
            let host_network = pod.spec.as_ref().and_then(|spec| spec.host_network);
            if plan.redirect.is_some() && host_network == Some(true) {
                return Err(transparent_on_host_network(annotations));
            }
            if let Some(denial) = listener_on_admin_port(&plan, annotations, options.admin_port) {
                return Err(denial);
            }
            let mut warnings = plan.warnings.clone();
            warnings.extend(shutdown_outlasts_grace(pod, annotations, &plan));
            Ok(Admitted {
                admission: Admission::Patched(injection_patch(pod, &plan, options)),
                warnings,
                plan: Some(plan),
            })
        }
    }
}

/// What Kubernetes waits for a pod to stop when its spec says nothing.
const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;
/// The sidecar's `--shutdown-grace` default: how long open connections may finish after the drain.
const SIDECAR_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The sidecar's stop takes `pre-stop-wait` + `drain-duration` + its shutdown grace; a pod whose
/// `terminationGracePeriodSeconds` is shorter has its sidecar killed before the last records are written.
/// A warning, not a denial: the owner may accept losing the tail of the capture to stop faster.
fn shutdown_outlasts_grace(
    pod: &Pod,
    annotations: &BTreeMap<String, String>,
    plan: &Plan,
) -> Option<String> {
    let raw = RawSettings::from_annotations(
        annotations
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    );
    // Already validated by the plan; a bad value never gets here.
    let drain = sidecar_proxy::config::drain_duration(&raw).ok()?;
    let pre_stop = plan.pre_stop_wait.unwrap_or_default();
    let needed = pre_stop + drain + SIDECAR_SHUTDOWN_GRACE;
    let grace = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS);
    let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    if needed <= grace {
        return None;
    }
    Some(format!(
        "the sidecar may need {}s to stop (pre-stop-wait {}s + drain-duration {}s + 10s to finish connections), more than terminationGracePeriodSeconds {}: its last records would be lost; raise it to {} or shorten those",
        needed.as_secs_f64().ceil(),
        pre_stop.as_secs_f64(),
        drain.as_secs_f64(),
        grace.as_secs(),
        needed.as_secs_f64().ceil(),
    ))
}

/// Transparent mode's init container rewrites the iptables of the pod's network namespace: with
/// `hostNetwork: true` that is the node's, and every connection of the node would be redirected.
fn transparent_on_host_network(annotations: &BTreeMap<String, String>) -> Denial {
    let key = Setting::ProxyType.annotation_key();
    let setting = match annotations.get(&key) {
        Some(value) => format!("{key} \"{}\"", value.trim()),
        None => format!("{key} (default \"transparent\")"),
    };
    Denial(format!(
        "invalid {setting} for a pod with hostNetwork: true: the iptables rules would redirect the whole node's traffic; allowed with hostNetwork: reverse, forward, dual"
    ))
}

/// A listener on the admin port would make the sidecar fail to bind one of them, and never become ready.
fn listener_on_admin_port(
    plan: &Plan,
    annotations: &BTreeMap<String, String>,
    admin_port: u16,
) -> Option<Denial> {
    let config = &plan.config;
    let listeners = [
        (Setting::ProxyInPort, config.inbound_listener_port()),
        (Setting::ProxyOutPort, config.outbound_listener_port()),
    ];
    let (setting, port) = listeners.into_iter().find_map(|(setting, port)| {
        port.filter(|&port| port == admin_port)
            .map(|port| (setting, port))
    })?;
    let key = setting.annotation_key();
    let name = if annotations.contains_key(&key) {
        key
    } else {
        format!("{} (default)", setting.name())
    };
    Some(Denial(format!(
        "invalid {name} \"{port}\": the sidecar's admin listener (probes, metrics) is also on {admin_port}, and every listener needs its own port"
    )))
}

/// Answers one AdmissionReview request body. Never fails: a body that is not an AdmissionReview gets a
/// response saying so, which the API server reports to the user.
pub fn review(body: &[u8], options: &SidecarOptions) -> AdmissionReview<DynamicObject> {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(review) => review,
        Err(e) => {
            return AdmissionResponse::invalid(format!(
            "sidecar-injector: the request body is not an admission.k8s.io/v1 AdmissionReview: {}",
            excerpt(&e.to_string())
        ))
            .into_review()
        }
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(_) => {
            return AdmissionResponse::invalid(
                "sidecar-injector: the AdmissionReview carries no request",
            )
            .into_review()
        }
    };
    respond(&request, options).into_review()
}

fn respond(
    request: &AdmissionRequest<DynamicObject>,
    options: &SidecarOptions,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    // Only pods are ever injected; anything else a broad webhook rule sends passes untouched.
    if !request.kind.group.is_empty() || request.kind.kind != "Pod" {
        return response;
    }
    let Some(object) = &request.object else {
        return response;
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => {
            return response.deny(format!(
                "sidecar-injector: the object is not a valid Pod: {}",
                excerpt(&e.to_string())
            ))
        }
    };
    match admit_planned(&pod, options) {
        Ok(Admitted {
            admission: Admission::Unchanged,
            ..
        }) => response,
        Ok(Admitted {
            admission: Admission::Patched(patch),
            plan,
            mut warnings,
        }) => {
            // The webhook sees only the pod: what it can say about Services (see `service_ports`).
            if let (Some(plan), Some(spec)) = (&plan, &pod.spec) {
                warnings.extend(app_port_warnings(&plan.config, &spec.containers));
            }
            match response.clone().with_patch(patch) {
                Ok(mut patched) => {
                    if !warnings.is_empty() {
                        // kubectl prints each as "Warning: ..."; the API server caps their length.
                        patched.warnings = Some(
                            warnings
                                .into_iter()
                                .map(|warning| format!("sidecar-injector: {warning}"))
                                .collect(),
                        );
                    }
                    patched
                }
                Err(e) => response.deny(format!("sidecar-injector: cannot encode the patch: {e}")),
            }
        }
        Err(denial) => response.deny(denial),
    }
}

#[cfg(test)]
mod warning_tests {
    use super::*;
    use serde_json::json;

    /// The AdmissionReview the API server would send for `pod`.
    fn review_of(pod: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "shop",
                "operation": "CREATE",
                "userInfo": {"username": "admin"},
                "object": pod,
                "dryRun": false
            }
        }))
        .unwrap()
    }

    fn warnings(pod: serde_json::Value) -> Vec<String> {
        let options = SidecarOptions::new("registry.example.com/sidecar-proxy:0.1.0");
        let answer = serde_json::to_value(review(&review_of(pod), &options)).unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{answer:#}");
        assert!(!answer["response"]["patch"].is_null(), "injected");
        answer["response"]["warnings"]
            .as_array()
            .map(|warnings| {
                warnings
                    .iter()
                    .map(|warning| warning.as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn kubectl_is_told_about_a_declared_app_port_and_a_tcp_probe_on_a_serving_port() {
        let dual = warnings(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "annotations": {
                "sidecar.speedscale.com/inject": "true",
                "sidecar.speedscale.com/proxy-type": "dual",
                "sidecar.speedscale.com/proxy-protocol": "tcp:http",
                "sidecar.speedscale.com/proxy-port": "8080"
            }},
            "spec": {"containers": [{"name": "app", "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080}]}]}
        }));
        assert_eq!(dual, ["sidecar-injector: container app declares port 8080, the app's port: a Service with targetPort 8080 or \"http\" bypasses the sidecar (not captured); target 4143 (sidecar-in) instead"]);

        let transparent = warnings(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "annotations": {"sidecar.speedscale.com/inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "web:1",
                "ports": [{"name": "http", "containerPort": 8080}],
                "livenessProbe": {"tcpSocket": {"port": 9901}},
                "readinessProbe": {"tcpSocket": {"port": "http"}}}]}
        }));
        assert_eq!(transparent, [
            "sidecar-injector: container app: port 9901, used by a tcpSocket livenessProbe and not declared, is left out of the inbound redirect: traffic to it is not captured; declare the port if the app serves on it",
            "sidecar-injector: container app: tcpSocket readinessProbe on serving port 8080 reaches the sidecar, which accepts even if the app is down; use httpGet, or add 8080 to ignore-inbound-ports",
        ]);
        for warning in dual.iter().chain(&transparent) {
            assert!(warning.len() <= 256, "the API server may cut it: {warning}");
        }

        // Nothing to say about a pod whose app declares no port.
        let quiet = warnings(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "annotations": {
                "sidecar.speedscale.com/inject": "true",
                "sidecar.speedscale.com/proxy-type": "reverse",
                "sidecar.speedscale.com/proxy-port": "8080"
            }},
            "spec": {"containers": [{"name": "app", "image": "web:1"}]}
        }));
        assert_eq!(quiet, Vec::<String>::new());
    }

    #[test]
    fn a_stop_longer_than_the_pods_grace_period_is_told() {
        let pod = |grace: Option<i64>, pre_stop: &str| {
            let mut spec = json!({"containers": [{"name": "app", "image": "web:1"}]});
            if let Some(grace) = grace {
                spec["terminationGracePeriodSeconds"] = json!(grace);
            }
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "annotations": {
                    "sidecar.speedscale.com/inject": "true",
                    "sidecar.speedscale.com/proxy-type": "reverse",
                    "sidecar.speedscale.com/pre-stop-wait": pre_stop
                }},
                "spec": spec
            })
        };
        // 20 + 5 (default drain) + 10 = 35 > the default 30.
        let told = warnings(pod(None, "20s"));
        assert_eq!(told, ["sidecar-injector: the sidecar may need 35s to stop (pre-stop-wait 20s + drain-duration 5s + 10s to finish connections), more than terminationGracePeriodSeconds 30: its last records would be lost; raise it to 35 or shorten those"]);
        assert!(told[0].len() <= 256, "the API server may cut it");
        // The same pod with room for it, and a short wait within the default: nothing to say.
        assert_eq!(warnings(pod(Some(35), "20s")), Vec::<String>::new());
        assert_eq!(warnings(pod(None, "15s")), Vec::<String>::new());
        // A pod that asks to be killed at once loses even the default stop's tail.
        assert_eq!(warnings(pod(Some(0), "0s")).len(), 1);
    }
}
