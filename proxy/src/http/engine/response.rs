//! The app's response head: parsed where it lies in the upstream buffer, its body's framing decided as
//! RFC 9112 §6.3 says (the request's method and the status first), and rewritten for the caller in the
//! same pass: hop-by-hop fields dropped, upgrade fields put back on a `101`, and the connection's fate
//! (`Connection: close`, or `keep-alive` to an HTTP/1.0 caller that asked for it) said last.

use super::body::Framing;
use super::fields::{values, write_field, ConnectionField};
use super::request::{Method, Request};

/// Response heads are bounded like the hyper client bounded them: its read buffer.
pub const MAX_RESPONSE_HEAD: usize = crate::budget::QUEUE_CHUNK;
const MAX_FIELDS: usize = 128;

/// A response head, read (and, unless informational, rewritten).
#[derive(Debug)]
pub struct Response {
    pub len: usize,
    pub framing: Framing,
    /// `1xx` but `101`: the final response is still to come.
    pub informational: bool,
    /// The connection switches protocols (a `101`, or a `2xx` to CONNECT): bytes both ways from here.
    pub switches: bool,
    /// Whether the app's connection may carry the next request.
    pub upstream_reusable: bool,
    /// Whether the caller's connection closes after this response.
    pub closes_caller: bool,
    pub announced_trailers: Vec<Vec<u8>>,
    /// The head for the caller (empty for an informational response, which is not passed on).
    pub caller_head: Vec<u8>,
}

/// Parses the response head at the start of `buffer`, the answer to `request`: `None` while incomplete.
/// `keep_caller` is whether the caller's connection could stay open, as far as the sidecar knows.
pub fn parse(
    buffer: &[u8],
    request: &Request,
    keep_caller: bool,
) -> Result<Option<Response>, String> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buffer.len() > MAX_RESPONSE_HEAD => {
            return Err(format!(
                "a response head over {} KiB",
                MAX_RESPONSE_HEAD / 1024
            ))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid HTTP response head: {e}")),
    };
    let (Some(status), Some(minor)) = (parsed.code, parsed.version) else {
        return Err("invalid HTTP response head: no status".into());
    };
    let fields: &[httparse::Header<'_>] = parsed.headers;
    let connection = ConnectionField::of(fields);
    let informational = (100..200).contains(&status) && status != 101;
    let switches =
        status == 101 || (request.method == Method::Connect && (200..300).contains(&status));
    let framing = if informational
        || switches
        || request.method == Method::Head
        || status == 204
        || status == 304
    {
        Framing::Empty
    } else {
        body_framing(fields)?
    };
    let upstream_reusable = !switches
        && framing != Framing::UntilClose
        && !connection.close
        && (minor == 1 || connection.keep_alive);
    let closes_caller = !keep_caller || framing == Framing::UntilClose;
    let announced_trailers = if framing == Framing::Chunked {
        values(fields, "trailer").map(<[u8]>::to_vec).collect()
    } else {
        Vec::new()
    };
    let mut caller_head = Vec::new();
    if !informational {
        caller_head.reserve(len + 32);
        caller_head.extend_from_slice(if minor == 0 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        caller_head.extend_from_slice(status.to_string().as_bytes());
        caller_head.push(b' ');
        caller_head.extend_from_slice(parsed.reason.unwrap_or_default().as_bytes());
        caller_head.extend_from_slice(b"\r\n");
        let chunked = framing == Framing::Chunked;
        for field in fields {
            if connection.is_hop_by_hop(field.name)
                || (chunked && field.name.eq_ignore_ascii_case("content-length"))
            {
                continue;
            }
            write_field(&mut caller_head, field.name.as_bytes(), field.value);
        }
        if switches && status == 101 {
            if let Some(protocol) = values(fields, "upgrade").next() {
                write_field(&mut caller_head, b"connection", b"upgrade");
                write_field(&mut caller_head, b"upgrade", protocol);
            }
        }
        if chunked {
            write_field(&mut caller_head, b"transfer-encoding", b"chunked");
        }
        if !switches {
            if closes_caller {
                write_field(&mut caller_head, b"connection", b"close");
            } else if request.http10 {
                write_field(&mut caller_head, b"connection", b"keep-alive");
            }
        }
        caller_head.extend_from_slice(b"\r\n");
    }
    Ok(Some(Response {
        len,
        framing,
        informational,
        switches,
        upstream_reusable,
        closes_caller,
        announced_trailers,
        caller_head,
    }))
}

/// A response body's framing from its own fields: chunked last means chunked; any other coding, or no
/// length at all, means the body ends with the connection.
fn body_framing(fields: &[httparse::Header<'_>]) -> Result<Framing, String> {
    let mut length: Option<u64> = None;
    let mut chunked_last: Option<bool> = None;
    for field in fields {
        if field.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = field
                .value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            chunked_last = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if field.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(field.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or("invalid HTTP response head: a Content-Length that is not a number")?;
            if length.is_some_and(|seen| seen != n) {
                return Err(
                    "invalid HTTP response head: Content-Length fields that disagree".into(),
                );
            }
            length = Some(n);
        }
    }
    Ok(match (chunked_last, length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) | (None, None) => Framing::UntilClose,
        (None, Some(0)) => Framing::Empty,
        (None, Some(n)) => Framing::Length(n),
    })
}
