//! End to end through the injector: a pod carrying the spec's annotations goes through the
//! `sidecar-injector` image, and the sidecar container of the patched pod (its image, args,
//! environment, user, read-only root filesystem and volumes, nothing else) runs in a pod of the harness.
//! A client then proves the sidecar serves the annotated mode. With `configure-app`, the client's proxy
//! settings are the ones the injector put on the app container, so the patch itself is proven.

use std::collections::BTreeMap;
use std::fs;

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sidecar_injector::annotations::{CONFIGURE_APP, INJECT};
use sidecar_injector::containers::SidecarOptions;
use sidecar_injector::review::{admit, Admission};
use sidecar_proxy::config::ANNOTATION_PREFIX;

use crate::clients::{Client, Trust};
use crate::expectations::sidecar_port;
use crate::images::{self, Images};
use crate::modes::{Mode, MOCK_ANNOTATIONS};
use crate::pod::{container, run_in_pod, run_tool, transparent_run_in_pod};
use crate::workspace;

/// The app container of the workload, before injection.
const APP_CONTAINER: &str = "app";

/// The workload as a user writes it: the mode's annotations, `inject: "true"`, one app container.
pub fn workload(mode: &Mode, configure_app: bool) -> Pod {
    let mut annotations: BTreeMap<String, String> = mode
        .annotations
        .iter()
        .map(|(key, value)| (format!("{ANNOTATION_PREFIX}{key}"), (*value).to_owned()))
        .collect();
    annotations.insert(INJECT.to_owned(), "true".to_owned());
    if configure_app {
        annotations.insert(CONFIGURE_APP.to_owned(), "true".to_owned());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("conformance-{}", mode.id.replace('_', "-"))),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: APP_CONTAINER.to_owned(),
                image: Some("app:latest".to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The mock column's workload while recording: the column's annotations without the mock ones, so the
/// pod is the same otherwise.
pub fn recording_workload(mode: &Mode) -> Pod {
    let mut pod = workload(mode, false);
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        for key in MOCK_ANNOTATIONS {
            annotations.remove(&format!("{ANNOTATION_PREFIX}{key}"));
        }
    }
    pod
}

/// The pod after admission by the injector's code, in process: the patch applied as the API server
/// applies it. The matrix's cells start their sidecar from this.
pub fn injected_in_process(pod: &Pod, options: &SidecarOptions) -> anyhow::Result<Pod> {
    let patch = match admit(pod, options) {
        Ok(Admission::Patched(patch)) => patch,
        Ok(Admission::Unchanged) => bail!("the injector left the pod unchanged"),
        Err(denial) => bail!("the injector denied the pod: {denial}"),
    };
    let mut value = serde_json::to_value(pod)?;
    json_patch::patch(&mut value, &patch).context("the injector's patch does not apply")?;
    Ok(serde_json::from_value(value)?)
}

/// The pod after injection by the injector's own image: `sidecar-injector inject` run in its container on
/// the workload, as a user runs it before `kubectl apply`. It makes the webhook's decision (both call the
/// same admission code, which the injector's golden and TLS tests cover), so this proves the image too.
/// `layout` is its `--native-sidecar`: the loopback-only pods of the inline modes start their containers
/// together, so they take the classic layout; transparent pods are started as the kubelet starts the
/// native one (see `pod::network`).
pub async fn injected_by_image(
    pod: &Pod,
    dir: &Path,
    images: &Images,
    layout: Layout,
) -> anyhow::Result<Pod> {
    let output = inject_by_image(&serde_yaml_ng::to_string(pod)?, dir, images, layout).await?;
    serde_yaml_ng::from_str(&output).context("the injector's output is not one Pod")
}

/// Runs `sidecar-injector inject` from its image on the workload `yaml` (kept in `dir` with the output)
/// and returns what it printed.
async fn inject_by_image(
    yaml: &str,
    dir: &Path,
    images: &Images,
    layout: Layout,
) -> anyhow::Result<String> {
    let workload = dir.join("workload.yaml");
    fs::write(&workload, yaml)?;
    let run = run_tool(
        "injector",
        &images.injector,
        vec![
            "inject".into(),
            "-f".into(),
            "/workload/workload.yaml".into(),
            "--sidecar-image".into(),
            images.sidecar.clone(),
            "--native-sidecar".into(),
            layout.flag_value().into(),
        ],
        &[(&workload, "/workload/workload.yaml")],
    )
    .await?;
    if run.exit_code != Some(0) {
        bail!(
            "sidecar-injector inject exited with {:?}: {}",
            run.exit_code,
            run.stderr.trim()
        );
    }
    fs::write(dir.join("injected.yaml"), &run.stdout)?;
    Ok(run.stdout)
}

/// A Job whose pod is the workload of `mode`: one container that makes its calls and exits, never
/// restarted.
pub fn job(mode: &Mode) -> Job {
    let pod = workload(mode, false);
    let mut spec = pod.spec.unwrap_or_default();
    spec.restart_policy = Some("Never".to_owned());
    Job {
        metadata: ObjectMeta {
            name: Some(format!("conformance-job-{}", mode.id.replace('_', "-"))),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(pod.metadata),
                spec: Some(spec),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// A Job's pod with native-sidecar semantics: the Job goes through the injector's image (native layout,
/// `inject`'s default), and its pod template runs as the kubelet runs it: the init containers, the
/// sidecar until it is ready, then the main container (`client`), which makes its calls and exits 0.
/// Then the sidecar gets SIGTERM, as the kubelet sends it once the main container has ended; it must
/// exit 0 within the pod's grace period, with every record of the job's traffic in the capture file.
/// Returns what fell short.
pub async fn run_job(mode: &Mode, client: &Client) -> anyhow::Result<Vec<String>> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let port = sidecar_port(client, mode)
        .with_context(|| format!("{} has no listener for {}", mode.id, client.id))?
        .port;
    let name = format!("injected__job__{}__{}", client.id, mode.id);
    let dir = workspace::fresh_cell_dir(&name)?;
    let output = inject_by_image(
        &serde_yaml_ng::to_string(&job(mode))?,
        &dir,
        images,
        Layout::Native,
    )
    .await?;
    let injected: Job =
        serde_yaml_ng::from_str(&output).context("the injector's output is not one Job")?;
    let template = injected
        .spec
        .context("the injected Job has no spec")?
        .template;
    let patched = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        status: None,
    };
    let setup = client.setup(port, Trust::for_mode(mode));
    transparent_run_in_pod(&name, &dir, &patched, client, mode, setup).await
}

/// Where the injector puts the sidecar (`--native-sidecar`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// An init container with `restartPolicy: Always`.
    Native,
    /// The first of the containers.
    Classic,
}

impl Layout {
    fn flag_value(self) -> &'static str {
        match self {
            Layout::Native => "true",
            Layout::Classic => "false",
        }
    }

    /// The layout the harness runs a mode's pods in.
    pub fn for_mode(mode: &Mode) -> Layout {
        if mode.transparent() {
            Layout::Native
        } else {
            Layout::Classic
        }
    }
}

