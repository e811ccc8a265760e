//! Each accepted connection's fixed cost in the memory budget, and shedding the connections idle the
//! longest when there is no room for more.
//!
//! Every connection costs memory before it holds any byte for its peer: its task and boxed handler, its
//! sockets' bookkeeping, its protocol's first state (hyper's connection, a SOCKS handshake, a relay's small
//! buffers and the upstream socket). That cost is measured per listener kind ([`ListenerKind::fixed_cost`])
//! and reserved at accept, for as long as the client's socket lives ([`ConnectionShare`]), so that the
//! budget bounds how many connections the sidecar holds, not only what they buffer.
//!
//! The accept loop waits while the budget has no room for another connection; the callers wait in the
//! kernel's listen backlog. Once it has waited [`super::SHED_AFTER`] with callers still waiting, the
//! connections idle the longest are shed ([`Registry::shed_idle`]): first those that wait on their client
//! (nothing was ever read from it, or the sidecar spoke last), then those whose client spoke last (a request
//! in flight to a slow upstream), each only once it has been idle for [`MIN_IDLE`]. A shed connection's
//! next read fails, after the listener's refusal when nothing was written to it yet (a `503` on the HTTP
//! listeners), and its handler closes it as it would any failed connection.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::Context;
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;

use super::{MemoryBudget, Purpose, Reservation};

/// How long a connection must have carried no byte either way before it may be shed: long enough that a
/// client which just connected or is being answered is left alone, short enough that a flood of ten times
/// what fits the budget is cycled through in seconds, not minutes.
pub const MIN_IDLE: Duration = Duration::from_millis(250);

/// The kinds of listener, for their connections' fixed cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Reverse `tcp` and transparent mode: the upstream is dialled at once, and the relay holds two
    /// sockets and what a slow writer has not taken of a small read.
    Relay,
    /// The `http` listeners, reverse and forward: hyper's connection, before any request.
    Http,
    /// The `socks` listeners, reverse and forward: the handshake, before the upstream is dialled.
    Socks,
}

impl ListenerKind {
    /// What one idle connection of this kind adds to the process's resident memory (RSS over a few hundred
    /// idle connections, debug binary, capture on: the `connection_cost` test measures it); rounded up.
    pub const fn fixed_cost(self) -> usize {
        match self {
            ListenerKind::Relay => 16 * 1024,
            ListenerKind::Http => 16 * 1024,
            ListenerKind::Socks => 16 * 1024,
        }
    }
}

/// Who carried the last byte of a connection, for the order of shedding.
const NOBODY: u8 = 0;
const CLIENT: u8 = 1;
const SIDECAR: u8 = 2;

/// One connection's reservation and what the shedding needs to know of it; held by the client socket's
/// byte meter, so it lives exactly as long as the socket.
#[derive(Debug)]
pub struct ConnectionShare {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    held: Reservation,
    /// [`now_ms`] at the last byte either way (or the accept).
    last_active: AtomicU64,
    last_speaker: AtomicU8,
    /// Anything was written to the client: the listener's refusal can no longer be sent.
    answered: AtomicBool,
    shed: AtomicBool,
    /// The tasks to wake when the connection is shed: its reader and its writer (a relay polls each side
    /// from its own future).
    reader: AtomicWaker,
    writer: AtomicWaker,
    /// What the client is told when it is shed before anything was written to it.
    refusal: &'static [u8],
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since [`epoch`], plus a day: any activity can be dated back (by the tests) without
/// going below zero.
fn now_ms() -> u64 {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(DAY_MS)
}

impl ConnectionShare {
    /// Reserves `cost` for a connection just accepted, in `registry`. The reservation is counted even past
    /// the limit: the socket exists already (the accept loop looked for room before accepting, so this
    /// overshoots by at most one connection per listener).
    pub fn admit(
        registry: &Registry,
        budget: &'static MemoryBudget,
        cost: usize,
        refusal: &'static [u8],
    ) -> Self {
        let mut held = Reservation::on(budget);
        held.track(cost);
        let state = Arc::new(State {
            held,
            last_active: AtomicU64::new(now_ms()),
            last_speaker: AtomicU8::new(NOBODY),
            answered: AtomicBool::new(false),
            shed: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            writer: AtomicWaker::new(),
            refusal,
        });
        registry.register(&state);
        ConnectionShare { state }
    }

    /// Bytes came from the client.
    pub fn read(&self) {
        self.state.last_active.store(now_ms(), Ordering::Relaxed);
        self.state.last_speaker.store(CLIENT, Ordering::Relaxed);
    }

    /// Bytes went to the client.
    pub fn written(&self) {
        self.state.last_active.store(now_ms(), Ordering::Relaxed);
        self.state.last_speaker.store(SIDECAR, Ordering::Relaxed);
        self.state.answered.store(true, Ordering::Relaxed);
    }

