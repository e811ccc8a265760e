//! A caller's request head: parsed with httparse where it lies in the read buffer, checked as the listener
//! always checked it (the framing hyper refused, then [`crate::http::framing`] and
//! [`crate::http::host_header`]), and rewritten for the upstream in the same pass: hop-by-hop fields
//! dropped, upgrade fields put back for an upgrade, and the body's framing field last. The reverse
//! listener's app also gets `X-Forwarded-For` and `X-Forwarded-Proto`; the forward listener's origin gets
//! the request in origin-form, its `Host` replaced by the URL's ([`super::forward`]).

use std::net::IpAddr;

use http::Version;

use super::body::Framing;
use super::fields::{keeps_trailers, values, write_field, ConnectionField};
use super::forward::{self, Addressed};
use crate::http::framing::{check_codings, Refusal};
use crate::http::host_header::{check_count, HostSource};

/// Header fields a request head may carry (hyper's limit before, and the tap's).
pub const MAX_FIELDS: usize = 100;

/// The largest Content-Length hyper accepted; more is answered 431, as it was.
const MAX_CONTENT_LENGTH: u64 = u64::MAX - 2;

/// Why a head could not be read as a request.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Over `--max-request-head`, or more fields than [`MAX_FIELDS`]: 431.
    TooLarge(String),
    /// Not a request hyper would have read: 400.
    Malformed(String),
}

/// Which listener reads the head, for how it is checked and rewritten.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// The reverse listener: origin-form requests for the app, which learns the caller's address
    /// (`client`); `want_host` keeps the `Host` the caller sent (for the record).
    Reverse { client: IpAddr, want_host: bool },
    /// The forward listener: absolute-form requests each naming their origin, and CONNECT.
    Forward,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Head,
    Connect,
    Other,
}

/// A request head, read and rewritten.
#[derive(Debug)]
pub struct Request {
    /// Bytes of the head in the buffer (blank lines before it included).
    pub len: usize,
    pub method: Method,
    /// Sending it twice has the effect of sending it once (RFC 9110 §9.2.2): it may be sent again when
    /// the app may or may not have seen it.
    pub idempotent: bool,
    pub http10: bool,
    pub framing: Framing,
    /// Whether the caller's connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` with a body: the caller waits for a 100 before sending it.
    pub expects_continue: bool,
    /// The `Trailer` fields' values: which trailer fields may pass.
    pub announced_trailers: Vec<Vec<u8>>,
    /// The authority the caller addressed (its `Host`), when asked for.
    pub host: Option<String>,
    /// Where the request goes, as its target names it (the forward listener only).
    pub addressed: Option<Addressed>,
    /// The head for the app.
    pub upstream_head: Vec<u8>,
    /// The sidecar answers this request itself, and whether the connection closes after.
    pub refusal: Option<(Refusal, bool)>,
}

impl Request {
    /// The forward listener's record target: the URL's `host:port` (empty when it names none).
    pub fn record_target(&self) -> &str {
        match &self.addressed {
            Some(Addressed::Origin(origin)) => &origin.record_target,
            Some(Addressed::Refused { record_target, .. }) => record_target,
            _ => "",
        }
    }

    /// How the forward listener names the origin in its answers: the URL's `host[:port]`.
    pub fn origin_host(&self) -> &str {
        match &self.addressed {
            Some(Addressed::Origin(origin)) => &origin.host,
            _ => "",
        }
    }
}

