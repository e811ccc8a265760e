//! Golden files for the admission decision, like istio's and linkerd's injector testdata.
//!
//! Every directory under `testdata/golden/` is one case: `pod.yaml` is the input pod, and the expected
//! outcome of `review::admit` (with `SidecarOptions::new("registry.example.com/sidecar-proxy:0.1.0")`) is
//! exactly one of:
//!
//! - `patch.json` (the RFC 6902 patch, pretty-printed) and `patched.yaml` (the pod after applying it);
//! - `denial.txt`: the one-line denial message;
//! - `unchanged.txt`: admission lets the pod through untouched (not annotated, `inject: "false"`, or
//!   already injected). Its content is fixed ([`UNCHANGED`]); the file's presence is the expectation.
//!
//! The test recomputes every case and reports each mismatching one by name. After an intended change,
//! regenerate the files and review the diff:
//!
//! ```sh
//! UPDATE_GOLDEN=1 cargo test -p sidecar-injector --test golden
//! ```
//!
//! A new case is a new directory with a `pod.yaml`, added to [`CASES`] (the list catches a deleted or
//! misnamed directory). Beside the files, every injected case is checked for invariants: the patched pod
//! is admitted `Unchanged` (idempotence, with and without the `injected` annotation), the sidecar's
//! `PROXY_*` environment is accepted by the proxy's own configuration parser and matches its ports, the
//! tls-out volumes are where that environment says and mounted only as they should be, and
//! `offline::inject` on `pod.yaml` gives the same result.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use sidecar_injector::annotations::quantity_value;
use sidecar_injector::capture_volume::RECORD_HEADROOM;
use sidecar_injector::containers::{SidecarOptions, CAPTURE_VOLUME, INIT_NAME, SIDECAR_NAME};
use sidecar_injector::layout::{AutoLayout, SidecarLayout};
use sidecar_injector::offline;
use sidecar_injector::review::{admit, Admission};
use sidecar_injector::tls_out::{CA_VOLUME, TRUST_DIR, TRUST_VOLUME, UPSTREAM_CA_VOLUME};
use sidecar_proxy::config::{
    ProxyConfig, ProxyType, RawSettings, RedirectSettings, Setting, Source, TlsOutSettings,
};

const IMAGE: &str = "registry.example.com/sidecar-proxy:0.1.0";

/// The content of `unchanged.txt`.
const UNCHANGED: &str = "unchanged: admission allows this pod without a patch\n";

const INPUT: &str = "pod.yaml";
const PATCH: &str = "patch.json";
const PATCHED: &str = "patched.yaml";
const DENIAL: &str = "denial.txt";
const UNCHANGED_FILE: &str = "unchanged.txt";
const OUTPUTS: [&str; 4] = [PATCH, PATCHED, DENIAL, UNCHANGED_FILE];

