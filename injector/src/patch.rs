//! The RFC 6902 JSON patch that injects a plan into a pod. Parents the pod lacks (annotations, labels,
//! volumes, init containers) are created first, since `add` to `/metadata/annotations/x` fails when
//! `/metadata/annotations` does not exist. Operations run in order, so the app containers' environment is
//! changed at their original indices before the sidecar is inserted in front of them (classic layout;
//! in the native layout it goes among the init containers, see [`crate::layout`]).

use std::collections::BTreeMap;

use json_patch::Patch;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::annotations::{INJECTED, INJECTED_LABEL, SIDECAR_LAYOUT, SIDECAR_LAYOUT_REASON};
use crate::app_env::{self, EnvChange};
use crate::containers::{self, SidecarOptions};
use crate::layout::SidecarLayout;
use crate::plan::Plan;
use crate::tls_out;

/// `kubectl logs` and `kubectl exec` pick this container when none is named; the sidecar goes first in the
/// pod, so without it they would pick the sidecar.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The injector's version, recorded on every pod it injects.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Escapes one reference token of a JSON pointer (RFC 6901): annotation keys contain `/`.
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn add(path: String, value: Value) -> Value {
    json!({"op": "add", "path": path, "value": value})
}

/// Adds `key: value` to a string map at `parent`, creating the map when the pod has none.
fn add_to_map(
    ops: &mut Vec<Value>,
    parent: &str,
    existing: Option<&BTreeMap<String, String>>,
    entries: &[(&str, String)],
) {
    if existing.is_none() {
        let map: serde_json::Map<String, Value> = entries
            .iter()
            .map(|(key, value)| ((*key).to_owned(), Value::String(value.clone())))
            .collect();
        ops.push(add(parent.to_owned(), Value::Object(map)));
        return;
    }
    for (key, value) in entries {
        ops.push(add(format!("{parent}/{}", token(key)), json!(value)));
    }
}

/// Appends `items` to the array at `parent`, creating it when the pod has none; with `at_front` they go
/// first instead.
fn add_to_list(
    ops: &mut Vec<Value>,
    parent: &str,
    exists: bool,
    items: Vec<Value>,
    at_front: bool,
) {
    if !exists {
        ops.push(add(parent.to_owned(), Value::Array(items)));
        return;
    }
    for (i, item) in items.into_iter().enumerate() {
        let path = if at_front {
            format!("{parent}/{i}")
        } else {
            format!("{parent}/-")
        };
        ops.push(add(path, item));
    }
}

/// The patch for a pod the plan applies to.
pub fn injection_patch(pod: &Pod, plan: &Plan, options: &SidecarOptions) -> Patch {
    let spec = pod.spec.clone().unwrap_or_default();
    let metadata = &pod.metadata;
    let mut ops = Vec::new();
    // A pod without a spec is read as an empty one; the patch must then create it, or every `/spec/...`
    // operation below fails to apply (found by fuzzing:
    // fuzz/corpus/admission_review/regression-pod-without-spec).
    if pod.spec.is_none() {
        ops.push(add("/spec".to_owned(), json!({"containers": []})));
    }

    let chosen = plan.layout.resolve(&options.auto_layout);
    let layout = chosen.layout;
    let mut annotations = vec![
        (INJECTED, VERSION.to_owned()),
        (SIDECAR_LAYOUT, layout.as_str().to_owned()),
        (SIDECAR_LAYOUT_REASON, chosen.reason),
    ];
    let has_default = metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DEFAULT_CONTAINER));
    // Only the classic layout puts the sidecar in front of the app's containers.
    if let (SidecarLayout::Classic, false, Some(first)) =
        (layout, has_default, spec.containers.first())
    {
        annotations.push((DEFAULT_CONTAINER, first.name.clone()));
    }
    add_to_map(
        &mut ops,
        "/metadata/annotations",
        metadata.annotations.as_ref(),
        &annotations,
    );
    add_to_map(
        &mut ops,
        "/metadata/labels",
        metadata.labels.as_ref(),
        &[(INJECTED_LABEL, "true".to_owned())],
    );

    if plan.configure_app {
        let trust_capture_ca = plan.tls_out.is_some();
        for (i, container) in spec.containers.iter().enumerate() {
            let changes = app_env::changes(container, &plan.config, trust_capture_ca);
            let has_env = container.env.is_some();
            let mut added = Vec::new();
            for change in changes {
                match change {
                    EnvChange::Add(var) => added.push(json!(var)),
                    // `add`, not `replace`: a variable written without a value (`- name:
                    // JAVA_TOOL_OPTIONS`) has no `value` member, and `replace` fails on a missing
                    // one; `add` sets the member whether or not it exists (RFC 6902, 4.1).
                    EnvChange::Replace { index, value } => ops.push(json!({
                        "op": "add",
                        "path": format!("/spec/containers/{i}/env/{index}/value"),
                        "value": value,
                    })),
                }
            }
            if !added.is_empty() {
                add_to_list(
                    &mut ops,
                    &format!("/spec/containers/{i}/env"),
                    has_env,
                    added,
                    false,
                );
            }
            // Every app container gets the trust files, even one left without variables for its
            // `envFrom`: its ConfigMap can then point at them.
            if trust_capture_ca {
                add_to_list(
                    &mut ops,
                    &format!("/spec/containers/{i}/volumeMounts"),
                    container.volume_mounts.is_some(),
                    vec![json!(tls_out::app_mount())],
                    false,
                );
            }
        }
    }

    let volumes = containers::volumes(plan)
        .into_iter()
        .map(|volume| json!(volume))
        .collect();
    add_to_list(
        &mut ops,
        "/spec/volumes",
        spec.volumes.is_some(),
        volumes,
        false,
    );

    let init = containers::init_iptables(plan, options).map(|init| json!(init));
    let sidecar = json!(containers::sidecar(plan, options, layout));
    let has_init_containers = spec.init_containers.is_some();
    match layout {
        // Before the app's init containers: the redirect, then the sidecar behind it, so those init
        // containers already reach the network through it.
        SidecarLayout::Native => add_to_list(
            &mut ops,
            "/spec/initContainers",
            has_init_containers,
            init.into_iter().chain([sidecar]).collect(),
            true,
        ),
        SidecarLayout::Classic => {
            if let Some(init) = init {
                // Last among the init containers: nothing answers the redirect before the sidecar runs,
                // so the app's init containers run before it is in place.
                add_to_list(
                    &mut ops,
                    "/spec/initContainers",
                    has_init_containers,
                    vec![init],
                    false,
                );
            }
            // The sidecar goes first: the kubelet starts containers in order and waits for each one's
            // postStart hook, and the sidecar's returns only once it is ready, so the app starts after
            // it listens.
            ops.push(add("/spec/containers/0".to_owned(), sidecar));
        }
    }

    serde_json::from_value(Value::Array(ops)).expect("the operations are well-formed RFC 6902")
}
