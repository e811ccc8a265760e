//! The bytes the capture writer writes, pinned: a set of exchanges of every kind the tap hands over (and
//! records built whole, as the HTTP listeners' hyper path and the stream relays make them) encoded the way
//! the writer encodes them, compared byte for byte with `testdata/records.golden.jsonl`.
//!
//! The golden file was written by the encoder as it was before the writer learned to encode records
//! without building them (`Record` with owned strings, serialized by serde's derive): whatever the writer
//! does to be cheaper, a capture file must not change by a byte. `UPDATE_GOLDEN=1` rewrites the file, for a
//! deliberate change of the format only (and then docs/capture.md and perhaps the schema version change
//! too).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::exchange::{RawExchange, RawHead, RawMessage, RawTrailers, TapOrigin};
use crate::capture::record::{
    record_uid, Body, Detail, FieldDifference, HttpExchange, HttpRequest, HttpResponse, MockAnswer,
    Origin, Record, Route, StreamPayload, StreamSummary, TlsSession,
};
use crate::capture::sink::encode_line;
use crate::capture::CaptureSettings;

/// Where `UPDATE_GOLDEN=1` writes the lines (the crate's directory: only Cargo runs that).
const GOLDEN_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/tap/testdata/records.golden.jsonl"
);
const GOLDEN: &str = include_str!("testdata/records.golden.jsonl");

/// Seconds since the epoch: a leap day, the last microsecond of a year, a whole second, a date past 2100.
const STARTS: [(u64, u32); 4] = [
    (1_709_210_096, 123_456_789),
    (1_767_225_599, 999_999_999),
    (1_780_000_000, 0),
    (4_107_542_400, 1_000),
];

fn at(index: usize) -> SystemTime {
    let (secs, nanos) = STARTS[index % STARTS.len()];
    SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
}

fn origin(client: &str, direction: &'static str) -> Origin {
    Origin {
        connection: 7,
        direction,
        proxy_type: "dual",
        protocol: "http",
        client: client.parse::<SocketAddr>().unwrap(),
    }
}

fn tap_origin(route: Route, client: &str) -> Arc<TapOrigin> {
    TapOrigin::new(
        origin(client, "inbound"),
        Arc::new(route),
        Arc::new(CaptureSettings::default()),
    )
}

fn body(bytes: &'static [u8], size: u64, complete: bool) -> Body {
    Body {
        size,
        truncated: size > bytes.len() as u64,
        base64: Bytes::from_static(bytes),
        complete,
    }
}

fn http1(head: &'static [u8], body: Body, trailers: Option<&'static [u8]>) -> RawMessage {
    RawMessage {
        head: RawHead::Http1(Bytes::from_static(head)),
        body,
        trailers: trailers.map_or(RawTrailers::None, |t| {
            RawTrailers::Http1(Bytes::from_static(t))
        }),
    }
}

fn h2_fields(fields: &[(&'static [u8], &'static [u8])]) -> Vec<(Bytes, Bytes)> {
    fields
        .iter()
        .map(|(n, v)| (Bytes::from_static(n), Bytes::from_static(v)))
        .collect()
}

struct Exchange {
    caused_by: Option<u64>,
    origin: Arc<TapOrigin>,
    duration: Duration,
    request: RawMessage,
    response: Option<RawMessage>,
    error: Option<&'static str>,
    upgraded: Option<&'static str>,
}

