//! Services in front of a reverse or dual pod. Callers reach the sidecar only through its inbound port;
//! a Service whose `targetPort` is the app's own port sends them straight to the app, past the sidecar,
//! and nothing they send is captured, without any error anywhere.
//!
//! What each path can know:
//!
//! - The webhook sees one pod and nothing else: it does not read Services (it has no API client and no
//!   RBAC to list them, and admission must not depend on the API server answering). From the pod alone it
//!   knows which app container *declares* the app's port among its `ports`, the port a Service's
//!   `targetPort` usually names, and warns about that ([`app_port_warnings`]).
//! - Offline `inject` sees the whole manifest: for each Service in its input that selects an injected
//!   reverse or dual pod (selector labels and namespace), it resolves every `targetPort` (a number, a port
//!   name of the pod, or absent: the Service's `port`) and warns when it is the app's port
//!   ([`check_service`]). With `--retarget-services` it rewrites that `targetPort` to the sidecar's inbound
//!   port instead; it never rewrites a Service silently.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use serde_json::Value;
use sidecar_proxy::config::{excerpt, ProxyConfig, ProxyType};

use crate::layout::SIDECAR_NAME;

/// The sidecar's inbound port's name on its container (a Service may name it as `targetPort`).
pub const SIDECAR_IN_PORT_NAME: &str = "sidecar-in";

/// Whether the config has the sidecar in front of an app in the pod: reverse or dual, delivering to
/// the pod's own loopback (an app elsewhere has no port in this pod to bypass the sidecar through).
fn fronts_local_app(config: &ProxyConfig) -> bool {
    config.inbound().is_some()
        && config.proxy_type != ProxyType::Transparent
        && is_local(&config.app.host)
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The webhook's warnings for a reverse or dual pod: one per app container that declares the app's port.
pub fn app_port_warnings(config: &ProxyConfig, containers: &[Container]) -> Vec<String> {
    if !fronts_local_app(config) {
        return Vec::new();
    }
    let app_port = config.app.port;
    containers
        .iter()
        .filter(|container| container.name != SIDECAR_NAME)
        .filter_map(|container| {
            let declared = container
                .ports
                .iter()
                .flatten()
                .find(|port| port.container_port == i32::from(app_port))?;
            let named = declared
                .name
                .as_deref()
                .map(|name| format!(" or \"{name}\""))
                .unwrap_or_default();
            // Short: the API server may cut an admission warning past 256 characters.
            Some(format!(
                "container {} declares port {app_port}, the app's port: a Service with targetPort {app_port}{named} bypasses the sidecar (not captured); target {} ({SIDECAR_IN_PORT_NAME}) instead",
                container.name, config.in_port
            ))
        })
        .collect()
}

/// An injected reverse or dual pod, as a Service in the same manifest may select it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPod {
    /// Where it is in the input, for messages: `document 2 (Deployment web)`.
    pub described: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub app_port: u16,
    pub sidecar_port: u16,
    /// The pod's named container ports (a `targetPort` may name one).
    pub port_names: BTreeMap<String, u16>,
}

impl InboundPod {
    /// The pod as Services see it, when its sidecar fronts an app in the pod; `None` otherwise.
    pub fn new(
        described: String,
        metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        containers: &[Container],
        config: &ProxyConfig,
    ) -> Option<InboundPod> {
        if !fronts_local_app(config) {
            return None;
        }
        let port_names = containers
            .iter()
            .flat_map(|container| container.ports.iter().flatten())
            .filter_map(|port| Some((port.name.clone()?, u16::try_from(port.container_port).ok()?)))
            .chain([(SIDECAR_IN_PORT_NAME.to_owned(), config.in_port)])
            .collect();
        Some(InboundPod {
            described,
            namespace: metadata.namespace.clone(),
            labels: metadata.labels.clone().unwrap_or_default(),
            app_port: config.app.port,
            sidecar_port: config.in_port,
            port_names,
        })
    }

