//! Capture records and their HAR export, from outside: whatever bytes a client or an upstream sends end up
//! in a record, and a capture file handed to `sidecar-proxy capture export --har` may be anything.
//!
//! - `capture_record`: the input fills one record's fields (see [`record_from_input`]). The record must
//!   encode as one JSON line, read back as the same record, and export as HAR that parses back, with the
//!   headers and body bytes it carried.
//! - `har_export`: the input is a capture file. Reading it strictly either fails naming a line, or gives
//!   records whose HAR parses back with one entry per HTTP record; reading it as `capture export` does by
//!   default never fails, and names every line it skips.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;
use sidecar_proxy::capture::har::{
    read_capture, read_records, to_har, ExportError, UnreadableLines,
};
use sidecar_proxy::capture::record::{
    Body, Detail, HttpExchange, HttpRequest, HttpResponse, Record, StreamPayload, StreamSummary,
    SCHEMA,
};

pub fn capture_record(data: &[u8]) {
    let record = record_from_input(data);
    // As the capture writer encodes it.
    let line = serde_json::to_string(&record).expect("a record encodes as JSON");
    assert!(
        !line.contains('\n'),
        "a record must stay on one line of the JSON-lines file"
    );
    let mut read = read_records(format!("{line}\n").as_bytes(), "fuzz.jsonl")
        .unwrap_or_else(|e| panic!("a record the sidecar wrote cannot be read back: {e}\n{line}"));
    assert_eq!(read.len(), 1, "one line, one record");
    // serde_json's default float parser may be one unit in the last place off (exact parsing is its
    // `float_roundtrip` feature): a duration only has to come back that close, everything else exactly.
    let duration = read[0].duration_ms;
    assert!(
        (duration - record.duration_ms).abs() <= record.duration_ms.abs() * 1e-15,
        "duration_ms {} read back as {duration}",
        record.duration_ms
    );
    read[0].duration_ms = record.duration_ms;
    assert_eq!(read, std::slice::from_ref(&record), "the record read back");
    check_har(&read);
}

pub fn har_export(data: &[u8]) {
    // Skipping (what `capture export` does by default) never fails on input in memory, and keeps at least
    // the records that refusing would have given.
    let mut named = 0;
    let skipping = read_capture(data, "fuzz.jsonl", UnreadableLines::Skip, &mut |error| {
        assert!(
            matches!(error, ExportError::Malformed { line, .. } if *line >= 1),
            "a skipped line is named by number: {error}"
        );
        named += 1;
    })
    .unwrap_or_else(|e| panic!("skipping unreadable lines failed: {e}"));
    assert_eq!(named, skipping.skipped_lines, "every skipped line is named");
    check_har(&skipping.records);
    match read_records(data, "fuzz.jsonl") {
        Ok(records) => {
            assert_eq!(skipping.skipped_lines, 0, "refusing found no bad line");
            assert_eq!(
                records, skipping.records,
                "both modes read the same records"
            );
        }
        Err(error) => {
            match &error {
                ExportError::Malformed { line, .. } | ExportError::Read { line, .. } => {
                    assert!(*line >= 1, "lines are numbered from 1")
                }
                other => panic!("reading from memory failed as if it were I/O: {other}"),
            }
            assert_eq!(error.exit_code(), 2, "bad input exits 2");
            let _ = error.to_string();
        }
    }
}

