//! The capture record, schema `sidecar.capture/v1`: one JSON object per line, one line per HTTP exchange or
//! per opaque stream. docs/capture.md is the user-facing description; change both together, and bump the
//! schema version for anything a reader could trip over (a removed or renamed field, a changed meaning).
//!
//! The fields every record shares come from two values made before any record: the connection's
//! [`Origin`] (made at accept) and the [`Route`] its bytes took (made where its handler classifies it).
//!
//! These types are read with serde's derive; a record is written by one encoder only,
//! `capture/record_view.rs`, which leaves absent optional fields out (`Record` and `Body` serialize
//! through it too).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A record's `tls` field: produced by tls-out, part of the schema.
pub use crate::tls_out::TlsSession;

/// Written into every record so readers can tell formats apart.
pub const SCHEMA: &str = "sidecar.capture/v1";

/// Serialized through [`Record::view`] (`capture::record_view`), the way the writer encodes every record.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Record {
    pub schema: String,
    /// Unique within one sidecar process, in the order records were started.
    pub id: u64,
    /// Unique across processes, restarts and pods: the run's random prefix and `id`
    /// (`9f3c2a1b7d4e6f80-42`). What a record is named by outside its file (the NATS message id, a
    /// mock's `served_from`). Empty in captures written before it existed.
    #[serde(default)]
    pub uid: String,
    /// The client connection the record belongs to; exchanges on one keep-alive connection share it.
    pub connection: u64,
    /// `inbound` (callers → app: reverse proxy or PREROUTING redirect) or `outbound` (app → anywhere:
    /// forward proxy or OUTPUT redirect).
    pub direction: String,
    /// The sidecar's `proxy-type`.
    pub proxy_type: String,
    /// The listener's protocol: `tcp`, `http`, `socks`, or `transparent`.
    pub protocol: String,
    /// How the bytes reached the sidecar: `http`, `connect`, `socks4`, `socks4a`, `socks5`, `tcp`, or
    /// `iptables` (a redirected connection).
    pub transport: String,
    /// The client's address, `ip:port`.
    pub client: String,
    /// The destination as the client named it (host names kept).
    pub target: String,
    /// Where the sidecar really delivered, when that differs from `target` (a reverse proxy always delivers
    /// to the app).
    #[serde(default)]
    pub delivered_to: Option<String>,
    /// Present when the sidecar terminated the client's TLS (tls-out) and recorded what was inside.
    #[serde(default)]
    pub tls: Option<TlsSession>,
    /// Outbound, in dual and transparent modes: the `uid` of the inbound request the app was serving when
    /// it made this call (by W3C `traceparent`, else the only inbound request in flight; see
    /// [`crate::capture::causes`]).
    #[serde(default)]
    pub caused_by: Option<String>,
    /// RFC 3339, UTC, microseconds.
    pub start: String,
    pub duration_ms: f64,
    #[serde(flatten)]
    pub detail: Detail,
}

impl Record {
    /// The record's JSON line (without its `\n`), appended to `line`: what the capture writer writes.
    pub fn write_json(&self, line: &mut Vec<u8>) {
        self.view().write(line);
    }
}

/// As [`Record::write_json`] writes it: serde_json writes those very bytes; other serializers (and
/// `serde_json::to_value`) get the same JSON, read back.
impl Serialize for Record {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut line = Vec::with_capacity(1024);
        self.write_json(&mut line);
        written_json(line, serializer)
    }
}

/// Hands JSON this module wrote to `serializer` as it is.
fn written_json<S: serde::Serializer>(json: Vec<u8>, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let json = String::from_utf8(json).map_err(S::Error::custom)?;
    serde_json::value::RawValue::from_string(json)
        .map_err(S::Error::custom)?
        .serialize(serializer)
}

impl Record {
    /// What names the record elsewhere (replay reports, the mock field): its `uid`, or its `id` in a
    /// capture written before records had one.
    pub fn name(&self) -> String {
        if self.uid.is_empty() {
            self.id.to_string()
        } else {
            self.uid.clone()
        }
    }
}

/// The client connection a record belongs to and the listener that accepted it.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    pub connection: u64,
    pub direction: &'static str,
    pub proxy_type: &'static str,
    pub protocol: &'static str,
    pub client: SocketAddr,
}

