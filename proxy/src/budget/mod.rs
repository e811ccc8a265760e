//! The memory budget: the bytes the sidecar may hold on behalf of its peers, process-wide.
//!
//! Per-connection limits do not bound a process: 3,000 connections each within every limit can still hold
//! far more than a pod's memory limit. So the buffers whose size a remote peer decides draw from one
//! budget, and each has something cheaper to do when it is spent, rather than growing:
//!
//! - a relay direction carrying bulk data reads into a 64 KiB buffer; without budget it keeps reading
//!   2 KiB at a time (slower, never stopped);
//! - the capture tap gathering a request head split over several reads stops following that stream
//!   (its bytes go on; the stream is recorded as a stream, saying why);
//! - a capture copy of a body keeps what it has and is marked truncated;
//! - on the HTTP listeners, a request head past its connection's first 8 KiB, and the response bytes
//!   waiting for a slow client to read them: without budget, the sidecar stops reading from the sender
//!   (the client's head, the upstream's response) until there is room again ([`ConnectionBudget`]).
//!
//! Each accepted connection also reserves its fixed cost, measured per listener kind, for as long as its
//! socket lives ([`admission`]): past the budget, the accept loops stop accepting for a moment, and the
//! connections idle the longest are shed, so the number of connections is bounded by the budget too.
//!
//! Held bytes are reserved before they are allocated and released when they are freed, by
//! [`Reservation`]'s drop. The limit is `--memory-budget`; unset, it is derived from the container's memory
//! limit (cgroup v2 `memory.max`), and without one there is no limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub mod admission;
mod connection;
mod wait;

pub use connection::{
    ConnectionBudget, Shed, FREE_HEAD, FREE_QUEUE, HEAD_READ, QUEUE_CHUNK, SHED_AFTER,
};
pub use wait::RoomWait;

/// What budgeted bytes are held for, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    RelayBuffer,
    RequestHead,
    CaptureCopy,
    /// Bytes read from one side and not yet taken by a slow peer.
    QueuedForPeer,
    /// Each accepted connection's fixed state (its task, its sockets' bookkeeping, its protocol's first
    /// buffers), reserved at accept ([`admission`]).
    Connection,
}

impl Purpose {
    pub const ALL: [Purpose; PURPOSES] = [
        Purpose::RelayBuffer,
        Purpose::RequestHead,
        Purpose::CaptureCopy,
        Purpose::QueuedForPeer,
        Purpose::Connection,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Purpose::RelayBuffer => "relay_buffer",
            Purpose::RequestHead => "request_head",
            Purpose::CaptureCopy => "capture_copy",
            Purpose::QueuedForPeer => "queued_for_peer",
            Purpose::Connection => "connection",
        }
    }
}

#[derive(Debug)]
pub struct MemoryBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
    denied: [AtomicU64; PURPOSES],
    shed: [AtomicU64; PURPOSES],
}

const PURPOSES: usize = 5;

static PROCESS: MemoryBudget = MemoryBudget::unlimited();

/// The process's budget, which every connection draws from.
pub fn process() -> &'static MemoryBudget {
    &PROCESS
}

/// Bytes taken from a budget, given back when dropped.
#[derive(Debug, Default)]
pub struct Reservation {
    bytes: usize,
    from: Option<&'static MemoryBudget>,
}

impl MemoryBudget {
    pub const fn unlimited() -> Self {
        MemoryBudget {
            limit: AtomicUsize::new(usize::MAX),
            used: AtomicUsize::new(0),
            denied: [const { AtomicU64::new(0) }; PURPOSES],
            shed: [const { AtomicU64::new(0) }; PURPOSES],
        }
    }

