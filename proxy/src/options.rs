//! Runtime settings that are not part of the spec's annotations: where listeners bind, how long the
//! sidecar waits for slow peers and for open connections at shutdown, and the limits that keep abusive
//! peers from exhausting it (docs/slow-and-abusive-peers.md says why each default is what it is).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::config::ProxyConfig;

pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Long enough for any app answering a request at human speed (and for most batch endpoints), short
/// enough that a hung upstream is reported as such instead of holding the caller forever.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Open client connections per direction. Far above what one pod's traffic needs, low enough that a flood
/// is refused before the sidecar runs out of file descriptors (each relayed connection holds two) or memory.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The largest HTTP request head (request line and header fields) accepted: Envoy's default is 60 KiB,
/// nginx's 32 KiB; larger heads are answered 431.
pub const DEFAULT_MAX_REQUEST_HEAD: usize = 64 * 1024;
/// Idle connections to the app the reverse `http` listener keeps for the next callers: nginx's example
/// `keepalive` for an upstream. Enough for a pod's bursts; each costs a socket and little memory.
pub const DEFAULT_APP_IDLE_CONNECTIONS: usize = 64;
/// How long an idle app connection is kept: shorter than the keep-alive timeouts apps commonly use (Node.js,
/// uvicorn, Apache: 5 s), so that the sidecar rarely sends a request on a connection the app is closing.
pub const DEFAULT_APP_IDLE_TIMEOUT: Duration = Duration::from_secs(4);
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
    /// After SIGTERM, how long the listeners keep serving new connections (ended early once no connection
    /// has been open for a second): the pod is leaving its Services' endpoints meanwhile.
    pub drain_duration: Duration,
    /// Once the drain is over, how long open connections may keep running before the process exits.
    pub shutdown_grace: Duration,
    /// Time the app or an upstream has to begin its HTTP response once the whole request has reached it.
    pub upstream_timeout: Duration,
    /// Open client connections allowed per direction; more are refused politely.
    pub max_connections: usize,
    /// Largest HTTP request head accepted, in bytes.
    pub max_request_head: usize,
    /// Idle connections to the app the reverse `http` listener keeps for later callers (0: none).
    pub app_idle_connections: usize,
    /// How long an idle app connection is kept after its last response.
    pub app_idle_timeout: Duration,
}

impl RuntimeOptions {
    /// Defaults for a configuration: the spec's ports on the default bind addresses.
    pub fn for_config(config: &ProxyConfig) -> Self {
        RuntimeOptions {
            inbound_listen: SocketAddr::new(DEFAULT_INBOUND_BIND, config.in_port),
            outbound_listen: SocketAddr::new(DEFAULT_OUTBOUND_BIND, config.out_port),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drain_duration: crate::config::DEFAULT_DRAIN_DURATION,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_request_head: DEFAULT_MAX_REQUEST_HEAD,
            app_idle_connections: DEFAULT_APP_IDLE_CONNECTIONS,
            app_idle_timeout: DEFAULT_APP_IDLE_TIMEOUT,
        }
    }
}
