//! Warnings about a condition that can repeat thousands of times a second (accepts failing while file
//! descriptors are exhausted, a flood at the connection limit): logged at most once per interval, with how
//! often it happened since, so the log stays readable and logging costs nothing under attack.

use std::time::{Duration, Instant};

/// How often, at most, one such warning is logged.
pub(super) const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Counts occurrences of one condition and says when it is time to warn about them.
pub(super) struct Throttle {
    last_warning: Option<Instant>,
    since_warning: u64,
}

impl Throttle {
    pub(super) fn new() -> Self {
        Throttle {
            last_warning: None,
            since_warning: 0,
        }
    }

    /// Counts one occurrence. Returns the number of occurrences to report (this one included) when a
    /// warning is due: the first time, then at most once per [`WARNING_INTERVAL`].
    pub(super) fn occurred(&mut self) -> Option<u64> {
        self.since_warning += 1;
        let now = Instant::now();
        let due = self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= WARNING_INTERVAL);
        if !due {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.since_warning))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_the_first_time_then_counts_quietly() {
        let mut throttle = Throttle::new();
        assert_eq!(throttle.occurred(), Some(1));
        for _ in 0..1000 {
            assert_eq!(throttle.occurred(), None);
        }
        // Pretend the interval passed: the next warning reports everything since the last one.
        throttle.last_warning = Some(Instant::now() - WARNING_INTERVAL);
        assert_eq!(throttle.occurred(), Some(1001));
    }
}