/// The tap's exchanges: what reaches the writer as raw makings.
fn raw_exchanges() -> Vec<Exchange> {
    let plain = || {
        tap_origin(
            Route::new(
                "http",
                "api.test:8080".into(),
                Some("127.0.0.1:8080".into()),
            ),
            "10.1.2.3:40000",
        )
    };
    let tls = tap_origin(
        Route::new("connect", "secure.test:443".into(), None).inside_tls(TlsSession {
            sni: Some("secure.test".into()),
            alpn: Some("http/1.1".into()),
            version: "TLSv1.3".into(),
            upstream_version: None,
        }),
        "[2001:db8::7]:51000",
    );
    vec![
        // Mixed-case names, redacted values, a text body, a keep-alive response.
        Exchange {
            caused_by: None,
            origin: plain(),
            duration: Duration::from_micros(593_124),
            request: http1(
                b"GET /a?b=1&c=\"q\" HTTP/1.1\r\nHost: api.test:8080\r\nAuthorization: Bearer x\r\nX-Quote: say \"hi\"\\ \t tab\r\nCookie: a=1\r\n\r\n",
                body(b"", 0, true),
                None,
            ),
            response: Some(http1(
                b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nSet-Cookie: s=2\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n",
                body(b"hello, world\n", 13, true),
                None,
            )),
            error: None,
            upgraded: None,
        },
        // A binary request body, a body cut inside a character, chunked trailers both ways, a cause.
        Exchange {
            caused_by: Some(41),
            origin: plain(),
            duration: Duration::from_nanos(1_107_632),
            request: http1(
                b"POST /upload HTTP/1.1\r\nHOST: api.test:8080\r\nTransfer-Encoding: chunked\r\nX-Bin: caf\xc3\xa9 \xff\xfe\r\n\r\n",
                body(b"\x1f\x8b\x08\x00\x00\x00", 70_000, true),
                Some(b"X-Checksum: abc\r\nAuthorization: no\r\n\r\n"),
            ),
            response: Some(http1(
                b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n",
                body("grü\u{df}".as_bytes().split_at(5).0, 9, false),
                Some(b"Grpc-Status: 0\r\n\r\n"),
            )),
            error: Some("the response body did not finish"),
            upgraded: None,
        },
        // Absolute form with credentials inside TLS, HTTP/1.0, no response.
        Exchange {
            caused_by: None,
            origin: tls.clone(),
            duration: Duration::ZERO,
            request: http1(
                b"GET http://user:pw@secure.test:8443/x?y HTTP/1.0\r\nHost: other\r\n\r\n",
                body(b"{\"a\":\"\\u00e9\\n\"}\n\x01", 21, true),
                None,
            ),
            response: None,
            error: Some("cannot connect: \"refused\"\n"),
            upgraded: None,
        },
        // CONNECT's authority form, a tunnel granted.
        Exchange {
            caused_by: None,
            origin: plain(),
            duration: Duration::from_millis(3),
            request: http1(
                b"CONNECT db.test:5432 HTTP/1.1\r\nHost: db.test:5432\r\n\r\n",
                body(b"", 0, true),
                None,
            ),
            response: Some(http1(
                b"HTTP/1.1 200 Connection Established\r\n\r\n",
                body(b"", 0, true),
                None,
            )),
            error: None,
            upgraded: Some("tunnel"),
        },
        // An absolute form http target without a Host, a 101, and a response head that does not parse.
        Exchange {
            caused_by: Some(1),
            origin: plain(),
            duration: Duration::from_micros(1),
            request: http1(
                b"GET http://h.test/ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
                body(b"", 0, true),
                None,
            ),
            response: Some(http1(
                b"HTTP/1.1 abc\r\n\r\n",
                body(b"", 0, true),
                None,
            )),
            error: None,
            upgraded: Some("websocket"),
        },
        // HTTP/2: pseudo-fields, userinfo in :authority, a binary body, gRPC trailers.
        Exchange {
            caused_by: None,
            origin: tls,
            duration: Duration::from_nanos(123_456_789),
            request: RawMessage {
                head: RawHead::H2(h2_fields(&[
                    (b":method", b"POST"),
                    (b":scheme", b"https"),
                    (b":authority", b"u:p@grpc.test:50051"),
                    (b":path", b"/pkg.Svc/Call"),
                    (b"content-type", b"application/grpc"),
                    (b"authorization", b"secret"),
                    (b"X-Upper", b"Value\x00\x7f"),
                ])),
                body: body(b"\x00\x00\x00\x00\x05hello", 10, true),
                trailers: RawTrailers::None,
            },
            response: Some(RawMessage {
                head: RawHead::H2(h2_fields(&[
                    (b":status", b"200"),
                    (b"content-type", b"application/grpc"),
                ])),
                body: body(b"\x00\x00\x00\x00\x00", 5, true),
                trailers: RawTrailers::H2(h2_fields(&[
                    (b"grpc-status", b"0"),
                    (b"grpc-message", b"ok \xe2\x9c\x93"),
                ])),
            }),
            error: None,
            upgraded: None,
        },
        // HTTP/2 without :authority (Host instead) or :path, and a :status that is not a number.
        Exchange {
            caused_by: None,
            origin: plain(),
            duration: Duration::from_micros(10),
            request: RawMessage {
                head: RawHead::H2(h2_fields(&[(b":method", b"GET"), (b"host", b"h2.test")])),
                body: body(b"", 0, true),
                trailers: RawTrailers::H2(h2_fields(&[(b"x-t", b"1")])),
            },
            response: Some(RawMessage {
                head: RawHead::H2(h2_fields(&[(b":status", b"2x0")])),
                body: body(b"", 0, true),
                trailers: RawTrailers::None,
            }),
            error: Some("reset"),
            upgraded: None,
        },
        // A request head that does not parse: no record at all.
        Exchange {
            caused_by: None,
            origin: plain(),
            duration: Duration::ZERO,
            request: http1(b"NOT A REQUEST\r\n\r\n", body(b"", 0, true), None),
            response: None,
            error: None,
            upgraded: None,
        },
    ]
}