/// Runs one injected pod and returns what fell short (empty: the client got through as documented).
pub async fn run(mode: &Mode, client: &Client, configure_app: bool) -> anyhow::Result<Vec<String>> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let port = sidecar_port(client, mode)
        .with_context(|| format!("{} has no listener for {}", mode.id, client.id))?
        .port;
    let name = format!(
        "injected__{}__{}{}",
        client.id,
        mode.id,
        if configure_app { "__configure_app" } else { "" }
    );
    let dir = workspace::fresh_cell_dir(&name)?;
    let layout = Layout::for_mode(mode);
    let patched = injected_by_image(&workload(mode, configure_app), &dir, images, layout).await?;
    let trust = if configure_app && mode.tls_out {
        Trust::ConfiguredByInjector
    } else {
        Trust::for_mode(mode)
    };
    let mut setup = client.setup(port, trust);
    if configure_app {
        setup.env.extend(app_env(&patched)?);
    }
    if mode.transparent() {
        transparent_run_in_pod(&name, &dir, &patched, client, mode, setup).await
    } else {
        run_in_pod(&name, &dir, &patched, client, mode, setup).await
    }
}

/// The app container's environment exactly as the injector's patch left it (with `configure-app`, the
/// settings it gives the app).
pub fn app_env(patched: &Pod) -> anyhow::Result<Vec<(String, String)>> {
    container(patched, APP_CONTAINER)?
        .env
        .iter()
        .flatten()
        .map(|var| {
            let value = var
                .value
                .clone()
                .with_context(|| format!("app env {} has no literal value", var.name))?;
            Ok((var.name.clone(), value))
        })
        .collect()
}
