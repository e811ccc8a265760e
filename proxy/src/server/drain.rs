//! The drain between SIGTERM and closing the listeners.
//!
//! When a pod is deleted, the kubelet signals its containers while the endpoint controller, kube-proxy and
//! the load balancers of other pods are still catching up: for a few seconds new connections keep
//! arriving. The sidecar turns not-ready at once (so the pod leaves its Services' endpoints) but keeps
//! accepting and serving, HTTP keep-alive included, until the drain duration has passed or no connection
//! has been open for [`QUIET`], whichever comes first; only then are the listeners closed and the open
//! connections given the shutdown grace period.
//!
//! "No connection open" alone would end the drain between two requests of a client that opens one
//! connection per request; a second without any connection is what tells a client that is done from
//! one that is between requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

/// How long the sidecar must have had no open connection, and accepted none, for the drain to end early.
pub(super) const QUIET: Duration = Duration::from_secs(1);
/// How often the open connections are looked at while draining (only then: nothing is polled otherwise).
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Connections accepted so far, counted by the accept loops: a connection that opened and closed between
/// two looks still counts as activity.
#[derive(Debug, Default)]
pub(super) struct Accepted(AtomicU64);

impl Accepted {
    pub(super) fn one_more(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why the drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// No connection open, none accepted, for [`QUIET`].
    Quiet,
    /// The drain duration passed with connections still open or arriving.
    DurationOver,
    /// A second signal: stop now.
    StopNow,
}

/// Waits until the drain is over. `connections` holds a task per open connection.
pub(super) async fn until_drained(
    duration: Duration,
    connections: &TaskTracker,
    accepted: &Accepted,
    stop_now: &CancellationToken,
) -> Drained {
    let started = Instant::now();
    let deadline = started + duration;
    info!(open = connections.len(), drain = ?duration, "draining: still serving, not ready; the listeners close once no connection has been open for 1s or the drain duration has passed");
    let mut seen = accepted.count();
    let mut quiet_since = connections.is_empty().then_some(started);
    loop {
        if let Some(since) = quiet_since {
            if since.elapsed() >= QUIET {
                return Drained::Quiet;
            }
        }
        if Instant::now() >= deadline {
            return Drained::DurationOver;
        }
        tokio::select! {
            _ = stop_now.cancelled() => return Drained::StopNow,
            _ = tokio::time::sleep_until(deadline.min(Instant::now() + LOOK_EVERY)) => {}
        }
        let now_seen = accepted.count();
        let idle = connections.is_empty() && now_seen == seen;
        seen = now_seen;
        quiet_since = match (idle, quiet_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
            (false, _) => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn with_nothing_open_it_ends_after_the_quiet_second() {
        let tasks = TaskTracker::new();
        let accepted = Accepted::default();
        let started = Instant::now();
        let drained = until_drained(
            Duration::from_secs(5),
            &tasks,
            &accepted,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(drained, Drained::Quiet);
        assert!(started.elapsed() >= QUIET);
    }

    #[tokio::test]
    async fn an_open_connection_holds_it_until_the_duration() {
        let tasks = TaskTracker::new();
        let open = CancellationToken::new();
        tasks.spawn({
            let open = open.clone();
            async move { open.cancelled().await }
        });
        let drained = until_drained(
            Duration::from_millis(300),
            &tasks,
            &Accepted::default(),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(drained, Drained::DurationOver);
        open.cancel();
    }

    #[tokio::test]
    async fn connections_opening_between_looks_keep_it_going() {
        let tasks = TaskTracker::new();
        let accepted = std::sync::Arc::new(Accepted::default());
        let stop_counting = CancellationToken::new();
        // A client with one short connection every 300 ms for 1.5 s, each over before the next look.
        let client = tokio::spawn({
            let accepted = accepted.clone();
            let stop_counting = stop_counting.clone();
            async move {
                while !stop_counting.is_cancelled() {
                    accepted.one_more();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        });
        let started = Instant::now();
        let ender = tokio::spawn({
            let stop_counting = stop_counting.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                stop_counting.cancel();
            }
        });
        let drained = until_drained(
            Duration::from_secs(10),
            &tasks,
            &accepted,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(drained, Drained::Quiet);
        assert!(started.elapsed() >= Duration::from_millis(1500));
        ender.await.unwrap();
        client.await.unwrap();
    }

    #[tokio::test]
    async fn a_second_signal_ends_it() {
        let tasks = TaskTracker::new();
        tasks.spawn(std::future::pending::<()>());
        let stop_now = CancellationToken::new();
        stop_now.cancel();
        let drained = until_drained(
            Duration::from_secs(60),
            &tasks,
            &Accepted::default(),
            &stop_now,
        )
        .await;
        assert_eq!(drained, Drained::StopNow);
    }
}