/// Every case directory, sorted.
const CASES: &[&str] = &[
    "already-injected",
    "capture-sink-nats",
    "capture-size-limit-and-keep",
    "capture-size-limit-and-rotate-size",
    "configure-app-env-from",
    "configure-app-forward-http-existing-env",
    "configure-app-forward-socks-no-env",
    "configure-app-java-options-from-configmap",
    "configure-app-java-options-without-value",
    "configure-app-two-containers",
    "default-container-kept",
    "default-protocol-dual",
    "default-protocol-forward",
    "default-protocol-reverse",
    "default-transparent",
    "default-transparent-explicit",
    "deny-bad-ignore-list",
    "deny-bad-quantity",
    "deny-bogus-proxy-type",
    "deny-capture-rotate-size-too-large",
    "deny-capture-sink-credentials-in-address",
    "deny-capture-size-limit-too-small",
    "deny-configure-app-reverse",
    "deny-configure-app-transparent",
    "deny-cpu-limit-below-default-request",
    "deny-cpu-request-above-cpu-limit",
    "deny-drain-duration-bad",
    "deny-forward-tcp",
    "deny-host-with-scheme",
    "deny-ignore-ports-not-transparent",
    "deny-in-port-equals-out-port",
    "deny-in-port-is-admin-port",
    "deny-inject-yes",
    "deny-memory-request-above-default-limit",
    "deny-mock-configmap-without-mock",
    "deny-native-sidecar-yes",
    "deny-port-70000",
    "deny-port-zero",
    "deny-pre-stop-wait-bad",
    "deny-proxy-port-is-in-port",
    "deny-reverse-tcp-http",
    "deny-tls-out-bad-exclude-list",
    "deny-tls-out-reverse",
    "deny-tls-out-secret-bad-name",
    "deny-tls-out-secret-without-tls-out",
    "deny-tls-out-upstream-ca-bad-name",
    "deny-tls-out-upstream-ca-without-tls-out",
    "deny-tls-out-yes",
    "deny-transparent-host-network",
    "deny-transparent-in-port-is-default-out-port",
    "deny-unknown-annotation",
    "inject-false",
    "mock-configmap-dual",
    "native-sidecar-auto",
    "native-sidecar-false-app-init",
    "native-sidecar-reverse-configure-dual",
    "native-sidecar-transparent-app-init",
    "not-annotated",
    "not-annotated-no-metadata-maps",
    "parents-existing",
    "parents-missing",
    "protocol-dual-http",
    "protocol-dual-socks",
    "protocol-dual-tcp-http-host-127-0-0-1",
    "protocol-dual-tcp-socks",
    "protocol-forward-http",
    "protocol-forward-socks-out-port-11000",
    "protocol-reverse-http",
    "protocol-reverse-socks",
    "protocol-reverse-tcp",
    "resources-all-overridden",
    "resources-cpu-limit-only",
    "resources-memory-request-and-limit-raised",
    "reverse-host-network",
    "shutdown-classic-pre-stop-wait-drain",
    "spec-dual-tcp-http-in-10000-out-10001",
    "spec-dual-tcp-http-port-8080",
    "spec-forward-socks",
    "spec-reverse-http-port-8888",
    "tls-out-configure-app-env-from",
    "tls-out-custom-secret",
    "tls-out-dual-configure-app-existing-env",
    "tls-out-forward-http",
    "tls-out-transparent",
    "tls-out-transparent-configure-app",
    "tls-out-upstream-ca",
    "transparent-custom-ports",
    "transparent-ignore-ports",
    "transparent-tcp-probe-port-excluded",
];

fn options() -> SidecarOptions {
    SidecarOptions::new(IMAGE)
}

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|value| value == "1")
}

/// What admission does with one case's pod.
enum Outcome {
    Patched { patch: Value, patched: Value },
    Denied(String),
    Unchanged,
}

fn to_yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).expect("a JSON value renders as YAML")
}

/// The expected output files of an outcome, by name.
fn rendered(outcome: &Outcome) -> BTreeMap<&'static str, String> {
    match outcome {
        Outcome::Patched { patch, patched } => BTreeMap::from([
            (
                PATCH,
                serde_json::to_string_pretty(patch).expect("JSON") + "\n",
            ),
            (PATCHED, to_yaml(patched)),
        ]),
        Outcome::Denied(message) => BTreeMap::from([(DENIAL, format!("{message}\n"))]),
        Outcome::Unchanged => BTreeMap::from([(UNCHANGED_FILE, UNCHANGED.to_owned())]),
    }
}

fn parse_pod(value: &Value) -> Result<Pod, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("not a valid Pod: {e}"))
}

fn decide(input: &Value) -> Result<Outcome, String> {
    let pod = parse_pod(input)?;
    Ok(match admit(&pod, &options()) {
        Ok(Admission::Unchanged) => Outcome::Unchanged,
        Err(denial) => Outcome::Denied(denial.to_string()),
        Ok(Admission::Patched(patch)) => {
            let mut patched = input.clone();
            json_patch::patch(&mut patched, &patch)
                .map_err(|e| format!("the patch does not apply to pod.yaml: {e}"))?;
            Outcome::Patched {
                patch: serde_json::to_value(&patch).expect("a patch is JSON"),
                patched,
            }
        }
    })
}

