//! When to try a failed camera again: exponential backoff between a minimum and a maximum
//! wait, so an unplugged camera costs one cheap attempt now and then, not a busy loop.

use std::time::Duration;

/// Reconnect schedule of one live camera.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The wait after the next failure.
    next_wait: Duration,
    /// Clock time of the next attempt; `None` while connected.
    retry_at: Option<Duration>,
}

impl Backoff {
    /// A schedule that waits `min` after the first failure, doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next_wait: min,
            retry_at: None,
        }
    }

    /// Records a failure at clock time `now` (a fault, or a failed attempt) and returns how
    /// long to wait before the next attempt.
    pub fn failed(&mut self, now: Duration) -> Duration {
        let wait = self.next_wait;
        self.retry_at = Some(now + wait);
        self.next_wait = (wait * 2).min(self.max);
        wait
    }

    /// Whether an attempt is due at `now` (always, when nothing failed).
    pub fn due(&self, now: Duration) -> bool {
        self.retry_at.is_none_or(|at| now >= at)
    }

    /// When the next attempt is due, if one is scheduled.
    pub fn retry_at(&self) -> Option<Duration> {
        self.retry_at
    }

    /// The wait after a first failure (the minimum).
    pub fn first_wait(&self) -> Duration {
        self.min
    }

    /// Records a success: the next failure waits the minimum again.
    pub fn succeeded(&mut self) {
        self.next_wait = self.min;
        self.retry_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_up_to_the_maximum_and_reset_on_success() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let mut now = Duration::ZERO;
        assert!(b.due(now));
        let mut waits = Vec::new();
        for _ in 0..6 {
            let w = b.failed(now);
            assert!(!b.due(now + w - MS));
            now += w;
            assert!(b.due(now));
            waits.push(w.as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.retry_at(), None);
        assert_eq!(b.failed(now), 100 * MS);
    }

    #[test]
    fn a_zero_minimum_still_waits() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(b.failed(Duration::ZERO), MS);
    }
}