impl Origin {
    /// A record of this connection: the fields every kind shares, filled in from the origin.
    pub(crate) fn record(
        &self,
        id: u64,
        route: Route,
        started: (SystemTime, Duration),
        detail: Detail,
    ) -> Record {
        Record {
            schema: SCHEMA.to_owned(),
            id,
            uid: record_uid(id),
            connection: self.connection,
            direction: self.direction.to_owned(),
            proxy_type: self.proxy_type.to_owned(),
            protocol: self.protocol.to_owned(),
            transport: route.transport.to_owned(),
            client: self.client.to_string(),
            target: route.target,
            delivered_to: route.delivered_to,
            tls: route.tls,
            caused_by: None,
            start: humantime::format_rfc3339_micros(started.0).to_string(),
            duration_ms: started.1.as_secs_f64() * 1000.0,
            detail,
        }
    }
}

/// How a connection's bytes reached the sidecar and where they were going. Decided once, where the
/// connection is classified (its listener's handler, or each request on an HTTP listener), and handed to
/// the relay, the tap and the records alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `http`, `connect`, `socks4`, `socks4a`, `socks5`, `tcp`, or `iptables` (a redirected connection).
    pub transport: &'static str,
    /// The destination as the client named it (the CONNECT or SOCKS target, the app for a tcp relay, the
    /// original destination of a redirected connection), host names kept.
    pub target: String,
    /// Where the sidecar really delivered, when that differs from `target`.
    pub delivered_to: Option<String>,
    /// The TLS the sidecar terminated around these bytes (tls-out), when it did.
    pub tls: Option<TlsSession>,
}

impl Route {
    pub fn new(transport: &'static str, target: String, delivered_to: Option<String>) -> Route {
        Route {
            transport,
            target,
            delivered_to,
            tls: None,
        }
    }

    /// The same route inside the TLS the sidecar terminated (tls-out): what was decrypted is recorded with
    /// the session.
    pub fn inside_tls(&self, session: TlsSession) -> Route {
        Route {
            tls: Some(session),
            ..self.clone()
        }
    }

    /// The host part of the target (`host:port`, `[v6]:port`).
    pub fn target_host(&self) -> &str {
        let target = self.target.as_str();
        let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }
}

static NEXT_RECORD: AtomicU64 = AtomicU64::new(1);

/// A fresh record id: ids follow the order records were started.
pub(crate) fn next_record_id() -> u64 {
    NEXT_RECORD.fetch_add(1, Ordering::Relaxed)
}

/// The uid of this process's record `id`: 64 random bits drawn once per run, then the id. Random rather
/// than pod name and start time, because a restarted container keeps its pod name and clocks repeat;
/// two runs share a prefix with odds of one in 2^32 only after 2^32 runs.
pub fn record_uid(id: u64) -> String {
    format!("{}-{id}", record_run())
}

/// The random part of this process's record uids (see [`record_uid`]).
pub fn record_run() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without an entropy source the process cannot do TLS either; the clock is the last resort.
        if getrandom::getrandom(&mut bytes).is_err() {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            bytes = (now.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(40))
                .to_be_bytes();
        }
        format!("{:016x}", u64::from_be_bytes(bytes))
    })
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    Http(HttpExchange),
    Stream(StreamSummary),
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HttpExchange {
    pub request: HttpRequest,
    /// Absent when no response head arrived.
    #[serde(default)]
    pub response: Option<HttpResponse>,
    /// Why the exchange failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// The exchange turned the connection into something else and the bytes after it were relayed
    /// without being recorded: the protocol a `101 Switching Protocols` named (`websocket`, `h2c`), or
    /// `tunnel` after a `2xx` answer to CONNECT.
    #[serde(default)]
    pub upgraded: Option<String>,
    /// Present when the sidecar's mock (`--mock CAPTURE`) answered instead of the network. Boxed: rare,
    /// and every record would otherwise carry its size.
    #[serde(default)]
    pub mock: Option<Box<MockAnswer>>,
}