/// One case: the golden files, then the invariants. Returns the problems found (empty: the case passes).
fn check_case(dir: &Path, update: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let input_text = match fs::read_to_string(dir.join(INPUT)) {
        Ok(text) => text,
        Err(e) => return vec![format!("cannot read {INPUT}: {e}")],
    };
    let input: Value = match serde_yaml_ng::from_str(&input_text) {
        Ok(value) => value,
        Err(e) => return vec![format!("{INPUT} is not YAML: {e}")],
    };
    let outcome = match decide(&input) {
        Ok(outcome) => outcome,
        Err(e) => return vec![e],
    };

    // Only the input and the outcome's files belong in the directory.
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name != INPUT && !OUTPUTS.contains(&name.as_str()) {
                problems.push(format!("unexpected file {name}"));
            }
        }
    }
    let expected = rendered(&outcome);
    for file in OUTPUTS {
        let path = dir.join(file);
        let want = expected.get(file);
        let have = fs::read_to_string(&path).ok();
        if update {
            match want {
                Some(content) if have.as_ref() != Some(content) => {
                    fs::write(&path, content).expect("write a golden file")
                }
                None if have.is_some() => fs::remove_file(&path).expect("remove a stale file"),
                _ => {}
            }
            continue;
        }
        match (want, have) {
            (Some(want), Some(have)) if *want != have => {
                problems.push(format!("{file} differs: {}", first_difference(want, &have)))
            }
            (Some(_), None) => problems.push(format!("{file} is missing")),
            (None, Some(_)) => problems.push(format!(
                "{file} should not exist (the outcome is {})",
                expected.keys().copied().collect::<Vec<_>>().join(" + ")
            )),
            _ => {}
        }
    }

    problems.extend(check_offline(&input_text, &input, &outcome));
    if let Outcome::Patched { patched, .. } = &outcome {
        problems.extend(check_injected(&input, patched));
    }
    problems
}

/// Where two texts first differ, for the report.
fn first_difference(want: &str, have: &str) -> String {
    let mut want_lines = want.lines();
    let mut have_lines = have.lines();
    for line in 1.. {
        match (want_lines.next(), have_lines.next()) {
            (Some(w), Some(h)) if w == h => continue,
            (None, None) => return "only in line endings or a trailing newline".to_owned(),
            (w, h) => {
                return format!(
                    "line {line}: expected {:?}, found {:?}",
                    w.unwrap_or("<end>"),
                    h.unwrap_or("<end>")
                )
            }
        }
    }
    unreachable!()
}

/// `offline::inject` on the case's pod agrees with admission.
fn check_offline(input_text: &str, input: &Value, outcome: &Outcome) -> Vec<String> {
    let mut output = Vec::new();
    let result = offline::inject(&mut input_text.as_bytes(), &mut output, &options());
    let name = input["metadata"]["name"].as_str().unwrap_or_default();
    let output: Option<Value> = String::from_utf8(output)
        .ok()
        .and_then(|text| serde_yaml_ng::from_str(&text).ok());
    let problem = match (outcome, result) {
        (Outcome::Patched { patched, .. }, Ok(())) if output.as_ref() == Some(patched) => None,
        (Outcome::Unchanged, Ok(())) if output.as_ref() == Some(input) => None,
        (Outcome::Denied(message), Err(e))
            if e.to_string() == format!("document 1 (Pod {name}): {message}") =>
        {
            None
        }
        (_, Err(e)) => Some(format!("offline::inject failed: {e}")),
        (_, Ok(())) => Some(format!("offline::inject gave {output:?}")),
    };
    problem.into_iter().collect()
}

fn env_of(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|var| Some((var.name.clone(), var.value.clone()?)))
        .collect()
}

fn port_named(container: &Container, name: &str) -> Option<u16> {
    container
        .ports
        .iter()
        .flatten()
        .find(|port| port.name.as_deref() == Some(name))
        .map(|port| port.container_port as u16)
}