    /// Sets the budget (at start, before any connection).
    pub fn set_limit(&self, bytes: usize) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// The budget in force; `None` when there is none.
    pub fn limit(&self) -> Option<usize> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|&limit| limit != usize::MAX)
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Reservations refused since start, for one purpose.
    pub fn denied(&self, purpose: Purpose) -> u64 {
        self.denied[purpose as usize].load(Ordering::Relaxed)
    }

    /// A reservation of `bytes`, or `None` when the budget cannot spare them.
    pub fn reserve(&'static self, purpose: Purpose, bytes: usize) -> Option<Reservation> {
        // `then`, not `then_some`: a reservation built for a refusal would give back what it never took.
        self.take(purpose, bytes).then(|| Reservation {
            bytes,
            from: Some(self),
        })
    }

    /// Whether `bytes` more would fit now (nothing is taken).
    pub fn has_room(&self, bytes: usize) -> bool {
        self.used().saturating_add(bytes) <= self.limit.load(Ordering::Relaxed)
    }

    /// Connections closed since start because they waited on a spent budget too long, by what they held.
    pub fn shed(&self, purpose: Purpose) -> u64 {
        self.shed[purpose as usize].load(Ordering::Relaxed)
    }

    pub fn count_shed(&self, purpose: Purpose) {
        self.shed[purpose as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal that was not a reservation: a reader paused for lack of room.
    pub fn count_denied(&self, purpose: Purpose) {
        self.denied[purpose as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self, purpose: Purpose, bytes: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let taken = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|&after| after <= limit)
            })
            .is_ok();
        if !taken {
            self.denied[purpose as usize].fetch_add(1, Ordering::Relaxed);
        }
        taken
    }
}

impl Reservation {
    /// An empty reservation on `budget`, to grow.
    pub fn on(budget: &'static MemoryBudget) -> Self {
        Reservation {
            bytes: 0,
            from: Some(budget),
        }
    }

    /// Takes `bytes` more; false (and nothing taken) when the budget cannot spare them.
    pub fn grow(&mut self, purpose: Purpose, bytes: usize) -> bool {
        let budget = *self.from.get_or_insert(&PROCESS);
        if budget.take(purpose, bytes) {
            self.bytes += bytes;
            true
        } else {
            false
        }
    }

    /// Holds exactly `bytes`, taking or giving back the difference. For bytes that are in memory already
    /// (hyper's buffers hold them): they are counted even past the limit, and the caller stops taking in
    /// more until there is room again, instead of refusing what it holds.
    pub fn track(&mut self, bytes: usize) {
        let budget = *self.from.get_or_insert(&PROCESS);
        if bytes > self.bytes {
            budget.used.fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            budget.used.fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes over what `other` holds (of the same budget), so that this one gives both back.
    pub fn absorb(&mut self, mut other: Reservation) {
        if self.from.is_none() {
            self.from = other.from;
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let (Some(budget), true) = (self.from, self.bytes > 0) {
            budget.used.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// The budget to use when none is given: half of the container's memory limit (the other half is the
/// runtime, the code, the capture queue and the allocator's slack), or none outside a limited container.
pub fn from_container_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    let limit: usize = text.trim().parse().ok()?;
    Some(limit / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_and_give_back_what_they_took() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(1000);
        let first = budget.reserve(Purpose::RelayBuffer, 600).expect("within");
        assert!(
            budget.reserve(Purpose::RequestHead, 600).is_none(),
            "past the limit"
        );
        assert_eq!(budget.denied(Purpose::RequestHead), 1);
        let mut growing = Reservation::on(budget);
        assert!(growing.grow(Purpose::CaptureCopy, 400));
        assert!(!growing.grow(Purpose::CaptureCopy, 1));
        drop(first);
        assert!(growing.grow(Purpose::CaptureCopy, 600));
        assert_eq!((growing.bytes(), budget.used()), (1000, 1000));
        drop(growing);
        assert_eq!(budget.used(), 0);
        let held = budget
            .reserve(Purpose::RelayBuffer, 1000)
            .expect("all of it");
        assert!(budget.reserve(Purpose::RelayBuffer, 1).is_none());
        assert_eq!(budget.used(), 1000, "a refusal gives nothing back");
        drop(held);
    }

    #[test]
    fn tracked_bytes_count_past_the_limit_and_are_all_given_back() {
        let budget: &'static MemoryBudget = Box::leak(Box::new(MemoryBudget::unlimited()));
        budget.set_limit(1000);
        let mut held = Reservation::on(budget);
        held.track(800);
        assert!(budget.has_room(200) && !budget.has_room(201));
        held.track(1200);
        assert_eq!(
            budget.used(),
            1200,
            "bytes already held count past the limit"
        );
        assert!(!budget.has_room(0));
        held.track(300);
        assert_eq!(budget.used(), 300);
        drop(held);
        assert_eq!(budget.used(), 0);
    }
}
