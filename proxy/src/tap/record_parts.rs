//! How a raw head reads as a record's request or response: method, absolute URL, version, status, and the
//! fields in wire order with names in lower case and redacted values replaced. Everything is borrowed from
//! the head where it can be (a name with capitals is lowered on a stack buffer as it is written; a URL is
//! joined as it is written), so writing a record allocates only in the rare cases (trailers, an
//! absolute-form target, bytes that are not UTF-8).

use std::borrow::Cow;
use std::mem::MaybeUninit;

use bytes::Bytes;
use http::HeaderName;

use super::exchange::{RawHead, RawMessage, RawTrailers, TapOrigin, MAX_FIELDS};
use crate::capture::json_line::PairList;
use crate::capture::record_view::{FieldList, RequestView, ResponseView, Url};
use crate::capture::REDACTED;

/// A head's (or trailer section's) fields as the record writes them.
pub struct RawFields<'a> {
    fields: Fields<'a>,
    redacted: &'a [HeaderName],
}

enum Fields<'a> {
    Http1(&'a [httparse::Header<'a>]),
    /// HTTP/2 fields; the pseudo-fields are left out (the record shows them as method, URL and status).
    H2(&'a [(Bytes, Bytes)]),
}

/// Parses `message`'s head as a request, its fields into `fields` (trailers into `trailers`); `None` when
/// the head does not parse (then there is no record).
pub fn request_view<'a>(
    message: &'a RawMessage,
    origin: &'a TapOrigin,
    fields: &'a mut [MaybeUninit<httparse::Header<'a>>; MAX_FIELDS],
    trailers: &'a mut Vec<httparse::Header<'a>>,
) -> Option<RequestView<'a, RawFields<'a>>> {
    let redacted = &origin.settings.redacted_headers[..];
    let (method, url, version, headers) = match &message.head {
        RawHead::Http1(head) => {
            let mut parsed = httparse::Request::new(&mut []);
            parsed.parse_with_uninit_headers(head, fields).ok()?;
            let headers: &'a [httparse::Header<'a>] = parsed.headers;
            let host = headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| h.value);
            let url = http1_url(origin.scheme(), parsed.path?, host);
            (
                Cow::Borrowed(parsed.method?),
                url,
                http1_version(parsed.version?),
                Fields::Http1(headers),
            )
        }
        RawHead::H2(all) => {
            let pseudo = |name: &str| {
                all.iter()
                    .find(|(n, _)| &n[..] == name.as_bytes())
                    .map(|(_, v)| &v[..])
            };
            let authority = pseudo(":authority").or_else(|| pseudo("host"));
            let url = h2_url(origin.scheme(), authority.unwrap_or(b""), pseudo(":path"));
            let method = pseudo(":method").map_or(Cow::Borrowed(""), lossy);
            (method, url, Cow::Borrowed("HTTP/2.0"), Fields::H2(all))
        }
    };
    Some(RequestView {
        method,
        url,
        version,
        headers: RawFields {
            fields: headers,
            redacted,
        },
        body: &message.body,
        trailers: trailer_fields(&message.trailers, redacted, trailers),
    })
}

/// Parses `message`'s head as a response, as [`request_view`] does; `None` when it does not parse (the
/// record then has no response).
pub fn response_view<'a>(
    message: &'a RawMessage,
    origin: &'a TapOrigin,
    fields: &'a mut [MaybeUninit<httparse::Header<'a>>; MAX_FIELDS],
    trailers: &'a mut Vec<httparse::Header<'a>>,
) -> Option<ResponseView<'a, RawFields<'a>>> {
    let redacted = &origin.settings.redacted_headers[..];
    let (status, version, headers) = match &message.head {
        RawHead::Http1(head) => {
            let mut parsed = httparse::Response::new(&mut []);
            httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut parsed, head, fields)
                .ok()?;
            let headers: &'a [httparse::Header<'a>] = parsed.headers;
            (
                parsed.code?,
                http1_version(parsed.version?),
                Fields::Http1(headers),
            )
        }
        RawHead::H2(all) => {
            let status = all
                .iter()
                .find(|(n, _)| &n[..] == b":status")
                .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse().ok())?;
            (status, Cow::Borrowed("HTTP/2.0"), Fields::H2(all))
        }
    };
    Some(ResponseView {
        status,
        version,
        headers: RawFields {
            fields: headers,
            redacted,
        },
        body: &message.body,
        trailers: trailer_fields(&message.trailers, redacted, trailers),
    })
}

