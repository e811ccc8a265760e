//! Runtime settings that are not part of the spec's annotations: where listeners bind and how long the
//! sidecar waits for slow peers and for open connections at shutdown.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::config::ProxyConfig;

pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Callers reach the inbound listener on the pod IP.
pub const DEFAULT_INBOUND_BIND: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// The outbound listener is for the pod's own app only: never an open proxy to the network.
pub const DEFAULT_OUTBOUND_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeOptions {
    pub inbound_listen: SocketAddr,
    pub outbound_listen: SocketAddr,
    /// Time a client has to complete its proxy handshake (SOCKS request, HTTP request head).
    pub handshake_timeout: Duration,
    /// Time allowed to open the upstream connection.
    pub connect_timeout: Duration,
    /// After SIGTERM, how long open connections may keep running before the process exits.
    pub shutdown_grace: Duration,
}

impl RuntimeOptions {
    /// Defaults for a configuration: the spec's ports on the default bind addresses.
    pub fn for_config(config: &ProxyConfig) -> Self {
        RuntimeOptions {
            inbound_listen: SocketAddr::new(DEFAULT_INBOUND_BIND, config.in_port),
            outbound_listen: SocketAddr::new(DEFAULT_OUTBOUND_BIND, config.out_port),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}
