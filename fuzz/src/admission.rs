//! The injector's admission decision, from outside.
//!
//! - `admission_review`: the input is a webhook request body, given to [`review`] as the webhook server
//!   gives it. Whatever the bytes, there is an answer that encodes as JSON, and it echoes the request's uid.
//! - `admission_pod`: the input describes a pod, one line each: `container:NAME` adds a container,
//!   `hostNetwork:true` sets host networking, and any other line is an annotation `key=value` (a line
//!   without `=` is a key with an empty value). It goes to [`admit`], the decision both the webhook and
//!   offline `inject` make.
//!
//! A pod that is patched, in either target, must take its patch, and the patched pod must be left alone
//! when admitted again (the API server may send it twice); the sidecar's `PROXY_*` environment must be
//! accepted by the proxy's own validation (the injector must never start a sidecar that exits at once).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use kube::core::DynamicObject;
use sidecar_injector::containers::{SidecarOptions, SIDECAR_NAME};
use sidecar_injector::review::{admit, review, Admission};
use sidecar_proxy::config::{ProxyConfig, RawSettings, Setting, Source};

/// The image the injector's golden cases use.
const IMAGE: &str = "registry.example.com/sidecar-proxy:0.1.0";

pub fn admission_review(data: &[u8]) {
    let options = SidecarOptions::new(IMAGE);
    let answer = review(data, &options);
    serde_json::to_vec(&answer).expect("an AdmissionReview answer always encodes");
    let response = answer
        .response
        .as_ref()
        .expect("every answer carries a response");

    // The request read as the injector reads it, so that the pod below is the one it decided on.
    let request: Option<AdmissionRequest<DynamicObject>> =
        serde_json::from_slice::<AdmissionReview<DynamicObject>>(data)
            .ok()
            .and_then(|review| review.try_into().ok());
    if !response.uid.is_empty() {
        let sent = request.as_ref().map(|request| request.uid.as_str());
        assert_eq!(
            Some(response.uid.as_str()),
            sent,
            "the answer echoes the uid"
        );
    }
    let Some(patch) = &response.patch else {
        return;
    };
    assert!(response.allowed, "a patch comes only with an admission");
    // The API server applies the patch to the object it sent, which is the pod the injector decoded.
    let pod: Pod = request
        .and_then(|request| request.object)
        .and_then(|object| serde_json::to_value(object).ok())
        .and_then(|object| serde_json::from_value(object).ok())
        .expect("only a readable Pod is patched");
    let patch: json_patch::Patch =
        serde_json::from_slice(patch).expect("the patch is an RFC 6902 JSON Patch");
    check_patched(&pod, &patch, &options);
}

pub fn admission_pod(data: &[u8]) {
    let pod = pod_from_lines(&String::from_utf8_lossy(data));
    let options = SidecarOptions::new(IMAGE);
    match admit(&pod, &options) {
        Ok(Admission::Unchanged) => {}
        Ok(Admission::Patched(patch)) => check_patched(&pod, &patch, &options),
        Err(denial) => assert!(!denial.0.is_empty(), "a denial says why"),
    }
}

/// Applies the patch as the API server would, then checks the patched pod.
fn check_patched(pod: &Pod, patch: &json_patch::Patch, options: &SidecarOptions) {
    let mut patched = serde_json::to_value(pod).expect("a Pod encodes");
    json_patch::patch(&mut patched, patch)
        .unwrap_or_else(|e| panic!("the patch does not apply to its own pod: {e}"));
    let patched: Pod = serde_json::from_value(patched).expect("the patched pod is a Pod");
    assert_eq!(
        admit(&patched, options),
        Ok(Admission::Unchanged),
        "a patched pod admitted again must be left alone"
    );

    let sidecar = patched
        .spec
        .as_ref()
        .and_then(|spec| {
            // A native sidecar is an init container.
            spec.init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
                .find(|c| c.name == SIDECAR_NAME)
        })
        .expect("the patch adds the sidecar container");
    let mut settings = RawSettings::default();
    for variable in sidecar.env.iter().flatten() {
        let setting = Setting::ALL
            .into_iter()
            .find(|setting| setting.env_var() == variable.name);
        if let (Some(setting), Some(value)) = (setting, &variable.value) {
            settings.offer(setting, value.clone(), Source::Env);
        }
    }
    if let Err(error) = ProxyConfig::from_settings(&settings) {
        panic!("the injector admitted a pod whose sidecar refuses its environment: {error}");
    }
}

/// The pod an `admission_pod` input describes (see the module documentation).
fn pod_from_lines(text: &str) -> Pod {
    let mut annotations = BTreeMap::new();
    let mut containers = Vec::new();
    let mut host_network = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("container:") {
            containers.push(Container {
                name: name.to_owned(),
                image: Some("registry.example.com/app:1".to_owned()),
                ..Container::default()
            });
        } else if let Some(value) = line.strip_prefix("hostNetwork:") {
            host_network = Some(value.trim() == "true");
        } else {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            annotations.insert(key.to_owned(), value.to_owned());
        }
    }
    if containers.is_empty() {
        containers.push(Container {
            name: "app".to_owned(),
            image: Some("registry.example.com/app:1".to_owned()),
            ..Container::default()
        });
    }
    Pod {
        metadata: ObjectMeta {
            name: Some("fuzz".to_owned()),
            namespace: Some("default".to_owned()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers,
            host_network,
            ..PodSpec::default()
        }),
        status: None,
    }
}
