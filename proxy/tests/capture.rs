//! Capture: every exchange through the sidecar becomes one JSON-lines record, checked field by field
//! against the bytes the client sent and the response it got, for every mode that carries HTTP (reverse,
//! forward absolute-form, HTTP/2, and cleartext HTTP/1 inside CONNECT, SOCKS and tcp relays) and for
//! opaque streams; plus body truncation, redaction, the drop path under a blocked writer, the SIGTERM flush
//! of the real binary, stdout, `off` and rotation; and, inside CONNECT, SOCKS5 and tcp relays, HTTP/2 with
//! prior knowledge (one record per multiplexed exchange) and TLS (the ClientHello's SNI on the stream
//! record), also when the client's first bytes arrive in pieces.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderName;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rstest::rstest;
use sidecar_proxy::capture::record::{
    Body, Detail, HttpExchange, HttpRequest, HttpResponse, Record, StreamPayload, StreamSummary,
};
use sidecar_proxy::capture::{CaptureSink, Destination, SinkOptions, REDACTED};
use sidecar_proxy::metrics::Metrics;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};

use support::capture::{
    connect_tunnel, free_port, parse_records, start_banner_server, start_capturing_proxy,
    start_fixed_responder, start_proxy_with_sink, start_reply_after_eof, temp_path, RawHttp,
    Received, Sidecar, TempDir,
};
use support::start_app;

/// Generous bound for anything a test waits on, so a stall fails instead of hanging the run.
const DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------------
// What the client sent and got, and the record that must follow from it
// ---------------------------------------------------------------------------------------------------

/// A request exactly as written on the wire.
struct Sent {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Sent {
    fn new(method: &'static str, target: impl Into<String>, headers: &[(&str, &str)]) -> Sent {
        Sent {
            method,
            target: target.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    /// Adds a body with its content-length header.
    fn with_body(mut self, body: &[u8]) -> Sent {
        self.headers
            .push(("Content-Length".into(), body.len().to_string()));
        self.body = body.to_vec();
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// The request part of the record: names lower-cased, values as sent, order kept.
    fn expected(&self, url: &str) -> HttpRequest {
        HttpRequest {
            method: self.method.to_owned(),
            url: url.to_owned(),
            version: "HTTP/1.1".to_owned(),
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: whole(&self.body),
            trailers: Vec::new(),
        }
    }
}

/// A body kept whole.
fn whole(bytes: &[u8]) -> Body {
    Body {
        size: bytes.len() as u64,
        truncated: false,
        base64: Bytes::copy_from_slice(bytes),
        complete: true,
    }
}

/// The response part of the record, from what the client received.
fn expected_response(got: &Received) -> HttpResponse {
    HttpResponse {
        status: got.status,
        version: got.version.clone(),
        headers: got.headers.clone(),
        body: whole(&got.body),
        trailers: Vec::new(),
    }
}

/// The fields every record of one route shares.
#[derive(Clone, Debug)]
struct Route {
    direction: &'static str,
    proxy_type: &'static str,
    protocol: &'static str,
    transport: &'static str,
    target: String,
    delivered_to: Option<String>,
}

/// Checks the shared fields, `start` (RFC 3339, UTC, microseconds, within the test) and `duration_ms`
/// (positive, within the test), and returns the detail.
fn check_envelope<'r>(
    record: &'r Record,
    route: &Route,
    client: SocketAddr,
    began: SystemTime,
) -> &'r Detail {
    let ended = SystemTime::now();
    assert_eq!(record.schema, "sidecar.capture/v1", "{record:#?}");
    assert_eq!(record.direction, route.direction, "{record:#?}");
    assert_eq!(record.proxy_type, route.proxy_type, "{record:#?}");
    assert_eq!(record.protocol, route.protocol, "{record:#?}");
    assert_eq!(record.transport, route.transport, "{record:#?}");
    assert_eq!(record.client, client.to_string(), "{record:#?}");
    assert_eq!(record.target, route.target, "{record:#?}");
    assert_eq!(record.delivered_to, route.delivered_to, "{record:#?}");
    // 2026-11-26T10:00:00.000000Z
    assert_eq!(record.start.len(), 27, "{}", record.start);
    assert!(record.start.ends_with('Z'), "{}", record.start);
    let start = humantime::parse_rfc3339(&record.start)
        .unwrap_or_else(|e| panic!("start {:?} is not RFC 3339: {e}", record.start));
    // The record's clock has microseconds; the test's bounds are truncated to match.
    let floor = began - Duration::from_micros(1);
    assert!(
        start >= floor && start <= ended,
        "start {} outside the test",
        record.start
    );
    let window = ended.duration_since(began).unwrap().as_secs_f64() * 1000.0;
    assert!(
        record.duration_ms > 0.0 && record.duration_ms <= window,
        "duration_ms {} (test took {window} ms)",
        record.duration_ms
    );
    &record.detail
}

fn http_detail(record: &Record) -> &HttpExchange {
    match &record.detail {
        Detail::Http(exchange) => exchange,
        Detail::Stream(_) => panic!("expected an http record: {record:#?}"),
    }
}

fn stream_detail(record: &Record) -> &StreamSummary {
    match &record.detail {
        Detail::Stream(summary) => summary,
        Detail::Http(_) => panic!("expected a stream record: {record:#?}"),
    }
}

/// One http record, checked whole: route, client, timing, and the exchange exactly as sent and received.
fn assert_http_record(
    record: &Record,
    route: &Route,
    client: SocketAddr,
    began: SystemTime,
    expected: HttpExchange,
) {
    check_envelope(record, route, client, began);
    let mut recorded = http_detail(record).clone();
    let mut expected = expected;
    // The record keeps the head as the upstream sent it; where the sidecar re-frames a chunked body for
    // the client (reverse and forward http), hyper writes `transfer-encoding` after the other headers.
    // Same headers, same values, same order otherwise.
    for response in [&mut recorded.response, &mut expected.response]
        .into_iter()
        .flatten()
    {
        response
            .headers
            .sort_by_key(|(name, _)| name == "transfer-encoding");
    }
    assert_eq!(recorded, expected, "{record:#?}");
}

fn assert_unique_ids(records: &[Record]) {
    let ids: BTreeSet<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), records.len(), "record ids repeat: {records:#?}");
}

/// The record whose request URL ends with `suffix`.
fn by_url<'r>(records: &'r [Record], suffix: &str) -> &'r Record {
    let found: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(&r.detail, Detail::Http(x) if x.request.url.ends_with(suffix)))
        .collect();
    assert_eq!(found.len(), 1, "records for {suffix}: {records:#?}");
    found[0]
}

