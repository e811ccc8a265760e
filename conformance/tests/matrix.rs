//! The conformance matrix, one test per cell: `outbound` cells are the app's own requests through the
//! sidecar's forward port, `inbound` cells a caller's requests through its inbound port. A test passes
//! when the cell behaves as the docs say: documented to work and every request arrived exactly, or
//! documented not to work and it failed. Needs a Docker engine and the base image
//! (`scripts/docker-engine.sh`); images are built on first use. See docs/conformance.md.

use rstest::rstest;
use sidecar_conformance::cell;
use sidecar_conformance::clients::*;
use sidecar_conformance::modes::*;

async fn check(client: Client, mode: Mode) {
    let result = cell::run(&client, &mode)
        .await
        .unwrap_or_else(|e| panic!("the cell could not run: {e:#}"));
    let detail = result.detail.as_deref().unwrap_or("");
    let why = match (&result.unsupported_because, &result.failure_signature) {
        (None, _) => format!("docs say it works, but: {detail}"),
        (Some(reason), _) if detail.is_empty() => {
            format!("docs say it does not work ({reason}), but every request got through")
        }
        (Some(reason), signature) => format!(
            "docs say it does not work ({reason}) and fails showing {signature:?}, but: {detail}"
        ),
    };
    assert!(
        result.as_documented(),
        "{} in {}: {why}",
        client.id,
        mode.id
    );
}

#[rstest]
#[tokio::test]
async fn outbound(
    #[values(
        CURL_PROXY_HTTP,
        CURL_SOCKS5_HOSTNAME,
        CURL_SOCKS4A,
        CURL_PROXY_SOCKS5H,
        CURL_ENV_HTTP,
        GO_ENV_HTTP,
        GO_ENV_SOCKS5,
        PYTHON_URLLIB_PROXIES_DICT,
        PYTHON_URLLIB_ENV_HTTP,
        PYTHON_REQUESTS_ENV_HTTP,
        PYTHON_REQUESTS_ENV_SOCKS5H,
        PYTHON_REQUESTS_ENV_SOCKS4A,
        NODE_GLOBAL_AGENT,
        JAVA_URLCONNECTION_SOCKS_PROPERTIES,
        JAVA_URLCONNECTION_HTTP_PROPERTIES,
        JAVA_HTTPCLIENT_SOCKS_PROPERTIES,
        JAVA_HTTPCLIENT_HTTP_PROPERTIES
    )]
    client: Client,
    #[values(
        FORWARD_HTTP,
        FORWARD_SOCKS,
        DUAL_HTTP,
        DUAL_SOCKS,
        DUAL_TCP_HTTP_8080,
        DUAL_TCP_SOCKS,
        DUAL_TCP_HTTP_CUSTOM_PORTS,
        FORWARD_HTTP_TLS_OUT,
        FORWARD_SOCKS_TLS_OUT,
        FORWARD_HTTP_TLS_OUT_MOCK
    )]
    mode: Mode,
) {
    check(client, mode).await;
}

#[rstest]
#[tokio::test]
async fn inbound(
    #[values(
        CURL_CALLER,
        GO_CALLER,
        PYTHON_REQUESTS_CALLER,
        NODE_CALLER,
        JAVA_CALLER,
        CURL_SOCKS5_CALLER,
        PYTHON_REQUESTS_SOCKS5H_CALLER
    )]
    client: Client,
    #[values(
        REVERSE_TCP,
        REVERSE_HTTP_8888,
        REVERSE_SOCKS,
        DUAL_HTTP,
        DUAL_SOCKS,
        DUAL_TCP_HTTP_8080,
        DUAL_TCP_SOCKS,
        DUAL_TCP_HTTP_CUSTOM_PORTS
    )]
    mode: Mode,
) {
    check(client, mode).await;
}

/// Transparent mode, the default: the pod is the injector's own output (iptables init container, native
/// sidecar, the app), and the app has no proxy setting at all.
#[rstest]
#[tokio::test]
async fn transparent_outbound(
    #[values(
        TRANSPARENT_CURL,
        TRANSPARENT_GO,
        TRANSPARENT_PYTHON_URLLIB,
        TRANSPARENT_PYTHON_REQUESTS,
        TRANSPARENT_NODE,
        TRANSPARENT_JAVA_URLCONNECTION,
        TRANSPARENT_JAVA_HTTPCLIENT
    )]
    client: Client,
    #[values(TRANSPARENT, TRANSPARENT_TLS_OUT, TRANSPARENT_IGNORE_OUTBOUND)] mode: Mode,
) {
    check(client, mode).await;
}

/// Callers of a transparent pod's app, from containers of their own, dialing the pod's address; and a
/// probe of the sidecar's admin port, which the redirect leaves alone.
#[rstest]
#[tokio::test]
async fn transparent_inbound(
    #[values(
        TRANSPARENT_CURL_CALLER,
        TRANSPARENT_GO_CALLER,
        TRANSPARENT_PYTHON_URLLIB_CALLER,
        TRANSPARENT_PYTHON_REQUESTS_CALLER,
        TRANSPARENT_NODE_CALLER,
        TRANSPARENT_JAVA_URLCONNECTION_CALLER,
        TRANSPARENT_JAVA_HTTPCLIENT_CALLER,
        TRANSPARENT_ADMIN_CALLER
    )]
    client: Client,
    #[values(TRANSPARENT)] mode: Mode,
) {
    check(client, mode).await;
}
