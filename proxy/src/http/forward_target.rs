//! Where a request to the forward proxy goes, as its target names it: an absolute-form `http://` URL's
//! authority (the record's `host:port` and the `Host` sent upstream), or CONNECT's authority-form
//! `host:port`. Shared by the HTTP/1 engine and the hyper path (mock mode), so both name targets alike.

use http::uri::Authority;
use http::Uri;

use crate::net::Target;

/// Where a CONNECT request asks to go: its authority-form target, which must name both host and port.
/// Public for the fuzz targets (fuzz/), which feed it every request target hyper accepts.
pub fn connect_target(uri: &Uri) -> Option<Target> {
    let authority = uri.authority()?;
    let port = authority.port_u16()?;
    let host = authority.host();
    // http's Authority takes brackets anywhere (`2[001:db8::1]:145` reads as host `2[001`, port 145): only
    // a whole bracketed IPv6 literal may carry them (found by fuzzing: fuzz/corpus/http_forward/
    // regression-connect-stray-bracket).
    let is_ipv6_literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    if host.contains(['[', ']']) && !is_ipv6_literal {
        return None;
    }
    Some(Target::from_host_str(host, port))
}

/// `host:port` as the client named it, with http's default port when none was given.
pub fn target_of(authority: &Authority) -> String {
    format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    )
}

/// The Host header for a URL's authority: host and explicit port, without any `user:password@`.
pub fn host_header(authority: &Authority) -> String {
    match authority.port() {
        Some(port) => format!("{}:{}", authority.host(), port.as_str()),
        None => authority.host().to_owned(),
    }
}
