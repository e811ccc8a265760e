//! The reverse `http` listener's idle connections to the app, shared by every caller connection: a caller
//! that opens a connection for one request (`Connection: close`, or a new connection per request) is
//! served on a connection an earlier caller left, instead of the sidecar opening (and closing) one to the
//! app for each. Per request that saves a TCP handshake and teardown on loopback, which is most of what
//! such traffic costs.
//!
//! The engine gives a connection back only between exchanges, once a response was read to its framed end
//! (see `Engine::give_back_upstream`); the pool's part is to keep few and fresh ones:
//!
//! - at most `max_idle` (`--app-idle-connections`); past it the connection idle the longest is closed;
//! - none idle longer than `idle_timeout` (`--app-idle-timeout`), counted from its last response: apps
//!   close idle keep-alive connections after a few seconds (Node.js, uvicorn, Apache: 5 s), and a request
//!   sent on a connection the app is closing fails. A reaper closes expired ones even when no request
//!   comes (so they do not linger half-closed), and stops while the pool is empty;
//! - taken last-in first-out (the freshest first), and each checked before reuse: one the app closed
//!   (readable: EOF, or bytes it had no request for) is dropped;
//! - each holds a small reservation in the memory budget ([`IDLE_COST`]): with the budget spent, a finished
//!   connection is closed instead of kept.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::budget::{self, Purpose, Reservation};
use crate::metrics::APP_IDLE_CONNECTIONS;

/// What an idle app connection holds in the sidecar: its socket's registration with the runtime and its
/// place in the pool (no buffer: the engine's are released between exchanges); rounded up.
pub const IDLE_COST: usize = 1024;

/// One idle connection in `sidecar_app_idle_connections` ([`APP_IDLE_CONNECTIONS`]), for as long as it
/// is in a pool.
struct Counted;

