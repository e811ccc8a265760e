//! The forward listener's reading of a request target: an absolute-form `http://` URL names the origin
//! the request goes to (each request its own), CONNECT names a tunnel's `host:port`, and anything else is
//! refused with the answers the hyper path gave. The target is parsed as hyper parsed it (`http::Uri`), so
//! a target hyper could not read is still a head that cannot be read (400, no record).

use http::Uri;

use crate::http::forward_target::{connect_target, host_header, target_of};
use crate::net::Target;

/// Where an absolute-form request goes.
#[derive(Debug)]
pub struct Origin {
    /// Dialled for it (the upstream connection is kept while requests name the same one).
    pub target: Target,
    /// The `Host` the origin gets, and how the sidecar's answers name it: the URL's host and explicit
    /// port, without userinfo.
    pub host: String,
    /// `host:port` as the record's `target` names it.
    pub record_target: String,
    /// The request target the origin gets (origin-form: `/` when the URL has no path).
    pub path: String,
}

/// What a request's target asks of the forward listener.
#[derive(Debug)]
pub enum Addressed {
    Origin(Origin),
    /// Not served here (origin-form, or a scheme that needs a tunnel): answered 400 with `reason`, and
    /// recorded under `record_target` (the URL's `host:port`, empty when it names none).
    Refused {
        record_target: String,
        reason: String,
    },
    /// CONNECT: the tunnel's target, or the 400's reason when it names no `host:port`.
    Tunnel(Result<Target, String>),
}

/// Reads the request target of a request (a CONNECT when `connect`); `Err` says why it cannot be read
/// at all (the head is then malformed).
pub fn address(connect: bool, target: &str) -> Result<Addressed, String> {
    let uri: Uri = target
        .parse()
        .map_err(|e| format!("an invalid request target: {e}"))?;
    if connect {
        return Ok(Addressed::Tunnel(connect_target(&uri).ok_or_else(|| {
            format!("sidecar: CONNECT needs host:port, got \"{uri}\"")
        })));
    }
    Ok(match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => {
            let path = match (uri.path(), uri.query()) {
                (path, Some(query)) => format!("{path}?{query}"),
                (path, None) => path.to_owned(),
            };
            Addressed::Origin(Origin {
                target: Target::from_host_str(authority.host(), authority.port_u16().unwrap_or(80)),
                host: host_header(authority),
                record_target: target_of(authority),
                path,
            })
        }
        (Some(scheme), Some(authority)) => Addressed::Refused {
            record_target: target_of(authority),
            reason: format!(
                "sidecar: {scheme}:// URLs cannot be sent in absolute-form; clients reach them through a CONNECT tunnel (HTTPS_PROXY)"
            ),
        },
        (_, authority) => Addressed::Refused {
            record_target: authority.map(target_of).unwrap_or_default(),
            reason: "sidecar: this is the outbound proxy port; send absolute-form requests (GET http://host/path) or CONNECT host:port".to_owned(),
        },
    })
}