// ---------------------------------------------------------------------------------------------------
// 1. HTTP records from every mode that carries HTTP
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http_records_get_and_post_field_by_field() {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy("reverse", "http", Some(app.addr), |_| {}).await;

    let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let client = stream.local_addr().unwrap();
    let mut conn = RawHttp::new(stream);
    let get = Sent::new(
        "GET",
        "/orders/7?verbose=1",
        &[
            ("Host", "orders.shop.svc:4143"),
            ("User-Agent", "capture-test/1"),
            ("X-Request-Id", "get-1"),
            ("Accept", "*/*"),
        ],
    );
    let got_get = conn.exchange(&get.bytes()).await.unwrap();
    assert_eq!(got_get.status, 200);
    let post = Sent::new(
        "POST",
        "/echo",
        &[
            ("Host", "orders.shop.svc:4143"),
            ("Content-Type", "application/json"),
            ("X-Request-Id", "post-1"),
        ],
    )
    .with_body(b"{\"item\":\"book\",\"qty\":2}");
    let got_post = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got_post.body, post.body, "the app echoes the body");

    // A second connection gets a connection id of its own.
    let other = TcpStream::connect(proxy.inbound()).await.unwrap();
    let other_client = other.local_addr().unwrap();
    let mut other = RawHttp::new(other);
    let third = Sent::new("GET", "/third", &[("Host", "orders.shop.svc:4143")]);
    let got_third = other.exchange(&third.bytes()).await.unwrap();
    drop((conn, other));

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    assert_unique_ids(&records);
    let route = Route {
        direction: "inbound",
        proxy_type: "reverse",
        protocol: "http",
        transport: "http",
        target: "orders.shop.svc:4143".into(),
        delivered_to: Some(app.addr.to_string()),
    };
    let base = "http://orders.shop.svc:4143";
    for (record, sent, got, client, path) in [
        (
            by_url(&records, "/orders/7?verbose=1"),
            &get,
            &got_get,
            client,
            "/orders/7?verbose=1",
        ),
        (by_url(&records, "/echo"), &post, &got_post, client, "/echo"),
        (
            by_url(&records, "/third"),
            &third,
            &got_third,
            other_client,
            "/third",
        ),
    ] {
        let expected = HttpExchange {
            request: sent.expected(&format!("{base}{path}")),
            response: Some(expected_response(got)),
            error: None,
            upgraded: None,
        };
        assert_http_record(record, &route, client, began, expected);
    }
    let get_record = by_url(&records, "/orders/7?verbose=1");
    let post_record = by_url(&records, "/echo");
    assert_eq!(get_record.connection, post_record.connection, "keep-alive");
    assert_ne!(get_record.connection, by_url(&records, "/third").connection);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_http_absolute_form_is_recorded_outbound_with_the_host_name() {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy("forward", "http", None, |_| {}).await;
    let authority = format!("localhost:{}", app.addr.port());

    let stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    let client = stream.local_addr().unwrap();
    let mut conn = RawHttp::new(stream);
    let get = Sent::new(
        "GET",
        format!("http://{authority}/catalog?page=2"),
        &[("Host", &authority), ("X-Request-Id", "fwd-1")],
    );
    let got_get = conn.exchange(&get.bytes()).await.unwrap();
    assert_eq!(got_get.status, 200);
    let post = Sent::new(
        "POST",
        format!("http://{authority}/echo"),
        &[("Host", &authority), ("X-Request-Id", "fwd-2")],
    )
    .with_body(b"forwarded body");
    let got_post = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got_post.body, b"forwarded body");
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let route = Route {
        direction: "outbound",
        proxy_type: "forward",
        protocol: "http",
        transport: "http",
        target: authority.clone(),
        delivered_to: None,
    };
    for (sent, got, path) in [
        (&get, &got_get, "/catalog?page=2"),
        (&post, &got_post, "/echo"),
    ] {
        let expected = HttpExchange {
            request: sent.expected(&format!("http://{authority}{path}")),
            response: Some(expected_response(got)),
            error: None,
            upgraded: None,
        };
        assert_http_record(by_url(&records, path), &route, client, began, expected);
    }
    assert_eq!(records[0].connection, records[1].connection);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http2_prior_knowledge_is_recorded_as_http2() {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy("reverse", "http", Some(app.addr), |_| {}).await;

    let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let client = stream.local_addr().unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri("http://app.test:8080/h2/items?x=1")
        .header("x-request-id", "h2-1")
        .header("accept", "text/plain")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    assert_eq!(parts.status, 200);
    drop(sender);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    let route = Route {
        direction: "inbound",
        proxy_type: "reverse",
        protocol: "http",
        transport: "http",
        target: "app.test:8080".into(),
        delivered_to: Some(app.addr.to_string()),
    };
    check_envelope(record, &route, client, began);
    let exchange = http_detail(record);
    assert_eq!(
        exchange.request,
        HttpRequest {
            method: "GET".into(),
            url: "http://app.test:8080/h2/items?x=1".into(),
            version: "HTTP/2.0".into(),
            headers: vec![
                ("x-request-id".into(), "h2-1".into()),
                ("accept".into(), "text/plain".into()),
            ],
            body: whole(b""),
            trailers: Vec::new(),
        }
    );
    let response = exchange.response.as_ref().expect("a response");
    assert_eq!(response.status, 200);
    let client_headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    assert_eq!(response.headers, client_headers);
    assert_eq!(response.body, whole(&body));
    assert_eq!(exchange.error, None);
}

/// How the client reaches the app inside a stream.
#[derive(Clone, Copy, Debug)]
enum Carrier {
    Connect,
    Socks5,
    ReverseTcp,
}

/// Opens a stream to the app through the carrier; returns it, the client's address and the route.
async fn open_carrier(
    carrier: Carrier,
    app: SocketAddr,
) -> (
    support::RunningProxy,
    support::capture::CaptureLog,
    TcpStream,
    SocketAddr,
    Route,
) {
    let named = format!("localhost:{}", app.port());
    match carrier {
        Carrier::Connect => {
            let (proxy, log) = start_capturing_proxy("forward", "http", None, |_| {}).await;
            let stream = connect_tunnel(proxy.outbound(), &named).await;
            let client = stream.local_addr().unwrap();
            let route = Route {
                direction: "outbound",
                proxy_type: "forward",
                protocol: "http",
                transport: "connect",
                target: named,
                delivered_to: None,
            };
            (proxy, log, stream, client, route)
        }
        Carrier::Socks5 => {
            let (proxy, log) = start_capturing_proxy("forward", "socks", None, |_| {}).await;
            let stream = Socks5Stream::connect(proxy.outbound(), ("localhost", app.port()))
                .await
                .unwrap()
                .into_inner();
            let client = stream.local_addr().unwrap();
            let route = Route {
                direction: "outbound",
                proxy_type: "forward",
                protocol: "socks",
                transport: "socks5",
                target: named,
                delivered_to: None,
            };
            (proxy, log, stream, client, route)
        }
        Carrier::ReverseTcp => {
            let (proxy, log) = start_capturing_proxy("reverse", "tcp", Some(app), |_| {}).await;
            let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
            let client = stream.local_addr().unwrap();
            let route = Route {
                direction: "inbound",
                proxy_type: "reverse",
                protocol: "tcp",
                transport: "tcp",
                target: app.to_string(),
                delivered_to: None,
            };
            (proxy, log, stream, client, route)
        }
    }
}

