//! End to end through `sidecar-injector`: each workload carries one of the spec's annotation examples,
//! goes through admission, and the sidecar container of the patched pod (its image, args, env, user,
//! read-only root filesystem and volumes) runs in a pod of the harness. A client configured as the docs
//! say, or configured only by the injector's `configure-app`, must get every request through, recorded.
//! Needs the Docker engine, like the matrix (docs/conformance.md).

use rstest::rstest;
use sidecar_conformance::clients::*;
use sidecar_conformance::injected;
use sidecar_conformance::modes::*;

async fn check(mode: Mode, client: Client, configure_app: bool) {
    let problems = injected::run(&mode, &client, configure_app)
        .await
        .unwrap_or_else(|e| panic!("the injected pod could not run: {e:#}"));
    assert!(
        problems.is_empty(),
        "{} through the injected sidecar of {}: {}",
        client.id,
        mode.id,
        problems.join("; ")
    );
}

/// The spec's four examples, with a client configured as docs/language-configuration.md says.
#[rstest]
#[case::example_1_dual_tcp_http_app_calls_out(DUAL_TCP_HTTP_8080, GO_ENV_HTTP)]
#[case::example_1_dual_tcp_http_caller(DUAL_TCP_HTTP_8080, CURL_CALLER)]
#[case::example_2_forward_socks(FORWARD_SOCKS, PYTHON_REQUESTS_ENV_SOCKS5H)]
#[case::example_3_reverse_http_app_8888(REVERSE_HTTP_8888, JAVA_CALLER)]
#[case::example_4_custom_ports_app_calls_out(DUAL_TCP_HTTP_CUSTOM_PORTS, NODE_GLOBAL_AGENT)]
#[case::example_4_custom_ports_caller(DUAL_TCP_HTTP_CUSTOM_PORTS, GO_CALLER)]
#[tokio::test]
async fn spec_example(#[case] mode: Mode, #[case] client: Client) {
    check(mode, client, false).await;
}

/// `configure-app: "true"`: the app sets nothing itself; the injector's settings must be enough.
#[rstest]
#[case::go_forward_http(FORWARD_HTTP, GO_CONFIGURED_BY_INJECTOR)]
#[case::node_custom_out_port(DUAL_TCP_HTTP_CUSTOM_PORTS, NODE_CONFIGURED_BY_INJECTOR)]
#[case::java_forward_socks(FORWARD_SOCKS, JAVA_CONFIGURED_BY_INJECTOR)]
#[case::java_forward_http(FORWARD_HTTP, JAVA_CONFIGURED_BY_INJECTOR)]
#[case::go_forward_socks(FORWARD_SOCKS, GO_CONFIGURED_BY_INJECTOR)]
#[tokio::test]
async fn configure_app(#[case] mode: Mode, #[case] client: Client) {
    check(mode, client, true).await;
}

/// `tls-out: "true"` with `configure-app`: the app's trust in the capture CA is only what the injector set
/// (its variables and the trust files' mount), and the HTTPS it sends must be decrypted and recorded.
#[rstest]
#[case::go_forward_http(FORWARD_HTTP_TLS_OUT, GO_CONFIGURED_BY_INJECTOR)]
#[case::node_forward_http(FORWARD_HTTP_TLS_OUT, NODE_CONFIGURED_BY_INJECTOR)]
#[case::java_forward_socks(FORWARD_SOCKS_TLS_OUT, JAVA_CONFIGURED_BY_INJECTOR)]
#[tokio::test]
async fn configure_app_tls_out(#[case] mode: Mode, #[case] client: Client) {
    check(mode, client, true).await;
}

/// A Job's pod in the native layout (transparent, the default mode): the main container makes its calls
/// and exits 0, the sidecar then gets SIGTERM and exits 0 within the grace period, and every exchange of
/// the job is in the capture file.
#[tokio::test]
async fn job_pod_completes_with_every_exchange_recorded() {
    let problems = injected::run_job(&TRANSPARENT, &TRANSPARENT_GO)
        .await
        .unwrap_or_else(|e| panic!("the Job's pod could not run: {e:#}"));
    assert!(
        problems.is_empty(),
        "the Job's pod: {}",
        problems.join("; ")
    );
}