/// What every injected pod must satisfy, whatever the mode.
fn check_injected(input: &Value, patched_value: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let patched = match parse_pod(patched_value) {
        Ok(pod) => pod,
        Err(e) => return vec![format!("patched: {e}")],
    };

    // Idempotence: admission of the injected pod changes nothing, even if the annotation were lost.
    match admit(&patched, &options()) {
        Ok(Admission::Unchanged) => {}
        other => problems.push(format!("re-admitting the patched pod gave {other:?}")),
    }
    let mut unmarked = patched.clone();
    if let Some(annotations) = unmarked.metadata.annotations.as_mut() {
        annotations.remove("sidecar.speedscale.com/injected");
    }
    match admit(&unmarked, &options()) {
        Ok(Admission::Unchanged) => {}
        other => problems.push(format!(
            "re-admitting the patched pod without its injected annotation gave {other:?}"
        )),
    }

    let spec = patched.spec.as_ref().expect("a patched pod has a spec");
    let Some(sidecar) = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == SIDECAR_NAME)
    else {
        problems.push(format!("no container is {SIDECAR_NAME}"));
        return problems;
    };
    let input_pod = parse_pod(input).expect("the input parsed before");
    let input_spec = input_pod.spec.expect("the input has a spec");
    let all_names: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| c.name.clone())
        .collect();
    if all_names.iter().collect::<BTreeSet<_>>().len() != all_names.len() {
        problems.push(format!("duplicate container names: {all_names:?}"));
    }
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    if volumes.iter().collect::<BTreeSet<_>>().len() != volumes.len() {
        problems.push(format!("duplicate volume names: {volumes:?}"));
    }
    for container in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        for mount in container.volume_mounts.iter().flatten() {
            if !volumes.contains(&mount.name.as_str()) {
                problems.push(format!(
                    "{} mounts {}, which is not a volume of the pod",
                    container.name, mount.name
                ));
            }
        }
    }

    // The proxy accepts the environment the injector wrote, and listens where the ports say.
    let env = env_of(sidecar);
    let mut raw = RawSettings::default();
    for setting in Setting::ALL {
        if let Some(value) = env.get(setting.env_var()) {
            raw.offer(setting, value.clone(), Source::Env);
        }
    }
    let config = match ProxyConfig::from_settings(&raw) {
        Ok(config) => config,
        Err(e) => {
            problems.push(format!("the proxy refuses the sidecar's environment: {e}"));
            return problems;
        }
    };
    let transparent = config.proxy_type == ProxyType::Transparent;
    let want_in = (config.inbound().is_some() || transparent).then_some(config.in_port);
    let want_out = (config.outbound().is_some() || transparent).then_some(config.out_port);
    if port_named(sidecar, "sidecar-in") != want_in
        || port_named(sidecar, "sidecar-out") != want_out
    {
        problems.push(format!(
            "sidecar ports {:?}/{:?} do not match the configuration's {want_in:?}/{want_out:?}",
            port_named(sidecar, "sidecar-in"),
            port_named(sidecar, "sidecar-out")
        ));
    }
    let admin_port = options().admin_port;
    if port_named(sidecar, "sidecar-admin") != Some(admin_port)
        || env.get("PROXY_ADMIN_PORT") != Some(&admin_port.to_string())
    {
        problems.push("the admin port is not the one the probes use".to_owned());
    }

    match TlsOutSettings::from_settings(&raw, config.proxy_type) {
        Ok(tls_out) => problems.extend(check_tls_out(spec, sidecar, &env, tls_out.enabled)),
        Err(e) => problems.push(format!("the proxy refuses the sidecar's tls-out: {e}")),
    }
    problems.extend(check_capture_fits(spec, &env));

    problems.extend(check_layout(&patched, &input_spec, transparent));

    // Transparent mode: the init container redirects to the sidecar's ports (where it goes is
    // check_layout's).
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == INIT_NAME);
    match (transparent, init) {
        (true, Some(init)) => {
            let init_env = env_of(init);
            let mut raw = RawSettings::default();
            for setting in Setting::ALL {
                if let Some(value) = init_env.get(setting.env_var()) {
                    raw.offer(setting, value.clone(), Source::Env);
                }
            }
            match RedirectSettings::from_settings(&raw) {
                Ok(redirect)
                    if (redirect.in_port, redirect.out_port)
                        == (config.in_port, config.out_port) => {}
                Ok(redirect) => problems.push(format!(
                    "the init container redirects to {}/{}, the sidecar listens on {}/{}",
                    redirect.in_port, redirect.out_port, config.in_port, config.out_port
                )),
                Err(e) => problems.push(format!("init-iptables refuses its environment: {e}")),
            }
            if init_env.get("PROXY_UID") != env.get("PROXY_UID") {
                problems.push("the init container exempts another uid than the sidecar's".into());
            }
        }
        (true, None) => problems.push(format!("transparent mode without {INIT_NAME}")),
        (false, Some(_)) => problems.push(format!("{INIT_NAME} outside transparent mode")),
        (false, None) => {}
    }
    problems
}

