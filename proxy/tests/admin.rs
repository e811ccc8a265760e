//! The admin listener: probes, the metrics exposition, and the counters moving with real traffic through
//! a proxy that shares its metrics.

mod support;

use std::time::{Duration, Instant};

use sidecar_proxy::server::Services;
use support::admin::{
    capture_to_temp_file, get, parse_openmetrics, request, scrape, scrape_until, start_admin,
    start_admin_with, start_proxy_counting, start_proxy_with_services,
};
use support::{start_app, start_tcp_echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[tokio::test]
async fn healthz_answers_ok() {
    let admin = start_admin().await;
    let reply = get(admin.addr, "/healthz").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body, "ok");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[tokio::test]
async fn readyz_follows_readiness() {
    let admin = start_admin().await;
    let reply = get(admin.addr, "/readyz").await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "not ready"));

    admin.readiness.set_ready(true);
    let reply = get(admin.addr, "/readyz").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ready"));

    admin.readiness.set_ready(false);
    let reply = get(admin.addr, "/readyz").await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "not ready"));
    // Liveness does not depend on readiness.
    assert_eq!(get(admin.addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn metrics_is_openmetrics_with_every_family() {
    let admin = start_admin().await;
    let reply = get(admin.addr, "/metrics").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some(OPENMETRICS));
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    let fresh = parse_openmetrics(&reply.body).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        fresh.value("sidecar_capture_records_dropped_total", &[]),
        Some(0.0)
    );

    // A family shows once it has a series, so give each one: a captured HTTP exchange through a reverse
    // proxy, and a refused handshake and a failed connect through a forward SOCKS proxy.
    let app = start_app().await;
    let (sink, writer, capture_file) = capture_to_temp_file(admin.metrics.clone());
    let services = Services {
        capture: sink,
        metrics: admin.metrics.clone(),
        ..Services::default()
    };
    let reverse = start_proxy_with_services("reverse", "http", Some(app.addr), services).await;
    let mut stream = TcpStream::connect(reverse.inbound()).await.unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");

    let forward = start_proxy_counting("forward", "socks", None, admin.metrics.clone()).await;
    let mut bind = TcpStream::connect(forward.outbound()).await.unwrap();
    bind.write_all(&[4, 2, 0, 80, 127, 0, 0, 1, 0])
        .await
        .unwrap();
    let _ = bind.read_to_end(&mut Vec::new()).await;
    let closed = support::closed_port::closed_port();
    assert!(Socks5Stream::connect(forward.outbound(), closed.addr())
        .await
        .is_err());

    let families = [
        ("sidecar_connections_accepted", "counter"),
        ("sidecar_connections_open", "gauge"),
        ("sidecar_relayed_bytes", "counter"),
        ("sidecar_handshake_errors", "counter"),
        ("sidecar_upstream_connect_failures", "counter"),
        ("sidecar_upstream_timeouts", "counter"),
        ("sidecar_connections_refused", "counter"),
        ("sidecar_accept_errors", "counter"),
        ("sidecar_capture_records", "counter"),
        ("sidecar_capture_records_dropped", "counter"),
        ("sidecar_capture_probes_skipped", "counter"),
        ("sidecar_runtime_tasks_alive", "gauge"),
        ("sidecar_http_request_duration_seconds", "histogram"),
        ("sidecar_memory_budget_bytes", "gauge"),
        ("sidecar_memory_budget_used_bytes", "gauge"),
        ("sidecar_memory_budget_denied", "counter"),
        ("sidecar_memory_budget_shed", "counter"),
        ("sidecar_app_idle_connections", "gauge"),
        // The NATS sink's (zero without --capture-sink).
        ("sidecar_capture_nats_spooled", "counter"),
        ("sidecar_capture_nats_published", "counter"),
        ("sidecar_capture_nats_acknowledged", "counter"),
        ("sidecar_capture_nats_resent", "counter"),
        ("sidecar_capture_nats_dropped", "counter"),
        ("sidecar_capture_nats_lag_records", "gauge"),
        ("sidecar_capture_nats_spool_bytes", "gauge"),
    ];
    let metrics = scrape_until(admin.addr, |m| {
        m.count("sidecar_capture_records_total", &[("kind", "http")]) == 1.0
            && m.count(
                "sidecar_upstream_connect_failures_total",
                &[("direction", "outbound"), ("protocol", "socks")],
            ) == 1.0
    })
    .await;
    for (family, kind) in families {
        assert_eq!(
            metrics.families.get(family).map(String::as_str),
            Some(kind),
            "family {family} in {metrics:#?}"
        );
    }
    assert_eq!(metrics.families.len(), families.len(), "{metrics:#?}");
    // The admin server's own connection task, at least, is alive while it answers.
    assert!(
        metrics.count("sidecar_runtime_tasks_alive", &[]) >= 1.0,
        "{metrics:#?}"
    );

    drop((reverse, forward));
    if let Some(writer) = writer {
        writer.finish().await;
    }
    let _ = std::fs::remove_file(capture_file);
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let admin = start_admin().await;
    for path in ["/", "/health", "/metrics/x", "/readyz/"] {
        let reply = get(admin.addr, path).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }
    assert_eq!(request(admin.addr, "POST", "/nope").await.status, 404);
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let admin = start_admin().await;
    for (method, path) in [
        ("POST", "/metrics"),
        ("PUT", "/readyz"),
        ("DELETE", "/healthz"),
        ("OPTIONS", "/healthz"),
    ] {
        let reply = request(admin.addr, method, path).await;
        assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"), "{reply:?}");
    }
}

