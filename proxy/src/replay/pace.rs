//! When each replayed request starts: as soon as a connection is free (`--concurrency` of them), at a
//! steady rate (`--rate N` per second), or with the gaps the capture recorded (`--pace recorded`,
//! shortened by `--speed`).

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Each request as soon as one of the concurrent slots is free.
    Free,
    /// `n` requests per second.
    Rate(f64),
    /// The recorded gaps divided by `speed`.
    Recorded { speed: f64 },
}

impl Pace {
    /// How long after the replay began the request at `index` (recorded `offset_ms` after the first)
    /// may start; `None` for at once.
    pub fn start_after(&self, index: usize, offset_ms: f64) -> Option<Duration> {
        match *self {
            Pace::Free => None,
            Pace::Rate(per_second) => Some(Duration::from_secs_f64(index as f64 / per_second)),
            Pace::Recorded { speed } => Some(Duration::from_secs_f64(offset_ms / 1000.0 / speed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_follow_the_rate_or_the_recorded_gaps() {
        assert_eq!(Pace::Free.start_after(9, 500.0), None);
        assert_eq!(
            Pace::Rate(4.0).start_after(2, 0.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            Pace::Recorded { speed: 2.0 }.start_after(1, 300.0),
            Some(Duration::from_millis(150))
        );
    }
}