#[rstest]
#[case::connect_tunnel(Carrier::Connect)]
#[case::socks5(Carrier::Socks5)]
#[case::reverse_tcp(Carrier::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_http_inside_a_stream_gets_one_record_per_exchange(#[case] carrier: Carrier) {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log, stream, client, route) = open_carrier(carrier, app.addr).await;
    let host = format!("localhost:{}", app.addr.port());

    let mut conn = RawHttp::new(stream);
    let get = Sent::new(
        "GET",
        "/inside/1?q=a",
        &[("Host", &host), ("X-Request-Id", "in-1"), ("Accept", "*/*")],
    );
    let got_get = conn.exchange(&get.bytes()).await.unwrap();
    assert_eq!(got_get.status, 200);
    let post = Sent::new(
        "POST",
        "/echo",
        &[("Host", &host), ("X-Request-Id", "in-2")],
    )
    .with_body(b"tunnelled body bytes");
    let got_post = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got_post.body, b"tunnelled body bytes");
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(
        records.len(),
        2,
        "one http record per exchange, no stream record: {records:#?}"
    );
    assert_unique_ids(&records);
    for (sent, got, path) in [
        (&get, &got_get, "/inside/1?q=a"),
        (&post, &got_post, "/echo"),
    ] {
        let expected = HttpExchange {
            request: sent.expected(&format!("http://{host}{path}")),
            response: Some(expected_response(got)),
            error: None,
            upgraded: None,
        };
        assert_http_record(by_url(&records, path), &route, client, began, expected);
    }
    assert_eq!(records[0].connection, records[1].connection, "keep-alive");
}

// ---------------------------------------------------------------------------------------------------
// 2. Stream records
// ---------------------------------------------------------------------------------------------------

/// A TLS ClientHello's first bytes, then filler: what a TLS client sends through a tunnel.
fn tls_like(len: usize) -> Vec<u8> {
    let mut bytes = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    bytes.extend((0..len - bytes.len()).map(|i| (i * 7 % 251) as u8));
    bytes
}

fn binary(len: usize) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x01, 0xff, 0xfe];
    bytes.extend((0..len - bytes.len()).map(|i| (i * 13 % 256) as u8));
    bytes
}

#[derive(Clone, Copy, Debug)]
enum StreamVia {
    Connect,
    Socks4,
    Socks5,
    ReverseTcp,
}

/// Starts a capturing proxy that can reach `upstream` via `via`, opens the stream, and returns the route.
async fn open_stream(
    via: StreamVia,
    upstream: SocketAddr,
    adjust: impl FnOnce(&mut sidecar_proxy::capture::CaptureSettings),
) -> (
    support::RunningProxy,
    support::capture::CaptureLog,
    TcpStream,
    SocketAddr,
    Route,
) {
    let named = format!("localhost:{}", upstream.port());
    let (proxy, log) = match via {
        StreamVia::Connect => start_capturing_proxy("forward", "http", None, adjust).await,
        StreamVia::Socks4 | StreamVia::Socks5 => {
            start_capturing_proxy("forward", "socks", None, adjust).await
        }
        StreamVia::ReverseTcp => {
            start_capturing_proxy("reverse", "tcp", Some(upstream), adjust).await
        }
    };
    let (stream, route) = match via {
        StreamVia::Connect => (
            connect_tunnel(proxy.outbound(), &named).await,
            Route {
                direction: "outbound",
                proxy_type: "forward",
                protocol: "http",
                transport: "connect",
                target: named,
                delivered_to: None,
            },
        ),
        StreamVia::Socks4 => (
            Socks4Stream::connect(proxy.outbound(), upstream)
                .await
                .unwrap()
                .into_inner(),
            Route {
                direction: "outbound",
                proxy_type: "forward",
                protocol: "socks",
                transport: "socks4",
                target: upstream.to_string(),
                delivered_to: None,
            },
        ),
        StreamVia::Socks5 => (
            Socks5Stream::connect(proxy.outbound(), ("localhost", upstream.port()))
                .await
                .unwrap()
                .into_inner(),
            Route {
                direction: "outbound",
                proxy_type: "forward",
                protocol: "socks",
                transport: "socks5",
                target: named,
                delivered_to: None,
            },
        ),
        StreamVia::ReverseTcp => (
            TcpStream::connect(proxy.inbound()).await.unwrap(),
            Route {
                direction: "inbound",
                proxy_type: "reverse",
                protocol: "tcp",
                transport: "tcp",
                target: upstream.to_string(),
                delivered_to: None,
            },
        ),
    };
    let client = stream.local_addr().unwrap();
    (proxy, log, stream, client, route)
}

/// Sends `payload`, half-closes, and reads the whole answer.
async fn send_and_read_all(stream: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    stream.write_all(payload).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the stream ends")
        .unwrap();
    answer
}

#[rstest]
#[case::tls_through_connect(StreamVia::Connect, true, "tls")]
#[case::binary_through_connect(StreamVia::Connect, false, "opaque")]
#[case::tls_through_socks4(StreamVia::Socks4, true, "tls")]
#[case::binary_through_socks5(StreamVia::Socks5, false, "opaque")]
#[case::tls_through_socks5(StreamVia::Socks5, true, "tls")]
#[case::tls_through_reverse_tcp(StreamVia::ReverseTcp, true, "tls")]
#[case::binary_through_reverse_tcp(StreamVia::ReverseTcp, false, "opaque")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_stream_gets_one_record_with_exact_byte_counts(
    #[case] via: StreamVia,
    #[case] tls: bool,
    #[case] seen: &str,
) {
    let began = SystemTime::now();
    let reply = binary(1234);
    let upstream = start_reply_after_eof(reply.clone()).await;
    let (proxy, log, mut stream, client, route) = open_stream(via, upstream, |_| {}).await;
    let payload = if tls { tls_like(5000) } else { binary(5000) };
    let answer = send_and_read_all(&mut stream, &payload).await;
    assert_eq!(answer, reply);
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    assert_eq!(
        stream_detail(&records[0]),
        &StreamSummary {
            protocol_seen: seen.into(),
            bytes_client_to_target: 5000,
            bytes_target_to_client: 1234,
            sni: None,
            end: "closed".into(),
            error: None,
            payload: None,
        }
    );
}