    /// Whether a Service in `namespace` with this selector selects the pod. An absent namespace on either
    /// side is the one `kubectl apply` puts both in.
    fn selected_by(
        &self,
        namespace: Option<&str>,
        selector: &serde_json::Map<String, Value>,
    ) -> bool {
        let same_namespace = match (namespace, self.namespace.as_deref()) {
            (Some(service), Some(pod)) => service == pod,
            _ => true,
        };
        same_namespace
            && !selector.is_empty()
            && selector.iter().all(|(key, value)| {
                value
                    .as_str()
                    .is_some_and(|value| self.labels.get(key).map(String::as_str) == Some(value))
            })
    }
}

/// What [`check_service`] found for one port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The port still targets the app: the message says what to do.
    Warning(String),
    /// `--retarget-services` rewrote its targetPort: the message says from what to what.
    Retargeted(String),
}

/// Checks a Service document against the injected pods; with `retarget`, rewrites each `targetPort`
/// that reaches an app past its sidecar. Anything that is not a Service with a selector is left alone.
pub fn check_service(service: &mut Value, pods: &[InboundPod], retarget: bool) -> Vec<Finding> {
    if service.get("kind").and_then(Value::as_str) != Some("Service") {
        return Vec::new();
    }
    let name = service
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(excerpt)
        .map_or_else(|| "(unnamed)".to_owned(), |name| name.into_owned());
    let namespace = service
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let Some(selector) = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .cloned()
    else {
        return Vec::new();
    };
    let selected: Vec<&InboundPod> = pods
        .iter()
        .filter(|pod| pod.selected_by(namespace.as_deref(), &selector))
        .collect();
    let Some(ports) = service
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for port in ports {
        let label = port_label(port);
        let written = port.get("targetPort").cloned();
        for pod in &selected {
            let Some(target) = resolve_target(written.as_ref(), port.get("port"), pod) else {
                continue;
            };
            if target != pod.app_port || pod.app_port == pod.sidecar_port {
                continue;
            }
            let as_written = match &written {
                Some(Value::String(name)) => format!("\"{}\" ({target})", excerpt(name)),
                Some(_) => target.to_string(),
                None => format!("{target} (its port, no targetPort given)"),
            };
            if retarget {
                port.as_object_mut().map(|fields| {
                    fields.insert("targetPort".to_owned(), Value::from(pod.sidecar_port))
                });
                findings.push(Finding::Retargeted(format!(
                    "Service {name} port {label}: targetPort {as_written} → {} (the sidecar's inbound port in {})",
                    pod.sidecar_port, pod.described
                )));
                break;
            }
            findings.push(Finding::Warning(format!(
                "Service {name} port {label} targets {as_written}, the app's own port in {}: its callers reach the app past the sidecar and are not captured; set targetPort: {} (the sidecar's inbound port), or run inject with --retarget-services",
                pod.described, pod.sidecar_port
            )));
        }
    }
    findings
}

/// `http (80)` or `80`.
fn port_label(port: &Value) -> String {
    let number = port
        .get("port")
        .map(|number| number.to_string())
        .unwrap_or_default();
    match port.get("name").and_then(Value::as_str) {
        Some(name) => format!("{} ({number})", excerpt(name)),
        None => number,
    }
}