    /// Whether the connection was shed; if not, `cx` is woken when it is. `reading` says which side polls.
    /// When shed, what to send the client first (empty when something was written to it already).
    pub fn poll_shed(&self, cx: &mut Context<'_>, reading: bool) -> Option<&'static [u8]> {
        let state = &self.state;
        if !state.shed.load(Ordering::Acquire) {
            let waker = if reading {
                &state.reader
            } else {
                &state.writer
            };
            waker.register(cx.waker());
            // Shed between the first look and the registration: the wake may have gone to an old waker.
            if !state.shed.load(Ordering::Acquire) {
                return None;
            }
        }
        Some(if state.answered.load(Ordering::Relaxed) {
            &[]
        } else {
            state.refusal
        })
    }
}

/// The open connections, for shedding the ones idle the longest.
#[derive(Debug, Default)]
pub struct Registry {
    entries: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    list: Vec<Weak<State>>,
    /// The length after the last sweep of closed connections: the next is due at twice it.
    swept: usize,
}

static PROCESS: OnceLock<Registry> = OnceLock::new();

/// The registry of the process's connections.
pub fn registry() -> &'static Registry {
    PROCESS.get_or_init(Registry::default)
}

impl Registry {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn register(&self, state: &Arc<State>) {
        let mut entries = self.entries();
        // Closed connections are swept out when the list has doubled since the last sweep: amortized
        // constant work per accept, and the list never holds more than twice the open connections (plus
        // a few hundred).
        if entries.list.len() >= (2 * entries.swept).max(256) {
            entries.list.retain(|entry| entry.strong_count() > 0);
            entries.swept = entries.list.len();
        }
        entries.list.push(Arc::downgrade(state));
    }

    /// Sheds connections idle for at least [`MIN_IDLE`], those waiting on their client first and the
    /// longest idle first, until they give back at least `bytes` (or none is left to shed). Returns how
    /// many were shed; each is counted in `budget`'s shed count for [`Purpose::Connection`].
    pub fn shed_idle(&self, budget: &MemoryBudget, bytes: usize) -> usize {
        let now = now_ms();
        let min_idle = u64::try_from(MIN_IDLE.as_millis()).unwrap_or(u64::MAX);
        let mut candidates: Vec<(u8, u64, Arc<State>)> = {
            let mut entries = self.entries();
            entries.list.retain(|entry| entry.strong_count() > 0);
            entries.swept = entries.list.len();
            entries
                .list
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|state| !state.shed.load(Ordering::Relaxed))
                .filter_map(|state| {
                    let last_active = state.last_active.load(Ordering::Relaxed);
                    let tier = match state.last_speaker.load(Ordering::Relaxed) {
                        CLIENT => 1,
                        _ => 0,
                    };
                    (now.saturating_sub(last_active) >= min_idle).then_some((
                        tier,
                        last_active,
                        state,
                    ))
                })
                .collect()
        };
        candidates.sort_unstable_by_key(|(tier, last_active, _)| (*tier, *last_active));
        let mut freed = 0;
        let mut shed = 0;
        for (_, _, state) in candidates {
            if freed >= bytes {
                break;
            }
            freed += state.held.bytes();
            shed += 1;
            state.shed.store(true, Ordering::Release);
            state.reader.wake();
            state.writer.wake();
            budget.count_shed(Purpose::Connection);
        }
        shed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn budget(limit: usize) -> &'static MemoryBudget {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(limit);
        budget
    }

    fn idle_for(share: &ConnectionShare, idle: Duration) {
        let at = now_ms().saturating_sub(u64::try_from(idle.as_millis()).unwrap());
        share.state.last_active.store(at, Ordering::Relaxed);
    }

    #[test]
    fn a_share_holds_its_cost_until_the_connection_ends() {
        let budget = budget(1000);
        let registry = Registry::default();
        let first = ConnectionShare::admit(&registry, budget, 600, b"no");
        let second = ConnectionShare::admit(&registry, budget, 600, b"no");
        assert_eq!(
            budget.used(),
            1200,
            "counted past the limit: it is accepted"
        );
        drop(first);
        drop(second);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_longest_idle_connections_waiting_on_their_client_are_shed_first() {
        let budget = budget(10_000);
        let registry = Registry::default();
        let mut cx = Context::from_waker(Waker::noop());
        let spoke_last = ConnectionShare::admit(&registry, budget, 100, b"503");
        spoke_last.read();
        idle_for(&spoke_last, Duration::from_secs(60));
        let answered = ConnectionShare::admit(&registry, budget, 100, b"503");
        answered.written();
        idle_for(&answered, Duration::from_secs(5));
        let silent = ConnectionShare::admit(&registry, budget, 100, b"503");
        idle_for(&silent, Duration::from_secs(10));
        let fresh = ConnectionShare::admit(&registry, budget, 100, b"503");
        for share in [&spoke_last, &answered, &silent, &fresh] {
            assert_eq!(share.poll_shed(&mut cx, true), None);
        }

        assert_eq!(registry.shed_idle(budget, 100), 1);
        assert_eq!(
            silent.poll_shed(&mut cx, true),
            Some(&b"503"[..]),
            "the longest idle of those waiting on their client; told why, as nothing was written to it"
        );
        assert_eq!(registry.shed_idle(budget, 100), 1);
        assert_eq!(
            answered.poll_shed(&mut cx, false),
            Some(&b""[..]),
            "an answered connection is just closed"
        );
        assert_eq!(
            registry.shed_idle(budget, 1000),
            1,
            "then a client that spoke last"
        );
        assert!(spoke_last.poll_shed(&mut cx, true).is_some());
        assert_eq!(
            registry.shed_idle(budget, 1000),
            0,
            "a connection just accepted is left alone"
        );
        assert_eq!(fresh.poll_shed(&mut cx, true), None);
        assert_eq!(budget.shed(Purpose::Connection), 3);
    }
}