#[rstest]
#[case::client_answers(b"QUIT\r\n".as_slice(), "opaque")]
#[case::client_silent(b"".as_slice(), "none")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_speaks_first_is_one_stream_record(
    #[case] client_says: &[u8],
    #[case] seen: &str,
) {
    const BANNER: &[u8] = b"220 mail.test ESMTP ready\r\n";
    let began = SystemTime::now();
    let upstream = start_banner_server(BANNER).await;
    let (proxy, log, mut stream, client, route) =
        open_stream(StreamVia::ReverseTcp, upstream, |_| {}).await;
    let mut banner = vec![0; BANNER.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut banner))
        .await
        .expect("the banner arrives")
        .unwrap();
    assert_eq!(banner, BANNER);
    let rest = send_and_read_all(&mut stream, client_says).await;
    assert!(rest.is_empty());
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    assert_eq!(
        stream_detail(&records[0]),
        &StreamSummary {
            protocol_seen: seen.into(),
            bytes_client_to_target: client_says.len() as u64,
            bytes_target_to_client: BANNER.len() as u64,
            sni: None,
            end: "closed".into(),
            error: None,
            payload: None,
        }
    );
}

#[rstest]
#[case::connect(StreamVia::Connect)]
#[case::socks5(StreamVia::Socks5)]
#[case::socks4(StreamVia::Socks4)]
#[case::reverse_tcp(StreamVia::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_recorded_as_refused(#[case] via: StreamVia) {
    let began = SystemTime::now();
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let named = format!("localhost:{}", closed.port());
    let (proxy, log) = match via {
        StreamVia::Connect => start_capturing_proxy("forward", "http", None, |_| {}).await,
        StreamVia::Socks4 | StreamVia::Socks5 => {
            start_capturing_proxy("forward", "socks", None, |_| {}).await
        }
        StreamVia::ReverseTcp => {
            start_capturing_proxy("reverse", "tcp", Some(closed), |_| {}).await
        }
    };
    let (client, route) = match via {
        StreamVia::Connect => {
            let stream = TcpStream::connect(proxy.outbound()).await.unwrap();
            let client = stream.local_addr().unwrap();
            let mut conn = RawHttp::new(stream);
            let answer = conn
                .exchange(format!("CONNECT {named} HTTP/1.1\r\nhost: {named}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            assert_eq!(answer.status, 502);
            (
                client,
                Route {
                    direction: "outbound",
                    proxy_type: "forward",
                    protocol: "http",
                    transport: "connect",
                    target: named.clone(),
                    delivered_to: None,
                },
            )
        }
        StreamVia::Socks5 | StreamVia::Socks4 => {
            let socket = TcpStream::connect(proxy.outbound()).await.unwrap();
            let client = socket.local_addr().unwrap();
            let (result, transport, target) = if matches!(via, StreamVia::Socks5) {
                (
                    Socks5Stream::connect_with_socket(socket, ("localhost", closed.port()))
                        .await
                        .map(drop),
                    "socks5",
                    named.clone(),
                )
            } else {
                (
                    Socks4Stream::connect_with_socket(socket, closed)
                        .await
                        .map(drop),
                    "socks4",
                    closed.to_string(),
                )
            };
            assert!(result.is_err(), "the SOCKS CONNECT is refused");
            (
                client,
                Route {
                    direction: "outbound",
                    proxy_type: "forward",
                    protocol: "socks",
                    transport,
                    target,
                    delivered_to: None,
                },
            )
        }
        StreamVia::ReverseTcp => {
            let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
            let client = stream.local_addr().unwrap();
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
            assert!(rest.is_empty());
            (
                client,
                Route {
                    direction: "inbound",
                    proxy_type: "reverse",
                    protocol: "tcp",
                    transport: "tcp",
                    target: closed.to_string(),
                    delivered_to: None,
                },
            )
        }
    };

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    let summary = stream_detail(&records[0]);
    let error = summary.error.clone().expect("a refused stream says why");
    assert!(
        error.contains(&route.target),
        "the error names the target {}: {error}",
        route.target
    );
    assert_eq!(
        summary,
        &StreamSummary {
            protocol_seen: "none".into(),
            bytes_client_to_target: 0,
            bytes_target_to_client: 0,
            sni: None,
            end: "refused".into(),
            error: Some(error),
            payload: None,
        }
    );
}

#[rstest]
#[case::off_by_default(None, None)]
#[case::on(Some(true), None)]
#[case::on_truncated_at_the_body_limit(Some(true), Some(100))]
#[case::off_explicitly(Some(false), None)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_payload_is_kept_only_when_asked(
    #[case] payload_on: Option<bool>,
    #[case] body_limit: Option<usize>,
) {
    let reply = binary(700);
    let upstream = start_reply_after_eof(reply.clone()).await;
    let (proxy, log, mut stream, _client, _route) =
        open_stream(StreamVia::Connect, upstream, |settings| {
            if let Some(on) = payload_on {
                settings.stream_payload = on;
            }
            if let Some(limit) = body_limit {
                settings.body_limit = limit;
            }
        })
        .await;
    let sent = tls_like(3000);
    let answer = send_and_read_all(&mut stream, &sent).await;
    assert_eq!(answer, reply, "the client gets everything whatever is kept");
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let summary = stream_detail(&records[0]);
    assert_eq!(
        (
            summary.bytes_client_to_target,
            summary.bytes_target_to_client
        ),
        (3000, 700)
    );
    let expected = match (payload_on, body_limit) {
        (Some(true), None) => Some(StreamPayload {
            client_to_target: whole(&sent),
            target_to_client: whole(&reply),
        }),
        (Some(true), Some(limit)) => Some(StreamPayload {
            client_to_target: Body {
                size: 3000,
                truncated: true,
                base64: Bytes::copy_from_slice(&sent[..limit]),
                complete: true,
            },
            target_to_client: Body {
                size: 700,
                truncated: true,
                base64: Bytes::copy_from_slice(&reply[..limit]),
                complete: true,
            },
        }),
        _ => None,
    };
    assert_eq!(summary.payload, expected);
}

// ---------------------------------------------------------------------------------------------------
// 3. Body truncation
// ---------------------------------------------------------------------------------------------------

#[rstest]
#[case::reverse_http("reverse", "http")]
#[case::inside_reverse_tcp("reverse", "tcp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_truncated_in_the_record_never_on_the_wire(
    #[case] proxy_type: &str,
    #[case] protocol: &str,
) {
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy(proxy_type, protocol, Some(app.addr), |settings| {
        settings.body_limit = 16;
    })
    .await;
    let mut conn = RawHttp::new(TcpStream::connect(proxy.inbound()).await.unwrap());
    let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let post = Sent::new("POST", "/echo", &[("Host", "app.test")]).with_body(&body);
    let got = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got.body, body, "the client got the whole echoed body");
    let big = Sent::new("GET", "/bytes/100000", &[("Host", "app.test")]);
    let got_big = conn.exchange(&big.bytes()).await.unwrap();
    assert_eq!(
        got_big.body.len(),
        100_000,
        "the client got the whole download"
    );
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let truncated = |bytes: &[u8]| Body {
        size: bytes.len() as u64,
        truncated: true,
        base64: Bytes::copy_from_slice(&bytes[..16]),
        complete: true,
    };
    let echo = http_detail(by_url(&records, "/echo"));
    assert_eq!(echo.request.body, truncated(&body));
    assert_eq!(echo.response.as_ref().unwrap().body, truncated(&got.body));
    let download = http_detail(by_url(&records, "/bytes/100000"));
    assert_eq!(download.request.body, whole(b""));
    assert_eq!(
        download.response.as_ref().unwrap().body,
        truncated(&got_big.body)
    );
}