/// How the mock answered an exchange: from which recorded exchange, or, when none matched, which one was
/// nearest and how the request differed from it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct MockAnswer {
    /// A recorded exchange matched the request.
    pub matched: bool,
    /// The recorded exchange the answer was served from (its `uid`, or its `id` in older captures).
    #[serde(default)]
    pub served_from: Option<String>,
    /// Unmatched: the recorded exchange nearest to the request.
    #[serde(default)]
    pub nearest: Option<String>,
    /// Unmatched: the fields in which the request differs from the nearest recorded one.
    #[serde(default)]
    pub differences: Vec<FieldDifference>,
}

/// One field in which two messages differ: `status`, `header NAME`, `query NAME`, `body`, or a JSON
/// path (`$.items[0].name`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDifference {
    pub field: String,
    /// The recorded value, shortened; `(absent)` when the recording had none.
    pub recorded: String,
    /// The value it was compared with, shortened; `(absent)` when there was none.
    pub actual: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    /// Absolute URL: `http://host/path?query`.
    pub url: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// `[name, value]` pairs as received, names in lower case; redacted values read `[REDACTED]`.
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Fields sent after the body (chunked trailers, HTTP/2 trailing HEADERS), as `headers`.
    #[serde(default)]
    pub trailers: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HttpResponse {
    pub status: u16,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Fields sent after the body: gRPC's `grpc-status` and `grpc-message` arrive here.
    #[serde(default)]
    pub trailers: Vec<(String, String)>,
}

/// A body, or a stream's payload: the first bytes (up to the capture limit) and the full length.
///
/// Written with a `text` field beside `base64` when the kept bytes are UTF-8 (see [`Body::text`]), so `jq`
/// alone reads text bodies. `text` is derived from `base64`, so reading ignores it; it is an addition within
/// v1, which readers that ignore unknown fields (this one does) take in their stride.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Body {
    /// Every byte that passed, captured or not.
    pub size: u64,
    /// True when `size` is larger than what was kept.
    pub truncated: bool,
    /// The kept bytes, standard base64.
    #[serde(deserialize_with = "base64_bytes::deserialize")]
    pub base64: Bytes,
    /// False when the body did not end normally (a peer reset or the exchange failed mid-body).
    #[serde(default = "yes")]
    pub complete: bool,
}

fn yes() -> bool {
    true
}

impl Body {
    /// The kept bytes as text, when they are UTF-8. A body the capture limit cut inside a character is
    /// still text, without the partial character (its bytes stay whole in `base64`).
    pub fn text(&self) -> Option<&str> {
        match std::str::from_utf8(&self.base64) {
            Ok(text) => Some(text),
            Err(e) if self.truncated && e.error_len().is_none() => {
                std::str::from_utf8(&self.base64[..e.valid_up_to()]).ok()
            }
            Err(_) => None,
        }
    }
}

