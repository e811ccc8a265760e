//! Warnings about events peers can repeat thousands of times a second: what one peer did to its own
//! connection (a handshake or request head that never came in time, a malformed or oversized head, a
//! client that does not speak SOCKS), and what a flood of them does to the listeners (the connection limit
//! reached, accepts failing for lack of file descriptors, accepts paused for lack of memory budget,
//! connections that were not redirected). One log line per event lets a flood write thousands of lines a
//! second (15,000 in one slowloris test) and bury everything else.
//!
//! Each kind of event is counted and logged at most once per [`WARNING_INTERVAL`], the line saying how many
//! happened since the previous one: the first event of a quiet period at once (so a problem shows as soon as
//! it starts), the rest by the next event once the interval has passed, by [`report_due`] (called every
//! second while the sidecar serves), and at shutdown by [`report_remaining`], so the counts of all lines
//! add up to every event. The exact per-reason totals are also in `sidecar_handshake_errors_total`.
//!
//! Counting never waits: a plain atomic add on the connection's task, with a `try_lock` to decide who
//! writes a line, so a flood costs the data path nothing.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::warn;

/// How often, at most, one kind of event is logged.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// One kind of per-connection event and its count since the last line about it.
pub struct PeerWarning {
    /// What happened, in the plural: the line adds how many times.
    message: &'static str,
    /// Events not yet reported in a line.
    pending: AtomicU64,
    /// When the last line about this kind was logged.
    last_line: Mutex<Option<Instant>>,
}

/// A client took longer than the handshake timeout to send its request head, HTTP/2 preface or SOCKS
/// handshake (including connections opened and left idle).
pub static HANDSHAKE_TIMEOUT: PeerWarning = PeerWarning::new(
    "closing connections: no request head or handshake within the handshake timeout (--handshake-timeout)",
);
/// A request head over `--max-request-head`, answered 431.
pub static HEAD_TOO_LARGE: PeerWarning =
    PeerWarning::new("request heads over the limit answered 431 (--max-request-head)");
/// A request that is not valid HTTP, answered 400 or closed.
pub static MALFORMED_REQUEST: PeerWarning = PeerWarning::new("malformed HTTP requests refused");
/// Mock mode in transparent mode: a redirected connection that is not HTTP, closed.
pub static NOT_HTTP_UNDER_MOCK: PeerWarning = PeerWarning::new(
    "mock mode: closing redirected connections and CONNECT tunnels that carry neither HTTP nor HTTPS tls-out decrypts (--mock-unmatched passthrough sends them to their destination)",
);
/// A SOCKS listener's client that sent something else, or a SOCKS handshake that failed.
pub static SOCKS_HANDSHAKE_FAILED: PeerWarning =
    PeerWarning::new("closing connections: not a SOCKS4/SOCKS5 handshake, or the handshake failed");

/// A SOCKS or TLS client on an HTTP listener (crate::http::wrong_protocol), by listener and protocol: each
/// line names the setting the client probably wanted.
pub static SOCKS_ON_FORWARD: PeerWarning = PeerWarning::new(
    "SOCKS clients connected to the HTTP proxy port and were refused: give them the proxy as \
     http://HOST:PORT (HTTP_PROXY / HTTPS_PROXY), or run the sidecar with --proxy-protocol socks",
);
pub static TLS_ON_FORWARD: PeerWarning = PeerWarning::new(
    "TLS clients connected to the HTTP proxy port and were refused: their proxy URL probably says \
     https://; it must say http:// (HTTPS_PROXY=http://HOST:PORT), the client's own TLS then goes \
     through CONNECT",
);
pub static SOCKS_ON_REVERSE: PeerWarning = PeerWarning::new(
    "SOCKS clients connected to the reverse proxy's HTTP port and were refused: callers must speak \
     HTTP here, or run the sidecar with --proxy-protocol socks",
);
pub static TLS_ON_REVERSE: PeerWarning = PeerWarning::new(
    "TLS clients connected to the reverse proxy's HTTP port and were refused: callers must use http:// \
     here, or run the sidecar with --proxy-protocol tcp to pass their TLS through to the app",
);

/// A connection past `--max-connections`, refused in its listener's protocol.
pub static CONNECTION_LIMIT_REACHED: PeerWarning =
    PeerWarning::new("connection limit reached: refusing new connections (--max-connections)");