// ---------------------------------------------------------------------------------------------------
// 4. Redaction
// ---------------------------------------------------------------------------------------------------

const SECRET_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nSet-Cookie: session=s3cr3t; HttpOnly\r\nX-Secret: from-the-app\r\nContent-Length: 2\r\n\r\nok";

#[derive(Clone, Copy, Debug)]
enum Redact {
    Default,
    Custom,
    Nothing,
}

#[rstest]
#[case::default_list(Redact::Default)]
#[case::custom_list(Redact::Custom)]
#[case::empty_list_records_everything(Redact::Nothing)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_headers_are_redacted_as_configured(#[case] redact: Redact) {
    let upstream = start_fixed_responder(SECRET_RESPONSE).await;
    let (proxy, log) =
        start_capturing_proxy("reverse", "http", Some(upstream), |settings| match redact {
            Redact::Default => {}
            Redact::Custom => {
                settings.redacted_headers = vec![
                    HeaderName::from_static("x-api-key"),
                    HeaderName::from_static("x-secret"),
                ]
            }
            Redact::Nothing => settings.redacted_headers = Vec::new(),
        })
        .await;
    let mut conn = RawHttp::new(TcpStream::connect(proxy.inbound()).await.unwrap());
    let sent = Sent::new(
        "GET",
        "/private",
        &[
            ("Host", "app.test"),
            ("Authorization", "Bearer abc.def"),
            ("Proxy-Authorization", "Basic dXNlcjpwdw=="),
            ("Cookie", "session=s3cr3t"),
            ("X-Api-Key", "key-123"),
            ("Accept", "*/*"),
        ],
    );
    let got = conn.exchange(&sent.bytes()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("set-cookie"),
        Some("session=s3cr3t; HttpOnly"),
        "the client's copy is never redacted"
    );
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let exchange = http_detail(&records[0]);
    let redacted: &[&str] = match redact {
        Redact::Default => &[
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
        ],
        Redact::Custom => &["x-api-key", "x-secret"],
        Redact::Nothing => &[],
    };
    let expect = |headers: &[(String, String)]| -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| {
                let n = n.to_ascii_lowercase();
                let v = if redacted.contains(&n.as_str()) {
                    REDACTED.to_owned()
                } else {
                    v.clone()
                };
                (n, v)
            })
            .collect()
    };
    assert_eq!(exchange.request.headers, expect(&sent.headers));
    let response = exchange.response.as_ref().unwrap();
    // The fixed response has no hop-by-hop headers: the client got exactly what the app sent.
    assert_eq!(
        response.headers,
        expect(&[
            ("set-cookie".into(), "session=s3cr3t; HttpOnly".into()),
            ("x-secret".into(), "from-the-app".into()),
            ("content-length".into(), "2".into()),
        ])
    );
    assert_eq!(
        got.headers.len(),
        3 + usize::from(got.header("date").is_some()),
        "{got:?}"
    );
    let line = serde_json::to_string(&records[0]).unwrap();
    for secret in [
        "abc.def",
        "dXNlcjpwdw==",
        "session=s3cr3t",
        "key-123",
        "from-the-app",
    ] {
        let leaked = line.contains(secret);
        let allowed = match redact {
            Redact::Default => ["key-123", "from-the-app"].contains(&secret),
            Redact::Custom => ["abc.def", "dXNlcjpwdw==", "session=s3cr3t"].contains(&secret),
            Redact::Nothing => true,
        };
        assert_eq!(leaked, allowed, "{secret} in {line}");
    }
}

// ---------------------------------------------------------------------------------------------------
// 5. The drop path: a blocked writer never holds traffic
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_writer_drops_and_counts_records_and_never_holds_traffic() {
    const REQUESTS: usize = 60;
    // A FIFO nobody reads until every request is done: once the pipe buffer and the writer's buffer are
    // full (each record carries a 64 KiB body, ~87 KiB of base64), the writer thread blocks in write(2).
    let fifo = temp_path("blocked.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    let (open_gate, gate) = std::sync::mpsc::channel::<()>();
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        // Opening blocks until the sink opens the write end.
        let mut file = std::fs::File::open(&reader_path).unwrap();
        let _ = gate.recv();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    });
    let metrics = Arc::new(Metrics::new());
    let options = SinkOptions {
        destination: Destination::File(fifo.clone()),
        queue_capacity: 1,
        rotation: None,
    };
    let (sink, writer) = CaptureSink::start(&options, metrics.clone()).unwrap();
    let app = start_app().await;
    let proxy = start_proxy_with_sink(
        "reverse",
        "http",
        Some(app.addr),
        sink,
        metrics.clone(),
        |_| {},
    )
    .await;

    let inbound = proxy.inbound();
    let clients: Vec<_> = (0..REQUESTS)
        .map(|i| {
            tokio::spawn(async move {
                let mut conn = RawHttp::new(TcpStream::connect(inbound).await.unwrap());
                let sent = Sent::new(
                    "GET",
                    "/bytes/65536",
                    &[("Host", "app.test"), ("X-N", &i.to_string())],
                );
                conn.exchange(&sent.bytes()).await.unwrap()
            })
        })
        .collect();
    for client in clients {
        let got = tokio::time::timeout(DEADLINE, client)
            .await
            .expect("traffic is never held by a blocked capture writer")
            .unwrap();
        assert_eq!((got.status, got.body.len()), (200, 65536));
    }
    // Every exchange has been handed over or dropped once the proxy has stopped.
    proxy.stop().await;
    let dropped = metrics.records_dropped.get();
    assert!(
        dropped > 0,
        "the blocked writer must have made the queue overflow"
    );

    open_gate.send(()).unwrap();
    tokio::time::timeout(DEADLINE, writer.unwrap().finish())
        .await
        .expect("the writer flushes");
    let text = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_file(&fifo);
    let records = parse_records(&text);
    assert_eq!(
        records.len() as u64 + dropped,
        REQUESTS as u64,
        "written {} + dropped {dropped} must be every exchange",
        records.len()
    );
    let captured = metrics
        .records_captured
        .get_or_create(&sidecar_proxy::metrics::RecordLabels { kind: "http" })
        .get();
    assert_eq!(captured, records.len() as u64);
    for record in &records {
        let response = http_detail(record).response.as_ref().unwrap();
        assert_eq!((response.status, response.body.size), (200, 65536));
    }
}