/// The fields after a body; a chunked trailer section is parsed into `parsed`. A section that does not
/// parse has no fields.
fn trailer_fields<'a>(
    raw: &'a RawTrailers,
    redacted: &'a [HeaderName],
    parsed: &'a mut Vec<httparse::Header<'a>>,
) -> RawFields<'a> {
    let fields = match raw {
        RawTrailers::None => Fields::Http1(&[]),
        RawTrailers::Http1(section) => {
            parsed.resize(MAX_FIELDS, httparse::EMPTY_HEADER);
            match httparse::parse_headers(section, parsed) {
                Ok(httparse::Status::Complete((_, fields))) => Fields::Http1(fields),
                _ => Fields::Http1(&[]),
            }
        }
        RawTrailers::H2(fields) => Fields::H2(fields),
    };
    RawFields { fields, redacted }
}

impl FieldList for RawFields<'_> {
    fn is_empty(&self) -> bool {
        match self.fields {
            Fields::Http1(fields) => fields.is_empty(),
            Fields::H2(fields) => regular(fields).next().is_none(),
        }
    }

    fn write_pairs(&self, pairs: &mut PairList<'_>) {
        match self.fields {
            Fields::Http1(fields) => {
                for field in fields {
                    // httparse takes only token characters in a name: always text.
                    self.pair(pairs, field.name, field.value);
                }
            }
            Fields::H2(fields) => {
                for (name, value) in regular(fields) {
                    self.pair(pairs, &lossy(name), value);
                }
            }
        }
    }
}

impl RawFields<'_> {
    /// `[name, value]`: the name in lower case, the value replaced when the name is redacted.
    fn pair(&self, pairs: &mut PairList<'_>, name: &str, value: &[u8]) {
        // Redacted names are header names, always lower case: comparing without case is comparing
        // with the lowered name.
        let value = if self
            .redacted
            .iter()
            .any(|redacted| redacted.as_str().eq_ignore_ascii_case(name))
        {
            Cow::Borrowed(REDACTED)
        } else {
            lossy(value)
        };
        lower_case(name, |name| pairs.pair(name, &value));
    }
}

/// `bytes` as text, as `String::from_utf8_lossy` reads them, checked with the standard library's faster
/// check first (nearly every head is text).
fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// HTTP/2 fields without the pseudo-fields.
fn regular(fields: &[(Bytes, Bytes)]) -> impl Iterator<Item = (&[u8], &[u8])> {
    fields
        .iter()
        .filter(|(name, _)| !name.starts_with(b":"))
        .map(|(name, value)| (&name[..], &value[..]))
}

/// `name` in lower case, handed to `write`: as it is when it has no capitals (nearly always), else
/// lowered on the stack when it is short enough.
fn lower_case(name: &str, write: impl FnOnce(&str)) {
    let bytes = name.as_bytes();
    if !bytes.iter().any(u8::is_ascii_uppercase) {
        return write(name);
    }
    let mut lowered = [0u8; 64];
    match lowered.get_mut(..bytes.len()) {
        Some(lowered) => {
            lowered.copy_from_slice(bytes);
            lowered.make_ascii_lowercase();
            // Lowering ASCII letters keeps UTF-8 valid.
            match std::str::from_utf8(lowered) {
                Ok(lowered) => write(lowered),
                Err(_) => write(&name.to_ascii_lowercase()),
            }
        }
        None => write(&name.to_ascii_lowercase()),
    }
}

