//! One exchange as the tap saw it, in raw form (heads as bytes or as decoded HTTP/2 fields, bounded body
//! copies), and how it becomes a `sidecar.capture/v1` record on the writer thread: the named fields, the
//! URL and redaction are built there, never on the connection's task.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::capture::record::{
    Body, Detail, HttpExchange, HttpRequest, HttpResponse, Origin, Record, Route,
};
use crate::capture::{BuildRecord, CaptureSettings, REDACTED};

/// Header fields an HTTP/1 request head may carry: more is refused (431) like a head over the size limit,
/// as hyper refuses it on the HTTP listeners (its limit is 100 too).
pub const MAX_FIELDS: usize = 100;

/// A message head as it crossed the wire.
pub enum RawHead {
    /// An HTTP/1 head: start line, fields, the blank line.
    Http1(Bytes),
    /// HTTP/2 fields as HPACK decoded them, pseudo-fields (`:method`, `:path`, `:status`) included.
    H2(Vec<(Bytes, Bytes)>),
}

/// Fields after a body.
#[derive(Default)]
pub enum RawTrailers {
    #[default]
    None,
    /// The trailer section of a chunked HTTP/1 body: `name: value` lines and the final blank line.
    Http1(Bytes),
    H2(Vec<(Bytes, Bytes)>),
}

pub struct RawMessage {
    pub head: RawHead,
    pub body: Body,
    pub trailers: RawTrailers,
}

pub struct RawExchange {
    pub id: u64,
    /// The inbound request (its record id) this outbound call was made for.
    pub caused_by: Option<u64>,
    pub origin: Arc<TapOrigin>,
    pub start: SystemTime,
    pub duration: Duration,
    pub request: RawMessage,
    pub response: Option<RawMessage>,
    pub error: Option<String>,
    pub upgraded: Option<String>,
}

/// What every record of one tapped stream shares, captured once when the tap starts so that records can be
/// built on the writer thread without holding the connection (and its open-connection gauge).
pub struct TapOrigin {
    origin: Origin,
    route: Arc<Route>,
    pub settings: Arc<CaptureSettings>,
}

impl TapOrigin {
    pub fn new(
        origin: Origin,
        route: Arc<Route>,
        settings: Arc<CaptureSettings>,
    ) -> Arc<TapOrigin> {
        Arc::new(TapOrigin {
            origin,
            route,
            settings,
        })
    }

    /// The scheme of the URLs this stream's requests were made to.
    pub fn scheme(&self) -> &'static str {
        if self.route.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn record(&self, id: u64, start: SystemTime, duration: Duration, detail: Detail) -> Record {
        self.origin
            .record(id, Route::clone(&self.route), (start, duration), detail)
    }
}

impl BuildRecord for RawExchange {
    fn build(self: Box<Self>) -> Option<Record> {
        let RawExchange {
            id,
            caused_by,
            origin,
            start,
            duration,
            request,
            response,
            error,
            upgraded,
        } = *self;
        let request = build_request(request, &origin)?;
        let response = response.and_then(|response| build_response(response, &origin));
        let detail = Detail::Http(HttpExchange {
            request,
            response,
            error,
            upgraded,
            mock: None,
        });
        let mut record = origin.record(id, start, duration, detail);
        record.caused_by = caused_by.map(crate::capture::record::record_uid);
        Some(record)
    }
}

fn build_request(message: RawMessage, origin: &TapOrigin) -> Option<HttpRequest> {
    let (method, url, version, headers) = match &message.head {
        RawHead::Http1(head) => {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let mut parsed = httparse::Request::new(&mut fields);
            parsed.parse(head).ok()?;
            let headers = named_fields(
                parsed.headers.iter().map(|h| (h.name.as_bytes(), h.value)),
                origin,
            );
            let host = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            let url = http1_url(origin.scheme(), parsed.path?, host.as_deref());
            (
                parsed.method?.to_owned(),
                url,
                http1_version(parsed.version?),
                headers,
            )
        }
        RawHead::H2(fields) => {
            let pseudo = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| &n[..] == name.as_bytes())
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            let authority = pseudo(":authority").or_else(|| pseudo("host"));
            let url = h2_url(
                origin.scheme(),
                authority.as_deref().unwrap_or(""),
                pseudo(":path").as_deref(),
            );
            let headers = named_fields(regular(fields), origin);
            (
                pseudo(":method").unwrap_or_default(),
                url,
                "HTTP/2.0".to_owned(),
                headers,
            )
        }
    };
    Some(HttpRequest {
        method,
        url,
        version,
        headers,
        body: message.body,
        trailers: trailers(message.trailers, origin),
    })
}