/// Parses the request head at the start of `buffer`: `None` while it is incomplete.
pub fn parse(buffer: &[u8], limit: usize, mode: Mode) -> Result<Option<Request>, HeadError> {
    // RFC 9112 §2.2: empty lines before a request line are ignored (clients send one after a POST).
    let blank = buffer
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let bytes = &buffer[blank..];
    if bytes.is_empty() {
        if blank > limit {
            return Err(HeadError::TooLarge(format!(
                "more than {limit} bytes of empty lines"
            )));
        }
        return Ok(None);
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if bytes.len() > limit => {
            return Err(HeadError::TooLarge(format!("a head over {limit} bytes")))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge(format!(
                "more than {MAX_FIELDS} header fields"
            )))
        }
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if len > limit {
        return Err(HeadError::TooLarge(format!("a head over {limit} bytes")));
    }
    let (Some(method_text), Some(target), Some(minor)) =
        (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HeadError::Malformed("an incomplete request line".into()));
    };
    let fields: &[httparse::Header<'_>] = parsed.headers;
    let method = match method_text {
        "HEAD" => Method::Head,
        "CONNECT" => Method::Connect,
        _ => Method::Other,
    };
    // RFC 9110 §9.2.2: sending one of these twice has the effect of sending it once.
    let idempotent = matches!(
        method_text,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    );
    let http10 = minor == 0;
    let (framing, length_given) = framing(fields, http10)?;
    let addressed = match mode {
        Mode::Forward => Some(
            forward::address(method == Method::Connect, target).map_err(HeadError::Malformed)?,
        ),
        Mode::Reverse { .. } => None,
    };
    let connection = ConnectionField::of(fields);
    let upgrade = values(fields, "upgrade")
        .next()
        .filter(|_| connection.upgrade)
        .map(<[u8]>::to_vec);
    let hosts = values(fields, "host").count();
    // The forward listener's own refusals (a target it does not serve) come first, as they did on hyper.
    let mut refusal = match &addressed {
        Some(Addressed::Refused { reason, .. }) => Some((
            Refusal {
                status: http::StatusCode::BAD_REQUEST,
                reason: reason.clone(),
            },
            false,
        )),
        _ => None,
    };
    if refusal.is_none() && matches!(framing, Framing::Chunked) {
        if let Err(refused) = check_codings(values(fields, "transfer-encoding")) {
            // Its body is left unread, so the connection closes after the answer.
            refusal = Some((refused, true));
        }
    }
    if refusal.is_none() && method != Method::Connect {
        let version = if http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // The forward listener's absolute-form URL replaces `Host`, so none is fine there.
        let source = match mode {
            Mode::Reverse { .. } => HostSource::Header,
            Mode::Forward => HostSource::Target,
        };
        if let Err(refused) = check_count(version, hosts, source) {
            refusal = Some((refused, false));
        }
    }
    // RFC 9112 §6.3: a request with both lengths is read by Transfer-Encoding, and the connection closed
    // after it, so what follows is never read as a request.
    let both_lengths = matches!(framing, Framing::Chunked) && length_given;
    let keep_alive = !connection.close && !both_lengths && (!http10 || connection.keep_alive);
    let expects_continue = framing != Framing::Empty
        && values(fields, "expect").any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    let host = if matches!(
        mode,
        Mode::Reverse {
            want_host: true,
            ..
        }
    ) {
        values(fields, "host")
            .next()
            .map(|h| String::from_utf8_lossy(h).into_owned())
    } else {
        None
    };
    let announced_trailers = if framing == Framing::Chunked {
        values(fields, "trailer").map(<[u8]>::to_vec).collect()
    } else {
        Vec::new()
    };
    let mut upstream_head = Vec::new();
    let for_upstream = match (mode, &addressed) {
        (Mode::Reverse { client, .. }, _) => Some((origin_form(target), Extra::Forwarded(client))),
        (Mode::Forward, Some(Addressed::Origin(origin))) => {
            Some((origin.path.as_str(), Extra::Host(&origin.host)))
        }
        // A CONNECT the forward listener tunnels itself, or a target it refuses: nothing goes upstream.
        (Mode::Forward, _) => None,
    };
    if let (None, Some((target, extra))) = (&refusal, for_upstream) {
        upstream_head.reserve(len + 64);
        let line = RequestLine {
            method: method_text,
            target,
            http10,
        };
        rewrite(
            &mut upstream_head,
            &line,
            fields,
            &connection,
            upgrade.as_deref(),
            framing,
            extra,
        );
    }
    Ok(Some(Request {
        len: blank + len,
        method,
        idempotent,
        http10,
        framing,
        keep_alive,
        expects_continue,
        announced_trailers,
        host,
        addressed,
        upstream_head,
        refusal,
    }))
}

