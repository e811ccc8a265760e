//! One cell of the matrix: a pod running the sidecar in the column's mode, the client of the row sending
//! its requests, and the verdict: did every request get the upstream's exact answer, did the upstream see
//! exactly what the client sent, and did the sidecar record each exchange.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use k8s_openapi::api::core::v1::Pod as PodManifest;
use serde::Deserialize;
use sidecar_injector::containers::{SidecarOptions, CAPTURE_DIR, SIDECAR_NAME};

use crate::clients::{Client, Setup, Side, Speaks, Trust, TRUST_DIR_IN_CONTAINER};
use crate::expectations;
use crate::modes::Mode;
use crate::pod::Pod;
use crate::recorded::Recorded;
use crate::results::{CellResult, Outcome};
use crate::upstream::{echo_body, seen_requests, SeenRequest};
use crate::{images, injected, pki, tls_out, workspace};

/// The upstream's name in outbound cells: only the sidecar's container can resolve it, so a client that
/// bypassed the proxy fails instead of passing unseen.
pub const UPSTREAM_HOST: &str = "upstream.conformance.test";
/// The name a SOCKS caller asks a reverse sidecar for; nobody resolves it (the sidecar delivers to the app).
pub const APP_HOST: &str = "app.conformance.test";
pub const UPSTREAM_HTTP_PORT: u16 = 9080;
pub const UPSTREAM_HTTPS_PORT: u16 = 9443;

/// One request the client is told to make, and what the upstream must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    pub method: &'static str,
    pub url: String,
    pub body: Option<String>,
    /// `http` or `https`: which upstream listener must answer.
    pub scheme: &'static str,
    pub path: String,
}

impl PlannedRequest {
    /// The URL's authority: the `Host` the upstream must receive, whatever path the request took.
    fn authority(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest)
    }

    pub(crate) fn expected_body(&self) -> String {
        echo_body(
            self.scheme,
            self.method,
            &self.path,
            self.body.as_deref().unwrap_or(""),
        )
    }
}

/// The requests of a cell: a GET and a POST with a body, and an HTTPS GET where the row makes one.
pub fn planned_requests(client: &Client, mode: &Mode, sidecar_port: u16) -> Vec<PlannedRequest> {
    let cell = format!("{}__{}", client.id, mode.id);
    let (http_authority, https_authority) = match (client.side, client.speaks) {
        (Side::Outbound, _) => (
            format!("{UPSTREAM_HOST}:{UPSTREAM_HTTP_PORT}"),
            Some(format!("{UPSTREAM_HOST}:{UPSTREAM_HTTPS_PORT}")),
        ),
        (Side::Inbound, Speaks::Socks) => (APP_HOST.to_owned(), None),
        (Side::Inbound, _) => (format!("127.0.0.1:{sidecar_port}"), None),
    };
    let get_path = format!("/conformance/get?cell={cell}");
    let post_path = "/conformance/post".to_owned();
    let mut requests = vec![
        PlannedRequest {
            method: "GET",
            url: format!("http://{http_authority}{get_path}"),
            body: None,
            scheme: "http",
            path: get_path,
        },
        PlannedRequest {
            method: "POST",
            url: format!("http://{http_authority}{post_path}"),
            body: Some(format!("hello from {} through {}", client.id, mode.id)),
            scheme: "http",
            path: post_path,
        },
    ];
    if let (true, Some(authority)) = (client.https, https_authority) {
        let path = format!("/conformance/tls?cell={cell}");
        requests.push(PlannedRequest {
            method: "GET",
            url: format!("https://{authority}{path}"),
            body: None,
            scheme: "https",
            path,
        });
    }
    requests
}

/// One line of a client's output (see conformance/clients/README.md).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClientLine {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub error: Option<String>,
}

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

/// Runs the cell and returns its result (written to the results directory too). An error means the
/// harness itself could not run the cell (an image or container failed), not that the client failed.
pub async fn run(client: &Client, mode: &Mode) -> anyhow::Result<CellResult> {
    let expected = expectations::expected(client, mode)
        .with_context(|| format!("{} has no cell in {}", client.id, mode.id))?;
    let port = expectations::sidecar_port(client, mode)
        .expect("a cell exists only where its port does")
        .port;
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let name = format!("{}__{}", client.id, mode.id);
    let dir = workspace::fresh_cell_dir(&name)?;
    // The sidecar exactly as the injector adds it to a pod carrying the column's annotations.
    let injected = injected::injected_in_process(
        &injected::workload(mode, false),
        &SidecarOptions::new(images.sidecar.clone()),
    )?;
    let setup = client.setup(port, Trust::for_mode(mode));
    let problems = run_in_pod(&name, &dir, &injected, client, mode, setup).await?;

    let (outcome, detail) = if problems.is_empty() {
        (Outcome::Pass, None)
    } else {
        (Outcome::Fail, Some(problems.join("; ")))
    };
    let result = CellResult::new(client.id, mode.id, &expected, outcome, detail);
    result.write(&workspace::results_dir())?;
    Ok(result)
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
    let mut sidecar = injected::container(patched, SIDECAR_NAME)?.clone();
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
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let mut command = vec!["conformance-client".to_owned()];
    command.extend(setup.args);
    for request in requests {
        command.push(request.method.to_owned());
        command.push(request.url.clone());
        command.push(request.body.clone().unwrap_or_else(|| "-".to_owned()));
    }
    let run = pod
        .run_client(images.client(client.runtime), mounts, command, &setup.env)
        .await?;
    let seen = seen_requests(&pod.upstream_stdout().await?);
    let capture = pod.stop_sidecar().await?;

    let mut problems = Vec::new();
    if run.exit_code != Some(0) {
        problems.push(format!(
            "the client exited with {:?}: {}",
            run.exit_code,
            last_line(&run.stderr)
        ));
    }
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

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
}

/// The client's result lines, in request order: each parsed, or why it could not be.
pub(crate) fn client_lines(stdout: &str) -> Vec<Result<ClientLine, String>> {
    stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            serde_json::from_str(line)
                .map_err(|e| format!("unreadable client output ({e}): {line}"))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clients, modes};

    #[test]
    fn outbound_cells_name_the_upstream_only_the_sidecar_resolves() {
        let requests = planned_requests(&clients::GO_ENV_HTTP, &modes::FORWARD_HTTP, 4140);
        let urls: Vec<_> = requests.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://upstream.conformance.test:9080/conformance/get?cell=go_env_http__forward_http",
                "http://upstream.conformance.test:9080/conformance/post",
                "https://upstream.conformance.test:9443/conformance/tls?cell=go_env_http__forward_http",
            ]
        );
    }

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