/// As [`Body::write`] writes it (see [`Record`]'s `Serialize`).
impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut json = Vec::with_capacity(64 + self.base64.len() * 3);
        self.write(&mut json);
        written_json(json, serializer)
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StreamSummary {
    /// What the first bytes looked like: `tls`, `http`, `http2`, `opaque` or `none` (nothing was sent).
    pub protocol_seen: String,
    pub bytes_client_to_target: u64,
    pub bytes_target_to_client: u64,
    /// The server name a TLS client asked for (SNI), when the stream opened with a ClientHello carrying one.
    #[serde(default)]
    pub sni: Option<String>,
    /// `closed` (both sides finished), `reset` (a peer reset or the relay failed), or `refused` (the target
    /// could not be reached: see `error`).
    pub end: String,
    #[serde(default)]
    pub error: Option<String>,
    /// The payload each way, when `--capture-payload` is on.
    #[serde(default)]
    pub payload: Option<StreamPayload>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct StreamPayload {
    pub client_to_target: Body,
    pub target_to_client: Body,
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_a_round_trip_through_json() {
        let record = Record {
            schema: SCHEMA.into(),
            id: 7,
            uid: record_uid(7),
            connection: 3,
            direction: "outbound".into(),
            proxy_type: "forward".into(),
            protocol: "http".into(),
            transport: "http".into(),
            client: "127.0.0.1:40000".into(),
            target: "api.test:80".into(),
            delivered_to: None,
            tls: Some(TlsSession {
                sni: Some("api.test".into()),
                alpn: Some("h2".into()),
                version: "TLSv1.3".into(),
                upstream_version: Some("TLSv1.2".into()),
            }),
            caused_by: Some(record_uid(5)),
            start: "2026-11-26T10:00:00.000000Z".into(),
            duration_ms: 1.5,
            detail: Detail::Http(HttpExchange {
                request: HttpRequest {
                    method: "POST".into(),
                    url: "http://api.test/v1".into(),
                    version: "HTTP/1.1".into(),
                    headers: vec![("host".into(), "api.test".into())],
                    body: Body {
                        size: 5,
                        truncated: false,
                        base64: Bytes::from_static(b"hello"),
                        complete: true,
                    },
                    trailers: vec![("x-checksum".into(), "abc".into())],
                },
                response: None,
                error: Some("cannot connect".into()),
                upgraded: None,
                mock: None,
            }),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains(r#""kind":"http""#), "{line}");
        assert!(
            line.contains(r#""base64":"aGVsbG8=","complete":true,"text":"hello"}"#),
            "{line}"
        );
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), record);
    }

    fn kept(bytes: &'static [u8], truncated: bool) -> Body {
        Body {
            size: bytes.len() as u64 + u64::from(truncated),
            truncated,
            base64: Bytes::from_static(bytes),
            complete: true,
        }
    }

    #[test]
    fn text_is_written_beside_base64_only_for_utf8() {
        let json = |body: &Body| serde_json::to_value(body).unwrap();
        assert_eq!(json(&kept("grüße\n".as_bytes(), false))["text"], "grüße\n");
        assert!(json(&kept(b"\x1f\x8b\x08\x00", false))
            .get("text")
            .is_none());
        assert!(json(&kept(b"", false)).get("text").is_some());
        // Cut inside the "ß" by the capture limit: text up to it; base64 keeps every byte.
        let cut = kept(&"grüß".as_bytes()[..5], true);
        assert_eq!(json(&cut)["text"], "grü");
        assert_eq!(json(&cut)["base64"], "Z3LDvMM=");
        // The same bytes in a body that ended there are not text.
        assert!(json(&kept(&"grüß".as_bytes()[..5], false))
            .get("text")
            .is_none());
    }

    #[test]
    fn readers_take_text_and_fields_they_do_not_know_in_their_stride() {
        let body: Body = serde_json::from_str(
            r#"{"size":2,"truncated":false,"base64":"aGk=","complete":true,"text":"not what base64 says","later":1}"#,
        )
        .unwrap();
        assert_eq!(&body.base64[..], b"hi");
    }

    #[test]
    fn uids_share_the_run_and_differ_by_id() {
        let (a, b) = (record_uid(1), record_uid(2));
        let (run_a, id_a) = a.split_once('-').unwrap();
        let (run_b, id_b) = b.split_once('-').unwrap();
        assert_eq!(run_a, run_b);
        assert_eq!(run_a.len(), 16, "{a}");
        assert!(run_a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_eq!((id_a, id_b), ("1", "2"));
    }

    #[test]
    fn a_record_written_before_uids_existed_reads_with_an_empty_uid() {
        let line = r#"{"schema":"sidecar.capture/v1","id":2,"connection":2,"direction":"outbound","proxy_type":"dual","protocol":"http","transport":"connect","client":"127.0.0.1:40112","target":"api.test:443","start":"2026-11-26T11:02:03.200000Z","duration_ms":1.0,"kind":"stream","protocol_seen":"tls","bytes_client_to_target":1,"bytes_target_to_client":2,"end":"closed"}"#;
        let record: Record = serde_json::from_str(line).unwrap();
        assert_eq!(record.uid, "");
        assert!(!serde_json::to_string(&record).unwrap().contains("uid"));
    }

    #[test]
    fn the_host_of_a_target() {
        let host = |target: &str| {
            Route::new("tcp", target.to_owned(), None)
                .target_host()
                .to_owned()
        };
        assert_eq!(host("api.example.test:443"), "api.example.test");
        assert_eq!(host("10.0.0.7:443"), "10.0.0.7");
        assert_eq!(host("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(host("no-port"), "no-port");
    }
}
