//! What a cell's client is told to do and what it reports back: the requests it makes (and the names and
//! ports they go to), and its one result line per request. The pod runner and the capture checks both
//! read these, so they live below both.

use serde::Deserialize;

use crate::clients::{Client, Side, Speaks};
use crate::modes::Mode;
use crate::upstream::echo_body;

/// The upstream's name in outbound cells: only the sidecar's container can resolve it, so a client that
/// bypassed the proxy fails instead of passing unseen.
pub const UPSTREAM_HOST: &str = "upstream.conformance.test";
/// The name a SOCKS caller asks a reverse sidecar for; nobody resolves it (the sidecar delivers to the app).
/// In transparent cells, callers outside the pod resolve it to the pod's address.
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
    /// Who must answer it.
    pub answerer: Answerer,
    /// Whether the sidecar must record it (`false`: it must not, as for a port transparent mode leaves
    /// alone).
    pub recorded: bool,
}

/// Who answers a planned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answerer {
    /// The conformance upstream (or the app it plays), echoing the request.
    Upstream,
    /// The sidecar's admin listener, with this body.
    SidecarAdmin(&'static str),
}

impl PlannedRequest {
    /// The URL's authority: the `Host` the upstream must receive, whatever path the request took.
    pub(crate) fn authority(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        rest.split('/').next().unwrap_or(rest)
    }

    pub(crate) fn expected_body(&self) -> String {
        if let Answerer::SidecarAdmin(body) = self.answerer {
            return body.to_owned();
        }
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
    if client.speaks == Speaks::SidecarAdmin {
        return admin_requests();
    }
    let (http_authority, https_authority) = match (client.side, client.speaks) {
        (Side::Outbound, _) => (
            format!("{UPSTREAM_HOST}:{UPSTREAM_HTTP_PORT}"),
            Some(format!("{UPSTREAM_HOST}:{UPSTREAM_HTTPS_PORT}")),
        ),
        (Side::Inbound, Speaks::Socks) => (APP_HOST.to_owned(), None),
        // Transparent: the caller dials the pod's address at the app's port, which iptables redirects.
        (Side::Inbound, Speaks::Nothing) if mode.app_port == 80 => (APP_HOST.to_owned(), None),
        (Side::Inbound, Speaks::Nothing) => (format!("{APP_HOST}:{}", mode.app_port), None),
        (Side::Inbound, _) => (format!("127.0.0.1:{sidecar_port}"), None),
    };
    let get_path = format!("/conformance/get?cell={cell}");
    let post_path = "/conformance/post".to_owned();
    let ignored = mode.ignored_outbound_ports();
    let recorded = |port: u16| client.side == Side::Inbound || !ignored.contains(&port);
    let mut requests = vec![
        PlannedRequest {
            method: "GET",
            url: format!("http://{http_authority}{get_path}"),
            body: None,
            scheme: "http",
            path: get_path,
            answerer: Answerer::Upstream,
            recorded: recorded(UPSTREAM_HTTP_PORT),
        },
        PlannedRequest {
            method: "POST",
            url: format!("http://{http_authority}{post_path}"),
            body: Some(format!("hello from {} through {}", client.id, mode.id)),
            scheme: "http",
            path: post_path,
            answerer: Answerer::Upstream,
            recorded: recorded(UPSTREAM_HTTP_PORT),
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
            answerer: Answerer::Upstream,
            recorded: recorded(UPSTREAM_HTTPS_PORT),
        });
    }
    requests
}

/// A probe's requests to the sidecar's admin port on the pod's address: the sidecar answers them
/// itself, and records neither.
fn admin_requests() -> Vec<PlannedRequest> {
    let admin_port = sidecar_proxy::iptables::rules::DEFAULT_ADMIN_PORT;
    [("/healthz", "ok"), ("/readyz", "ready")]
        .into_iter()
        .map(|(path, body)| PlannedRequest {
            method: "GET",
            url: format!("http://{APP_HOST}:{admin_port}{path}"),
            body: None,
            scheme: "http",
            path: path.to_owned(),
            answerer: Answerer::SidecarAdmin(body),
            recorded: false,
        })
        .collect()
}

/// One line of a client's output (see conformance/clients/README.md).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClientLine {
    pub status: Option<u16>,
    pub body: Option<String>,
    pub error: Option<String>,
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
    fn only_requests_to_an_ignored_port_go_unrecorded() {
        let requests = planned_requests(
            &clients::TRANSPARENT_CURL,
            &modes::TRANSPARENT_IGNORE_OUTBOUND,
            4140,
        );
        let recorded: Vec<_> = requests.iter().map(|r| (r.scheme, r.recorded)).collect();
        assert_eq!(recorded, [("http", true), ("http", true), ("https", false)]);
        let admin = planned_requests(
            &clients::TRANSPARENT_ADMIN_CALLER,
            &modes::TRANSPARENT,
            4143,
        );
        assert!(admin
            .iter()
            .all(|r| !r.recorded && r.url.starts_with("http://app.conformance.test:4191/")));
    }
}
