//! Capture records for the unit tests of the HAR export: an HTTP record with sensible defaults and the
//! pieces (request, response, body) tests change one field of.

use bytes::Bytes;

use crate::capture::record::{
    Body, Detail, HttpExchange, HttpRequest, HttpResponse, Record, SCHEMA,
};

pub(super) fn body(bytes: &'static [u8]) -> Body {
    Body {
        size: bytes.len() as u64,
        truncated: false,
        base64: Bytes::from_static(bytes),
        complete: true,
    }
}

pub(super) fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

pub(super) fn http_record(id: u64, start: &str, exchange: HttpExchange) -> Record {
    Record {
        schema: SCHEMA.into(),
        id,
        uid: crate::capture::record::record_uid(id),
        connection: 40 + id,
        direction: "outbound".into(),
        proxy_type: "forward".into(),
        protocol: "http".into(),
        transport: "http".into(),
        client: "127.0.0.1:50000".into(),
        target: "api.test:80".into(),
        delivered_to: None,
        tls: None,
        caused_by: None,
        start: start.into(),
        duration_ms: 12.5,
        detail: Detail::Http(exchange),
    }
}

pub(super) fn get(url: &str) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        url: url.into(),
        version: "HTTP/1.1".into(),
        headers: headers(&[("host", "api.test")]),
        body: Body::default(),
        trailers: Vec::new(),
    }
}

pub(super) fn ok(content_type: &str, bytes: &'static [u8]) -> HttpResponse {
    HttpResponse {
        status: 200,
        version: "HTTP/1.1".into(),
        headers: headers(&[("content-type", content_type)]),
        body: body(bytes),
        trailers: Vec::new(),
    }
}