/// The container port a Service port reaches on `pod`.
fn resolve_target(written: Option<&Value>, port: Option<&Value>, pod: &InboundPod) -> Option<u16> {
    let number = |value: &Value| value.as_u64().and_then(|n| u16::try_from(n).ok());
    match written {
        Some(Value::String(name)) => match name.parse::<u16>() {
            // `targetPort: "8080"` in YAML is a string holding a number.
            Ok(port) => Some(port),
            Err(_) => pod.port_names.get(name).copied(),
        },
        Some(other) => number(other),
        None => port.and_then(number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> InboundPod {
        InboundPod {
            described: "Deployment web".to_owned(),
            namespace: None,
            labels: BTreeMap::from([("app".to_owned(), "web".to_owned())]),
            app_port: 8080,
            sidecar_port: 4143,
            port_names: BTreeMap::from([
                ("http".to_owned(), 8080),
                (SIDECAR_IN_PORT_NAME.to_owned(), 4143),
            ]),
        }
    }

    fn service(ports: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": ports}})
    }

    #[test]
    fn numbers_names_and_absent_target_ports_are_resolved() {
        let mut svc = service(json!([
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "named", "port": 81, "targetPort": "http"},
            {"port": 8080},
            {"name": "sidecar", "port": 82, "targetPort": 4143},
            {"name": "other", "port": 83, "targetPort": 9000},
        ]));
        let findings = check_service(&mut svc, &[pod()], false);
        let messages: Vec<String> = findings
            .iter()
            .map(|finding| match finding {
                Finding::Warning(message) => message.clone(),
                Finding::Retargeted(message) => panic!("rewritten without asking: {message}"),
            })
            .collect();
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(messages[0].starts_with("Service web port http (80) targets 8080, the app's own port in Deployment web: its callers reach the app past the sidecar"));
        assert!(messages[1].starts_with("Service web port named (81) targets \"http\" (8080)"));
        assert!(messages[2]
            .starts_with("Service web port 8080 targets 8080 (its port, no targetPort given)"));
        assert_eq!(
            svc["spec"]["ports"][0]["targetPort"], 8080,
            "nothing rewritten"
        );
    }

    #[test]
    fn the_webhook_warns_about_a_declared_app_port_in_few_words() {
        let mut raw = sidecar_proxy::config::RawSettings::default();
        for (setting, value) in [
            (sidecar_proxy::config::Setting::ProxyType, "dual"),
            (sidecar_proxy::config::Setting::ProxyProtocol, "tcp:http"),
            (sidecar_proxy::config::Setting::ProxyPort, "8080"),
        ] {
            raw.offer(setting, value, sidecar_proxy::config::Source::Annotation);
        }
        let config = ProxyConfig::from_settings(&raw).unwrap();
        let declaring = Container {
            name: "app".to_owned(),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                name: Some("http".to_owned()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Container::default()
        };
        let silent = Container {
            name: "worker".to_owned(),
            ..Container::default()
        };
        let warnings = app_port_warnings(&config, &[declaring, silent]);
        assert_eq!(
            warnings,
            ["container app declares port 8080, the app's port: a Service with targetPort 8080 or \"http\" bypasses the sidecar (not captured); target 4143 (sidecar-in) instead"]
        );
        assert!(warnings[0].len() + "sidecar-injector: ".len() <= 256);
    }

    #[test]
    fn retarget_rewrites_only_the_ports_that_bypass_the_sidecar() {
        let mut svc = service(json!([
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "other", "port": 83, "targetPort": 9000},
        ]));
        let findings = check_service(&mut svc, &[pod()], true);
        assert_eq!(
            findings,
            [Finding::Retargeted("Service web port http (80): targetPort \"http\" (8080) → 4143 (the sidecar's inbound port in Deployment web)".to_owned())]
        );
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 4143);
        assert_eq!(svc["spec"]["ports"][1]["targetPort"], 9000);
    }

    #[test]
    fn a_service_selecting_other_pods_or_another_namespace_is_left_alone() {
        let mut other = service(json!([{"port": 80, "targetPort": 8080}]));
        other["spec"]["selector"] = json!({"app": "shop"});
        assert!(check_service(&mut other, &[pod()], true).is_empty());
        let mut elsewhere = service(json!([{"port": 80, "targetPort": 8080}]));
        elsewhere["metadata"]["namespace"] = json!("billing");
        let in_shop = InboundPod {
            namespace: Some("shop".to_owned()),
            ..pod()
        };
        assert!(check_service(&mut elsewhere, &[in_shop], true).is_empty());
        let mut no_selector = service(json!([{"port": 80, "targetPort": 8080}]));
        no_selector["spec"]
            .as_object_mut()
            .unwrap()
            .remove("selector");
        assert!(check_service(&mut no_selector, &[pod()], true).is_empty());
    }
}