/// An accept that failed for lack of resources, retried after a pause.
pub static ACCEPT_FAILED: PeerWarning = PeerWarning::new(
    "accept failed (out of file descriptors?): retrying after a 50ms pause each time; pending connections wait in the listen backlog",
);
/// An accept loop that found no room in the memory budget for another connection, and paused.
pub static NO_ROOM_FOR_CONNECTIONS: PeerWarning = PeerWarning::new(
    "the memory budget has no room for another connection: accepts paused, callers wait in the listen \
     backlog, and after 2s the connections idle the longest are closed (--memory-budget)",
);
/// A transparent listener's connection that iptables did not redirect: relaying it would loop.
pub static NOT_REDIRECTED: PeerWarning = PeerWarning::new(
    "refusing connections that were not redirected by iptables (they would loop back into the sidecar)",
);

static ALL: [&PeerWarning; 13] = [
    &HANDSHAKE_TIMEOUT,
    &HEAD_TOO_LARGE,
    &MALFORMED_REQUEST,
    &NOT_HTTP_UNDER_MOCK,
    &SOCKS_HANDSHAKE_FAILED,
    &SOCKS_ON_FORWARD,
    &TLS_ON_FORWARD,
    &SOCKS_ON_REVERSE,
    &TLS_ON_REVERSE,
    &CONNECTION_LIMIT_REACHED,
    &ACCEPT_FAILED,
    &NO_ROOM_FOR_CONNECTIONS,
    &NOT_REDIRECTED,
];

impl PeerWarning {
    pub const fn new(message: &'static str) -> Self {
        PeerWarning {
            message,
            pending: AtomicU64::new(0),
            last_line: Mutex::new(None),
        }
    }

    /// Counts one event; logs a line when one is due.
    pub fn occurred(&self) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.log_if_due(None);
    }

    /// Counts one event with what went wrong (a parser's error); the line shows the latest such detail.
    pub fn occurred_because(&self, detail: &dyn fmt::Display) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.log_if_due(Some(detail));
    }

    /// Logs the events counted since the last line, if the interval has passed since it.
    fn log_if_due(&self, detail: Option<&dyn fmt::Display>) {
        // A contended lock means another task is deciding right now; its line will count this event.
        let Ok(mut last_line) = self.last_line.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last_line.is_some_and(|at| now.duration_since(at) < WARNING_INTERVAL) {
            return;
        }
        let count = self.pending.swap(0, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        *last_line = Some(now);
        drop(last_line);
        self.log(count, detail);
    }

    /// Logs whatever is still counted, due or not (at shutdown).
    fn log_remaining(&self) {
        let count = self.pending.swap(0, Ordering::Relaxed);
        if count > 0 {
            self.log(count, None);
        }
    }

    fn log(&self, count: u64, detail: Option<&dyn fmt::Display>) {
        match detail {
            Some(detail) => warn!(
                count,
                latest = %detail,
                "{} (count: since the last such line; at most one line every 10s)",
                self.message
            ),
            None => warn!(
                count,
                "{} (count: since the last such line; at most one line every 10s)", self.message
            ),
        }
    }
}

/// Logs the kinds whose interval has passed with events still counted: without it, the end of a burst
/// would be told only by the next event, maybe hours later.
pub fn report_due() {
    for warning in ALL {
        warning.log_if_due(None);
    }
}

/// Logs every count not yet reported; called once the last connection is done, before the sidecar exits.
pub fn report_remaining() {
    for warning in ALL {
        warning.log_remaining();
    }
}

/// Calls [`report_due`] every second until `stop` is cancelled.
pub async fn report_periodically(stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => report_due(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_quietly_within_the_interval_and_loses_no_event() {
        let warning = PeerWarning::new("test events");
        warning.occurred();
        // The first event was logged at once: nothing pending.
        assert_eq!(warning.pending.load(Ordering::Relaxed), 0);
        for _ in 0..1000 {
            warning.occurred();
        }
        assert_eq!(warning.pending.load(Ordering::Relaxed), 1000);
        // Not due yet: still counted.
        warning.log_if_due(None);
        assert_eq!(warning.pending.load(Ordering::Relaxed), 1000);
        // Pretend the interval passed: the periodic report takes all of them.
        *warning.last_line.lock().unwrap() = Some(Instant::now() - WARNING_INTERVAL);
        warning.log_if_due(None);
        assert_eq!(warning.pending.load(Ordering::Relaxed), 0);
        warning.occurred_because(&"late");
        assert_eq!(warning.pending.load(Ordering::Relaxed), 1);
        warning.log_remaining();
        assert_eq!(warning.pending.load(Ordering::Relaxed), 0);
    }
}