fn names<'a>(containers: impl IntoIterator<Item = &'a Container>) -> Vec<String> {
    containers.into_iter().map(|c| c.name.clone()).collect()
}

/// The layout the pod's `sidecar-layout` annotation names, and the containers in its order:
///
/// - native: the init containers are the iptables one (transparent mode), the sidecar with
///   `restartPolicy: Always` and a startupProbe on the admin port's `/readyz`, then the app's own, in their
///   order; the containers are the app's, untouched;
/// - classic: the sidecar first among the containers, with the postStart hook that waits for readiness,
///   then the app's; the init containers are the app's, then the iptables one last.
fn check_layout(patched: &Pod, input: &PodSpec, transparent: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let spec = patched.spec.as_ref().expect("a patched pod has a spec");
    let layout = patched
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("sidecar.speedscale.com/sidecar-layout"))
        .map(String::as_str);
    let app_init = names(input.init_containers.iter().flatten());
    let app = names(&input.containers);
    let iptables = transparent.then(|| INIT_NAME.to_owned());
    let (want_init, want_containers) = match layout {
        Some("native") => (
            iptables
                .into_iter()
                .chain([SIDECAR_NAME.to_owned()])
                .chain(app_init)
                .collect::<Vec<_>>(),
            app,
        ),
        Some("classic") => (
            app_init.into_iter().chain(iptables).collect(),
            [SIDECAR_NAME.to_owned()].into_iter().chain(app).collect(),
        ),
        other => return vec![format!("sidecar-layout annotation is {other:?}")],
    };
    let have_init = names(spec.init_containers.iter().flatten());
    if have_init != want_init {
        problems.push(format!(
            "init containers {have_init:?}, expected {want_init:?} in the {} layout",
            layout.unwrap_or_default()
        ));
    }
    let have_containers = names(&spec.containers);
    if have_containers != want_containers {
        problems.push(format!(
            "containers {have_containers:?}, expected {want_containers:?} in the {} layout",
            layout.unwrap_or_default()
        ));
    }
    let Some(sidecar) = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .find(|c| c.name == SIDECAR_NAME)
    else {
        return problems;
    };
    let startup_path = sidecar.startup_probe.as_ref().and_then(|probe| {
        let get = probe.http_get.as_ref()?;
        (get.port == IntOrString::String("sidecar-admin".to_owned())).then(|| get.path.clone())?
    });
    let post_start = sidecar
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|exec| exec.command.clone());
    let wait_ready = Some(vec![
        "/usr/local/bin/sidecar-proxy".to_owned(),
        "wait-ready".to_owned(),
    ]);
    let shape = (
        sidecar.restart_policy.as_deref(),
        startup_path.as_deref(),
        post_start,
    );
    let want = match layout {
        Some("native") => (Some("Always"), Some("/readyz"), None),
        _ => (None, None, wait_ready),
    };
    if shape != want {
        problems.push(format!(
            "the sidecar's (restartPolicy, startupProbe path on sidecar-admin, postStart) is {shape:?}, expected {want:?}"
        ));
    }
    problems
}