fn build_response(message: RawMessage, origin: &TapOrigin) -> Option<HttpResponse> {
    let (status, version, headers) = match &message.head {
        RawHead::Http1(head) => {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            let mut parsed = httparse::Response::new(&mut fields);
            parsed.parse(head).ok()?;
            let headers = named_fields(
                parsed.headers.iter().map(|h| (h.name.as_bytes(), h.value)),
                origin,
            );
            (parsed.code?, http1_version(parsed.version?), headers)
        }
        RawHead::H2(fields) => {
            let status = fields
                .iter()
                .find(|(n, _)| &n[..] == b":status")
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())?;
            (
                status,
                "HTTP/2.0".to_owned(),
                named_fields(regular(fields), origin),
            )
        }
    };
    Some(HttpResponse {
        status,
        version,
        headers,
        body: message.body,
        trailers: trailers(message.trailers, origin),
    })
}

fn trailers(raw: RawTrailers, origin: &TapOrigin) -> Vec<(String, String)> {
    match raw {
        RawTrailers::None => Vec::new(),
        RawTrailers::Http1(section) => {
            let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
            match httparse::parse_headers(&section, &mut fields) {
                Ok(httparse::Status::Complete((_, parsed))) => {
                    named_fields(parsed.iter().map(|h| (h.name.as_bytes(), h.value)), origin)
                }
                _ => Vec::new(),
            }
        }
        RawTrailers::H2(fields) => named_fields(regular(&fields), origin),
    }
}

/// HTTP/2 fields without the pseudo-fields, which the record shows as method, URL and status instead.
fn regular(fields: &[(Bytes, Bytes)]) -> impl Iterator<Item = (&[u8], &[u8])> {
    fields
        .iter()
        .filter(|(name, _)| !name.starts_with(b":"))
        .map(|(name, value)| (&name[..], &value[..]))
}

/// `[name, value]` pairs in wire order, names in lower case, redacted values replaced.
fn named_fields<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    origin: &TapOrigin,
) -> Vec<(String, String)> {
    fields
        .map(|(name, value)| {
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            let value = if origin
                .settings
                .redacted_headers
                .iter()
                .any(|redacted| redacted.as_str() == name)
            {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value).into_owned()
            };
            (name, value)
        })
        .collect()
}

fn http1_version(minor: u8) -> String {
    format!("HTTP/1.{minor}")
}

/// The request's URL in absolute form. An absolute-form target is rebuilt from its parts, so that
/// `user:password@` never reaches a record; an origin-form one is joined to the Host field; an
/// authority-form one (CONNECT) names the host with the path `/`.
fn http1_url(scheme: &str, target: &str, host: Option<&str>) -> String {
    if let Ok(uri) = target.parse::<http::Uri>() {
        if let (Some(target_scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            let scheme = if scheme == "https" {
                scheme
            } else {
                target_scheme
            };
            let port = authority
                .port()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            return format!("{scheme}://{}{port}{path}", authority.host());
        }
        if uri.path_and_query().is_none() {
            let host = host.unwrap_or(target);
            return format!("{scheme}://{host}/");
        }
    }
    format!("{scheme}://{}{target}", host.unwrap_or(""))
}

fn h2_url(scheme: &str, authority: &str, path: Option<&str>) -> String {
    // userinfo is deprecated in :authority, and never belongs in a record.
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{authority}{}", path.unwrap_or("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_absolute_and_carry_no_credentials() {
        assert_eq!(
            http1_url("http", "/a?b=1", Some("api.test:8080")),
            "http://api.test:8080/a?b=1"
        );
        assert_eq!(
            http1_url("http", "http://user:pw@api.test:81/x", Some("other")),
            "http://api.test:81/x"
        );
        assert_eq!(
            http1_url("https", "/x", Some("api.test")),
            "https://api.test/x"
        );
        assert_eq!(
            http1_url("http", "db.test:5432", Some("db.test:5432")),
            "http://db.test:5432/"
        );
        assert_eq!(
            h2_url("http", "u:p@grpc.test:50051", Some("/pkg.Svc/Call")),
            "http://grpc.test:50051/pkg.Svc/Call"
        );
    }
}
