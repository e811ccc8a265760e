//! TCP keepalive on every socket the sidecar holds, so a relay whose peer vanished without a FIN or RST
//! (a node gone, a NAT entry expired) ends in minutes instead of living until shutdown.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// Idle time before the first probe, then probe spacing; the kernel gives up after its retry count.
pub(crate) const IDLE: Duration = Duration::from_secs(60);
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const RETRIES: u32 = 6;

/// Turns keepalive and no-delay on; failures only cost the probe, so they are ignored.
pub fn tune(stream: &TcpStream) {
    // Proxied request/response traffic is latency-bound; never wait to coalesce writes.
    let _ = stream.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(IDLE)
        .with_interval(INTERVAL)
        .with_retries(RETRIES);
    let _ = SockRef::from(stream).set_tcp_keepalive(&keepalive);
}