impl Counted {
    fn new() -> Counted {
        APP_IDLE_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        APP_IDLE_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The idle app connections of one reverse `http` listener.
pub struct AppPool {
    max_idle: usize,
    idle_timeout: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Oldest first: given back at the end, taken from the end.
    idle: Vec<Idle>,
    reaping: bool,
}

struct Idle {
    stream: TcpStream,
    /// When its last response ended.
    since: Instant,
    _held: Reservation,
    _counted: Counted,
}

impl AppPool {
    /// A pool of at most `max_idle` connections (0: none kept), each for at most `idle_timeout`.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Arc<AppPool> {
        Arc::new(AppPool {
            max_idle,
            idle_timeout,
            state: Mutex::new(State::default()),
        })
    }

    /// An idle connection the app has not closed, the freshest first; `None` when there is none.
    pub fn take(&self) -> Option<TcpStream> {
        loop {
            let idle = self.lock().idle.pop()?;
            if idle.since.elapsed() < self.idle_timeout && still_open(&idle.stream) {
                return Some(idle.stream);
            }
        }
    }

    /// Keeps `stream`, whose last response ended at `since`, for a later request; closes it when the
    /// pool is off, it has been idle too long already, or the memory budget has no room for it.
    pub fn give_back(self: &Arc<Self>, stream: TcpStream, since: Instant) {
        if self.max_idle == 0 || since.elapsed() >= self.idle_timeout {
            return;
        }
        let Some(held) = budget::process().reserve(Purpose::Connection, IDLE_COST) else {
            return;
        };
        let evicted;
        let start_reaper;
        {
            let mut state = self.lock();
            evicted = (state.idle.len() >= self.max_idle).then(|| state.idle.remove(0));
            state.idle.push(Idle {
                stream,
                since,
                _held: held,
                _counted: Counted::new(),
            });
            start_reaper = !std::mem::replace(&mut state.reaping, true);
        }
        // Closed outside the lock.
        drop(evicted);
        if start_reaper {
            tokio::spawn(reap(Arc::downgrade(self)));
        }
    }

    /// Whether a connection whose last response ended at `since` may carry another request: not idle
    /// past the timeout. Without a pool (`max_idle` 0) a caller keeps its app connection as long as both
    /// keep it open, as before there was a pool.
    pub fn may_reuse(&self, since: Instant) -> bool {
        self.max_idle == 0 || since.elapsed() < self.idle_timeout
    }

    /// Idle connections now (for tests).
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the expired connections and those the app closed; whether any are left to watch.
    fn prune(&self) -> bool {
        let mut state = self.lock();
        let timeout = self.idle_timeout;
        let kept: Vec<Idle> = std::mem::take(&mut state.idle)
            .into_iter()
            .filter(|idle| idle.since.elapsed() < timeout && still_open(&idle.stream))
            .collect();
        state.idle = kept;
        if state.idle.is_empty() {
            state.reaping = false;
        }
        state.reaping
    }
}

/// Watches the pool's idle connections every fraction of the idle timeout while there are any (a closed
/// one is noticed within that, an expired one within a timeout and that), and ends with the pool.
async fn reap(pool: Weak<AppPool>) {
    loop {
        let Some(tick) = pool.upgrade().map(|pool| reap_tick(pool.idle_timeout)) else {
            return;
        };
        tokio::time::sleep(tick).await;
        match pool.upgrade() {
            Some(pool) if pool.prune() => {}
            _ => return,
        }
    }
}

fn reap_tick(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// Whether the app's side of an idle connection is still open: nothing to read (without a system call
/// when the socket has not become readable since the last read). An idle connection owes nothing, so
/// bytes to read mean it is unusable as much as an EOF does.
pub fn still_open(upstream: &TcpStream) -> bool {
    match upstream.readable().now_or_never() {
        None => true,
        Some(Err(_)) => false,
        Some(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(upstream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// A connected pair: the pool's end (the sidecar's) and the app's.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (theirs, _) = listener.accept().await.unwrap();
        (ours, theirs)
    }

    #[tokio::test]
    async fn takes_the_freshest_first_and_keeps_at_most_max_idle() {
        let pool = AppPool::new(2, Duration::from_secs(10));
        let mut apps = Vec::new();
        let mut ports = Vec::new();
        for _ in 0..3 {
            let (ours, theirs) = pair().await;
            ports.push(ours.local_addr().unwrap().port());
            apps.push(theirs);
            pool.give_back(ours, Instant::now());
        }
        assert_eq!(pool.idle(), 2, "the oldest was closed past the limit");
        let port = |s: TcpStream| s.local_addr().unwrap().port();
        assert_eq!(pool.take().map(port), Some(ports[2]));
        assert_eq!(pool.take().map(port), Some(ports[1]));
        assert!(pool.take().is_none());
    }

    #[tokio::test]
    async fn a_connection_the_app_closed_or_wrote_on_is_not_taken() {
        let pool = AppPool::new(4, Duration::from_secs(10));
        let (closed, app_closing) = pair().await;
        let (talked, mut app_talking) = pair().await;
        pool.give_back(closed, Instant::now());
        pool.give_back(talked, Instant::now());
        drop(app_closing);
        app_talking
            .write_all(b"HTTP/1.1 408\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take().is_none());
    }

    #[tokio::test]
    async fn expired_connections_are_closed_without_a_request() {
        let pool = AppPool::new(4, Duration::from_millis(100));
        let (ours, _theirs) = pair().await;
        pool.give_back(ours, Instant::now());
        assert_eq!(pool.idle(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle(), 0, "the reaper closed it");
        let (late, _app) = pair().await;
        pool.give_back(late, Instant::now() - Duration::from_millis(200));
        assert_eq!(pool.idle(), 0, "idle too long already when given back");
    }

    #[tokio::test]
    async fn a_pool_of_zero_keeps_nothing() {
        let pool = AppPool::new(0, Duration::from_secs(10));
        let (ours, _theirs) = pair().await;
        pool.give_back(ours, Instant::now());
        assert_eq!(pool.idle(), 0);
    }
}