// ---------------------------------------------------------------------------------------------------
// 6. SIGTERM flushes every completed exchange (the real binary)
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_flushes_a_record_for_every_completed_exchange() {
    const CLIENTS: usize = 6;
    let dir = TempDir::new("sigterm");
    let path = dir.0.join("records.jsonl");
    let app = start_app().await;
    let mut sidecar =
        Sidecar::reverse_http(app.addr, &["--capture", path.to_str().unwrap()], &dir.0).await;

    // request id → body the client read in full.
    let completed: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let completed = completed.clone();
            let inbound = sidecar.inbound;
            tokio::spawn(async move {
                let Ok(stream) = TcpStream::connect(inbound).await else {
                    return;
                };
                let mut conn = RawHttp::new(stream);
                for i in 0.. {
                    let id = format!("c{c}-r{i}");
                    let path = format!("/load/{id}");
                    let sent =
                        Sent::new("GET", path, &[("Host", "app.test"), ("X-Request-Id", &id)]);
                    match conn.exchange(&sent.bytes()).await {
                        Ok(got) if got.status == 200 => {
                            completed.lock().unwrap().insert(id, got.body);
                        }
                        // The connection was closed by the shutdown: this client is done.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Mid-run: once every client has completed a few exchanges.
    let deadline = std::time::Instant::now() + DEADLINE;
    while completed.lock().unwrap().len() < CLIENTS * 20 {
        assert!(std::time::Instant::now() < deadline, "load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sidecar.signal("TERM");
    for client in clients {
        tokio::time::timeout(DEADLINE, client)
            .await
            .expect("clients end")
            .unwrap();
    }
    let status = sidecar.exit().await;
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        sidecar.stderr()
    );

    let completed = completed.lock().unwrap().clone();
    let records = parse_records(&std::fs::read_to_string(&path).unwrap());
    assert_unique_ids(&records);
    let mut recorded = BTreeMap::new();
    for record in &records {
        let exchange = http_detail(record);
        let id = exchange
            .request
            .headers
            .iter()
            .find(|(n, _)| n == "x-request-id")
            .map(|(_, v)| v.clone())
            .expect("every request has an id");
        assert!(
            recorded.insert(id.clone(), exchange.clone()).is_none(),
            "two records for {id}"
        );
    }
    for (id, body) in &completed {
        let exchange = recorded.get(id).unwrap_or_else(|| {
            panic!(
                "exchange {id} completed but has no record ({} records, {} completed)",
                records.len(),
                completed.len()
            )
        });
        let response = exchange.response.as_ref().expect("a response");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, whole(body), "{id}");
    }
    for (id, exchange) in &recorded {
        if completed.contains_key(id) {
            continue;
        }
        // Cut off by the shutdown: no record may claim a response the client did not get.
        let claims_delivery = exchange
            .response
            .as_ref()
            .is_some_and(|r| r.body.complete && exchange.error.is_none());
        assert!(
            !claims_delivery,
            "{id} was never completed by its client but its record says it was: {exchange:#?}"
        );
    }
    assert!(completed.len() >= CLIENTS * 20);
}

// ---------------------------------------------------------------------------------------------------
// 7. Destinations: stdout, off, rotation (the real binary)
// ---------------------------------------------------------------------------------------------------

async fn one_request(addr: SocketAddr, id: &str) -> Received {
    let mut conn = RawHttp::new(TcpStream::connect(addr).await.unwrap());
    let sent = Sent::new(
        "GET",
        format!("/dest/{id}"),
        &[("Host", "app.test"), ("Connection", "close")],
    );
    let got = conn.exchange(&sent.bytes()).await.unwrap();
    assert_eq!(got.status, 200);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_dash_writes_records_to_stdout() {
    let dir = TempDir::new("stdout");
    let app = start_app().await;
    let mut sidecar = Sidecar::reverse_http(app.addr, &["--capture", "-"], &dir.0).await;
    let first = one_request(sidecar.inbound, "one").await;
    let second = one_request(sidecar.inbound, "two").await;
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let stdout = String::from_utf8(sidecar.stdout()).unwrap();
    let records = parse_records(&stdout);
    assert_eq!(records.len(), 2, "stdout holds only records:\n{stdout}");
    assert_eq!(
        http_detail(by_url(&records, "/dest/one"))
            .response
            .as_ref()
            .unwrap()
            .body,
        whole(&first.body)
    );
    assert_eq!(
        http_detail(by_url(&records, "/dest/two"))
            .response
            .as_ref()
            .unwrap()
            .body,
        whole(&second.body)
    );
    assert!(
        !sidecar.stderr().contains("\"schema\""),
        "records never go to stderr"
    );
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "no file written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_off_writes_nothing() {
    let dir = TempDir::new("off");
    let app = start_app().await;
    let mut sidecar = Sidecar::reverse_http(app.addr, &["--capture", "off"], &dir.0).await;
    one_request(sidecar.inbound, "one").await;
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    assert!(
        sidecar.stdout().is_empty(),
        "{:?}",
        String::from_utf8_lossy(&sidecar.stdout())
    );
    let files: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_spreads_every_record_over_the_files_exactly_once() {
    const REQUESTS: usize = 40;
    let dir = TempDir::new("rotate");
    let path = dir.0.join("records.jsonl");
    let app = start_app().await;
    let mut sidecar = Sidecar::reverse_http(
        app.addr,
        &[
            "--capture",
            path.to_str().unwrap(),
            "--capture-rotate-size",
            "4KiB",
            "--capture-rotate-keep",
            "1000",
        ],
        &dir.0,
    )
    .await;
    for i in 0..REQUESTS {
        one_request(sidecar.inbound, &format!("r{i:02}")).await;
    }
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());

    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "a few files at 4 KiB each: {names:?}");
    let rotated = names.len() - 1;
    let mut expected_names: Vec<String> = (1..=rotated)
        .map(|n| format!("records.jsonl.{n}"))
        .collect();
    expected_names.push("records.jsonl".into());
    expected_names.sort();
    assert_eq!(names, expected_names);
    let mut seen = BTreeMap::new();
    for name in &names {
        let text = std::fs::read_to_string(dir.0.join(name)).unwrap();
        if name != "records.jsonl" {
            assert!(
                text.len() >= 4096,
                "{name} rotated before reaching the size: {}",
                text.len()
            );
        }
        for record in parse_records(&text) {
            let url = http_detail(&record).request.url.clone();
            *seen.entry(url).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<String, i32> = (0..REQUESTS)
        .map(|i| (format!("http://app.test/dest/r{i:02}"), 1))
        .collect();
    assert_eq!(seen, expected);
}

/// Text protocols that open with an HTTP-looking word (a Redis inline `GET key`) are not HTTP: without a
/// whole `METHOD target HTTP/1.x` request line the stream is relayed untouched and recorded as one stream.
#[tokio::test]
async fn a_text_protocol_that_starts_with_get_is_relayed_as_bytes() {
    let echo = support::start_tcp_echo().await;
    let (proxy, log) = start_capturing_proxy("reverse", "tcp", Some(echo), |_| {}).await;
    let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    stream.write_all(b"GET key\r\n").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut echoed))
        .await
        .expect("the echo ends")
        .unwrap();
    assert_eq!(echoed, b"GET key\r\n");
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let Detail::Stream(stream_record) = &records[0].detail else {
        panic!("expected a stream record: {:?}", records[0]);
    };
    assert_eq!(stream_record.bytes_client_to_target, 9);
    assert_eq!(stream_record.bytes_target_to_client, 9);
    assert_eq!(records[0].transport, "tcp");
}

/// A stream still open when the grace period ends is cut off, and still recorded: `end: reset`, with the
/// bytes that got through each way.
#[tokio::test]
async fn a_stream_cut_off_at_shutdown_is_recorded() {
    let echo = support::start_tcp_echo().await;
    let dir = TempDir::new("cut-off");
    let capture_path = dir.0.join("records.jsonl");
    let capture_arg = capture_path.to_str().unwrap().to_owned();
    let mut sidecar = Sidecar::reverse(
        "tcp",
        echo,
        &["--capture", &capture_arg, "--shutdown-grace", "1s"],
        &dir.0,
    )
    .await;
    let mut stream = TcpStream::connect(sidecar.inbound).await.unwrap();
    stream.write_all(b"\x00\x01binary").await.unwrap();
    let mut echoed = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .expect("the echo arrives")
        .unwrap();
    assert_eq!(&echoed, b"\x00\x01binary");

    sidecar.signal("TERM");
    let status = sidecar.exit().await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.stderr());
    drop(stream);

    // The harness's own readiness probe (connect, then close) is a stream record too: skip it.
    let records: Vec<Record> = parse_records(&std::fs::read_to_string(&capture_path).unwrap())
        .into_iter()
        .filter(|r| !matches!(&r.detail, Detail::Stream(s) if s.protocol_seen == "none" && s.end == "closed"))
        .collect();
    assert_eq!(records.len(), 1, "{records:#?}");
    let Detail::Stream(summary) = &records[0].detail else {
        panic!("expected a stream record: {:?}", records[0]);
    };
    assert_eq!(summary.end, "reset");
    assert!(
        summary.error.as_deref().unwrap_or("").contains("cut off"),
        "{summary:?}"
    );
    assert_eq!(summary.bytes_client_to_target, 8);
    assert_eq!(summary.bytes_target_to_client, 8);
    assert_eq!(summary.protocol_seen, "opaque");
}

// ---------------------------------------------------------------------------------------------------
// 8. HTTP/2 with prior knowledge and TLS inside streams
// ---------------------------------------------------------------------------------------------------

/// How long a split client waits between its first piece and the rest: far more than a read takes, far
/// less than the detection timeout (1 s).
const SPLIT_PAUSE: Duration = Duration::from_millis(200);

type H2Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: &'static [u8]) -> H2Body {
    Full::new(Bytes::from_static(bytes)).boxed_unsync()
}

/// A request body the test sends chunk by chunk: it stays open until the sender is dropped.
fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, H2Body) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok(Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(chunks).boxed_unsync())
}

