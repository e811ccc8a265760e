//! The connection limit: at most `--max-connections` client connections open per direction. One more is
//! refused in its listener's own protocol (an HTTP 503, a SOCKS failure reply, or a close for raw TCP)
//! while the open ones carry on, and every refusal is counted.
//!
//! The count is the direction's `connections_open` gauge, which every connection holds up for as long as
//! any part of it lives (a CONNECT tunnel, an upgraded websocket), so the limit counts what really holds
//! file descriptors. Only the accept loops add to it, so checking it there is exact for the one listener
//! of each direction of the inline modes (transparent mode's IPv6 listener may overshoot it by one).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::listeners::Handler;
use crate::net::closing::{drain_and_close, plain_http_response};
use crate::net::DialFailure;
use crate::peer_warnings::CONNECTION_LIMIT_REACHED;

/// Refusals being answered at once, per listener. Beyond this a flood is refused by closing at once:
/// politeness must not cost more than the connections it turns away.
const MAX_POLITE_REFUSALS: usize = 64;
/// The longest a refusal may take (reading a SOCKS request so it can be answered, draining an HTTP
/// request so the 503 is not lost to a reset).
const MAX_REFUSAL_TIME: Duration = Duration::from_secs(2);

/// The limit as one listener's accept loop applies it.
pub(super) struct ConnectionLimit {
    direction: &'static str,
    max: usize,
    open: Gauge,
    refused: Counter,
    refusing: Arc<AtomicUsize>,
}

impl ConnectionLimit {
    pub(super) fn new(direction: &'static str, max: usize, open: Gauge, refused: Counter) -> Self {
        ConnectionLimit {
            direction,
            max,
            open,
            refused,
            refusing: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether another connection would go over the limit.
    pub(super) fn is_reached(&self) -> bool {
        usize::try_from(self.open.get()).unwrap_or(0) >= self.max
    }

    /// Refuses `stream` in the listener's protocol, in a task of its own (bounded in time and number).
    pub(super) fn refuse(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        handler: &Arc<Handler>,
        handshake_timeout: Duration,
        tasks: &TaskTracker,
    ) {
        self.refused.inc();
        // Counted with the other floods' warnings: at most a line every 10 s, the last interval's count
        // told at shutdown, so the lines' counts add up to every refusal.
        CONNECTION_LIMIT_REACHED.occurred_because(&format_args!(
            "{} connections over {} open",
            self.direction, self.max
        ));
        debug!(%peer, direction = self.direction, "refused: connection limit reached");
        if self.refusing.fetch_add(1, Ordering::AcqRel) >= MAX_POLITE_REFUSALS {
            self.refusing.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let refusing = self.refusing.clone();
        let handler = handler.clone();
        let refusal = Refusal {
            direction: self.direction,
            limit: self.max,
        };
        let time = handshake_timeout.min(MAX_REFUSAL_TIME);
        tasks.spawn(async move {
            let _ = tokio::time::timeout(time, refusal.answer(stream, &handler)).await;
            refusing.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// What a refused client is told.
struct Refusal {
    direction: &'static str,
    limit: usize,
}

impl Refusal {
    async fn answer(&self, mut stream: TcpStream, handler: &Handler) {
        match handler {
            Handler::ReverseHttp(_) | Handler::ForwardHttp(_) => {
                let body = format!(
                    "sidecar: connection limit reached ({} open {} connections, --max-connections); try again later\n",
                    self.limit, self.direction
                );
                let answer = plain_http_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "retry-after: 1\r\n",
                    &body,
                );
                if stream.write_all(answer.as_bytes()).await.is_ok() {
                    drain_and_close(&mut stream).await;
                }
            }
            // The failure reply can only follow a request, so the handshake is read that far.
            Handler::ReverseSocks(_) | Handler::ForwardSocks => {
                if let Ok(request) = crate::socks::accept(stream).await {
                    let _ = request.refuse(DialFailure::Other).await;
                }
            }
            // A raw TCP client (or a redirected one) can only be told by closing.
            Handler::ReverseTcp(_) | Handler::Transparent { .. } => drop(stream),
        }
    }
}