/// The capture volume has a size limit, and the rotation the sidecar reads from its environment (parsed by
/// the proxy's own command line) keeps every file inside it, each with its headroom.
fn check_capture_fits(spec: &PodSpec, env: &BTreeMap<String, String>) -> Vec<String> {
    let limit = spec
        .volumes
        .iter()
        .flatten()
        .find(|volume| volume.name == CAPTURE_VOLUME)
        .and_then(|volume| volume.empty_dir.as_ref())
        .and_then(|empty_dir| empty_dir.size_limit.as_ref())
        .and_then(|limit| quantity_value(&limit.0));
    let Some(limit) = limit else {
        return vec![format!("the {CAPTURE_VOLUME} volume has no sizeLimit")];
    };
    let (Some(size), Some(keep)) = (
        env.get("PROXY_CAPTURE_ROTATE_SIZE"),
        env.get("PROXY_CAPTURE_ROTATE_KEEP"),
    ) else {
        return vec!["the sidecar has no capture rotation".to_owned()];
    };
    let args = [
        "sidecar-proxy",
        "--capture",
        "/var/sidecar/capture/capture.jsonl",
        "--capture-rotate-size",
        size.as_str(),
        "--capture-rotate-keep",
        keep.as_str(),
    ];
    let rotation = match sidecar_proxy::cli::Invocation::parse_from(args) {
        Ok(invocation) => match invocation.sink_options() {
            Ok(options) => options.rotation,
            Err(e) => return vec![format!("the proxy refuses the rotation: {e}")],
        },
        Err(e) => return vec![format!("the proxy refuses the rotation: {e}")],
    };
    let Some(rotation) = rotation else {
        return vec!["the proxy reads no rotation from the environment".to_owned()];
    };
    let worst = (rotation.keep as u64 + 1) * (rotation.max_bytes + RECORD_HEADROOM);
    if worst as f64 > limit {
        return vec![format!(
            "{} capture files of {} bytes (plus headroom) pass the volume's {limit} bytes",
            rotation.keep + 1,
            rotation.max_bytes
        )];
    }
    Vec::new()
}

fn mount<'a>(container: &'a Container, volume: &str) -> Option<&'a VolumeMount> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .find(|mount| mount.name == volume)
}

/// tls-out: the CA Secret is read-only in the sidecar alone, at the directory its environment names; the
/// trust emptyDir is writable in the sidecar and read-only in any app container, and the app's trust
/// variables point into it only where it is mounted; the upstream CA ConfigMap, when there is one, gives
/// the sidecar alone, read-only, exactly the file its `PROXY_TLS_UPSTREAM_CA` names. Without tls-out,
/// none of it.
fn check_tls_out(
    spec: &PodSpec,
    sidecar: &Container,
    env: &BTreeMap<String, String>,
    enabled: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let volume = |name: &str| spec.volumes.iter().flatten().find(|v| v.name == name);
    let ca_dir = env.get("PROXY_TLS_CA_DIR");
    let trust_dir = env.get("PROXY_TLS_TRUST_DIR");
    let upstream_ca = env.get("PROXY_TLS_UPSTREAM_CA");
    if !enabled {
        if [CA_VOLUME, TRUST_VOLUME, UPSTREAM_CA_VOLUME]
            .iter()
            .any(|name| volume(name).is_some())
        {
            problems.push("tls-out volumes without tls-out".to_owned());
        }
        if ca_dir.is_some() || trust_dir.is_some() || upstream_ca.is_some() {
            problems.push("PROXY_TLS_* without tls-out".to_owned());
        }
        return problems;
    }
    problems.extend(check_upstream_ca(
        volume(UPSTREAM_CA_VOLUME),
        mount(sidecar, UPSTREAM_CA_VOLUME),
        upstream_ca,
    ));
    if volume(CA_VOLUME).and_then(|v| v.secret.as_ref()).is_none() {
        problems.push(format!("tls-out without a Secret volume {CA_VOLUME}"));
    }
    if volume(TRUST_VOLUME)
        .and_then(|v| v.empty_dir.as_ref())
        .is_none()
    {
        problems.push(format!("tls-out without an emptyDir volume {TRUST_VOLUME}"));
    }
    match mount(sidecar, CA_VOLUME) {
        Some(m) if Some(&m.mount_path) == ca_dir && m.read_only == Some(true) => {}
        other => problems.push(format!(
            "the sidecar's CA mount {other:?} is not read-only at PROXY_TLS_CA_DIR {ca_dir:?}"
        )),
    }
    match mount(sidecar, TRUST_VOLUME) {
        Some(m) if Some(&m.mount_path) == trust_dir && m.read_only != Some(true) => {}
        other => problems.push(format!(
            "the sidecar's trust mount {other:?} is not writable at PROXY_TLS_TRUST_DIR {trust_dir:?}"
        )),
    }
    for init in spec.init_containers.iter().flatten() {
        if [CA_VOLUME, TRUST_VOLUME, UPSTREAM_CA_VOLUME]
            .iter()
            .any(|name| mount(init, name).is_some())
        {
            problems.push(format!(
                "init container {} mounts a tls-out volume",
                init.name
            ));
        }
    }
    for app in spec.containers.iter().filter(|c| c.name != SIDECAR_NAME) {
        if mount(app, CA_VOLUME).is_some() {
            problems.push(format!("{} mounts the CA's key", app.name));
        }
        if mount(app, UPSTREAM_CA_VOLUME).is_some() {
            problems.push(format!("{} mounts the sidecar's upstream CAs", app.name));
        }
        let trust = mount(app, TRUST_VOLUME);
        if let Some(m) = trust {
            if m.mount_path != TRUST_DIR || m.read_only != Some(true) {
                problems.push(format!("{} mounts the trust files as {m:?}", app.name));
            }
        }
        for (name, value) in env_of(app) {
            if value.contains(TRUST_DIR) && trust.is_none() {
                problems.push(format!(
                    "{}: {name} points at the trust files, which it does not mount",
                    app.name
                ));
            }
        }
    }
    problems
}

