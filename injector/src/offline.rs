//! `sidecar-injector inject`: multi-document YAML in, the same documents with the sidecar injected out.
//!
//! Like `linkerd inject`: every document goes through the same [`admit`] decision as the webhook.
//!
//! - `kind: Pod` (apiVersion `v1`): the pod itself.
//! - Deployment, StatefulSet, DaemonSet, ReplicaSet (`apps`, or the old `extensions`), Job (`batch`):
//!   the pod template at `spec.template`; CronJob (`batch`): the one at `spec.jobTemplate.spec.template`.
//! - `kind: List` (apiVersion `v1`): each of its `items`, by the same rules.
//! - Anything else (Service, ConfigMap, a Deployment of some other API group, ...) passes through unchanged.
//!   A document without `apiVersion` is judged by its kind alone.
//!
//! Documents are handled as `serde_json::Value`, so fields this crate's Kubernetes types do not know
//! survive; only the pod part is converted to a [`Pod`] for the decision, and the patch is applied to the
//! document itself. Empty documents are dropped; the rest are written in input order, separated by `---`.
//! Mapping keys come out sorted (the documents are plain JSON values).
//!
//! Services in the input are checked against the injected reverse and dual pods they select: a
//! `targetPort` that reaches the app past its sidecar is reported, or rewritten with `--retarget-services`
//! (see [`crate::service_ports`]).
//!
//! Any error (malformed YAML, nesting deeper than [`crate::yaml_depth::MAX_DEPTH`], a denial, a pod that is
//! not a valid pod) fails the whole run before anything is written, and names the document:
//! `document 2 (Deployment web): <the denial>`. Values quoted in errors are cut to their first few hundred
//! bytes.

use std::io::{Read, Write};

use anyhow::{anyhow, Context};
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_json::{Map, Value};

use sidecar_proxy::config::{excerpt, ANNOTATION_PREFIX};

use crate::containers::SidecarOptions;
use crate::review::{admit_planned, Admission};
use crate::service_ports::{check_service, Finding, InboundPod};
use crate::summary::describe_injected;
use crate::yaml_depth::check_depth;

/// Reads YAML documents from `input` and writes them, injected, to `output`; on any error nothing is
/// written and the error names the document and the annotation.
pub fn inject(
    input: &mut dyn Read,
    output: &mut dyn Write,
    options: &SidecarOptions,
) -> anyhow::Result<()> {
    inject_reporting(input, output, options).map(drop)
}

/// [`inject`], returning one line per injected pod: where it is (`document 2 (Deployment web)`) and what
/// it got (see [`describe_injected`]).
pub fn inject_reporting(
    input: &mut dyn Read,
    output: &mut dyn Write,
    options: &SidecarOptions,
) -> anyhow::Result<Vec<String>> {
    inject_with(input, output, options, &OfflineOptions::default()).map(|report| report.injected)
}

/// What only offline `inject` does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflineOptions {
    /// `--retarget-services`: rewrite the `targetPort` of Services that reach an app past its sidecar.
    pub retarget_services: bool,
}

/// What a run did, for stderr: each line names the document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One line per injected pod (see [`inject_reporting`]).
    pub injected: Vec<String>,
    /// Services rewritten by `--retarget-services`.
    pub retargeted: Vec<String>,
    /// What the user should look at: TCP probes on serving ports, Services that bypass a sidecar.
    pub warnings: Vec<String>,
}

/// [`inject`] with the offline options, returning the whole report.
pub fn inject_with(
    input: &mut dyn Read,
    output: &mut dyn Write,
    options: &SidecarOptions,
    offline: &OfflineOptions,
) -> anyhow::Result<Report> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .context("cannot read the input (it must be UTF-8 YAML)")?;
    let (rendered, report) = inject_text(&text, options, offline)?;
    output
        .write_all(rendered.as_bytes())
        .and_then(|()| output.flush())
        .context("cannot write the output")?;
    Ok(report)
}

/// What the pods of a run leave for the Services pass and the report.
#[derive(Default)]
struct Found {
    /// Injected reverse and dual pods, as Services select them.
    inbound_pods: Vec<InboundPod>,
    /// The plans' warnings, each with the pod's place.
    warnings: Vec<String>,
}

