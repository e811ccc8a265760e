//! Capture: every exchange through the sidecar becomes one JSON-lines record, checked field by field
//! against the bytes the client sent and the response it got, for every mode that carries HTTP (reverse,
//! forward absolute-form, HTTP/2, and cleartext HTTP/1 inside CONNECT, SOCKS and tcp relays) and for
//! opaque streams; plus body truncation, redaction, the drop path under a blocked writer, the SIGTERM flush
//! of the real binary, stdout, `off` and rotation; and, inside CONNECT, SOCKS5 and tcp relays, HTTP/2 with
//! prior knowledge (one record per multiplexed exchange) and TLS (the ClientHello's SNI on the stream
//! record), also when the client's first bytes arrive in pieces.
//!
//! - [`http_records`]: HTTP records from every mode that carries HTTP, field by field.
//! - [`streams`]: stream records (opaque, server-first, refused, payload kept when asked, cut at shutdown).
//! - [`truncation`]: bodies cut in the record, never on the wire.
//! - [`redaction`]: sensitive headers redacted as configured.
//! - [`drop_path`]: a blocked writer drops and counts records and never holds traffic.
//! - [`sigterm`]: SIGTERM flushes a record for every completed exchange (the real binary).
//! - [`probes`]: kubelet probes are relayed and counted, recorded only with `--capture-probes`.
//! - [`drain`]: after SIGTERM, a client that keeps sending loses nothing, and all of it is recorded.
//! - [`destinations`]: stdout, `off` and rotation (the real binary).
//! - [`inside_streams`]: HTTP/2 with prior knowledge and TLS inside CONNECT, SOCKS and tcp relays.
//! - [`links`]: dual mode links each outbound call to the inbound request it was made for.
//!
//! This file holds what they share: the request as sent, the record that must follow from it, and the
//! ways a client reaches the app through the sidecar.

#[path = "../support/mod.rs"]
mod support;

mod destinations;
mod drain;
mod drop_path;
mod http_records;
mod inside_streams;
mod links;
mod probes;
mod redaction;
mod sigterm;
mod streams;
mod truncation;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sidecar_proxy::capture::record::{
    Body, Detail, HttpExchange, HttpRequest, HttpResponse, Record, StreamSummary,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};

use support::capture::{connect_tunnel, start_capturing_proxy, Received};

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
    crate::support::RunningProxy,
    crate::support::capture::CaptureLog,
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