/// The upstream CA ConfigMap: absent together with `PROXY_TLS_UPSTREAM_CA`, or a ConfigMap volume whose
/// one item the sidecar mounts read-only exactly where that variable points.
fn check_upstream_ca(
    volume: Option<&Volume>,
    sidecar_mount: Option<&VolumeMount>,
    file: Option<&String>,
) -> Vec<String> {
    let (volume, mount, file) = match (volume, sidecar_mount, file) {
        (None, None, None) => return Vec::new(),
        (Some(volume), Some(mount), Some(file)) => (volume, mount, file),
        (volume, mount, file) => {
            return vec![format!(
                "the upstream CA's volume {:?}, sidecar mount {:?} and PROXY_TLS_UPSTREAM_CA {file:?} do not come together",
                volume.map(|v| &v.name),
                mount.map(|m| &m.mount_path)
            )]
        }
    };
    let mut problems = Vec::new();
    let Some(config_map) = volume.config_map.as_ref() else {
        return vec![format!("{UPSTREAM_CA_VOLUME} is not a ConfigMap volume")];
    };
    let items: Vec<(&str, &str)> = config_map
        .items
        .iter()
        .flatten()
        .map(|item| (item.key.as_str(), item.path.as_str()))
        .collect();
    match items.as_slice() {
        [(_, path)] if *file == format!("{}/{path}", mount.mount_path) => {}
        _ => problems.push(format!(
            "PROXY_TLS_UPSTREAM_CA {file} is not the one item {items:?} of {UPSTREAM_CA_VOLUME} under {}",
            mount.mount_path
        )),
    }
    if mount.read_only != Some(true) {
        problems.push("the sidecar's upstream CA mount is writable".to_owned());
    }
    problems
}