/// The whole run on text: every document injected, the Services checked against the injected pods, and
/// everything rendered; or the first error.
fn inject_text(
    text: &str,
    options: &SidecarOptions,
    offline: &OfflineOptions,
) -> anyhow::Result<(String, Report)> {
    // Before the parser, whose time grows with the square of the nesting.
    check_depth(text)?;
    let mut documents = Vec::new();
    let mut report = Report::default();
    let mut found = Found::default();
    // The iterator repeats a failure forever; the first error ends the loop.
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let position = index + 1;
        let mut value = document_value(document)
            .map_err(|e| anyhow!("document {position}: not valid YAML: {}", excerpt(&e)))?;
        if value.is_null() {
            continue;
        }
        let described = describe(&value);
        let place = format!("document {position}{described}");
        let pods = inject_object(&mut value, options, &place, &mut found)
            .map_err(|e| anyhow!("{place}: {e}"))?;
        report
            .injected
            .extend(pods.into_iter().map(|pod| format!("{place}{pod}")));
        documents.push((place, value));
    }
    report.warnings.append(&mut found.warnings);
    // A Service may come before the workload it selects: checked once every pod is known.
    let mut rendered = Vec::new();
    for (place, mut value) in documents {
        for finding in check_services(&mut value, &found.inbound_pods, offline.retarget_services) {
            match finding {
                Finding::Warning(warning) => report.warnings.push(format!("{place}: {warning}")),
                Finding::Retargeted(change) => report.retargeted.push(format!("{place}: {change}")),
            }
        }
        let yaml = serde_yaml_ng::to_string(&value)
            .with_context(|| format!("{place}: cannot render as YAML"))?;
        rendered.push(yaml);
    }
    Ok((rendered.join("---\n"), report))
}

/// A Service, or each Service of a `v1` List.
fn check_services(object: &mut Value, pods: &[InboundPod], retarget: bool) -> Vec<Finding> {
    if matches!(locate(object), PodLocation::ListItems) {
        return object
            .get_mut("items")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .flat_map(|item| check_services(item, pods, retarget))
            .collect();
    }
    check_service(object, pods, retarget)
}

/// One document as JSON, with YAML merge keys (`<<: *defaults`) applied as kubectl applies them.
fn document_value(document: serde_yaml_ng::Deserializer<'_>) -> Result<Value, String> {
    let mut yaml = serde_yaml_ng::Value::deserialize(document).map_err(|e| e.to_string())?;
    yaml.apply_merge().map_err(|e| e.to_string())?;
    serde_json::to_value(yaml).map_err(|e| e.to_string())
}

/// ` (Kind name)`, ` (Kind)` or nothing, for error messages.
fn describe(object: &Value) -> String {
    let kind = object.get("kind").and_then(Value::as_str);
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    match (kind.map(excerpt), name.map(excerpt)) {
        (Some(kind), Some(name)) => format!(" ({kind} {name})"),
        (Some(kind), None) => format!(" ({kind})"),
        (None, Some(name)) => format!(" ({name})"),
        (None, None) => String::new(),
    }
}

/// Where an object keeps the pod it stands for.
enum PodLocation {
    /// The object is the pod.
    Itself,
    /// The object holds a pod template at this JSON pointer.
    Template(&'static str),
    /// A `v1` List: each item is an object of its own.
    ListItems,
    /// Not a pod, nor anything with one.
    None,
}

fn locate(object: &Value) -> PodLocation {
    let Some(kind) = object.get("kind").and_then(Value::as_str) else {
        return PodLocation::None;
    };
    // `apps/v1` → `apps`, `v1` → `` (the core group); absent → any group.
    let group = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|version| version.rsplit_once('/').map_or("", |(group, _)| group));
    let in_group = |groups: &[&str]| group.is_none_or(|group| groups.contains(&group));
    match kind {
        "Pod" if in_group(&[""]) => PodLocation::Itself,
        "List" if in_group(&[""]) => PodLocation::ListItems,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
            if in_group(&["apps", "extensions"]) =>
        {
            PodLocation::Template("/spec/template")
        }
        "Job" if in_group(&["batch"]) => PodLocation::Template("/spec/template"),
        "CronJob" if in_group(&["batch"]) => {
            PodLocation::Template("/spec/jobTemplate/spec/template")
        }
        _ => PodLocation::None,
    }
}

