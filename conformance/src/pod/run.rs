//! Runs a cell's client in a pod: starts the pod from the container specs the injector wrote, has the
//! client make its planned requests through the sidecar, and returns every way the exchange fell short
//! (the client's answers, what the upstream saw, what the sidecar recorded).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use k8s_openapi::api::core::v1::{Container, Pod as PodManifest};
use sidecar_injector::containers::{CAPTURE_DIR, SIDECAR_NAME};

use super::{ClientRun, Pod};
use crate::clients::{Client, Setup, Side, TRUST_DIR_IN_CONTAINER};
use crate::modes::Mode;
use crate::planned::{
    client_lines, planned_requests, Answerer, ClientLine, PlannedRequest, UPSTREAM_HOST,
    UPSTREAM_HTTPS_PORT, UPSTREAM_HTTP_PORT,
};
use crate::recorded::Recorded;
use crate::upstream::{seen_requests, SeenRequest};
use crate::{expectations, images, pki, tls_out, workspace};

/// The run's test PKI, made once per process.
pub fn test_pki() -> anyhow::Result<&'static PathBuf> {
    static PKI: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PKI.get_or_init(|| {
        pki::write_test_pki(&workspace::scratch_dir().join("pki"), &[UPSTREAM_HOST])
            .map_err(|e| format!("{e:#}"))
    })
    .as_ref()
    .map_err(|e| anyhow!("{e}"))
}

/// The upstream's arguments: the app's port for callers, the named upstream's HTTP and HTTPS ports for
/// the app's own requests.
pub fn upstream_args(side: Side, app_port: u16) -> Vec<String> {
    let mut args = vec!["conformance-upstream".to_owned()];
    match side {
        Side::Inbound => args.extend(["--http-port".into(), app_port.to_string()]),
        Side::Outbound => args.extend([
            "--http-port".into(),
            UPSTREAM_HTTP_PORT.to_string(),
            "--https-port".into(),
            UPSTREAM_HTTPS_PORT.to_string(),
            "--tls-cert".into(),
            pki::CERT_PATH_IN_CONTAINER.into(),
            "--tls-key".into(),
            pki::KEY_PATH_IN_CONTAINER.into(),
        ]),
    }
    args
}

/// Starts a pod (the upstream, then the sidecar from the container spec of `patched`, the pod as the
/// injector left it) and runs the client's requests in it with `setup`; returns what fell short, as
/// [`exchange`] does.
pub async fn run_in_pod(
    name: &str,
    dir: &Path,
    patched: &PodManifest,
    client: &Client,
    mode: &Mode,
    setup: Setup,
) -> anyhow::Result<Vec<String>> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let port = expectations::sidecar_port(client, mode)
        .with_context(|| format!("{} has no listener for {}", mode.id, client.id))?
        .port;
    let mut sidecar = container(patched, SIDECAR_NAME)?.clone();
    let tls_out = if mode.tls_out {
        Some(tls_out::prepare(patched, &mut sidecar, dir, test_pki()?)?)
    } else {
        None
    };
    let mut pod = Pod::start(
        name,
        dir,
        test_pki()?,
        &images.upstream,
        upstream_args(client.side, mode.app_port),
    )
    .await?;
    let provided = tls_out
        .as_ref()
        .map(|volumes| volumes.provided.clone())
        .unwrap_or_default();
    pod.start_sidecar_container(
        &sidecar,
        CAPTURE_DIR,
        &[("127.0.0.1", UPSTREAM_HOST)],
        &provided,
    )
    .await?;
    // The client trusts the test CA, or with tls-out only the trust files the sidecar wrote, mounted as
    // `configure-app` mounts them into app containers.
    let trust_mount = match &tls_out {
        Some(volumes) => (
            pod.volume_dir(&volumes.trust_volume),
            TRUST_DIR_IN_CONTAINER,
        ),
        None => (test_pki()?.clone(), pki::DIR_IN_CONTAINER),
    };
    let requests = planned_requests(client, mode, port);
    exchange(&mut pod, client, mode, &requests, &[trust_mount], setup).await
}

