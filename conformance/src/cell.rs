//! One cell of the matrix: a pod running the sidecar in the column's mode, the client of the row sending
//! its requests, and the verdict: did every request get the upstream's exact answer, did the upstream see
//! exactly what the client sent, and did the sidecar record each exchange.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use k8s_openapi::api::core::v1::Container;
use serde::Deserialize;
use serde_json::Value;
use sidecar_injector::containers::{SidecarOptions, CAPTURE_DIR, SIDECAR_NAME};

use crate::clients::{Client, Setup, Side, Speaks};
use crate::expectations;
use crate::modes::Mode;
use crate::pod::Pod;
use crate::results::{CellResult, Outcome};
use crate::upstream::{echo_body, seen_requests, SeenRequest};
use crate::{images, injected, pki, workspace};

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

    fn expected_body(&self) -> String {
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
#[derive(Debug, Deserialize)]
struct ClientLine {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
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
    let sidecar = injected::container(&injected, SIDECAR_NAME)?;
    let problems = run_in_pod(&name, &dir, sidecar, client, mode, client.setup(port)).await?;

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

/// Starts a pod (the upstream, then the sidecar from its container spec) and runs the client's requests in
/// it with `setup`; returns what fell short, as [`exchange`] does.
pub async fn run_in_pod(
    name: &str,
    dir: &Path,
    sidecar: &Container,
    client: &Client,
    mode: &Mode,
    setup: Setup,
) -> anyhow::Result<Vec<String>> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let port = expectations::sidecar_port(client, mode)
        .with_context(|| format!("{} has no listener for {}", mode.id, client.id))?
        .port;
    let mut pod = Pod::start(
        name,
        dir,
        test_pki()?,
        &images.upstream,
        upstream_args(client.side, mode.app_port),
    )
    .await?;
    pod.start_sidecar_container(sidecar, CAPTURE_DIR, &[("127.0.0.1", UPSTREAM_HOST)])
        .await?;
    let requests = planned_requests(client, mode, port);
    exchange(&mut pod, client, &requests, setup.args, &setup.env).await
}

/// Runs the client's requests in a pod whose sidecar is up, stops the sidecar, and returns every way the
/// exchange fell short (empty when every request arrived exactly, through the sidecar, and was recorded).
pub async fn exchange(
    pod: &mut Pod,
    client: &Client,
    requests: &[PlannedRequest],
    args: Vec<String>,
    env: &[(String, String)],
) -> anyhow::Result<Vec<String>> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let mut command = vec!["conformance-client".to_owned()];
    command.extend(args);
    for request in requests {
        command.push(request.method.to_owned());
        command.push(request.url.clone());
        command.push(request.body.clone().unwrap_or_else(|| "-".to_owned()));
    }
    let run = pod
        .run_client(images.client(client.runtime), test_pki()?, command, env)
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
    problems.extend(response_problems(requests, &run.stdout));
    problems.extend(upstream_problems(requests, &seen));
    problems.extend(capture_problems(requests, client.side, &capture));
    Ok(problems)
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
}

/// Every request must get status 200 and the upstream's exact body.
fn response_problems(requests: &[PlannedRequest], stdout: &str) -> Vec<String> {
    let lines: Vec<_> = stdout
        .lines()
        .filter(|line| line.starts_with('{'))
        .collect();
    let mut problems = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let what = format!("{} {}", request.method, request.url);
        let Some(line) = lines.get(i) else {
            problems.push(format!("{what}: the client printed no result"));
            continue;
        };
        let line: ClientLine = match serde_json::from_str(line) {
            Ok(line) => line,
            Err(e) => {
                problems.push(format!("{what}: unreadable client output ({e}): {line}"));
                continue;
            }
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

/// The sidecar must have recorded each exchange: an `http` record for cleartext requests (also those it
/// found inside SOCKS and tcp streams), a `stream` record naming the server for HTTPS.
fn capture_problems(requests: &[PlannedRequest], side: Side, capture: &str) -> Vec<String> {
    let direction = match side {
        Side::Outbound => "outbound",
        Side::Inbound => "inbound",
    };
    let records: Vec<Value> = capture
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|record: &Value| record["direction"] == direction)
        .collect();
    let mut problems = Vec::new();
    for request in requests {
        let recorded = records.iter().any(|record| match request.scheme {
            "https" => record["kind"] == "stream" && record["sni"] == UPSTREAM_HOST,
            _ => {
                record["kind"] == "http"
                    && record["request"]["method"] == request.method
                    && record["request"]["url"]
                        .as_str()
                        .is_some_and(|url| url.ends_with(&request.path))
                    && record["response"]["status"] == 200
            }
        });
        if !recorded {
            problems.push(format!(
                "no {direction} capture record of {} {}",
                request.method, request.url
            ));
        }
    }
    problems
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
        assert!(response_problems(&requests, &stdout).is_empty());
        let tampered = stdout.replacen("hello from", "hullo from", 1);
        assert_eq!(response_problems(&requests, &tampered).len(), 1);
        assert_eq!(capture_problems(&requests, Side::Inbound, "").len(), 2);
    }
}
