//! TCP keepalive on every socket the sidecar holds, so a relay whose peer vanished without a FIN or RST
//! (a node gone, a NAT entry expired) ends in minutes instead of living until shutdown.
//!
//! Set on each listening socket once, not on each connection it accepts: Linux hands an accepted socket
//! the listener's no-delay and keepalive settings, and five `setsockopt` calls per accepted connection were
//! a measurable part of what a new connection costs (docs/benchmarks.md). Dialled sockets are set one by
//! one.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

/// Idle time before the first probe, then probe spacing; the kernel gives up after its retry count.
pub(crate) const IDLE: Duration = Duration::from_secs(60);
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);
pub(crate) const RETRIES: u32 = 6;

/// Turns keepalive and no-delay on, for a dialled socket or a listener (whose accepted sockets inherit
/// them); failures only cost the probe, so they are ignored.
pub fn tune(socket: SockRef<'_>) {
    // Proxied request/response traffic is latency-bound; never wait to coalesce writes.
    let _ = socket.set_tcp_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(IDLE)
        .with_interval(INTERVAL)
        .with_retries(RETRIES);
    let _ = socket.set_tcp_keepalive(&keepalive);
}
