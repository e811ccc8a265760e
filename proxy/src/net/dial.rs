//! Opening the upstream connection, with a deadline and a failure classified the way proxy protocols report it.

use std::io;
use std::net::SocketAddr;
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
                super::keepalive::tune(&stream);
                return Ok(stream);
            }
            Err(e) => last_error = Some(DialError::from_io(target, &e)),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        DialError::new(target, DialFailure::Resolve, "name resolved to no address")
    }))
}

/// "10s", "250ms": durations as a user would write them.
pub(crate) fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