#[test]
fn golden_cases() {
    let root = golden_root();
    let update = updating();
    let found: BTreeSet<String> = fs::read_dir(&root)
        .expect("testdata/golden exists")
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let listed: BTreeSet<String> = CASES.iter().map(|case| (*case).to_owned()).collect();

    let mut failures = Vec::new();
    for missing in listed.difference(&found) {
        failures.push(format!("{missing}: listed in CASES but has no directory"));
    }
    for unlisted in found.difference(&listed) {
        failures.push(format!("{unlisted}: a directory not listed in CASES"));
    }
    for case in &found {
        let problems = check_case(&root.join(case), update);
        if !problems.is_empty() {
            failures.push(format!("{case}:\n    {}", problems.join("\n    ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed (rerun with UPDATE_GOLDEN=1 to rewrite the files, then review the diff):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_case_list_is_sorted_and_unique() {
    assert!(CASES.windows(2).all(|pair| pair[0] < pair[1]));
}

/// Each kind of outcome is represented, so a bug that turns everything into one kind is noticed.
#[test]
fn every_outcome_is_covered() {
    let root = golden_root();
    for (prefix, file) in [
        ("deny-", DENIAL),
        ("not-annotated", UNCHANGED_FILE),
        ("spec-", PATCH),
    ] {
        for case in CASES.iter().filter(|case| case.starts_with(prefix)) {
            assert!(
                root.join(case).join(file).exists() || updating(),
                "{case} should have {file}"
            );
        }
    }
}

/// The workloads under `testdata/workloads/<kind>/`: `input.yaml` through offline `inject` with pods left
/// to the default layout (`native-sidecar` absent), once with native as that default (`native.yaml`, as
/// `inject` does unless told `--native-sidecar false`) and once with classic (`classic.yaml`, as the
/// webhook does). Each output's pod template is checked for its layout's order and sidecar shape.
#[test]
fn workloads_in_both_layouts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/workloads");
    let update = updating();
    let mut failures = Vec::new();
    let kinds = ["cronjob", "deployment", "job", "pod"];
    for kind in kinds {
        let dir = root.join(kind);
        let input_text = fs::read_to_string(dir.join("input.yaml")).expect("input.yaml");
        let input: Value = serde_yaml_ng::from_str(&input_text).expect("input.yaml is YAML");
        for (file, layout) in [
            ("native.yaml", SidecarLayout::Native),
            ("classic.yaml", SidecarLayout::Classic),
        ] {
            let native = layout == SidecarLayout::Native;
            let options = SidecarOptions {
                // What `inject --native-sidecar true|false` sets.
                auto_layout: AutoLayout::new(
                    layout,
                    format!("sidecar-injector inject --native-sidecar {native}"),
                ),
                ..options()
            };
            let mut output = Vec::new();
            if let Err(e) = offline::inject(&mut input_text.as_bytes(), &mut output, &options) {
                failures.push(format!("{kind}/{file}: inject failed: {e}"));
                continue;
            }
            let output = String::from_utf8(output).expect("inject writes UTF-8");
            let path = dir.join(file);
            if update {
                fs::write(&path, &output).expect("write a golden file");
            } else {
                match fs::read_to_string(&path) {
                    Ok(want) if want == output => {}
                    Ok(want) => failures.push(format!(
                        "{kind}/{file} differs: {}",
                        first_difference(&want, &output)
                    )),
                    Err(e) => failures.push(format!("{kind}/{file}: {e}")),
                }
            }
            let patched: Value = serde_yaml_ng::from_str(&output).expect("inject writes YAML");
            let (patched_pod, input_pod) = (pod_of(&patched), pod_of(&input));
            let input_spec = input_pod.spec.expect("the input has a pod spec");
            let layout_named = patched_pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("sidecar.speedscale.com/sidecar-layout"))
                .cloned();
            if layout_named.as_deref() != Some(layout.as_str()) {
                failures.push(format!(
                    "{kind}/{file}: sidecar-layout is {layout_named:?}, expected {}",
                    layout.as_str()
                ));
            }
            for problem in check_layout(&patched_pod, &input_spec, kind != "job") {
                failures.push(format!("{kind}/{file}: {problem}"));
            }
        }
    }
    let found: BTreeSet<String> = fs::read_dir(&root)
        .expect("testdata/workloads exists")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if found != kinds.iter().map(|k| (*k).to_owned()).collect() {
        failures.push(format!(
            "testdata/workloads holds {found:?}, expected {kinds:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "(rerun with UPDATE_GOLDEN=1 to rewrite the files, then review the diff)\n{}",
        failures.join("\n")
    );
}

/// The pod an object describes: itself, or its template.
fn pod_of(object: &Value) -> Pod {
    let template = match object["kind"].as_str() {
        Some("Pod") => object,
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &object["spec"]["template"],
    };
    parse_pod(&serde_json::json!({
        "metadata": template["metadata"],
        "spec": template["spec"],
    }))
    .expect("a pod template")
}