fn http1_version(minor: u8) -> Cow<'static, str> {
    match minor {
        0 => Cow::Borrowed("HTTP/1.0"),
        1 => Cow::Borrowed("HTTP/1.1"),
        minor => Cow::Owned(format!("HTTP/1.{minor}")),
    }
}

/// The request's URL in absolute form. An absolute-form target is rebuilt from its parts, so that
/// `user:password@` never reaches a record; an origin-form one is joined to the Host field; an
/// authority-form one (CONNECT) names the host with the path `/`.
fn http1_url<'a>(scheme: &'a str, target: &'a str, host: Option<&'a [u8]>) -> Url<'a> {
    let host = host.map(lossy);
    // Origin form, the common case: `http::Uri` takes a target starting with `/` as a path whether or not
    // it parses, so it would be joined to the host below either way.
    if target.starts_with('/') {
        return match host {
            None => Url::Joined {
                scheme,
                host: "",
                path: target,
            },
            Some(Cow::Borrowed(host)) => Url::Joined {
                scheme,
                host,
                path: target,
            },
            Some(Cow::Owned(host)) => Url::Owned(format!("{scheme}://{host}{target}")),
        };
    }
    Url::Owned(other_http1_url(scheme, target, host.as_deref()))
}

/// An absolute-form or authority-form target's URL, or one the `http::Uri` parser does not take.
fn other_http1_url(scheme: &str, target: &str, host: Option<&str>) -> String {
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

fn h2_url<'a>(scheme: &'a str, authority: &'a [u8], path: Option<&'a [u8]>) -> Url<'a> {
    let path = path.map_or(Cow::Borrowed("/"), lossy);
    let authority = lossy(authority);
    match (authority, path) {
        (Cow::Borrowed(authority), Cow::Borrowed(path)) => Url::Joined {
            scheme,
            host: without_userinfo(authority),
            path,
        },
        (authority, path) => {
            Url::Owned(format!("{scheme}://{}{path}", without_userinfo(&authority)))
        }
    }
}

/// userinfo is deprecated in `:authority`, and never belongs in a record.
fn without_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(url: Url<'_>) -> String {
        url.to_string()
    }

    #[test]
    fn urls_are_absolute_and_carry_no_credentials() {
        assert_eq!(
            text(http1_url("http", "/a?b=1", Some(b"api.test:8080"))),
            "http://api.test:8080/a?b=1"
        );
        assert_eq!(
            text(http1_url(
                "http",
                "http://user:pw@api.test:81/x",
                Some(b"other")
            )),
            "http://api.test:81/x"
        );
        assert_eq!(
            text(http1_url("https", "/x", Some(b"api.test"))),
            "https://api.test/x"
        );
        assert_eq!(
            text(http1_url("http", "db.test:5432", Some(b"db.test:5432"))),
            "http://db.test:5432/"
        );
        assert_eq!(
            text(http1_url("http", "/x", Some(b"h\xffst"))),
            "http://h\u{fffd}st/x"
        );
        assert_eq!(
            text(h2_url(
                "http",
                b"u:p@grpc.test:50051",
                Some(b"/pkg.Svc/Call")
            )),
            "http://grpc.test:50051/pkg.Svc/Call"
        );
    }

    #[test]
    fn names_are_lowered_however_long() {
        let lowered = |name: &str| {
            let mut lowered = String::new();
            lower_case(name, |name| lowered = name.to_owned());
            lowered
        };
        assert_eq!(lowered("x-lower"), "x-lower");
        assert_eq!(lowered("Content-Type"), "content-type");
        let long = format!("X-{}", "Ab".repeat(40));
        assert_eq!(lowered(&long), long.to_ascii_lowercase());
    }
}