/// Header pairs as a record writes them: names as hyper gives them (lower case), values as text.
fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// A client stream whose first `split` bytes go out alone, then nothing more for [`SPLIT_PAUSE`]: a
/// client whose opening arrives at the sidecar in two pieces.
struct SplitWrites<S> {
    inner: S,
    split: usize,
    written: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> SplitWrites<S> {
    fn new(inner: S, split: usize) -> Self {
        SplitWrites {
            inner,
            split,
            written: 0,
            pause: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SplitWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SplitWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(pause) = &mut this.pause {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let limit = if this.written < this.split {
            buf.len().min(this.split - this.written)
        } else {
            buf.len()
        };
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..limit]))?;
        let before = this.written;
        this.written += n;
        if before < this.split && this.written >= this.split {
            this.pause = Some(Box::pin(tokio::time::sleep(SPLIT_PAUSE)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[rstest]
#[case::connect_tunnel(Carrier::Connect)]
#[case::socks5(Carrier::Socks5)]
#[case::reverse_tcp(Carrier::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_inside_a_stream_gets_one_record_per_multiplexed_exchange(
    #[case] carrier: Carrier,
) {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log, stream, client, route) = open_carrier(carrier, app.addr).await;
    let authority = format!("localhost:{}", app.addr.port());
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, H2Body>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);

    // The POST opens its stream and keeps its body open...
    let (post_body, body) = channel_body();
    let post = http::Request::post(format!("http://{authority}/echo"))
        .header("x-request-id", "h2-post")
        .header("content-type", "application/octet-stream")
        .header("content-length", "16")
        .body(body)
        .unwrap();
    post_body.send(Bytes::from_static(b"multiplexed ")).unwrap();
    let post_response = tokio::time::timeout(DEADLINE, sender.send_request(post))
        .await
        .expect("the echo answers before the request body ends")
        .unwrap();

    // ...while a GET goes out and comes back whole on the same connection.
    let get = http::Request::get(format!("http://{authority}/h2/inside?q=1"))
        .header("x-request-id", "h2-get")
        .header("accept", "text/plain")
        .body(full(b""))
        .unwrap();
    let get_response = tokio::time::timeout(DEADLINE, sender.send_request(get))
        .await
        .expect("the GET is answered while the POST is open")
        .unwrap();
    let (get_parts, get_body) = get_response.into_parts();
    let get_body = get_body.collect().await.unwrap().to_bytes();
    assert_eq!(get_parts.status, 200);
    assert_eq!(get_parts.version, http::Version::HTTP_2);
    assert_eq!(
        get_body, "GET /h2/inside?q=1 HTTP/2.0\nx-request-id: h2-get\naccept: text/plain\n",
        "the app got the request over HTTP/2, as sent"
    );

    post_body.send(Bytes::from_static(b"body")).unwrap();
    drop(post_body);
    let (post_parts, echoed) = post_response.into_parts();
    let echoed = tokio::time::timeout(DEADLINE, echoed.collect())
        .await
        .expect("the echo ends")
        .unwrap()
        .to_bytes();
    assert_eq!(post_parts.status, 200);
    assert_eq!(post_parts.version, http::Version::HTTP_2);
    assert_eq!(echoed, "multiplexed body");
    drop(sender);
    tokio::time::timeout(DEADLINE, connection)
        .await
        .expect("the client connection closes once its sender is gone")
        .unwrap()
        .unwrap();

    let records = log.records(proxy).await;
    assert_eq!(
        records.len(),
        2,
        "one http record per exchange, no stream record: {records:#?}"
    );
    assert_unique_ids(&records);
    assert_eq!(
        app.connections(),
        1,
        "both exchanges over one upstream connection"
    );
    let get_expected = HttpExchange {
        request: HttpRequest {
            method: "GET".into(),
            url: format!("http://{authority}/h2/inside?q=1"),
            version: "HTTP/2.0".into(),
            headers: vec![
                ("x-request-id".into(), "h2-get".into()),
                ("accept".into(), "text/plain".into()),
            ],
            body: whole(b""),
            trailers: Vec::new(),
        },
        response: Some(HttpResponse {
            status: 200,
            version: "HTTP/2.0".into(),
            headers: header_pairs(&get_parts.headers),
            body: whole(&get_body),
            trailers: Vec::new(),
        }),
        error: None,
        upgraded: None,
    };
    let post_expected = HttpExchange {
        request: HttpRequest {
            method: "POST".into(),
            url: format!("http://{authority}/echo"),
            version: "HTTP/2.0".into(),
            headers: vec![
                ("x-request-id".into(), "h2-post".into()),
                ("content-type".into(), "application/octet-stream".into()),
                ("content-length".into(), "16".into()),
            ],
            body: whole(b"multiplexed body"),
            trailers: Vec::new(),
        },
        response: Some(HttpResponse {
            status: 200,
            version: "HTTP/2.0".into(),
            headers: header_pairs(&post_parts.headers),
            body: whole(&echoed),
            trailers: Vec::new(),
        }),
        error: None,
        upgraded: None,
    };
    let get_record = by_url(&records, "/h2/inside?q=1");
    let post_record = by_url(&records, "/echo");
    assert_http_record(get_record, &route, client, began, get_expected);
    assert_http_record(post_record, &route, client, began, post_expected);
    assert_eq!(
        get_record.connection, post_record.connection,
        "one client connection"
    );
}

#[rstest]
#[case::connect_tunnel(Carrier::Connect)]
#[case::socks5(Carrier::Socks5)]
#[case::reverse_tcp(Carrier::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_preface_split_across_writes_is_still_http2(#[case] carrier: Carrier) {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log, stream, client, route) = open_carrier(carrier, app.addr).await;
    let authority = format!("localhost:{}", app.addr.port());
    // `PRI * HTTP/2.0\r\n`, a pause, then `\r\nSM\r\n\r\n` and the client's first frames.
    let split = SplitWrites::new(stream, 16);
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, H2Body>(
        TokioExecutor::new(),
        TokioIo::new(split),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let get = http::Request::get(format!("http://{authority}/h2/split"))
        .header("x-request-id", "h2-split")
        .body(full(b""))
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, sender.send_request(get))
        .await
        .expect("the request is answered")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    assert_eq!(parts.status, 200);
    assert_eq!(
        body, "GET /h2/split HTTP/2.0\nx-request-id: h2-split\n",
        "the app got the request over HTTP/2"
    );
    drop(sender);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let expected = HttpExchange {
        request: HttpRequest {
            method: "GET".into(),
            url: format!("http://{authority}/h2/split"),
            version: "HTTP/2.0".into(),
            headers: vec![("x-request-id".into(), "h2-split".into())],
            body: whole(b""),
            trailers: Vec::new(),
        },
        response: Some(HttpResponse {
            status: 200,
            version: "HTTP/2.0".into(),
            headers: header_pairs(&parts.headers),
            body: whole(&body),
            trailers: Vec::new(),
        }),
        error: None,
        upgraded: None,
    };
    assert_http_record(&records[0], &route, client, began, expected);
}

/// A minimal but well-formed TLS ClientHello record (TLS 1.2 framing, offering 1.3), with a `server_name`
/// extension, last, when `sni` is given.
fn client_hello(sni: Option<&str>) -> Vec<u8> {
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1.
    extensions.extend(extension(0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]));
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256.
    extensions.extend(extension(0x000d, &[0x00, 0x04, 0x04, 0x03, 0x08, 0x04]));
    // supported_versions: TLS 1.3, TLS 1.2.
    extensions.extend(extension(0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03]));
    if let Some(name) = sni {
        let mut entry = vec![0x00]; // host_name
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        extensions.extend(extension(0x0000, &list));
    }
    let mut hello = vec![0x03, 0x03]; // legacy_version
    hello.extend((0..32u8).map(|i| i.wrapping_mul(37))); // random
    hello.push(32); // legacy_session_id
    hello.extend_from_slice(&[0xab; 32]);
    hello.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // two cipher suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![0x01]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Where a ClientHello is cut between the client's two writes.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// One write.
    Whole,
    /// Inside the record header: its length is not there yet.
    InHeader,
    /// Inside the server name, the last bytes of the record.
    InName,
}