/// The body's framing, checked as hyper checked it: one Content-Length value, a plain decimal number;
/// Transfer-Encoding only on HTTP/1.1 and with `chunked` last. Also whether a Content-Length was given.
fn framing(fields: &[httparse::Header<'_>], http10: bool) -> Result<(Framing, bool), HeadError> {
    let mut length: Option<u64> = None;
    let mut chunked_last: Option<bool> = None;
    for field in fields {
        if field.name.eq_ignore_ascii_case("content-length") {
            let value = field.value;
            if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::Malformed(
                    "a Content-Length that is not one decimal number".into(),
                ));
            }
            let n: u64 = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| HeadError::Malformed("a Content-Length beyond 2^64".into()))?;
            if n > MAX_CONTENT_LENGTH {
                return Err(HeadError::TooLarge(
                    "a Content-Length beyond the body limit".into(),
                ));
            }
            if length.is_some_and(|seen| seen != n) {
                return Err(HeadError::Malformed(
                    "Content-Length fields that disagree".into(),
                ));
            }
            length = Some(n);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = field
                .value
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default();
            chunked_last = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    match chunked_last {
        Some(_) if http10 => Err(HeadError::Malformed(
            "Transfer-Encoding on an HTTP/1.0 request".into(),
        )),
        Some(false) => Err(HeadError::Malformed(
            "a Transfer-Encoding whose last coding is not chunked".into(),
        )),
        Some(true) => Ok((Framing::Chunked, length.is_some())),
        None => Ok((
            match length {
                None | Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
            },
            length.is_some(),
        )),
    }
}

struct RequestLine<'a> {
    method: &'a str,
    target: &'a str,
    http10: bool,
}

/// What the head gains on its way upstream, by listener.
#[derive(Clone, Copy)]
enum Extra<'a> {
    /// The reverse listener: `X-Forwarded-For` (with the caller's address) and `X-Forwarded-Proto`.
    Forwarded(IpAddr),
    /// The forward listener: this `Host` (the URL's authority) in place of the caller's (RFC 9112 §3.2.2).
    Host(&'a str),
}

