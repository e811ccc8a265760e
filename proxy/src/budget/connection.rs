//! What one HTTP connection holds for its client, counted in the memory budget: the request head being
//! read (in hyper's read buffer until it is whole) and the response bytes waiting for the client to read
//! them (in hyper's write queue).
//!
//! Both live in hyper's buffers, out of reach, so they are counted from outside: the connection's reads
//! while a head is awaited, and the response body's chunks handed to hyper less the bytes written to the
//! socket. Each connection has a small share that needs no budget (an ordinary head, a few response
//! chunks), so that a client with ordinary requests is served while a flood holds the budget; past it, the
//! connection takes in more (reads the head on, polls the upstream's body) only while the budget has
//! room. Bytes already read are counted even past the limit (they exist); what stops is the reading.
//!
//! A connection that stays paused for [`SHED_AFTER`] is shed, freeing what it holds for the others: a head
//! that could not be read on (answered 503 when no response was begun on the connection, else closed),
//! or a client that took none of the response bytes it holds in the budget all that time (the connection
//! is closed: a client that reads nothing can be told nothing).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{MemoryBudget, Reservation};

/// Head bytes a connection reads without drawing on the budget: hyper's first read buffer, which holds
/// any ordinary request head.
pub const FREE_HEAD: usize = 8 * 1024;
/// Bytes a connection reads at a time while its head draws on the budget, so that one read cannot take
/// much more than the room it was let in for.
pub const HEAD_READ: usize = 8 * 1024;
/// Response bytes a connection may have waiting for its client without drawing on the budget.
pub const FREE_QUEUE: usize = 16 * 1024;
/// The room a response needs in the budget to take its next chunk once past [`FREE_QUEUE`]: the most an
/// upstream's chunk holds (the clients' read buffers are limited to it).
pub const QUEUE_CHUNK: usize = 64 * 1024;

/// How long a connection may wait on a spent budget without progress before it is shed.
pub const SHED_AFTER: Duration = Duration::from_secs(2);

/// Why a connection was shed.
#[derive(Debug, thiserror::Error)]
pub enum Shed {
    #[error("closed: the request head waited {SHED_AFTER:?} on the spent memory budget")]
    Head,
    #[error("cut off: the client read nothing for {SHED_AFTER:?} while its response waited on the spent memory budget")]
    Reader,
}

#[derive(Debug)]
pub struct ConnectionBudget {
    budget: &'static MemoryBudget,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The head being read, while one is awaited (HTTP/1 between requests).
    head: Option<Head>,
    /// Whether request heads are read through this connection's reads (HTTP/1), and it was not upgraded (a
    /// websocket, a CONNECT tunnel), after which its reads are no head any more.
    reads_heads: bool,
    /// Response bytes handed to hyper and not yet written to the client.
    queued: usize,
    queued_held: Reservation,
    /// A response was begun on this connection: the sidecar may no longer write one of its own.
    answered: bool,
    /// When the client last took response bytes.
    last_written: Instant,
}

#[derive(Debug)]
struct Head {
    bytes: usize,
    held: Reservation,
}

impl ConnectionBudget {
    /// A connection's account on the process's budget; `heads` when its request heads are read through it
    /// (HTTP/1; HTTP/2 header lists are bounded by the h2 settings instead).
    pub fn new(heads: bool) -> Self {
        ConnectionBudget::on(super::process(), heads)
    }

    pub fn on(budget: &'static MemoryBudget, heads: bool) -> Self {
        ConnectionBudget {
            budget,
            state: Mutex::new(State {
                head: heads.then(|| Head {
                    bytes: 0,
                    held: Reservation::on(budget),
                }),
                reads_heads: heads,
                queued: 0,
                queued_held: Reservation::on(budget),
                answered: false,
                last_written: Instant::now(),
            }),
        }
    }

    pub fn budget(&self) -> &'static MemoryBudget {
        self.budget
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain counters behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How much the next read may take: `None` for no limit (no head awaited); while a head is awaited,
    /// what is left of the free share, then [`HEAD_READ`] when the budget has room for it and `Some(0)`
    /// when it has none.
    pub fn read_allowance(&self) -> Option<usize> {
        let state = self.state();
        let head = state.head.as_ref()?;
        Some(if head.bytes < FREE_HEAD {
            FREE_HEAD - head.bytes
        } else if self.budget.has_room(HEAD_READ) {
            HEAD_READ
        } else {
            0
        })
    }

    /// `n` bytes were read from the client.
    pub fn read(&self, n: usize) {
        let mut state = self.state();
        if let Some(head) = state.head.as_mut() {
            head.bytes += n;
            head.held.track(head.bytes.saturating_sub(FREE_HEAD));
        }
    }

    /// A whole request head was parsed: its bytes are the request's now, not the budget's.
    pub fn head_complete(&self) {
        self.state().head = None;
    }