#[rstest]
#[case::sni_through_connect(StreamVia::Connect, Some("api.example.test"), Cut::Whole)]
#[case::sni_through_socks5(StreamVia::Socks5, Some("api.example.test"), Cut::Whole)]
#[case::sni_through_reverse_tcp(StreamVia::ReverseTcp, Some("api.example.test"), Cut::Whole)]
#[case::no_sni_through_connect(StreamVia::Connect, None, Cut::Whole)]
#[case::no_sni_through_socks5(StreamVia::Socks5, None, Cut::Whole)]
#[case::no_sni_through_reverse_tcp(StreamVia::ReverseTcp, None, Cut::Whole)]
#[case::split_in_header_through_connect(
    StreamVia::Connect,
    Some("api.example.test"),
    Cut::InHeader
)]
#[case::split_in_name_through_connect(StreamVia::Connect, Some("api.example.test"), Cut::InName)]
#[case::split_in_name_through_socks5(StreamVia::Socks5, Some("api.example.test"), Cut::InName)]
#[case::split_in_header_through_reverse_tcp(
    StreamVia::ReverseTcp,
    Some("api.example.test"),
    Cut::InHeader
)]
#[case::split_in_name_through_reverse_tcp(
    StreamVia::ReverseTcp,
    Some("api.example.test"),
    Cut::InName
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_hello_is_relayed_untouched_and_its_sni_recorded(
    #[case] via: StreamVia,
    #[case] sni: Option<&str>,
    #[case] cut: Cut,
) {
    let began = SystemTime::now();
    let echo = support::start_tcp_echo().await;
    let (proxy, log, mut stream, client, route) = open_stream(via, echo, |_| {}).await;
    let hello = client_hello(sni);
    let at = match cut {
        Cut::Whole => hello.len(),
        Cut::InHeader => 3,
        Cut::InName => hello.len() - 8,
    };
    stream.write_all(&hello[..at]).await.unwrap();
    if at < hello.len() {
        tokio::time::sleep(SPLIT_PAUSE).await;
    }
    let echoed = send_and_read_all(&mut stream, &hello[at..]).await;
    assert_eq!(echoed, hello, "the echo returns the hello byte for byte");
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    assert_eq!(
        stream_detail(&records[0]),
        &StreamSummary {
            protocol_seen: "tls".into(),
            bytes_client_to_target: hello.len() as u64,
            bytes_target_to_client: hello.len() as u64,
            sni: sni.map(str::to_owned),
            end: "closed".into(),
            error: None,
            payload: None,
        }
    );
}
