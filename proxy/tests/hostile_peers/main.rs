//! Slow, broken and abusive peers: each is handled by design, and shown here on loopback with real sockets,
//! against the sidecar in-process or (where the process itself is the point) the real binary.
//!
//! - [`slowloris`]: a request head or SOCKS handshake trickled a byte at a time is closed at the handshake
//!   timeout, on every listener that has a handshake.
//! - [`head_size`]: an oversized request head is answered 431.
//! - [`smuggling`]: absurd or conflicting Content-Length / Transfer-Encoding is refused (or resolved as
//!   RFC 9112 says), and the upstream never sees a second request.
//! - [`half_close`]: a half-close passes through every relay, both ways, and the other direction flows on.
//! - [`upstream_timeout`]: an upstream that accepts and never answers gets the client a 504 (HTTP) or the
//!   protocol's failure reply (SOCKS, CONNECT), and a response head in time is never cut off after.
//! - [`resets`]: a peer that resets mid-stream closes the other side, and disturbs nothing else.
//! - [`flood`]: the connection limit refuses politely while the open connections keep flowing.
//! - [`fd_exhaustion`]: out of file descriptors, the binary pauses its accepts instead of spinning.
//! - [`full_disk`]: with the capture sink on a full disk, traffic flows and records are counted dropped.
//! - [`memory_budget`]: a flood of unfinished heads stays within `--memory-budget`, and the memory goes back.
//! - [`warning_flood`]: hundreds of handshake timeouts log a few lines whose counts add up, not one each.
//! - [`slow_readers`]: clients that never read a large response stay within the budget (reverse tcp and
//!   http, forward http).
//! - [`http_heads`]: unfinished heads on the `http` listeners, reverse and forward (hyper's buffers), stay
//!   within the budget.
//! - [`idle_floods`]: connections that send nothing, or stop mid-SOCKS-handshake, are bounded by the budget
//!   (each reserves its fixed cost), and a legitimate client behind them is served.
//! - [`connection_cost`]: the measurement behind each listener's fixed cost per connection (run by hand).
//! - [`floods`]: what the memory-budget floods share.
//! - [`memory_returns`]: after each of three floods, RSS comes back near its resting level.

#[path = "../support/mod.rs"]
mod support;

mod connection_cost;
mod fd_exhaustion;
mod flood;
mod floods;
mod full_disk;
mod h2_slow_readers;
mod half_close;
mod head_size;
mod http_heads;
mod idle_floods;
mod memory_budget;
mod memory_returns;
mod resets;
mod slow_readers;
mod slowloris;
mod smuggling;
mod upstream_timeout;
mod warning_flood;

use std::future::Future;
use std::time::Duration;

/// How long any answer or close may take before a test calls it missing: liveness, not speed, on a loaded
/// two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The handshake, connect and upstream timeouts of the cases that wait for one: short, so a case ends
/// quickly, while the margins around them stay generous.
pub const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// Runs `future`, failing the test (instead of hanging) if it takes longer than [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {PATIENCE:?}"))
}

/// The sidecar's two HTTP listeners.
#[derive(Clone, Copy, Debug)]
pub enum HttpProxy {
    Reverse,
    Forward,
}

/// An HTTP listener of the sidecar in front of one upstream.
pub struct HttpFront {
    pub addr: std::net::SocketAddr,
    /// What a request target starts with: `http://host:port` through the forward proxy, nothing through
    /// the reverse one (whose app is the upstream).
    pub target_prefix: String,
    pub proxy: support::RunningProxy,
}

impl HttpProxy {
    /// Starts the sidecar with this listener in front of `upstream`, its options changed by `adjust`.
    pub async fn start(
        self,
        upstream: std::net::SocketAddr,
        services: sidecar_proxy::server::Services,
        adjust: impl FnOnce(&mut sidecar_proxy::options::RuntimeOptions),
    ) -> HttpFront {
        use support::proxy::start_proxy_serving;
        match self {
            HttpProxy::Reverse => {
                let proxy =
                    start_proxy_serving("reverse", "http", Some(upstream), services, adjust).await;
                HttpFront {
                    addr: proxy.inbound(),
                    target_prefix: String::new(),
                    proxy,
                }
            }
            HttpProxy::Forward => {
                let proxy = start_proxy_serving("forward", "http", None, services, adjust).await;
                HttpFront {
                    addr: proxy.outbound(),
                    target_prefix: format!("http://{upstream}"),
                    proxy,
                }
            }
        }
    }
}