#[tokio::test]
async fn head_is_get_without_the_body() {
    let admin = start_admin().await;
    admin.readiness.set_ready(true);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let got = get(admin.addr, path).await;
        let head = request(admin.addr, "HEAD", path).await;
        assert_eq!(head.status, got.status, "{path}");
        assert_eq!(head.body, "", "{path}");
        assert_eq!(
            head.header("content-type"),
            got.header("content-type"),
            "{path}"
        );
        assert_eq!(
            head.header("content-length"),
            Some(got.body.len().to_string().as_str()),
            "{path}: {head:?}"
        );
    }
    admin.readiness.set_ready(false);
    assert_eq!(request(admin.addr, "HEAD", "/readyz").await.status, 503);
}

#[tokio::test]
async fn keep_alive_serves_several_requests() {
    let admin = start_admin().await;
    let mut stream = TcpStream::connect(admin.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\nGET /readyz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut received = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut received))
        .await
        .unwrap()
        .unwrap();
    assert!(received.starts_with("HTTP/1.1 200 OK"), "{received}");
    assert!(received.contains("HTTP/1.1 503"), "{received}");
}

#[tokio::test]
async fn a_stalled_client_is_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let admin = start_admin_with(Some(timeout)).await;
    // One that sends nothing, one that stops in the middle of its request head.
    let silent = TcpStream::connect(admin.addr).await.unwrap();
    let mut partial = TcpStream::connect(admin.addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a")
        .await
        .unwrap();
    let started = Instant::now();
    for mut stream in [silent, partial] {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("the admin listener closes a stalled connection")
            .ok();
        assert!(!rest.starts_with(b"HTTP/1.1 200"), "{rest:?}");
    }
    assert!(
        started.elapsed() >= timeout - Duration::from_millis(50),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
    // The listener is still serving.
    assert_eq!(get(admin.addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn shutdown_returns_promptly_with_connections_open() {
    let mut admin = start_admin().await;
    admin.readiness.set_ready(true);
    // An idle keep-alive connection and one in the middle of its head: neither holds the shutdown.
    let mut idle = TcpStream::connect(admin.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 15];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200 OK");
    let mut partial = TcpStream::connect(admin.addr).await.unwrap();
    partial
        .write_all(b"GET /readyz HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    admin.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), admin.task.take().unwrap())
        .await
        .expect("run returns promptly after shutdown")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!admin.readiness.is_ready());
}

#[tokio::test]
async fn tcp_relay_counts_connections_and_bytes() {
    let admin = start_admin().await;
    let echo = start_tcp_echo().await;
    let proxy = start_proxy_counting("reverse", "tcp", Some(echo), admin.metrics.clone()).await;
    let listener = [("direction", "inbound"), ("protocol", "tcp")];

    let payload = vec![7u8; 100_000];
    let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    stream.write_all(&payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, payload);

    let open = scrape_until(admin.addr, |m| {
        m.count("sidecar_connections_open", &listener) == 1.0
    })
    .await;
    assert_eq!(
        open.value("sidecar_connections_accepted_total", &listener),
        Some(1.0)
    );

    drop(stream);
    let closed = scrape_until(admin.addr, |m| {
        m.count("sidecar_connections_open", &listener) == 0.0
    })
    .await;
    assert_eq!(
        closed.value("sidecar_connections_accepted_total", &listener),
        Some(1.0)
    );
    let sent = payload.len() as f64;
    for flow in ["client_to_target", "target_to_client"] {
        let relayed = closed.count(
            "sidecar_relayed_bytes_total",
            &[("direction", "inbound"), ("flow", flow)],
        );
        assert!(relayed >= sent, "{flow}: {relayed} < {sent}");
    }
    // Nothing went wrong, so nothing else moved (the series exist, at zero, from the start).
    assert!(closed
        .samples
        .iter()
        .filter(|s| s.name.starts_with("sidecar_handshake_errors")
            || s.name.starts_with("sidecar_upstream_connect_failures"))
        .all(|s| s.value == 0.0));
}

#[tokio::test]
async fn refused_socks_handshakes_count_by_reason() {
    let admin = start_admin().await;
    let proxy = start_proxy_counting("forward", "socks", None, admin.metrics.clone()).await;

    // SOCKS4 BIND: refused with 0x5b.
    let mut bind = TcpStream::connect(proxy.outbound()).await.unwrap();
    bind.write_all(&[4, 2, 0, 80, 127, 0, 0, 1, 0])
        .await
        .unwrap();
    let mut reply = Vec::new();
    bind.read_to_end(&mut reply).await.unwrap();
    assert_eq!(reply.get(..2), Some(&[0u8, 0x5b][..]), "{reply:?}");

    // A TLS ClientHello on the SOCKS port: not SOCKS at all.
    let mut tls = TcpStream::connect(proxy.outbound()).await.unwrap();
    tls.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05])
        .await
        .unwrap();
    let mut reply = Vec::new();
    // The sidecar closes; unread bytes may turn that into a reset.
    let _ = tls.read_to_end(&mut reply).await;

    let reason = |reason| {
        [
            ("direction", "outbound"),
            ("protocol", "socks"),
            ("reason", reason),
        ]
    };
    let metrics = scrape_until(admin.addr, |m| {
        m.count(
            "sidecar_handshake_errors_total",
            &reason("unsupported_command"),
        ) == 1.0
            && m.count("sidecar_handshake_errors_total", &reason("not_socks")) == 1.0
    })
    .await;
    assert_eq!(
        metrics.value(
            "sidecar_connections_accepted_total",
            &[("direction", "outbound"), ("protocol", "socks")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metrics
            .samples
            .iter()
            .filter(|s| s.name == "sidecar_handshake_errors_total" && s.value != 0.0)
            .count(),
        2,
        "no other reason counted"
    );
}

#[tokio::test]
async fn a_connect_to_a_closed_port_counts_an_upstream_failure() {
    let admin = start_admin().await;
    let proxy = start_proxy_counting("forward", "socks", None, admin.metrics.clone()).await;
    let closed = support::closed_port::closed_port();

    let result = Socks5Stream::connect(proxy.outbound(), closed.addr()).await;
    assert!(result.is_err(), "the CONNECT to a closed port is refused");

    let labels = [("direction", "outbound"), ("protocol", "socks")];
    let metrics = scrape_until(admin.addr, |m| {
        m.count("sidecar_upstream_connect_failures_total", &labels) == 1.0
    })
    .await;
    assert_eq!(
        metrics.value("sidecar_connections_accepted_total", &labels),
        Some(1.0)
    );
    // The refusal is an upstream failure, not a handshake error.
    assert!(metrics
        .samples
        .iter()
        .filter(|s| s.name == "sidecar_handshake_errors_total")
        .all(|s| s.value == 0.0));
}

#[tokio::test]
async fn an_http_request_is_observed_in_the_duration_histogram() {
    let admin = start_admin().await;
    let app = start_app().await;
    let proxy =
        start_proxy_counting("reverse", "http", Some(app.addr), admin.metrics.clone()).await;

    // Before any request, the series is there at zero.
    let before = scrape(admin.addr).await;
    assert_eq!(
        before.value(
            "sidecar_http_request_duration_seconds_count",
            &[("direction", "inbound")]
        ),
        Some(0.0)
    );

    let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");

    let direction = [("direction", "inbound")];
    let metrics = scrape_until(admin.addr, |m| {
        m.count("sidecar_http_request_duration_seconds_count", &direction) == 1.0
    })
    .await;
    let sum = metrics
        .value("sidecar_http_request_duration_seconds_sum", &direction)
        .unwrap();
    assert!(sum > 0.0 && sum < 5.0, "sum {sum}");
    assert_eq!(
        metrics.value(
            "sidecar_http_request_duration_seconds_bucket",
            &[("direction", "inbound"), ("le", "+Inf")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(
            "sidecar_connections_accepted_total",
            &[("direction", "inbound"), ("protocol", "http")]
        ),
        Some(1.0)
    );
    // Only the inbound direction exists on a reverse proxy.
    assert_eq!(
        metrics.value(
            "sidecar_http_request_duration_seconds_count",
            &[("direction", "outbound")]
        ),
        None
    );
}

/// With capture on, each request is observed once in the duration histogram, whether the sidecar serves it
/// (reverse http) or the tap follows it inside a stream (reverse tcp): the count equals the requests sent,
/// and stays there.
#[rstest::rstest]
#[case::reverse_http("http")]
#[case::tapped_inside_reverse_tcp("tcp")]
#[tokio::test]
async fn each_request_is_observed_once_with_capture_on(#[case] protocol: &str) {
    const REQUESTS: usize = 5;
    let admin = start_admin().await;
    let app = start_app().await;
    let (sink, writer, capture_file) = capture_to_temp_file(admin.metrics.clone());
    let services = Services {
        capture: sink,
        metrics: admin.metrics.clone(),
        ..Services::default()
    };
    let proxy = start_proxy_with_services("reverse", protocol, Some(app.addr), services).await;
    let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    for i in 0..REQUESTS {
        let close = if i + 1 == REQUESTS {
            "close"
        } else {
            "keep-alive"
        };
        let request = format!("GET /n/{i} HTTP/1.1\r\nhost: app\r\nconnection: {close}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
    }
    let mut responses = String::new();
    stream.read_to_string(&mut responses).await.unwrap();
    assert_eq!(
        responses.matches("HTTP/1.1 200 OK").count(),
        REQUESTS,
        "{responses}"
    );
    drop(stream);

    let direction = [("direction", "inbound")];
    scrape_until(admin.addr, |m| {
        m.count("sidecar_http_request_duration_seconds_count", &direction) >= REQUESTS as f64
    })
    .await;
    // Long enough for a second observation per request (the old double count came when the last handle
    // of an exchange was dropped, right after it was recorded) to have shown.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = scrape(admin.addr).await;
    assert_eq!(
        metrics.count("sidecar_http_request_duration_seconds_count", &direction),
        REQUESTS as f64
    );
    drop(proxy);
    if let Some(writer) = writer {
        writer.finish().await;
    }
    let _ = std::fs::remove_file(capture_file);
}