/// Writes the head the upstream gets, in the order the hyper path wrote it: the caller's fields in order,
/// less the hop-by-hop ones (`TE: trailers` kept, written after them), the upgrade fields when an upgrade
/// is proxied, then what the listener adds ([`Extra`]): `X-Forwarded-For` with the caller appended (in
/// place of the first one the caller sent, else after the others) and `X-Forwarded-Proto: http` likewise,
/// or `Host` (in place of the caller's, else after the others); and last the framing of a chunked body.
fn rewrite(
    out: &mut Vec<u8>,
    line: &RequestLine<'_>,
    fields: &[httparse::Header<'_>],
    connection: &ConnectionField<'_>,
    upgrade: Option<&[u8]>,
    framing: Framing,
    extra: Extra<'_>,
) {
    out.extend_from_slice(line.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(line.target.as_bytes());
    out.extend_from_slice(if line.http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let chunked = framing == Framing::Chunked;
    let mut forwarded_for = false;
    let mut forwarded_proto = false;
    let mut host_written = false;
    for field in fields {
        let name = field.name;
        if connection.is_hop_by_hop(name) {
            continue;
        }
        // A chunked body's Content-Length is dropped (RFC 9112 §6.3).
        if chunked && name.eq_ignore_ascii_case("content-length") {
            continue;
        }
        match extra {
            Extra::Forwarded(client) => {
                if name.eq_ignore_ascii_case("x-forwarded-for") {
                    if !forwarded_for {
                        forwarded_for = true;
                        let chain = forwarded_chain(fields, client);
                        write_field(out, name.as_bytes(), chain.as_bytes());
                    }
                    continue;
                }
                if name.eq_ignore_ascii_case("x-forwarded-proto") {
                    if !forwarded_proto {
                        forwarded_proto = true;
                        write_field(out, name.as_bytes(), b"http");
                    }
                    continue;
                }
            }
            Extra::Host(host) => {
                if name.eq_ignore_ascii_case("host") {
                    if !host_written {
                        host_written = true;
                        write_field(out, name.as_bytes(), host.as_bytes());
                    }
                    continue;
                }
            }
        }
        write_field(out, name.as_bytes(), field.value);
    }
    if keeps_trailers(fields) {
        write_field(out, b"te", b"trailers");
    }
    if let Some(protocol) = upgrade {
        write_field(out, b"connection", b"upgrade");
        write_field(out, b"upgrade", protocol);
    }
    match extra {
        Extra::Forwarded(client) => {
            if !forwarded_for {
                write_field(
                    out,
                    b"x-forwarded-for",
                    forwarded_chain(fields, client).as_bytes(),
                );
            }
            if !forwarded_proto {
                write_field(out, b"x-forwarded-proto", b"http");
            }
        }
        Extra::Host(host) if !host_written => write_field(out, b"host", host.as_bytes()),
        Extra::Host(_) => {}
    }
    if chunked {
        write_field(out, b"transfer-encoding", b"chunked");
    }
    out.extend_from_slice(b"\r\n");
}

/// Every X-Forwarded-For value the caller sent (a chain split over several fields is one list, RFC 9110
/// §5.3; values that are not visible text are left out, as before), then the caller's address.
fn forwarded_chain(fields: &[httparse::Header<'_>], client: IpAddr) -> String {
    let mut chain = String::new();
    for value in values(fields, "x-forwarded-for") {
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        if !text
            .bytes()
            .all(|b| b == b'\t' || (b' '..0x7f).contains(&b))
        {
            continue;
        }
        let text = text.trim();
        if !text.is_empty() {
            chain.push_str(text);
            chain.push_str(", ");
        }
    }
    chain.push_str(&client.to_string());
    chain
}

/// The target as the app gets it: origin-form as sent; an absolute-form target's path and query (the app
/// is the listener's, whatever the caller named).
fn origin_form(target: &str) -> &str {
    if target.starts_with('/') || target == "*" {
        return target;
    }
    match target.split_once("://") {
        Some((_, rest)) => match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => &rest[at..],
            _ => "/",
        },
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reverse() -> Mode {
        Mode::Reverse {
            client: "10.0.0.7".parse().unwrap(),
            want_host: false,
        }
    }

    fn upstream(wire: &str) -> String {
        let request = parse(wire.as_bytes(), 65536, reverse()).unwrap().unwrap();
        String::from_utf8(request.upstream_head).unwrap()
    }

    #[test]
    fn the_head_is_rewritten_as_the_hyper_path_wrote_it() {
        assert_eq!(
            upstream("GET /a?b HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, X-Session\r\nX-Session: 1\r\nTE: trailers\r\nX-Forwarded-For: 203.0.113.9\r\nAccept: */*\r\n\r\n"),
            "GET /a?b HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.7\r\nAccept: */*\r\nte: trailers\r\nx-forwarded-proto: http\r\n\r\n"
        );
        assert_eq!(
            upstream("POST /u HTTP/1.1\nHost: app\nContent-Length: 9\nTransfer-Encoding: chunked\n\n"),
            "POST /u HTTP/1.1\r\nHost: app\r\nx-forwarded-for: 10.0.0.7\r\nx-forwarded-proto: http\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            upstream("GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "GET /ws HTTP/1.1\r\nHost: app\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-forwarded-for: 10.0.0.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    fn forward_upstream(wire: &str) -> String {
        let request = parse(wire.as_bytes(), 65536, Mode::Forward)
            .unwrap()
            .unwrap();
        assert!(request.refusal.is_none(), "{wire:?}: {:?}", request.refusal);
        String::from_utf8(request.upstream_head).unwrap()
    }

    /// As the hyper forward path wrote it: origin-form, the URL's authority as Host (in place of the
    /// caller's, else after the other fields), hop-by-hop fields gone, no X-Forwarded-* added.
    #[test]
    fn the_forward_head_is_origin_form_with_the_urls_host() {
        assert_eq!(
            forward_upstream("GET http://user:pw@origin.test:8080/a?b HTTP/1.1\r\nHost: elsewhere\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nX-Forwarded-For: 203.0.113.9\r\nAccept: */*\r\n\r\n"),
            "GET /a?b HTTP/1.1\r\nHost: origin.test:8080\r\nX-Forwarded-For: 203.0.113.9\r\nAccept: */*\r\n\r\n"
        );
        assert_eq!(
            forward_upstream("POST HTTP://origin.test?q HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
            "POST /?q HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\nhost: origin.test\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            forward_upstream("GET http://[::1]:81 HTTP/1.0\r\n\r\n"),
            "GET / HTTP/1.0\r\nhost: [::1]:81\r\n\r\n"
        );
    }

    #[test]
    fn forward_targets_are_told_apart() {
        let addressed = |wire: &str| {
            let request = parse(wire.as_bytes(), 65536, Mode::Forward)
                .unwrap()
                .unwrap();
            let refused = request.refusal.map(|(refusal, _)| refusal.reason);
            (request.addressed.unwrap(), refused)
        };
        match addressed("GET http://a.test/x HTTP/1.1\r\n\r\n") {
            (Addressed::Origin(origin), None) => {
                assert_eq!(origin.record_target, "a.test:80");
                assert_eq!(origin.target.to_string(), "a.test:80");
            }
            other => panic!("{other:?}"),
        }
        match addressed("GET https://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n") {
            (Addressed::Refused { record_target, .. }, Some(reason)) => {
                assert_eq!(record_target, "a.test:80");
                assert!(
                    reason.contains("https:// URLs cannot be sent in absolute-form"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        match addressed("GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n") {
            (Addressed::Refused { record_target, .. }, Some(reason)) => {
                assert_eq!(record_target, "");
                assert!(
                    reason.contains("this is the outbound proxy port"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            addressed("CONNECT a.test:443 HTTP/1.1\r\n\r\n"),
            (Addressed::Tunnel(Ok(_)), _)
        ));
        match addressed("CONNECT a.test HTTP/1.1\r\n\r\n") {
            (Addressed::Tunnel(Err(reason)), _) => {
                assert_eq!(reason, "sidecar: CONNECT needs host:port, got \"a.test\"")
            }
            other => panic!("{other:?}"),
        }
        // Two Host fields are refused even though the URL names the host; none is fine.
        let (_, refused) = addressed("GET http://a.test/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert!(refused.unwrap().contains("2 Host headers"));
    }

    #[test]
    fn framing_hyper_refused_is_refused() {
        for (wire, too_large) in [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
                false,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
                false,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                false,
            ),
            (
                "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                false,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                false,
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
                true,
            ),
        ] {
            let error = parse(wire.as_bytes(), 65536, reverse()).unwrap_err();
            assert_eq!(
                matches!(error, HeadError::TooLarge(_)),
                too_large,
                "{wire:?}"
            );
        }
    }

    #[test]
    fn the_limit_counts_the_whole_head() {
        let wire = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(parse(wire.as_bytes(), wire.len(), reverse())
            .unwrap()
            .is_some());
        assert!(matches!(
            parse(wire.as_bytes(), wire.len() - 1, reverse()),
            Err(HeadError::TooLarge(_))
        ));
        assert!(parse(&wire.as_bytes()[..10], 64, reverse())
            .unwrap()
            .is_none());
    }
}
