//! Admitting a connection into the memory budget, as one listener's accept loop does it: each connection
//! reserves its listener kind's fixed cost ([`crate::budget::admission`]) for as long as its socket lives.
//!
//! Without room for one more, the loop stops accepting: the callers wait in the kernel's listen backlog,
//! and the loop looks at the budget again every [`RETRY`] (it never spins). Once it has waited
//! [`SHED_AFTER`] with callers still waiting, it sheds the connections idle the longest, one at the first
//! look and twice as many at each look after while callers still wait (up to [`SHED_BATCH`]): one caller
//! costs one idle connection, while a flood of idle connections is cycled through in seconds and the
//! callers behind it are served. The wait counts as "callers waiting" until an accept finds the backlog
//! empty.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::listeners::Handler;
use crate::budget::admission::{self, ConnectionShare, ListenerKind};
use crate::budget::{self, MemoryBudget, Purpose, SHED_AFTER};
use crate::peer_warnings::NO_ROOM_FOR_CONNECTIONS;

/// How often a paused accept loop looks at the budget again.
const RETRY: Duration = Duration::from_millis(50);
/// How many connections' worth of room one look sheds for, at most: 1,280 connections a second, enough to
/// cycle through a full listen backlog in about a second.
const SHED_BATCH: usize = 64;

/// The answer of the `http` listeners to a connection shed before anything was written to it.
const HTTP_REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 88\r\nconnection: close\r\nretry-after: 1\r\n\r\nsidecar: closed to make room for new connections: the memory budget is spent; try again\n";

pub(super) struct Admission {
    budget: &'static MemoryBudget,
    cost: usize,
    refusal: &'static [u8],
    /// Since when the loop has waited for room with callers waiting.
    pressed_since: Option<Instant>,
    /// How many connections' worth of room the next look sheds for.
    batch: usize,
}

impl Admission {
    pub(super) fn new(handler: &Handler) -> Self {
        let (kind, refusal): (ListenerKind, &'static [u8]) = match handler {
            Handler::ReverseHttp(_) | Handler::ForwardHttp(_) => (ListenerKind::Http, HTTP_REFUSAL),
            // Mid-handshake a SOCKS client can only be told by the close; a raw stream has no other way.
            Handler::ReverseSocks(_) | Handler::ForwardSocks => (ListenerKind::Socks, b""),
            Handler::ReverseTcp(_) | Handler::Transparent { .. } => (ListenerKind::Relay, b""),
        };
        Admission {
            budget: budget::process(),
            cost: kind.fixed_cost(),
            refusal,
            pressed_since: None,
            batch: 1,
        }
    }

    /// Waits until the budget has room for one more connection; `false` if `shutdown` came first.
    pub(super) async fn room(&mut self, shutdown: &CancellationToken) -> bool {
        if self.budget.has_room(self.cost) {
            return true;
        }
        self.budget.count_denied(Purpose::Connection);
        NO_ROOM_FOR_CONNECTIONS.occurred();
        let pressed_since = *self.pressed_since.get_or_insert_with(Instant::now);
        loop {
            if pressed_since.elapsed() >= SHED_AFTER {
                admission::registry().shed_idle(self.budget, self.cost * self.batch);
                self.batch = (self.batch * 2).min(SHED_BATCH);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(RETRY) => {}
            }
            if self.budget.has_room(self.cost) {
                return true;
            }
        }
    }

    /// An accept found no caller waiting: whatever wait comes next starts afresh.
    pub(super) fn backlog_empty(&mut self) {
        self.pressed_since = None;
        self.batch = 1;
    }

    /// The share of a connection just accepted.
    pub(super) fn admit(&self) -> ConnectionShare {
        ConnectionShare::admit(admission::registry(), self.budget, self.cost, self.refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_refusal_is_framed_by_its_content_length() {
        let text = std::str::from_utf8(HTTP_REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
    }
}
