//! `sidecar-proxy capture export --har`: the real binary turns capture JSON lines into a HAR 1.2 document.
//! The output is checked against the HAR 1.2 structure (every required field, with its JSON type; custom
//! fields only with a leading underscore) and field by field against the records it came from.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};
use sidecar_proxy::capture::record::{
    Body, Detail, HttpExchange, HttpRequest, HttpResponse, Record, StreamSummary, SCHEMA,
};

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("sidecar-har-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn export(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(["capture", "export"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn write_jsonl(path: &Path, records: &[Record]) {
    let mut text = String::new();
    for record in records {
        text.push_str(&serde_json::to_string(record).unwrap());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

// --- Records as the sidecar writes them ----------------------------------------------------------------

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn body(bytes: impl Into<Bytes>) -> Body {
    let bytes = bytes.into();
    Body {
        size: bytes.len() as u64,
        truncated: false,
        base64: bytes,
        complete: true,
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    id: u64,
    connection: u64,
    direction: &str,
    proxy_type: &str,
    transport: &str,
    target: &str,
    delivered_to: Option<&str>,
    start: &str,
    duration_ms: f64,
    detail: Detail,
) -> Record {
    Record {
        schema: SCHEMA.into(),
        id,
        uid: sidecar_proxy::capture::record::record_uid(id),
        connection,
        direction: direction.into(),
        proxy_type: proxy_type.into(),
        protocol: if transport == "socks5" {
            "socks".into()
        } else {
            "http".into()
        },
        transport: transport.into(),
        client: "10.1.2.3:51234".into(),
        target: target.into(),
        delivered_to: delivered_to.map(Into::into),
        tls: None,
        caused_by: None,
        start: start.into(),
        duration_ms,
        detail,
    }
}

/// One of each kind of exchange the sidecar records.
fn sample_records() -> Vec<Record> {
    let png: Vec<u8> = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]
        .into_iter()
        .chain((0..=255u8).cycle().take(1016))
        .collect();
    vec![
        // Forward proxy, GET with a query; credentials redacted as by default.
        record(
            1,
            7,
            "outbound",
            "forward",
            "http",
            "api.example.com:80",
            None,
            "2026-11-26T10:00:00.100000Z",
            23.25,
            Detail::Http(HttpExchange {
                request: HttpRequest {
                    method: "GET".into(),
                    url: "http://api.example.com/v1/items?page=2&q=blue%20shoes&sort=price+asc"
                        .into(),
                    version: "HTTP/1.1".into(),
                    headers: headers(&[
                        ("host", "api.example.com"),
                        ("user-agent", "curl/8.5.0"),
                        ("accept", "application/json"),
                        ("authorization", "[REDACTED]"),
                        ("cookie", "[REDACTED]"),
                    ]),
                    body: Body::default(),
                    trailers: Vec::new(),
                },
                response: Some(HttpResponse {
                    status: 200,
                    version: "HTTP/1.1".into(),
                    headers: headers(&[
                        ("content-type", "application/json; charset=utf-8"),
                        ("content-length", "27"),
                        ("set-cookie", "[REDACTED]"),
                    ]),
                    body: body(&br#"{"items":[],"page":2,"n":0}"#[..]),
                    trailers: Vec::new(),
                }),
                error: None,
                upgraded: None,
                mock: None,
            }),
        ),
        // Reverse proxy, POST with a JSON body, 201 with a Location; delivered to the app.
        record(
            2,
            8,
            "inbound",
            "reverse",
            "http",
            "shop.default.svc:4143",
            Some("127.0.0.1:8080"),
            "2026-11-26T10:00:00.200000Z",
            41.5,
            Detail::Http(HttpExchange {
                request: HttpRequest {
                    method: "POST".into(),
                    url: "http://shop.default.svc:4143/orders".into(),
                    version: "HTTP/1.1".into(),
                    headers: headers(&[
                        ("host", "shop.default.svc:4143"),
                        ("content-type", "application/json"),
                        ("content-length", "30"),
                        ("cookie", "session=abc123; theme=dark"),
                    ]),
                    body: body(&br#"{"sku":"A-17","quantity":3}  "#[..]),
                    trailers: Vec::new(),
                },
                response: Some(HttpResponse {
                    status: 201,
                    version: "HTTP/1.1".into(),
                    headers: headers(&[
                        ("location", "/orders/981"),
                        ("content-type", "application/json"),
                        (
                            "set-cookie",
                            "cart=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly",
                        ),
                    ]),
                    body: body(&br#"{"id":981}"#[..]),
                    trailers: Vec::new(),
                }),
                error: None,
                upgraded: None,
                mock: None,
            }),
        ),
        // A TLS tunnel: one stream record, nothing HAR can hold.
        record(
            3,
            9,
            "outbound",
            "forward",
            "connect",
            "secure.example.com:443",
            None,
            "2026-11-26T10:00:00.250000Z",
            350.0,
            Detail::Stream(StreamSummary {
                protocol_seen: "tls".into(),
                bytes_client_to_target: 1840,
                bytes_target_to_client: 52_113,
                sni: None,
                end: "closed".into(),
                error: None,
                payload: None,
            }),
        ),
        // Cleartext HTTP/2 seen through SOCKS5, a binary body larger than the capture limit.
        record(
            4,
            10,
            "outbound",
            "forward",
            "socks5",
            "cdn.example.com:80",
            Some("203.0.113.9:80"),
            "2026-11-26T10:00:00.300000Z",
            120.0,
            Detail::Http(HttpExchange {
                request: HttpRequest {
                    method: "GET".into(),
                    url: "http://cdn.example.com/logo.png".into(),
                    version: "HTTP/2.0".into(),
                    headers: headers(&[("accept", "image/*")]),
                    body: Body::default(),
                    trailers: Vec::new(),
                },
                response: Some(HttpResponse {
                    status: 200,
                    version: "HTTP/2.0".into(),
                    headers: headers(&[("content-type", "image/png")]),
                    body: Body {
                        size: 2_500_000,
                        truncated: true,
                        base64: Bytes::from(png),
                        complete: true,
                    },
                    trailers: Vec::new(),
                }),
                error: None,
                upgraded: None,
                mock: None,
            }),
        ),
        // The upstream refused the connection: no response.
        record(
            5,
            11,
            "outbound",
            "forward",
            "http",
            "down.example.com:80",
            None,
            "2026-11-26T10:00:00.400000Z",
            1.75,
            Detail::Http(HttpExchange {
                request: HttpRequest {
                    method: "DELETE".into(),
                    url: "http://down.example.com/things/3".into(),
                    version: "HTTP/1.1".into(),
                    headers: headers(&[("host", "down.example.com")]),
                    body: Body::default(),
                    trailers: Vec::new(),
                },
                response: None,
                error: Some(
                    "cannot connect to down.example.com:80: Connection refused (os error 111)"
                        .into(),
                ),
                upgraded: None,
                mock: None,
            }),
        ),
    ]
}

// --- A HAR 1.2 structural validator --------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Int,
    Num,
    Bool,
    Obj,
    Arr,
    /// An object or null (`cache.beforeRequest`).
    ObjOrNull,
}

/// A field of a checked object, null when missing (the checks above already reported it).
fn field<'v>(object: &'v Map<String, Value>, name: &str) -> &'v Value {
    object.get(name).unwrap_or(&Value::Null)
}

fn kind_matches(kind: Kind, value: &Value) -> bool {
    match kind {
        Kind::Str => value.is_string(),
        Kind::Int => value.is_i64() || value.is_u64(),
        Kind::Num => value.is_number(),
        Kind::Bool => value.is_boolean(),
        Kind::Obj => value.is_object(),
        Kind::Arr => value.is_array(),
        Kind::ObjOrNull => value.is_object() || value.is_null(),
    }
}

struct Validator {
    errors: Vec<String>,
}

impl Validator {
    /// Checks one HAR object: `required` and `optional` fields with their types; any other field must be a
    /// custom one (leading underscore). Returns the object for further checks.
    fn object<'v>(
        &mut self,
        path: &str,
        value: &'v Value,
        required: &[(&str, Kind)],
        optional: &[(&str, Kind)],
    ) -> Option<&'v Map<String, Value>> {
        let Some(object) = value.as_object() else {
            self.errors.push(format!("{path}: not an object"));
            return None;
        };
        for (name, kind) in required {
            match object.get(*name) {
                None => self
                    .errors
                    .push(format!("{path}.{name}: required, missing")),
                Some(v) if !kind_matches(*kind, v) => {
                    self.errors.push(format!("{path}.{name}: wrong type: {v}"))
                }
                Some(_) => {}
            }
        }
        for (name, kind) in optional {
            if let Some(v) = object.get(*name) {
                if !kind_matches(*kind, v) {
                    self.errors.push(format!("{path}.{name}: wrong type: {v}"));
                }
            }
        }
        for name in object.keys() {
            let known = required.iter().chain(optional).any(|(n, _)| n == name);
            if !known && !name.starts_with('_') {
                self.errors.push(format!(
                    "{path}.{name}: not a HAR 1.2 field (custom fields start with _)"
                ));
            }
        }
        Some(object)
    }

    fn each<'v>(&mut self, path: &str, value: &'v Value) -> Vec<(String, &'v Value)> {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (format!("{path}[{i}]"), item))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn iso8601(&mut self, path: &str, value: &Value) {
        // YYYY-MM-DDThh:mm:ss(.s+)?(Z|±hh:mm)
        let text = value.as_str().unwrap_or_default();
        let b = text.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            b.get(range)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        };
        let mut ok = b.len() >= 20
            && digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        if ok {
            let mut rest = &text[19..];
            if let Some(fraction) = rest.strip_prefix('.') {
                let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
                ok &= n > 0;
                rest = &fraction[n..];
            }
            ok &= rest == "Z"
                || (rest.len() == 6
                    && (rest.starts_with('+') || rest.starts_with('-'))
                    && rest.as_bytes()[3] == b':');
        }
        if !ok {
            self.errors.push(format!("{path}: not ISO 8601: {value}"));
        }
    }

    fn name_values(&mut self, path: &str, value: &Value) {
        for (path, item) in self.each(path, value) {
            self.object(
                &path,
                item,
                &[("name", Kind::Str), ("value", Kind::Str)],
                &[("comment", Kind::Str)],
            );
        }
    }

    fn cookies(&mut self, path: &str, value: &Value) {
        for (path, item) in self.each(path, value) {
            if let Some(cookie) = self.object(
                &path,
                item,
                &[("name", Kind::Str), ("value", Kind::Str)],
                &[
                    ("path", Kind::Str),
                    ("domain", Kind::Str),
                    ("expires", Kind::Str),
                    ("httpOnly", Kind::Bool),
                    ("secure", Kind::Bool),
                    ("comment", Kind::Str),
                ],
            ) {
                if let Some(expires) = cookie.get("expires") {
                    self.iso8601(&format!("{path}.expires"), expires);
                }
            }
        }
    }

    fn entry(&mut self, path: &str, entry: &Value) {
        let Some(fields) = self.object(
            path,
            entry,
            &[
                ("startedDateTime", Kind::Str),
                ("time", Kind::Num),
                ("request", Kind::Obj),
                ("response", Kind::Obj),
                ("cache", Kind::Obj),
                ("timings", Kind::Obj),
            ],
            &[
                ("pageref", Kind::Str),
                ("serverIPAddress", Kind::Str),
                ("connection", Kind::Str),
                ("comment", Kind::Str),
            ],
        ) else {
            return;
        };
        if let Some(started) = fields.get("startedDateTime") {
            self.iso8601(&format!("{path}.startedDateTime"), started);
        }
        let request_path = format!("{path}.request");
        if let Some(request) = self.object(
            &request_path,
            &entry["request"],
            &[
                ("method", Kind::Str),
                ("url", Kind::Str),
                ("httpVersion", Kind::Str),
                ("cookies", Kind::Arr),
                ("headers", Kind::Arr),
                ("queryString", Kind::Arr),
                ("headersSize", Kind::Int),
                ("bodySize", Kind::Int),
            ],
            &[("postData", Kind::Obj), ("comment", Kind::Str)],
        ) {
            self.cookies(
                &format!("{request_path}.cookies"),
                field(request, "cookies"),
            );
            self.name_values(
                &format!("{request_path}.headers"),
                field(request, "headers"),
            );
            self.name_values(
                &format!("{request_path}.queryString"),
                field(request, "queryString"),
            );
            if let Some(post) = request.get("postData") {
                let post_path = format!("{request_path}.postData");
                if let Some(post) = self.object(
                    &post_path,
                    post,
                    &[("mimeType", Kind::Str)],
                    &[
                        ("params", Kind::Arr),
                        ("text", Kind::Str),
                        ("comment", Kind::Str),
                    ],
                ) {
                    if let Some(params) = post.get("params") {
                        for (path, param) in self.each(&format!("{post_path}.params"), params) {
                            self.object(
                                &path,
                                param,
                                &[("name", Kind::Str)],
                                &[
                                    ("value", Kind::Str),
                                    ("fileName", Kind::Str),
                                    ("contentType", Kind::Str),
                                    ("comment", Kind::Str),
                                ],
                            );
                        }
                    }
                }
            }
        }
        let response_path = format!("{path}.response");
        if let Some(response) = self.object(
            &response_path,
            &entry["response"],
            &[
                ("status", Kind::Int),
                ("statusText", Kind::Str),
                ("httpVersion", Kind::Str),
                ("cookies", Kind::Arr),
                ("headers", Kind::Arr),
                ("content", Kind::Obj),
                ("redirectURL", Kind::Str),
                ("headersSize", Kind::Int),
                ("bodySize", Kind::Int),
            ],
            &[("comment", Kind::Str)],
        ) {
            self.cookies(
                &format!("{response_path}.cookies"),
                field(response, "cookies"),
            );
            self.name_values(
                &format!("{response_path}.headers"),
                field(response, "headers"),
            );
            self.object(
                &format!("{response_path}.content"),
                field(response, "content"),
                &[("size", Kind::Int), ("mimeType", Kind::Str)],
                &[
                    ("compression", Kind::Int),
                    ("text", Kind::Str),
                    ("encoding", Kind::Str),
                    ("comment", Kind::Str),
                ],
            );
        }
        self.object(
            &format!("{path}.cache"),
            &entry["cache"],
            &[],
            &[
                ("beforeRequest", Kind::ObjOrNull),
                ("afterRequest", Kind::ObjOrNull),
                ("comment", Kind::Str),
            ],
        );
        let timings_path = format!("{path}.timings");
        if let Some(timings) = self.object(
            &timings_path,
            &entry["timings"],
            &[
                ("send", Kind::Num),
                ("wait", Kind::Num),
                ("receive", Kind::Num),
            ],
            &[
                ("blocked", Kind::Num),
                ("dns", Kind::Num),
                ("connect", Kind::Num),
                ("ssl", Kind::Num),
                ("comment", Kind::Str),
            ],
        ) {
            // Phases are -1 (not applicable) or a duration; `time` is the sum of those that apply
            // (`ssl` is already part of `connect`).
            let mut sum = 0.0;
            for phase in [
                "blocked", "dns", "connect", "send", "wait", "receive", "ssl",
            ] {
                let Some(ms) = timings.get(phase).and_then(Value::as_f64) else {
                    continue;
                };
                let optional = !matches!(phase, "send" | "wait" | "receive");
                if ms < 0.0 && !(optional && ms == -1.0) {
                    self.errors
                        .push(format!("{timings_path}.{phase}: negative: {ms}"));
                }
                if ms >= 0.0 && phase != "ssl" {
                    sum += ms;
                }
            }
            if let Some(time) = fields.get("time").and_then(Value::as_f64) {
                if (time - sum).abs() > 1e-6 {
                    self.errors.push(format!(
                        "{path}.time: {time} is not the sum of the timings ({sum})"
                    ));
                }
            }
        }
    }

    fn har(document: &Value) -> Vec<String> {
        let mut v = Validator { errors: Vec::new() };
        if let Some(root) = v.object("$", document, &[("log", Kind::Obj)], &[]) {
            let log = field(root, "log");
            if let Some(fields) = v.object(
                "$.log",
                log,
                &[
                    ("version", Kind::Str),
                    ("creator", Kind::Obj),
                    ("entries", Kind::Arr),
                ],
                &[
                    ("browser", Kind::Obj),
                    ("pages", Kind::Arr),
                    ("comment", Kind::Str),
                ],
            ) {
                for part in ["creator", "browser"] {
                    if let Some(value) = fields.get(part) {
                        v.object(
                            &format!("$.log.{part}"),
                            value,
                            &[("name", Kind::Str), ("version", Kind::Str)],
                            &[("comment", Kind::Str)],
                        );
                    }
                }
                for (path, entry) in v.each("$.log.entries", &log["entries"]) {
                    v.entry(&path, entry);
                }
            }
        }
        v.errors
    }
}