    /// A response was handed to the client: the next reads are the next request's head (HTTP/1
    /// keep-alive), unless the connection was upgraded.
    pub fn expect_head(&self) {
        let mut state = self.state();
        if state.reads_heads && state.head.is_none() {
            state.head = Some(Head {
                bytes: 0,
                held: Reservation::on(self.budget),
            });
        }
    }

    /// The connection was upgraded: no more heads on it.
    pub fn upgraded(&self) {
        let mut state = self.state();
        state.reads_heads = false;
        state.head = None;
    }

    /// Whether a response may take its next chunk from the upstream now.
    pub fn may_queue(&self) -> bool {
        self.state().queued < FREE_QUEUE || self.budget.has_room(QUEUE_CHUNK)
    }

    /// `n` response bytes were handed to hyper for the client.
    pub fn queued(&self, n: usize) {
        let mut state = self.state();
        state.answered = true;
        state.queued += n;
        let held = state.queued.saturating_sub(FREE_QUEUE);
        state.queued_held.track(held);
    }

    /// `n` bytes were written to the client (response heads and framing too, so the count errs low).
    pub fn written(&self, n: usize) {
        let mut state = self.state();
        if n > 0 {
            state.answered = true;
            state.last_written = Instant::now();
        }
        state.queued = state.queued.saturating_sub(n);
        let held = state.queued.saturating_sub(FREE_QUEUE);
        state.queued_held.track(held);
    }

    /// Whether the sidecar may still answer on this connection itself (nothing was written to it yet).
    pub fn may_answer(&self) -> bool {
        !self.state().answered
    }

    /// Whether the client is to be shed: it holds response bytes in the budget, took none of them for
    /// [`SHED_AFTER`], and the budget is spent. `Err` with when to look again otherwise, if ever.
    pub fn reader_stalled(&self) -> Result<(), Option<Instant>> {
        let state = self.state();
        if state.queued <= FREE_QUEUE || self.budget.has_room(QUEUE_CHUNK) {
            return Err(None);
        }
        let deadline = state.last_written + SHED_AFTER;
        if Instant::now() >= deadline {
            Ok(())
        } else {
            Err(Some(deadline))
        }
    }

    /// Bytes this connection holds in the budget now.
    pub fn held(&self) -> usize {
        let state = self.state();
        state.queued_held.bytes() + state.head.as_ref().map_or(0, |head| head.held.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: usize) -> &'static MemoryBudget {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(limit);
        budget
    }

    #[test]
    fn a_head_past_its_free_share_draws_on_the_budget_and_its_reads_stop_without_room() {
        let budget = budget(20 * 1024);
        let connection = ConnectionBudget::on(budget, true);
        assert_eq!(
            connection.read_allowance(),
            Some(FREE_HEAD),
            "an ordinary head"
        );
        connection.read(FREE_HEAD - 10);
        assert_eq!(connection.read_allowance(), Some(10));
        connection.read(10);
        assert_eq!(connection.read_allowance(), Some(HEAD_READ));
        connection.read(HEAD_READ);
        assert_eq!(budget.used(), HEAD_READ);
        connection.read(HEAD_READ);
        assert_eq!(connection.read_allowance(), Some(0), "the budget is spent");
        connection.head_complete();
        assert_eq!(
            (budget.used(), connection.read_allowance()),
            (0, None),
            "a request body"
        );
        connection.expect_head();
        connection.read(FREE_HEAD + 1);
        assert_eq!(budget.used(), 1, "the next request's head is counted again");
        connection.upgraded();
        connection.expect_head();
        connection.read(HEAD_READ * 10);
        assert_eq!((budget.used(), connection.read_allowance()), (0, None));
    }

    #[test]
    fn response_bytes_waiting_for_the_client_past_the_free_share_draw_on_the_budget() {
        let budget = budget(QUEUE_CHUNK + 1000);
        let connection = ConnectionBudget::on(budget, false);
        connection.expect_head();
        assert_eq!(
            connection.read_allowance(),
            None,
            "no heads counted on HTTP/2"
        );
        connection.queued(FREE_QUEUE - 1);
        assert!(connection.may_queue());
        connection.queued(QUEUE_CHUNK);
        assert_eq!(budget.used(), QUEUE_CHUNK - 1);
        assert!(!connection.may_queue(), "no room for another chunk");
        connection.written(QUEUE_CHUNK);
        assert_eq!(budget.used(), 0);
        assert!(connection.may_queue());
        connection.written(QUEUE_CHUNK);
        assert_eq!(
            connection.held(),
            0,
            "writes of heads and framing count low"
        );
        assert!(!connection.may_answer());
        assert_eq!(connection.reader_stalled(), Err(None), "it holds no budget");
        connection.queued(FREE_QUEUE + 5);
        drop(connection);
        assert_eq!(
            budget.used(),
            0,
            "a closed connection gives everything back"
        );
    }
}
