//! Waiting for room in the memory budget, from inside a `poll` function.
//!
//! Nothing tells a paused reader when another connection gives bytes back, so it looks again after a short
//! pause. That costs a timer per paused connection, and only while the budget is spent.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{MemoryBudget, Purpose};

/// How long a paused reader waits before it looks at the budget again.
const RETRY: Duration = Duration::from_millis(50);

/// One reader's wait for room in the budget.
#[derive(Debug, Default)]
pub struct RoomWait {
    pause: Option<Pin<Box<Sleep>>>,
    since: Option<Instant>,
}

impl RoomWait {
    /// Ready once `may_go` says so; until then pending, woken every [`RETRY`] to ask again. Each pause is
    /// counted once as a refusal for `purpose`.
    pub fn poll_until(
        &mut self,
        cx: &mut Context<'_>,
        budget: &MemoryBudget,
        purpose: Purpose,
        mut may_go: impl FnMut() -> bool,
    ) -> Poll<()> {
        loop {
            if may_go() {
                self.pause = None;
                self.since = None;
                return Poll::Ready(());
            }
            let since = &mut self.since;
            let pause = self.pause.get_or_insert_with(|| {
                budget.count_denied(purpose);
                *since = Some(Instant::now());
                Box::pin(tokio::time::sleep(RETRY))
            });
            ready!(pause.as_mut().poll(cx));
            pause.as_mut().reset(tokio::time::Instant::now() + RETRY);
        }
    }

    /// Whether the reader is paused now.
    pub fn is_paused(&self) -> bool {
        self.pause.is_some()
    }

    /// How long the reader has been paused, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        self.since.map(|since| since.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn a_paused_reader_goes_on_once_there_is_room_and_counts_one_refusal() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        let room = AtomicBool::new(false);
        let mut wait = RoomWait::default();
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut poll = |wait: &mut RoomWait| {
            wait.poll_until(&mut cx, budget, Purpose::QueuedForPeer, || {
                room.load(Ordering::Relaxed)
            })
        };
        assert!(poll(&mut wait).is_pending());
        tokio::time::sleep(RETRY * 3).await;
        assert!(poll(&mut wait).is_pending() && wait.is_paused());
        assert!(wait.paused_for().unwrap() >= RETRY * 3);
        assert_eq!(budget.denied(Purpose::QueuedForPeer), 1);
        room.store(true, Ordering::Relaxed);
        assert!(poll(&mut wait).is_ready() && !wait.is_paused());
        assert_eq!(wait.paused_for(), None);
    }
}
