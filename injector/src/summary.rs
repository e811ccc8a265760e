//! The one line `inject` prints on stderr for each pod it injected: the mode, the layout and the sidecar's
//! ports, read back from the patched pod itself, so the line says what the output holds.

use serde_json::Value;

use crate::annotations::SIDECAR_LAYOUT;
use crate::layout::SIDECAR_NAME;

/// `proxy-type dual (http), native layout, ports sidecar-in 4143, sidecar-out 4140, sidecar-admin 4191`
/// for a patched pod (or pod template) given as JSON; `None` when it has no sidecar.
pub fn describe_injected(pod: &Value) -> Option<String> {
    let spec = pod.get("spec")?;
    let sidecar = ["initContainers", "containers"]
        .iter()
        .filter_map(|list| spec.get(list).and_then(Value::as_array))
        .flatten()
        .find(|container| container.get("name").and_then(Value::as_str) == Some(SIDECAR_NAME))?;
    let env = |name: &str| {
        sidecar
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|var| var.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|var| var.get("value").and_then(Value::as_str))
    };
    // The proxy's own default when the pod does not say.
    let mode = env("PROXY_TYPE").unwrap_or("transparent");
    let protocol = env("PROXY_PROTOCOL")
        .map(|protocol| format!(" ({protocol})"))
        .unwrap_or_default();
    let layout = pod
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(SIDECAR_LAYOUT))
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let ports: Vec<String> = sidecar
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| {
            Some(format!(
                "{} {}",
                port.get("name")?.as_str()?,
                port.get("containerPort")?.as_u64()?
            ))
        })
        .collect();
    Some(format!(
        "proxy-type {mode}{protocol}, {layout} layout, ports {}",
        ports.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_native_dual_sidecar_is_described_with_its_ports() {
        let pod = json!({
            "metadata": {"annotations": {SIDECAR_LAYOUT: "native"}},
            "spec": {
                "initContainers": [{
                    "name": SIDECAR_NAME,
                    "env": [{"name": "PROXY_TYPE", "value": "dual"}, {"name": "PROXY_PROTOCOL", "value": "http"}],
                    "ports": [{"name": "sidecar-in", "containerPort": 4143}, {"name": "sidecar-admin", "containerPort": 4191}],
                }],
                "containers": [{"name": "app"}],
            },
        });
        assert_eq!(
            describe_injected(&pod).as_deref(),
            Some(
                "proxy-type dual (http), native layout, ports sidecar-in 4143, sidecar-admin 4191"
            )
        );
        assert_eq!(
            describe_injected(&json!({"spec": {"containers": [{"name": "app"}]}})),
            None
        );
    }
}
