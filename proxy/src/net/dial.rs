//! Opening the upstream connection, with a deadline and a failure classified the way proxy protocols report it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

use super::target::{Host, Target};

/// Why a dial failed, in the terms SOCKS replies and HTTP errors distinguish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialFailure {
    /// The host name did not resolve.
    Resolve,
    Refused,
    NetworkUnreachable,
    HostUnreachable,
    TimedOut,
    Other,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {target}: {reason}")]
pub struct DialError {
    pub target: Target,
    pub failure: DialFailure,
    reason: String,
}

impl DialError {
    fn new(target: &Target, failure: DialFailure, reason: impl Into<String>) -> Self {
        DialError {
            target: target.clone(),
            failure,
            reason: reason.into(),
        }
    }

    fn from_io(target: &Target, err: &io::Error) -> Self {
        let failure = match err.kind() {
            io::ErrorKind::ConnectionRefused => DialFailure::Refused,
            io::ErrorKind::NetworkUnreachable => DialFailure::NetworkUnreachable,
            io::ErrorKind::HostUnreachable => DialFailure::HostUnreachable,
            io::ErrorKind::TimedOut => DialFailure::TimedOut,
            _ => DialFailure::Other,
        };
        DialError::new(target, failure, err.to_string())
    }
}

/// Connects to the target, trying each resolved address in turn, all within `timeout`.
pub async fn dial(target: &Target, timeout: Duration) -> Result<TcpStream, DialError> {
    match tokio::time::timeout(timeout, dial_unbounded(target)).await {
        Ok(result) => result,
        Err(_) => Err(DialError::new(
            target,
            DialFailure::TimedOut,
            format!("timed out after {}", humanize(timeout)),
        )),
    }
}

async fn dial_unbounded(target: &Target) -> Result<TcpStream, DialError> {
    let addrs: Vec<SocketAddr> = match &target.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        Host::Name(name) if is_localhost(name) => LOOPBACK
            .iter()
            .map(|ip| SocketAddr::new(*ip, target.port))
            .collect(),
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), target.port))
            .await
            .map_err(|e| {
                DialError::new(
                    target,
                    DialFailure::Resolve,
                    format!("cannot resolve {name}: {e}"),
                )
            })?
            .collect(),
    };
    let mut last_error = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                super::keepalive::tune(socket2::SockRef::from(&stream));
                return Ok(stream);
            }
            Err(e) => last_error = Some(DialError::from_io(target, &e)),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        DialError::new(target, DialFailure::Resolve, "name resolved to no address")
    }))
}

/// Where `localhost` leads, IPv4 first: the reverse proxy's default app address, dialed for every
/// connection. Resolving it through the system resolver costs a blocking-pool thread per dial, and a burst
/// of connections a thread (and its memory) each; RFC 6761 has resolvers answer it with loopback anyway.
const LOOPBACK: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

/// `localhost` and names under it (RFC 6761, section 6.3), in any case, with or without the root dot.
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// "10s", "250ms": durations as a user would write them.
pub(crate) fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_recognised_and_others_are_not() {
        for name in ["localhost", "LOCALHOST", "localhost.", "app.localhost"] {
            assert!(is_localhost(name), "{name}");
        }
        for name in ["localhost.example", "mylocalhost", "example.com", ""] {
            assert!(!is_localhost(name), "{name}");
        }
    }

    #[tokio::test]
    async fn localhost_is_dialed_on_loopback_without_the_resolver() {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Target::from_host_str("localhost", port);
        let stream = dial(&target, Duration::from_secs(5)).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), listener.local_addr().unwrap());
    }
}