/// The HAR of `records` must be JSON that parses back, shaped as HAR 1.2 requires, with one entry per HTTP
/// record carrying its headers and body bytes.
fn check_har(records: &[Record]) {
    let export = to_har(records);
    let text = serde_json::to_string_pretty(&export.har).expect("a HAR document encodes");
    let har: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("the HAR does not parse back: {e}"));
    let log = &har["log"];
    assert_eq!(log["version"], "1.2");
    assert!(log["creator"]["name"].is_string() && log["creator"]["version"].is_string());
    assert!(log["pages"].is_array());
    let entries = log["entries"].as_array().expect("log.entries is an array");
    let exchanges = records
        .iter()
        .filter(|record| matches!(record.detail, Detail::Http(_)))
        .count();
    assert_eq!(entries.len(), exchanges, "one entry per HTTP record");
    assert_eq!(
        export.skipped_streams,
        records.len() - exchanges,
        "every other record is a skipped stream"
    );
    for entry in entries {
        check_entry(entry);
    }
    // Entries are in start order, ties in record order (a stable sort): pair them up the same way.
    let mut in_start_order: Vec<(&Record, &HttpExchange)> = records
        .iter()
        .filter_map(|record| match &record.detail {
            Detail::Http(exchange) => Some((record, exchange)),
            Detail::Stream(_) => None,
        })
        .collect();
    in_start_order.sort_by(|a, b| a.0.start.cmp(&b.0.start));
    for ((record, exchange), entry) in in_start_order.into_iter().zip(entries) {
        assert_eq!(entry["_sidecar"]["id"], record.id, "entry order");
        let request = &entry["request"];
        assert_eq!(request["method"], exchange.request.method.as_str());
        assert_eq!(request["url"], exchange.request.url.as_str());
        check_headers(&request["headers"], &exchange.request.headers);
        if exchange.request.body.size > 0 {
            check_body_text(&request["postData"], &exchange.request.body);
        }
        if let Some(response) = &exchange.response {
            assert_eq!(entry["response"]["status"], response.status);
            check_headers(&entry["response"]["headers"], &response.headers);
            check_body_text(&entry["response"]["content"], &response.body);
        }
    }
}

/// The fields HAR 1.2 requires of an entry, with the types it requires.
fn check_entry(entry: &Value) {
    let number = |value: &Value, what: &str| {
        assert!(value.is_number(), "{what} must be a number: {value}");
        value.as_f64().unwrap_or_default()
    };
    assert!(entry["startedDateTime"].is_string());
    assert!(
        number(&entry["time"], "time") >= 0.0,
        "time is never negative"
    );
    for field in ["send", "wait", "receive"] {
        assert!(number(&entry["timings"][field], field) >= 0.0, "{field}");
    }
    assert!(entry["cache"].is_object());
    let request = &entry["request"];
    for field in ["method", "url", "httpVersion"] {
        assert!(request[field].is_string(), "request.{field}");
    }
    for field in ["cookies", "headers", "queryString"] {
        assert!(request[field].is_array(), "request.{field}");
    }
    number(&request["headersSize"], "request.headersSize");
    number(&request["bodySize"], "request.bodySize");
    let response = &entry["response"];
    number(&response["status"], "response.status");
    for field in ["statusText", "httpVersion", "redirectURL"] {
        assert!(response[field].is_string(), "response.{field}");
    }
    for field in ["cookies", "headers"] {
        assert!(response[field].is_array(), "response.{field}");
    }
    assert!(response["content"]["mimeType"].is_string());
    number(&response["content"]["size"], "response.content.size");
    for cookie in request["cookies"]
        .as_array()
        .into_iter()
        .chain(response["cookies"].as_array())
        .flatten()
    {
        assert!(cookie["name"].is_string() && cookie["value"].is_string());
    }
}