/// Runs the client's requests in a pod whose sidecar is up (the client container with `mounts`, read-only,
/// and `setup`), stops the sidecar, and returns every way the exchange fell short (empty when every
/// request arrived exactly, through the sidecar, and was recorded).
pub async fn exchange(
    pod: &mut Pod,
    client: &Client,
    mode: &Mode,
    requests: &[PlannedRequest],
    mounts: &[(PathBuf, &str)],
    setup: Setup,
) -> anyhow::Result<Vec<String>> {
    let run = run_requests(pod, client, requests, mounts, setup).await?;
    let seen = seen_requests(&pod.upstream_stdout().await?);
    let capture = pod.stop_sidecar().await?;

    let mut problems = exit_problems(&run);
    let lines = client_lines(&run.stdout);
    problems.extend(response_problems(requests, &lines));
    problems.extend(upstream_problems(requests, &seen));
    let recorded = Recorded {
        side: client.side,
        tls_out: mode.tls_out,
        capture: &capture,
    };
    problems.extend(recorded.problems(requests, &lines));
    Ok(problems)
}

/// Runs the client container once with the planned requests (`mounts` read-only, and `setup`) and
/// returns its output; the sidecar keeps running.
pub(crate) async fn run_requests(
    pod: &Pod,
    client: &Client,
    requests: &[PlannedRequest],
    mounts: &[(PathBuf, &str)],
    setup: Setup,
) -> anyhow::Result<ClientRun> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let mut command = vec!["conformance-client".to_owned()];
    command.extend(setup.args);
    for request in requests {
        command.push(request.method.to_owned());
        command.push(request.url.clone());
        command.push(request.body.clone().unwrap_or_else(|| "-".to_owned()));
    }
    pod.run_client(images.client(client.runtime), mounts, command, &setup.env)
        .await
}

/// The client must exit 0.
pub(crate) fn exit_problems(run: &ClientRun) -> Vec<String> {
    if run.exit_code == Some(0) {
        return Vec::new();
    }
    vec![format!(
        "the client exited with {:?}: {}",
        run.exit_code,
        last_line(&run.stderr)
    )]
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
}

/// Every request must get status 200 and the upstream's exact body.
fn response_problems(
    requests: &[PlannedRequest],
    lines: &[Result<ClientLine, String>],
) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let what = format!("{} {}", request.method, request.url);
        let line = match lines.get(i) {
            None => {
                problems.push(format!("{what}: the client printed no result"));
                continue;
            }
            Some(Err(unreadable)) => {
                problems.push(format!("{what}: {unreadable}"));
                continue;
            }
            Some(Ok(line)) => line.clone(),
        };
        match (line.error, line.status, line.body) {
            (Some(error), _, _) => problems.push(format!("{what}: {error}")),
            (None, Some(200), Some(body)) if body == request.expected_body() => {}
            (None, status, body) => problems.push(format!(
                "{what}: got status {} and body {:?}, not the upstream's answer",
                status.map_or_else(|| "none".to_owned(), |status| status.to_string()),
                body.unwrap_or_default()
                    .chars()
                    .take(120)
                    .collect::<String>()
            )),
        }
    }
    problems
}

/// The upstream must have seen each request with the client's method, path and body.
fn upstream_problems(requests: &[PlannedRequest], seen: &[SeenRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|request| request.answerer == Answerer::Upstream)
        .filter(|request| {
            !seen.iter().any(|seen| {
                seen.scheme == request.scheme
                    && seen.method == request.method
                    && seen.path == request.path
                    && seen.body == request.body.as_deref().unwrap_or("")
                    && seen.host.as_deref() == Some(request.authority())
            })
        })
        .map(|request| {
            format!(
                "the upstream never saw {} {} with the client's Host and body",
                request.method, request.path
            )
        })
        .collect()
}

/// The container `name` of a pod manifest (the injector's output).
pub fn container<'a>(pod: &'a PodManifest, name: &str) -> anyhow::Result<&'a Container> {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.containers.iter().find(|c| c.name == name))
        .with_context(|| format!("the patched pod has no container {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients;
    use crate::modes;

    #[test]
    fn a_wrong_body_or_a_missing_record_is_a_problem() {
        let requests = planned_requests(&clients::CURL_CALLER, &modes::REVERSE_TCP, 4143);
        let good = |request: &PlannedRequest| {
            serde_json::json!({"method": request.method, "url": request.url, "status": 200,
                "body": request.expected_body()})
            .to_string()
        };
        let stdout: String = requests.iter().map(|r| good(r) + "\n").collect();
        assert!(response_problems(&requests, &client_lines(&stdout)).is_empty());
        let tampered = stdout.replacen("hello from", "hullo from", 1);
        assert_eq!(
            response_problems(&requests, &client_lines(&tampered)).len(),
            1
        );
        let nothing = Recorded {
            side: Side::Inbound,
            tls_out: false,
            capture: "",
        };
        assert_eq!(nothing.problems(&requests, &client_lines(&stdout)).len(), 2);
    }
}
