//! Records → HAR (pure): every `kind: http` record becomes one [`Entry`], stream records are counted
//! and skipped.

use std::borrow::Borrow;
use std::net::SocketAddr;

use crate::capture::record::{Detail, HttpExchange, Record};
use crate::capture::settings::REDACTED;

use super::body::body_text;
use super::cookies::{parse_cookie_header, parse_set_cookie};
use super::model::{
    Cache, Content, Creator, Entry, Har, Log, NameValue, PostData, Request, Response,
    SidecarFields, Timings, HAR_VERSION,
};
use super::query::{parse_pairs, query_string};

/// `content.mimeType` / `postData.mimeType` when the message has no `Content-Type` (what browsers write).
pub const UNKNOWN_MIME_TYPE: &str = "x-unknown";

/// A HAR document and what went into it.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    pub har: Har,
    /// Stream records (tcp relays, SOCKS, CONNECT tunnels): HAR has no place for them.
    pub skipped_streams: usize,
}

/// Turns capture records into one HAR 1.2 document. Entries are sorted by start time (the order HAR
/// prefers), ties kept in input order.
pub fn to_har<I>(records: I) -> Export
where
    I: IntoIterator,
    I::Item: Borrow<Record>,
{
    let mut entries = Vec::new();
    let mut skipped_streams = 0;
    for record in records {
        let record = record.borrow();
        match &record.detail {
            Detail::Http(exchange) => entries.push(entry(record, exchange)),
            Detail::Stream(_) => skipped_streams += 1,
        }
    }
    // RFC 3339 UTC with fixed precision sorts as text.
    entries.sort_by(|a, b| a.started_date_time.cmp(&b.started_date_time));
    let comment = (skipped_streams > 0).then(|| {
        format!("{skipped_streams} stream record(s) skipped: HAR holds HTTP exchanges only")
    });
    Export {
        har: Har {
            log: Log {
                version: HAR_VERSION.into(),
                creator: Creator {
                    name: "sidecar-proxy".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
                pages: Vec::new(),
                entries,
                comment,
            },
        },
        skipped_streams,
    }
}

fn entry(record: &Record, exchange: &HttpExchange) -> Entry {
    let duration = if record.duration_ms.is_finite() {
        record.duration_ms.max(0.0)
    } else {
        0.0
    };
    let error = exchange.error.clone().or_else(|| {
        exchange
            .response
            .is_none()
            .then(|| "no response was received".to_owned())
    });
    let server_ip_address = record
        .delivered_to
        .as_deref()
        .unwrap_or(&record.target)
        .parse::<SocketAddr>()
        .ok()
        .map(|addr| addr.ip().to_string());
    Entry {
        started_date_time: record.start.clone(),
        time: duration,
        request: request(exchange),
        response: response(exchange, error.clone()),
        cache: Cache {},
        timings: Timings {
            blocked: -1.0,
            dns: -1.0,
            connect: -1.0,
            send: 0.0,
            wait: duration,
            receive: 0.0,
            ssl: -1.0,
        },
        server_ip_address,
        connection: record.connection.to_string(),
        comment: error.clone(),
        sidecar: SidecarFields {
            id: record.id,
            direction: record.direction.clone(),
            proxy_type: record.proxy_type.clone(),
            protocol: record.protocol.clone(),
            transport: record.transport.clone(),
            client: record.client.clone(),
            target: record.target.clone(),
            delivered_to: record.delivered_to.clone(),
            error,
        },
    }
}

fn request(exchange: &HttpExchange) -> Request {
    let request = &exchange.request;
    let cookies = header_values(&request.headers, "cookie")
        .filter(|value| *value != REDACTED)
        .flat_map(parse_cookie_header)
        .collect();
    let post_data = (request.body.size > 0).then(|| {
        let mime_type = header_value(&request.headers, "content-type")
            .unwrap_or(UNKNOWN_MIME_TYPE)
            .to_owned();
        let body = body_text(&request.body);
        let params = if body.encoding.is_none() && is_form(&mime_type) {
            parse_pairs(&body.text)
        } else {
            Vec::new()
        };
        PostData {
            mime_type,
            params,
            text: body.text,
            encoding: body.encoding,
            comment: body.comment,
        }
    });
    Request {
        method: request.method.clone(),
        url: request.url.clone(),
        http_version: http_version(&request.version),
        cookies,
        headers: name_values(&request.headers),
        query_string: query_string(&request.url),
        post_data,
        headers_size: -1,
        body_size: size(request.body.size),
    }
}

fn response(exchange: &HttpExchange, error: Option<String>) -> Response {
    let Some(response) = &exchange.response else {
        // What browsers write for a request that got no response.
        return Response {
            status: 0,
            status_text: String::new(),
            http_version: String::new(),
            cookies: Vec::new(),
            headers: Vec::new(),
            content: Content {
                size: 0,
                mime_type: UNKNOWN_MIME_TYPE.into(),
                text: None,
                encoding: None,
                comment: None,
            },
            redirect_url: String::new(),
            headers_size: -1,
            body_size: -1,
            comment: error.clone(),
            error,
        };
    };
    let cookies = header_values(&response.headers, "set-cookie")
        .filter(|value| *value != REDACTED)
        .filter_map(parse_set_cookie)
        .collect();
    let body = body_text(&response.body);
    Response {
        status: response.status,
        status_text: http::StatusCode::from_u16(response.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or_default()
            .to_owned(),
        http_version: http_version(&response.version),
        cookies,
        headers: name_values(&response.headers),
        content: Content {
            size: size(response.body.size),
            mime_type: header_value(&response.headers, "content-type")
                .unwrap_or(UNKNOWN_MIME_TYPE)
                .to_owned(),
            text: Some(body.text),
            encoding: body.encoding,
            comment: body.comment,
        },
        redirect_url: header_value(&response.headers, "location")
            .unwrap_or_default()
            .to_owned(),
        headers_size: -1,
        body_size: size(response.body.size),
        comment: error.clone(),
        error,
    }
}

/// The record's `HTTP/2.0` as browsers write it (`HTTP/2`), which is what HAR readers such as
/// mitmproxy recognise; HTTP/1.x unchanged.
fn http_version(version: &str) -> String {
    match version {
        "HTTP/2.0" => "HTTP/2".into(),
        "HTTP/3.0" => "HTTP/3".into(),
        other => other.into(),
    }
}

fn size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn name_values(headers: &[(String, String)]) -> Vec<NameValue> {
    headers
        .iter()
        .map(|(name, value)| NameValue {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

pub(super) fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

pub(super) fn header_value<'a>(headers: &'a [(String, String)], name: &'a str) -> Option<&'a str> {
    header_values(headers, name).next()
}

fn is_form(mime_type: &str) -> bool {
    mime_type.split(';').next().is_some_and(|essence| {
        essence
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::har::fixtures::{body, get, headers, http_record, ok};
    use crate::capture::record::{Body, StreamSummary};
    use bytes::Bytes;
    use serde_json::{json, Value};

    fn single(record: Record) -> Value {
        let export = to_har([record]);
        assert_eq!(export.har.log.entries.len(), 1);
        serde_json::to_value(&export.har.log.entries[0]).unwrap()
    }

    #[test]
    fn the_log_names_its_version_and_creator() {
        let export = to_har(Vec::<Record>::new());
        let value = serde_json::to_value(&export.har).unwrap();
        assert_eq!(value["log"]["version"], "1.2");
        assert_eq!(value["log"]["creator"]["name"], "sidecar-proxy");
        assert_eq!(
            value["log"]["creator"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value["log"]["entries"], json!([]));
        assert_eq!(value["log"]["pages"], json!([]));
        assert!(value["log"].get("comment").is_none());
    }

    #[test]
    fn a_get_maps_every_required_field() {
        let record = http_record(
            1,
            "2026-11-26T10:00:00.000001Z",
            HttpExchange {
                request: get("http://api.test/v1/items?id=7&q=a%20b+c&flag#frag"),
                response: Some(ok("application/json", br#"{"ok":true}"#)),
                error: None,
                upgraded: None,
                mock: None,
            },
        );
        let entry = single(record);
        assert_eq!(entry["startedDateTime"], "2026-11-26T10:00:00.000001Z");
        assert_eq!(entry["time"], 12.5);
        assert_eq!(entry["connection"], "41");
        assert_eq!(entry["cache"], json!({}));
        assert_eq!(
            entry["timings"],
            json!({"blocked": -1.0, "dns": -1.0, "connect": -1.0, "send": 0.0, "wait": 12.5,
                   "receive": 0.0, "ssl": -1.0})
        );
        let request = &entry["request"];
        assert_eq!(request["method"], "GET");
        assert_eq!(request["httpVersion"], "HTTP/1.1");
        assert_eq!(
            request["headers"],
            json!([{"name": "host", "value": "api.test"}])
        );
        assert_eq!(
            request["queryString"],
            json!([{"name": "id", "value": "7"}, {"name": "q", "value": "a b c"},
                   {"name": "flag", "value": ""}])
        );
        assert_eq!(request["cookies"], json!([]));
        assert!(request.get("postData").is_none());
        assert_eq!(request["headersSize"], -1);
        assert_eq!(request["bodySize"], 0);
        let response = &entry["response"];
        assert_eq!(response["status"], 200);
        assert_eq!(response["statusText"], "OK");
        assert_eq!(
            response["content"],
            json!({"size": 11, "mimeType": "application/json", "text": "{\"ok\":true}"})
        );
        assert_eq!(response["redirectURL"], "");
        assert_eq!(response["bodySize"], 11);
        assert_eq!(response["headersSize"], -1);
        assert_eq!(entry["_sidecar"]["direction"], "outbound");
        assert_eq!(entry["_sidecar"]["transport"], "http");
        assert_eq!(entry["_sidecar"]["target"], "api.test:80");
        assert!(entry.get("serverIPAddress").is_none());
        assert!(entry.get("comment").is_none());
    }

    #[test]
    fn a_form_post_has_post_data_with_params() {
        let mut request = get("http://api.test/login");
        request.method = "POST".into();
        request.headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        request.body = body(b"user=ann&note=hi%21+there");
        let entry = single(http_record(
            2,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(ok("text/plain", b"")),
                error: None,
                upgraded: None,
                mock: None,
            },
        ));
        assert_eq!(
            entry["request"]["postData"],
            json!({"mimeType": "application/x-www-form-urlencoded",
                   "params": [{"name": "user", "value": "ann"}, {"name": "note", "value": "hi! there"}],
                   "text": "user=ann&note=hi%21+there"})
        );
        assert_eq!(entry["request"]["bodySize"], 25);
        assert_eq!(entry["response"]["content"]["text"], "");
    }

    #[test]
    fn binary_bodies_are_base64_and_truncation_is_noted() {
        let mut request = get("http://api.test/upload");
        request.method = "PUT".into();
        request.body = Body {
            size: 1000,
            truncated: true,
            base64: Bytes::from_static(&[0xff, 0x00, 0x01]),
            complete: true,
        };
        let mut response = ok("image/png", b"");
        response.body = Body {
            size: 4,
            truncated: false,
            base64: Bytes::from_static(&[0x89, b'P', b'N', b'G']),
            complete: false,
        };
        let entry = single(http_record(
            3,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(response),
                error: None,
                upgraded: None,
                mock: None,
            },
        ));
        let post = &entry["request"]["postData"];
        assert_eq!(post["mimeType"], UNKNOWN_MIME_TYPE);
        assert_eq!(post["text"], "/wAB");
        assert_eq!(post["_encoding"], "base64");
        assert_eq!(
            post["comment"],
            "body truncated by capture: 3 of 1000 bytes kept"
        );
        assert_eq!(entry["request"]["bodySize"], 1000);
        let content = &entry["response"]["content"];
        assert_eq!(content["text"], "iVBORw==");
        assert_eq!(content["encoding"], "base64");
        assert_eq!(
            content["comment"],
            "body incomplete: the transfer did not finish"
        );
    }

    #[test]
    fn a_failed_exchange_has_status_zero_and_the_error() {
        let mut record = http_record(
            4,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request: get("http://down.test/"),
                response: None,
                error: Some("cannot connect to down.test:80: connection refused".into()),
                upgraded: None,
                mock: None,
            },
        );
        record.delivered_to = Some("10.0.0.9:80".into());
        let entry = single(record);
        let response = &entry["response"];
        assert_eq!(response["status"], 0);
        assert_eq!(response["statusText"], "");
        assert_eq!(response["httpVersion"], "");
        assert_eq!(
            response["_error"],
            "cannot connect to down.test:80: connection refused"
        );
        assert_eq!(response["comment"], response["_error"]);
        assert_eq!(entry["comment"], response["_error"]);
        assert_eq!(entry["_sidecar"]["error"], response["_error"]);
        assert_eq!(entry["_sidecar"]["delivered_to"], "10.0.0.9:80");
        assert_eq!(entry["serverIPAddress"], "10.0.0.9");
        assert_eq!(
            response["content"],
            json!({"size": 0, "mimeType": "x-unknown"})
        );
        assert_eq!(response["bodySize"], -1);
    }

    #[test]
    fn cookies_are_parsed_unless_redacted() {
        let mut request = get("http://api.test/");
        request.headers.push(("cookie".into(), "a=1; b=two".into()));
        request.headers.push(("cookie".into(), "c=3".into()));
        let mut response = ok("text/html; charset=utf-8", b"<p>");
        response.status = 302;
        response.headers.extend(headers(&[
            ("location", "/next"),
            (
                "set-cookie",
                "sid=xyz; Path=/; Domain=api.test; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Secure",
            ),
            ("set-cookie", "theme=dark"),
        ]));
        let entry = single(http_record(
            5,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(response),
                error: None,
                upgraded: None,
                mock: None,
            },
        ));
        assert_eq!(
            entry["request"]["cookies"],
            json!([{"name": "a", "value": "1"}, {"name": "b", "value": "two"},
                   {"name": "c", "value": "3"}])
        );
        assert_eq!(
            entry["response"]["cookies"],
            json!([{"name": "sid", "value": "xyz", "path": "/", "domain": "api.test",
                    "expires": "2026-10-21T07:28:00.000Z", "httpOnly": true, "secure": true},
                   {"name": "theme", "value": "dark"}])
        );
        assert_eq!(entry["response"]["statusText"], "Found");
        assert_eq!(entry["response"]["redirectURL"], "/next");
        assert_eq!(
            entry["response"]["content"]["mimeType"],
            "text/html; charset=utf-8"
        );

        let mut request = get("http://api.test/");
        request.headers.push(("cookie".into(), REDACTED.into()));
        let mut response = ok("text/plain", b"");
        response
            .headers
            .push(("set-cookie".into(), REDACTED.into()));
        let entry = single(http_record(
            6,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(response),
                error: None,
                upgraded: None,
                mock: None,
            },
        ));
        assert_eq!(entry["request"]["cookies"], json!([]));
        assert_eq!(entry["response"]["cookies"], json!([]));
        // The header itself is still listed, as recorded.
        assert_eq!(entry["request"]["headers"][1]["value"], REDACTED);
    }

    #[test]
    fn stream_records_are_skipped_and_entries_sorted_by_start() {
        let stream = Record {
            detail: Detail::Stream(StreamSummary {
                protocol_seen: "tls".into(),
                bytes_client_to_target: 10,
                bytes_target_to_client: 20,
                sni: None,
                end: "closed".into(),
                error: None,
                payload: None,
            }),
            ..http_record(
                9,
                "2026-11-26T09:00:00.000000Z",
                HttpExchange {
                    request: get("http://x/"),
                    response: None,
                    error: None,
                    upgraded: None,
                    mock: None,
                },
            )
        };
        let later = http_record(
            1,
            "2026-11-26T10:00:02.000000Z",
            HttpExchange {
                request: get("http://api.test/later"),
                response: Some(ok("text/plain", b"b")),
                error: None,
                upgraded: None,
                mock: None,
            },
        );
        let earlier = http_record(
            2,
            "2026-11-26T10:00:01.000000Z",
            HttpExchange {
                request: get("http://api.test/earlier"),
                response: Some(ok("text/plain", b"a")),
                error: None,
                upgraded: None,
                mock: None,
            },
        );
        let export = to_har(vec![later, stream, earlier]);
        assert_eq!(export.skipped_streams, 1);
        let urls: Vec<_> = export
            .har
            .log
            .entries
            .iter()
            .map(|e| e.request.url.as_str())
            .collect();
        assert_eq!(urls, ["http://api.test/earlier", "http://api.test/later"]);
        assert_eq!(
            export.har.log.comment.as_deref(),
            Some("1 stream record(s) skipped: HAR holds HTTP exchanges only")
        );
    }
}
