//! One admission decision, independent of transport: a pod in, a patch or a denial out. The webhook
//! server and the offline `inject` command both go through [`admit`]; [`review`] wraps it in the
//! AdmissionReview (admission.k8s.io/v1) exchange the API server speaks.

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use sidecar_proxy::config::{excerpt, Setting};

use crate::containers::SidecarOptions;
use crate::patch::injection_patch;
use crate::plan::{decide, Decision, Denial, Plan};

/// What admission does with one pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Allowed as it is (not annotated for injection, or already injected).
    Unchanged,
    /// Allowed with the sidecar added by this patch.
    Patched(Patch),
}

/// Decides for one pod.
pub fn admit(pod: &Pod, options: &SidecarOptions) -> Result<Admission, Denial> {
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
        Decision::NotRequested | Decision::AlreadyInjected => Ok(Admission::Unchanged),
        Decision::Inject(plan) => {
            let host_network = pod.spec.as_ref().and_then(|spec| spec.host_network);
            if plan.redirect.is_some() && host_network == Some(true) {
                return Err(transparent_on_host_network(annotations));
            }
            if let Some(denial) = listener_on_admin_port(&plan, annotations, options.admin_port) {
                return Err(denial);
            }
            Ok(Admission::Patched(injection_patch(pod, &plan, options)))
        }
    }
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
    match admit(&pod, options) {
        Ok(Admission::Unchanged) => response,
        Ok(Admission::Patched(patch)) => match response.clone().with_patch(patch) {
            Ok(patched) => patched,
            Err(e) => response.deny(format!("sidecar-injector: cannot encode the patch: {e}")),
        },
        Err(denial) => response.deny(denial),
    }
}