fn object_annotations_of(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|annotations| {
            annotations
                .keys()
                .filter(|key| key.starts_with(ANNOTATION_PREFIX))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Sidecar annotations on a workload's own metadata never reach its pods (Kubernetes copies only the
/// template's), so the webhook would never see them: say so rather than leave them silently unused.
fn misplaced_annotations(keys: &[String], template_pointer: &str) -> Result<(), String> {
    let Some(first) = keys.first() else {
        return Ok(());
    };
    let template_path = template_pointer.trim_start_matches('/').replace('/', ".");
    Err(format!(
        "{} is on the workload's own metadata, which Kubernetes does not copy to its pods; put the sidecar.speedscale.com/ annotations on {template_path}.metadata.annotations",
        excerpt(first)
    ))
}

/// Injects one object in place; returns, for each pod injected, where in the object (empty, or
/// `, item 2 (Pod web)`) and `: ` what it got. The error is the message without the document's name.
fn inject_object(
    object: &mut Value,
    options: &SidecarOptions,
    place: &str,
    found: &mut Found,
) -> Result<Vec<String>, String> {
    match locate(object) {
        PodLocation::Itself => inject_pod(object, options, place, found),
        PodLocation::Template(pointer) => {
            // Nothing to inject into: the API server will say what is missing.
            if object.pointer(pointer).is_none() {
                return Ok(Vec::new());
            }
            misplaced_annotations(&object_annotations_of(object), pointer)?;
            let template = object
                .pointer_mut(pointer)
                .expect("the template was just found");
            inject_template(template, options, place, found)
        }
        PodLocation::ListItems => {
            let Some(items) = object.get_mut("items").and_then(Value::as_array_mut) else {
                return Ok(Vec::new());
            };
            let mut injected = Vec::new();
            for (index, item) in items.iter_mut().enumerate() {
                let described = describe(item);
                let item_place = format!("{place}, item {}{described}", index + 1);
                let pods = inject_object(item, options, &item_place, found)
                    .map_err(|e| format!("item {}{described}: {e}", index + 1))?;
                injected.extend(
                    pods.into_iter()
                        .map(|pod| format!(", item {}{described}{pod}", index + 1)),
                );
            }
            Ok(injected)
        }
        PodLocation::None => Ok(Vec::new()),
    }
}

/// A pod template (`metadata` and `spec`) goes through admission as the pod it describes.
fn inject_template(
    template: &mut Value,
    options: &SidecarOptions,
    place: &str,
    found: &mut Found,
) -> Result<Vec<String>, String> {
    let Some(fields) = template.as_object_mut() else {
        return Err("the pod template is not a mapping".to_owned());
    };
    let mut pod = Map::new();
    pod.insert("apiVersion".to_owned(), Value::from("v1"));
    pod.insert("kind".to_owned(), Value::from("Pod"));
    for key in ["metadata", "spec"] {
        if let Some(part) = fields.remove(key) {
            pod.insert(key.to_owned(), part);
        }
    }
    let mut pod = Value::Object(pod);
    let result = inject_pod(&mut pod, options, place, found);
    // Back into the template, patched or not (an error fails the whole run anyway).
    if let Value::Object(mut pod) = pod {
        for key in ["metadata", "spec"] {
            if let Some(part) = pod.remove(key) {
                fields.insert(key.to_owned(), part);
            }
        }
    }
    result
}

/// Admits a pod given as JSON and applies the patch to that JSON, so fields [`Pod`] does not know stay.
/// Returns `: ` and what the pod got, if it was injected.
fn inject_pod(
    pod_value: &mut Value,
    options: &SidecarOptions,
    place: &str,
    found: &mut Found,
) -> Result<Vec<String>, String> {
    check_string_maps(pod_value)?;
    let pod: Pod = serde_json::from_value(pod_value.clone())
        .map_err(|e| format!("not a valid pod: {}", excerpt(&e.to_string())))?;
    let admitted = admit_planned(&pod, options).map_err(|denial| denial.0)?;
    found.warnings.extend(
        admitted
            .warnings
            .iter()
            .map(|warning| format!("{place}: {warning}")),
    );
    if let (Some(plan), Some(spec)) = (&admitted.plan, &pod.spec) {
        found.inbound_pods.extend(InboundPod::new(
            place.to_owned(),
            &pod.metadata,
            &spec.containers,
            &plan.config,
        ));
    }
    match admitted.admission {
        Admission::Unchanged => Ok(Vec::new()),
        Admission::Patched(patch) => {
            json_patch::patch(pod_value, &patch)
                .map_err(|e| format!("the injection patch does not apply to this pod: {e}"))?;
            Ok(describe_injected(pod_value)
                .map(|what| format!(": {what}"))
                .into_iter()
                .collect())
        }
    }
}

/// Annotations and labels are string maps; `inject: true` without quotes is the usual mistake, and the
/// generic "expected a string" would not say where.
fn check_string_maps(pod: &Value) -> Result<(), String> {
    for map in ["annotations", "labels"] {
        let Some(entries) = pod
            .get("metadata")
            .and_then(|metadata| metadata.get(map))
            .and_then(Value::as_object)
        else {
            continue;
        };
        for (key, value) in entries {
            if !value.is_string() {
                let written = value.to_string();
                return Err(format!(
                    "metadata.{map}.{}: {} is not a string; quote it in the YAML (\"{}\")",
                    excerpt(key),
                    excerpt(&written),
                    excerpt(written.trim_matches('"'))
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> SidecarOptions {
        SidecarOptions::new("registry.example.com/sidecar-proxy:0.1.0")
    }

    fn run(input: &str) -> anyhow::Result<String> {
        let mut output = Vec::new();
        inject(&mut input.as_bytes(), &mut output, &options())?;
        Ok(String::from_utf8(output).expect("the output is UTF-8"))
    }

    fn documents(text: &str) -> Vec<Value> {
        serde_yaml_ng::Deserializer::from_str(text)
            .map(|document| Value::deserialize(document).expect("the output is YAML"))
            .collect()
    }

    fn container_names(pod_spec: &Value) -> Vec<&str> {
        pod_spec["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| c["name"].as_str().expect("a name"))
            .collect()
    }

    const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 8080
";

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
      annotations:
        sidecar.speedscale.com/inject: "true"
        sidecar.speedscale.com/proxy-type: "dual"
        sidecar.speedscale.com/proxy-protocol: "tcp:http"
        sidecar.speedscale.com/proxy-port: "8080"
    spec:
      futureField: kept
      containers:
        - name: app
          image: registry.example.com/web:1.0
"#;

    #[test]
    fn a_service_passes_through_and_empty_documents_are_dropped() {
        let output = run(&format!(
            "---\n{SERVICE}---\n---\n# only a comment\n---\n{SERVICE}"
        ))
        .unwrap();
        let docs = documents(&output);
        assert_eq!(docs.len(), 2, "{output}");
        let service: Value = serde_yaml_ng::from_str(SERVICE).unwrap();
        assert_eq!(docs[0], service);
        assert_eq!(docs[1], service);
        assert_eq!(output.matches("---\n").count(), 1, "{output}");
    }

    #[test]
    fn a_deployment_template_is_injected_and_other_documents_kept_in_order() {
        let output = run(&format!("{SERVICE}---{DEPLOYMENT}")).unwrap();
        let docs = documents(&output);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["kind"], "Service");
        let deployment = &docs[1];
        assert_eq!(deployment["spec"]["replicas"], 2);
        let template = &deployment["spec"]["template"];
        assert_eq!(container_names(&template["spec"]), ["sidecar-proxy", "app"]);
        // Fields the Kubernetes types do not know survive: the patch is applied to the document.
        assert_eq!(template["spec"]["futureField"], "kept");
        assert_eq!(
            template["metadata"]["labels"]["sidecar.speedscale.com/injected"],
            "true"
        );
        let env = &template["spec"]["containers"][0]["env"];
        assert!(env
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"name": "PROXY_TYPE", "value": "dual"})));
        // Not transparent: no init container.
        assert!(template["spec"].get("initContainers").is_none());
        // A second run changes nothing.
        assert_eq!(run(&output).unwrap(), output);
    }

    #[test]
    fn a_cronjob_template_is_injected() {
        let input = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        metadata:
          annotations:
            sidecar.speedscale.com/inject: "true"
        spec:
          restartPolicy: OnFailure
          containers:
            - name: report
              image: registry.example.com/report:2.1
"#;
        let docs = documents(&run(input).unwrap());
        let pod_spec = &docs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(container_names(pod_spec), ["sidecar-proxy", "report"]);
        // Transparent by default: the iptables init container and its volumes.
        assert_eq!(
            pod_spec["initContainers"][0]["name"],
            "sidecar-init-iptables"
        );
        assert_eq!(pod_spec["restartPolicy"], "OnFailure");
        assert_eq!(docs[0]["spec"]["schedule"], "0 3 * * *");
    }

    #[test]
    fn a_pod_and_list_items_are_injected_but_foreign_kinds_are_not() {
        let input = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: Pod
    metadata:
      name: one
      annotations:
        sidecar.speedscale.com/inject: "true"
        sidecar.speedscale.com/proxy-type: "forward"
    spec:
      containers:
        - name: app
          image: app
  - apiVersion: example.com/v1
    kind: Deployment
    metadata:
      name: not-apps
    spec:
      template:
        metadata:
          annotations:
            sidecar.speedscale.com/inject: "true"
        spec:
          containers:
            - name: app
              image: app
"#;
        let docs = documents(&run(input).unwrap());
        let items = &docs[0]["items"];
        assert_eq!(container_names(&items[0]["spec"]), ["sidecar-proxy", "app"]);
        assert_eq!(
            container_names(&items[1]["spec"]["template"]["spec"]),
            ["app"]
        );
    }

    #[test]
    fn a_denial_names_the_document() {
        let bad = DEPLOYMENT
            .replace("tcp:http", "tcp")
            .replace("\"dual\"", "\"forward\"");
        let error = run(&format!("{SERVICE}---{bad}")).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "document 2 (Deployment web): invalid sidecar.speedscale.com/proxy-protocol \"tcp\" for sidecar.speedscale.com/proxy-type \"forward\""
            ),
            "{error}"
        );
    }

    #[test]
    fn list_items_are_named_in_errors() {
        let input = r#"
kind: List
apiVersion: v1
items:
  - kind: Pod
    apiVersion: v1
    metadata:
      name: p
      annotations:
        sidecar.speedscale.com/inject: "yes"
    spec:
      containers: [{name: app, image: app}]
"#;
        let error = run(input).unwrap_err().to_string();
        assert_eq!(
            error,
            "document 1 (List): item 1 (Pod p): sidecar.speedscale.com/inject: \"yes\" is not allowed; allowed: true, false"
        );
    }

    #[test]
    fn annotations_on_the_workload_itself_are_refused_with_where_they_belong() {
        let error = run(r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    sidecar.speedscale.com/inject: "true"
spec:
  template:
    spec:
      containers:
        - name: app
          image: app
"#)
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "document 1 (Deployment web): sidecar.speedscale.com/inject is on the workload's own metadata, which Kubernetes does not copy to its pods; put the sidecar.speedscale.com/ annotations on spec.template.metadata.annotations"
        );
    }

    #[test]
    fn nothing_is_written_on_error() {
        for input in [
            format!("{SERVICE}---{}", DEPLOYMENT.replace("\"8080\"", "\"0\"")),
            format!("{SERVICE}---\nkind: [unclosed\n"),
        ] {
            let mut output = Vec::new();
            let result = inject(&mut input.as_bytes(), &mut output, &options());
            assert!(result.is_err());
            assert!(output.is_empty(), "{}", String::from_utf8_lossy(&output));
        }
    }

    #[test]
    fn malformed_yaml_names_the_document() {
        let error = run(&format!("{SERVICE}---\nkind: [unclosed\n"))
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("document 2: not valid YAML: "), "{error}");
    }

    #[test]
    fn an_unquoted_annotation_value_is_explained() {
        let input = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidecar.speedscale.com/inject: true\nspec:\n  containers: [{name: app}]\n";
        let error = run(input).unwrap_err().to_string();
        assert_eq!(
            error,
            "document 1 (Pod p): metadata.annotations.sidecar.speedscale.com/inject: true is not a string; quote it in the YAML (\"true\")"
        );
    }

    #[test]
    fn yaml_merge_keys_are_applied() {
        let input = r#"
apiVersion: v1
kind: Pod
metadata:
  name: merged
  annotations: &sidecar
    sidecar.speedscale.com/inject: "true"
    sidecar.speedscale.com/proxy-type: "forward"
spec:
  containers:
    - &app
      name: app
      image: app
    - <<: *app
      name: worker
"#;
        let docs = documents(&run(input).unwrap());
        assert_eq!(
            container_names(&docs[0]["spec"]),
            ["sidecar-proxy", "app", "worker"]
        );
        assert_eq!(docs[0]["spec"]["containers"][2]["image"], "app");
        assert!(docs[0]["spec"]["containers"][2].get("<<").is_none());
    }

    #[test]
    fn empty_input_gives_empty_output() {
        assert_eq!(run("").unwrap(), "");
        assert_eq!(run("---\n").unwrap(), "");
    }
}
