//! A destination as the client named it: a host name stays a name until the sidecar dials it, so logs and
//! capture show what the client asked for, not only the address it resolved to.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::config::ReverseTarget;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: Host,
    pub port: u16,
}

impl Target {
    pub fn new(host: Host, port: u16) -> Self {
        Target { host, port }
    }

    /// A host name that is really an IP literal is kept as an IP.
    pub fn from_host_str(host: &str, port: u16) -> Self {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => Target::new(Host::Ip(ip), port),
            Err(_) => Target::new(Host::Name(host.to_owned()), port),
        }
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Target::new(Host::Ip(addr.ip()), addr.port())
    }
}

impl From<&ReverseTarget> for Target {
    fn from(app: &ReverseTarget) -> Self {
        Target::from_host_str(&app.host, app.port)
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Name(name) => write!(f, "{name}:{}", self.port),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
        }
    }
}