#[test]
fn the_validator_rejects_what_har_forbids() {
    let broken = serde_json::json!({"log": {"version": "1.2", "creator": {"name": "x"}, "entries": [
        {"startedDateTime": "yesterday", "time": 5, "request": {}, "response": {"status": "200"},
         "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0, "dns": -3}, "extra": 1}
    ]}});
    let errors = Validator::har(&broken);
    for expected in [
        "$.log.creator.version: required, missing",
        "$.log.entries[0].startedDateTime: not ISO 8601",
        "$.log.entries[0].request.method: required, missing",
        "$.log.entries[0].response.status: wrong type",
        "$.log.entries[0].timings.dns: negative",
        "$.log.entries[0].time: 5 is not the sum of the timings (1)",
        "$.log.entries[0].extra: not a HAR 1.2 field",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected} not among {errors:#?}"
        );
    }
}

// --- The export ----------------------------------------------------------------------------------------

fn header_pairs(value: &Value) -> Vec<(String, String)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    headers(items)
}

#[test]
fn export_writes_valid_har_matching_the_records() {
    let dir = TempDir::new("export");
    let records = sample_records();
    // Two capture files (a rotated one and the current one), records out of start order.
    let first = dir.file("capture.jsonl.1");
    let second = dir.file("capture.jsonl");
    write_jsonl(&first, &[records[3].clone(), records[0].clone()]);
    write_jsonl(
        &second,
        &[records[2].clone(), records[1].clone(), records[4].clone()],
    );
    let har_path = dir.file("out.har");

    let out = export(&[
        "--har".as_ref(),
        "--output".as_ref(),
        har_path.as_os_str(),
        first.as_os_str(),
        second.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert!(
        stderr.contains("wrote 4 HTTP exchanges to")
            && stderr.contains("skipped 1 stream record\n"),
        "{stderr}"
    );

    // The export holds what the capture files hold: readable by their owner only, as they are.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&har_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "the HAR file is {mode:o}");

    let har: Value = serde_json::from_slice(&std::fs::read(&har_path).unwrap()).unwrap();
    let errors = Validator::har(&har);
    assert!(errors.is_empty(), "not HAR 1.2: {errors:#?}");

    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert_eq!(log["pages"], serde_json::json!([]));
    assert_eq!(log["creator"]["name"], "sidecar-proxy");
    assert_eq!(log["creator"]["version"], env!("CARGO_PKG_VERSION"));
    let entries = log["entries"].as_array().unwrap();
    let ids: Vec<u64> = entries
        .iter()
        .map(|e| e["_sidecar"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 4, 5], "sorted by start, stream skipped");

    // Every entry against its record: the fields every kind shares.
    for entry in entries {
        let id = entry["_sidecar"]["id"].as_u64().unwrap();
        let record = records.iter().find(|r| r.id == id).unwrap();
        let Detail::Http(exchange) = &record.detail else {
            panic!("record {id} is not http")
        };
        assert_eq!(entry["startedDateTime"], record.start.as_str());
        assert_eq!(entry["time"].as_f64().unwrap(), record.duration_ms);
        assert_eq!(
            entry["timings"]["wait"].as_f64().unwrap(),
            record.duration_ms
        );
        assert_eq!(entry["timings"]["send"].as_f64().unwrap(), 0.0);
        assert_eq!(entry["timings"]["receive"].as_f64().unwrap(), 0.0);
        for phase in ["blocked", "dns", "connect"] {
            assert_eq!(entry["timings"][phase].as_f64().unwrap(), -1.0, "{phase}");
        }
        assert_eq!(entry["connection"], record.connection.to_string());
        assert_eq!(entry["cache"], serde_json::json!({}));
        let sidecar = &entry["_sidecar"];
        assert_eq!(sidecar["direction"], record.direction.as_str());
        assert_eq!(sidecar["proxy_type"], record.proxy_type.as_str());
        assert_eq!(sidecar["transport"], record.transport.as_str());
        assert_eq!(sidecar["target"], record.target.as_str());
        assert_eq!(sidecar["client"], record.client.as_str());

        let request = &entry["request"];
        assert_eq!(request["method"], exchange.request.method.as_str());
        assert_eq!(request["url"], exchange.request.url.as_str());
        assert_eq!(
            request["httpVersion"],
            exchange.request.version.replace("HTTP/2.0", "HTTP/2")
        );
        assert_eq!(header_pairs(&request["headers"]), exchange.request.headers);
        assert_eq!(request["headersSize"], -1);
        assert_eq!(
            request["bodySize"].as_u64().unwrap(),
            exchange.request.body.size
        );
        if exchange.request.body.size > 0 {
            let post = &request["postData"];
            assert_eq!(
                post["text"].as_str().unwrap().as_bytes(),
                &exchange.request.body.base64[..]
            );
        }
        if let Some(response) = &exchange.response {
            let got = &entry["response"];
            assert_eq!(got["status"], response.status);
            assert_eq!(
                got["httpVersion"],
                response.version.replace("HTTP/2.0", "HTTP/2")
            );
            assert_eq!(header_pairs(&got["headers"]), response.headers);
            assert_eq!(got["bodySize"].as_u64().unwrap(), response.body.size);
            assert_eq!(got["content"]["size"].as_u64().unwrap(), response.body.size);
            let content = &got["content"];
            let kept = match content["encoding"].as_str() {
                Some("base64") => STANDARD.decode(content["text"].as_str().unwrap()).unwrap(),
                None => content["text"].as_str().unwrap().as_bytes().to_vec(),
                Some(other) => panic!("encoding {other}"),
            };
            assert_eq!(kept, response.body.base64.to_vec(), "body of {id}");
            assert!(entry.get("comment").is_none());
        }
    }

    // Record 1: query string decoded, redacted cookies not parsed, JSON text.
    let get = &entries[0];
    assert_eq!(
        header_pairs(&get["request"]["queryString"]),
        pairs(&[("page", "2"), ("q", "blue shoes"), ("sort", "price asc")])
    );
    assert_eq!(get["request"]["cookies"], serde_json::json!([]));
    assert!(get["request"].get("postData").is_none());
    assert_eq!(get["response"]["statusText"], "OK");
    assert_eq!(get["response"]["cookies"], serde_json::json!([]));
    assert_eq!(
        get["response"]["content"]["mimeType"],
        "application/json; charset=utf-8"
    );
    assert_eq!(
        get["response"]["content"]["text"],
        r#"{"items":[],"page":2,"n":0}"#
    );
    assert!(get["response"]["content"].get("encoding").is_none());
    assert_eq!(get["response"]["redirectURL"], "");
    assert!(get.get("serverIPAddress").is_none());

    // Record 2: postData, cookies both ways, Location.
    let post = &entries[1];
    assert_eq!(
        post["request"]["postData"],
        serde_json::json!({"mimeType": "application/json",
                           "text": "{\"sku\":\"A-17\",\"quantity\":3}  "})
    );
    assert_eq!(
        header_pairs(&post["request"]["cookies"]),
        pairs(&[("session", "abc123"), ("theme", "dark")])
    );
    assert_eq!(
        post["response"]["cookies"],
        serde_json::json!([{"name": "cart", "value": "", "path": "/",
                            "expires": "1970-01-01T00:00:00.000Z", "httpOnly": true}])
    );
    assert_eq!(post["response"]["statusText"], "Created");
    assert_eq!(post["response"]["redirectURL"], "/orders/981");
    assert_eq!(post["serverIPAddress"], "127.0.0.1");
    assert_eq!(post["_sidecar"]["delivered_to"], "127.0.0.1:8080");

    // Record 4: binary and truncated.
    let png = &entries[2];
    let content = &png["response"]["content"];
    assert_eq!(content["encoding"], "base64");
    assert_eq!(content["mimeType"], "image/png");
    assert_eq!(
        content["comment"],
        "body truncated by capture: 1024 of 2500000 bytes kept"
    );
    assert_eq!(png["request"]["httpVersion"], "HTTP/2");
    assert_eq!(png["response"]["httpVersion"], "HTTP/2");
    assert_eq!(png["serverIPAddress"], "203.0.113.9");

    // Record 5: no response.
    let failed = &entries[3];
    let error = "cannot connect to down.example.com:80: Connection refused (os error 111)";
    let response = &failed["response"];
    assert_eq!(response["status"], 0);
    assert_eq!(response["statusText"], "");
    assert_eq!(response["_error"], error);
    assert_eq!(response["headers"], serde_json::json!([]));
    assert_eq!(response["bodySize"], -1);
    assert_eq!(failed["comment"], error);
    assert_eq!(failed["_sidecar"]["error"], error);
    assert!(log["comment"].as_str().unwrap().contains("1 stream record"));
}

#[test]
fn export_writes_to_stdout_by_default() {
    let dir = TempDir::new("stdout");
    let input = dir.file("capture.jsonl");
    write_jsonl(&input, &sample_records()[..2]);
    let out = export(&["--har".as_ref(), input.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let har: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(Validator::har(&har), Vec::<String>::new());
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
    assert!(har["log"].get("comment").is_none());
}

/// HAR is the default (and only) format: `--har` may be left out, and is still accepted.
#[test]
fn export_writes_har_without_the_har_flag() {
    let dir = TempDir::new("default-har");
    let input = dir.file("capture.jsonl");
    write_jsonl(&input, &sample_records()[..2]);
    let without = export(&[input.as_os_str()]);
    assert!(
        without.status.success(),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    let har: Value = serde_json::from_slice(&without.stdout).unwrap();
    assert_eq!(Validator::har(&har), Vec::<String>::new());
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
    let with = export(&["--har".as_ref(), input.as_os_str()]);
    assert!(with.status.success());
    let with: Value = serde_json::from_slice(&with.stdout).unwrap();
    assert_eq!(har, with);
}

#[test]
fn an_empty_capture_is_an_empty_har() {
    let dir = TempDir::new("empty");
    let input = dir.file("capture.jsonl");
    std::fs::write(&input, "").unwrap();
    let out = export(&["--har".as_ref(), input.as_os_str()]);
    assert!(out.status.success());
    let har: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(Validator::har(&har), Vec::<String>::new());
    assert_eq!(har["log"]["entries"], serde_json::json!([]));
}

#[test]
fn with_strict_a_malformed_line_exits_2_naming_file_and_line() {
    let dir = TempDir::new("malformed");
    let input = dir.file("capture.jsonl");
    let good = serde_json::to_string(&sample_records()[0]).unwrap();
    // Line 3 is cut short, as a file copied while the sidecar was writing would be.
    std::fs::write(&input, format!("{good}\n{good}\n{}\n", &good[..40])).unwrap();
    let har_path = dir.file("out.har");
    let out = export(&[
        "--har".as_ref(),
        "--strict".as_ref(),
        "-o".as_ref(),
        har_path.as_os_str(),
        input.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "sidecar-proxy: {} line 3: not a sidecar.capture/v1 record: ",
            input.display()
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!har_path.exists(), "no HAR written for bad input");
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        1,
        "no temporary file left behind"
    );

    // Valid JSON that is not a record.
    std::fs::write(&input, format!("{good}\n{{\"hello\": \"world\"}}\n")).unwrap();
    let out = export(&["--har".as_ref(), "--strict".as_ref(), input.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("capture.jsonl line 2: "), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// A capture whose writer was cut off (a crash, a full disk) has a torn line in the middle and one at the
/// end, without its newline. The export keeps every whole record, names each torn line by file and number
/// on stderr, counts them in the summary and exits 0; `--strict` refuses the file at the first one.
#[test]
fn torn_lines_are_skipped_and_named_and_strict_refuses_them() {
    let dir = TempDir::new("torn");
    let input = dir.file("capture.jsonl");
    let records = sample_records();
    let http: Vec<&Record> = records
        .iter()
        .filter(|record| matches!(record.detail, Detail::Http(_)))
        .take(3)
        .collect();
    assert_eq!(http.len(), 3);
    let line = |record: &Record| serde_json::to_string(record).unwrap();
    let torn_middle = &line(http[1])[..60];
    let torn_end = &line(http[2])[..45];
    let text = format!(
        "{}\n{torn_middle}\n{}\n{}\n{torn_end}",
        line(http[0]),
        line(http[1]),
        line(http[2]),
    );
    std::fs::write(&input, text).unwrap();
    let har_path = dir.file("out.har");

    let out = export(&[
        "--har".as_ref(),
        "-o".as_ref(),
        har_path.as_os_str(),
        input.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    for (said, number) in lines.iter().zip([2, 5]) {
        assert!(
            said.starts_with(&format!(
                "sidecar-proxy: skipped {} line {number}: not a sidecar.capture/v1 record: ",
                input.display()
            )),
            "{stderr}"
        );
    }
    assert!(
        lines[2].ends_with("skipped 2 unreadable lines"),
        "the summary counts them: {stderr}"
    );
    let har: Value = serde_json::from_slice(&std::fs::read(&har_path).unwrap()).unwrap();
    assert_eq!(Validator::har(&har), Vec::<String>::new());
    let mut urls: Vec<&str> = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["request"]["url"].as_str().unwrap())
        .collect();
    urls.sort_unstable();
    let mut expected: Vec<&str> = http
        .iter()
        .map(|record| match &record.detail {
            Detail::Http(exchange) => exchange.request.url.as_str(),
            Detail::Stream(_) => unreachable!(),
        })
        .collect();
    expected.sort_unstable();
    assert_eq!(urls, expected, "every whole record is in the HAR");

    std::fs::remove_file(&har_path).unwrap();
    let out = export(&[
        "--har".as_ref(),
        "--strict".as_ref(),
        "-o".as_ref(),
        har_path.as_os_str(),
        input.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "sidecar-proxy: {} line 2: not a sidecar.capture/v1 record: ",
            input.display()
        )),
        "{stderr}"
    );
    assert!(!har_path.exists(), "--strict writes nothing");
}

#[test]
fn a_missing_input_exits_2() {
    let dir = TempDir::new("missing");
    let out = export(&["--har".as_ref(), dir.file("nope.jsonl").as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nope.jsonl"), "{stderr}");
}