/// Records built whole: a stream with payload, a refused stream, an exchange the mock answered, a record
/// from before uids existed.
fn whole_records() -> Vec<Record> {
    let base = |id: u64, detail: Detail| {
        let route = Route::new("socks5", "db.test:5432".into(), None);
        let mut record = origin("127.0.0.1:3000", "outbound").record(
            id,
            route,
            (at(id as usize), Duration::from_nanos(300_000_001)),
            detail,
        );
        record.caused_by = id.is_multiple_of(2).then(|| record_uid(id - 1));
        record
    };
    let stream = |end: &str, error: Option<&str>, payload: Option<StreamPayload>| {
        Detail::Stream(StreamSummary {
            protocol_seen: "tls".into(),
            bytes_client_to_target: 517,
            bytes_target_to_client: 4096,
            sni: Some("db.test".into()),
            end: end.into(),
            error: error.map(Into::into),
            payload,
        })
    };
    let mut old = base(104, stream("closed", None, None));
    old.uid = String::new();
    old.delivered_to = Some("10.0.0.9:5432".into());
    vec![
        base(
            101,
            stream(
                "reset",
                Some("connection reset by peer"),
                Some(StreamPayload {
                    client_to_target: body(b"\x16\x03\x01", 517, true),
                    target_to_client: body(b"+OK \"ready\"\r\n", 4096, false),
                }),
            ),
        ),
        base(102, stream("refused", Some("cannot connect"), None)),
        base(
            103,
            Detail::Http(HttpExchange {
                request: HttpRequest {
                    method: "PUT".into(),
                    url: "http://api.test/items/1".into(),
                    version: "HTTP/2.0".into(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body(b"{\"name\":\"x\"}", 12, true),
                    trailers: vec![],
                },
                response: Some(HttpResponse {
                    status: 404,
                    version: "HTTP/2.0".into(),
                    headers: vec![],
                    body: body(b"", 0, true),
                    trailers: vec![("grpc-status".into(), "5".into())],
                }),
                error: None,
                upgraded: None,
                mock: Some(Box::new(MockAnswer {
                    matched: false,
                    served_from: None,
                    nearest: Some("abc-3".into()),
                    differences: vec![FieldDifference {
                        field: "$.name".into(),
                        recorded: "\"y\"".into(),
                        actual: "\"x\"".into(),
                    }],
                })),
            }),
        ),
        old,
    ]
}

/// Every line the writer writes for the exchanges and records above, the run's random uid prefix
/// replaced by zeros.
fn encoded() -> String {
    let mut out = String::new();
    let mut push = |line: Option<Vec<u8>>| match line {
        Some(line) => out.push_str(std::str::from_utf8(&line).unwrap()),
        None => out.push_str("(no record)\n"),
    };
    for (index, exchange) in raw_exchanges().into_iter().enumerate() {
        let raw = RawExchange {
            id: 1000 + index as u64,
            caused_by: exchange.caused_by,
            origin: exchange.origin,
            start: at(index),
            duration: exchange.duration,
            request: exchange.request,
            response: exchange.response,
            error: exchange.error.map(Into::into),
            upgraded: exchange.upgraded.map(Into::into),
        };
        push(encode_line(crate::capture::sink::Makings::Encode(
            Box::new(raw),
        )));
    }
    for record in whole_records() {
        push(encode_line(crate::capture::sink::Makings::Record(
            Box::new(record),
        )));
    }
    let run = record_uid(0);
    let run = run.split_once('-').unwrap().0;
    out.replace(run, "0000000000000000")
}

#[test]
fn the_writer_writes_every_kind_of_record_byte_for_byte_as_before() {
    let lines = encoded();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN_PATH, &lines).unwrap();
        return;
    }
    for (number, (ours, golden)) in lines.lines().zip(GOLDEN.lines()).enumerate() {
        assert_eq!(ours, golden, "line {} of the golden file", number + 1);
    }
    assert_eq!(lines.lines().count(), GOLDEN.lines().count());
}