/// Headers reach HAR as they were recorded: same names, values and order.
fn check_headers(har: &Value, recorded: &[(String, String)]) {
    let pairs: Vec<(&str, &str)> = har
        .as_array()
        .expect("headers are an array")
        .iter()
        .map(|pair| {
            (
                pair["name"].as_str().unwrap_or_default(),
                pair["value"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str)> = recorded
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(pairs, expected, "headers");
}

/// A body's HAR text decodes to the bytes kept: all of them, or for a body that capture cut inside a
/// character, all but that partial character.
fn check_body_text(har: &Value, body: &Body) {
    let text = har["text"].as_str().expect("a body has text");
    let decoded = match har.get("encoding").or_else(|| har.get("_encoding")) {
        Some(encoding) => {
            assert_eq!(encoding, "base64");
            STANDARD.decode(text).expect("base64 body text decodes")
        }
        None => text.as_bytes().to_vec(),
    };
    let kept = &body.base64[..];
    if body.truncated {
        assert!(
            kept.starts_with(&decoded),
            "body text is a prefix of the bytes kept"
        );
        assert!(
            kept.len() - decoded.len() < 4,
            "at most a partial character dropped"
        );
    } else {
        assert_eq!(decoded, kept, "body bytes");
    }
}

/// The record an input fills. Fields are separated by NUL bytes, in this order:
///
/// ```text
/// transport \0 target \0 method \0 url \0 request headers \0 response headers \0 error \0 body...
/// ```
///
/// Headers are `name: value` lines; the body is everything after the seventh NUL, NULs included. A
/// record with fewer fields has no response (no sixth field); an empty or missing error field is no error. With transport
/// `tcp`, `socks4`, `socks4a`, `socks5`, `connect` or `iptables` it is a stream record instead: the method
/// field is the protocol seen, the url the SNI, the error the end, and the body both payloads. Numbers
/// (ids, status, duration, sizes, flags) come from a hash of the whole input, so every input varies them.
pub fn record_from_input(data: &[u8]) -> Record {
    let fields: Vec<&[u8]> = data.splitn(8, |&b| b == 0).collect();
    let text = |index: usize| -> Option<String> {
        fields
            .get(index)
            .map(|field| String::from_utf8_lossy(field).into_owned())
    };
    let hash = fnv1a(data);
    let transport = text(0).unwrap_or_default();
    let body_bytes = Bytes::copy_from_slice(fields.get(7).copied().unwrap_or_default());
    let body = Body {
        size: body_bytes.len() as u64 + (hash >> 40 & 0xff),
        truncated: hash >> 40 & 0xff != 0,
        base64: body_bytes,
        complete: hash & 1 == 0,
    };
    let detail = if is_stream_transport(&transport) {
        Detail::Stream(StreamSummary {
            protocol_seen: text(2).unwrap_or_default(),
            bytes_client_to_target: hash >> 8 & 0xffff,
            bytes_target_to_client: hash >> 24 & 0xffff,
            sni: text(3),
            end: text(6).unwrap_or_else(|| "closed".to_owned()),
            error: text(6),
            payload: (hash & 2 == 0).then(|| StreamPayload {
                client_to_target: body.clone(),
                target_to_client: body.clone(),
            }),
        })
    } else {
        Detail::Http(HttpExchange {
            request: HttpRequest {
                method: text(2).unwrap_or_default(),
                url: text(3).unwrap_or_default(),
                version: "HTTP/1.1".to_owned(),
                headers: headers(fields.get(4).copied().unwrap_or_default()),
                body: body.clone(),
                trailers: Vec::new(),
            },
            response: fields.get(5).map(|response_headers| HttpResponse {
                status: (hash >> 48) as u16,
                version: ["HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"][(hash >> 2 & 3) as usize]
                    .to_owned(),
                headers: headers(response_headers),
                body,
                trailers: headers(fields.get(7).copied().unwrap_or_default()),
            }),
            error: text(6).filter(|error| !error.is_empty()),
            upgraded: (hash & 8 != 0).then(|| "websocket".to_owned()),
            mock: None,
        })
    };
    Record {
        schema: SCHEMA.to_owned(),
        id: hash,
        uid: format!("{hash:016x}-{hash}"),
        connection: hash.rotate_left(17),
        direction: if hash & 4 == 0 { "inbound" } else { "outbound" }.to_owned(),
        proxy_type: "dual".to_owned(),
        protocol: "http".to_owned(),
        transport,
        client: "10.0.0.7:40000".to_owned(),
        target: text(1).unwrap_or_default(),
        delivered_to: (hash & 8 == 0).then(|| "127.0.0.1:8080".to_owned()),
        caused_by: (hash & 64 == 0).then(|| format!("{:016x}-{}", hash.rotate_left(5), hash / 3)),
        tls: (hash & 16 == 0).then(|| sidecar_proxy::capture::record::TlsSession {
            sni: text(7).filter(|sni| !sni.is_empty()),
            alpn: (hash & 32 == 0).then(|| "h2".to_owned()),
            version: "TLSv1.3".to_owned(),
            upstream_version: Some("TLSv1.2".to_owned()),
        }),
        start: format!("2026-11-26T10:00:{:02}.{:06}Z", hash % 60, hash % 1_000_000),
        // As the sidecar measures it: a Duration in milliseconds, finite and non-negative.
        duration_ms: std::time::Duration::from_nanos(hash % 3_600_000_000_000).as_secs_f64()
            * 1000.0,
        detail,
    }
}

fn is_stream_transport(transport: &str) -> bool {
    ["tcp", "socks4", "socks4a", "socks5", "connect", "iptables"].contains(&transport)
}

fn headers(field: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(field)
        .split('\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            (name.to_owned(), value.trim_start().to_owned())
        })
        .collect()
}

/// FNV-1a: a cheap, stable hash, so the same input always makes the same record.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
