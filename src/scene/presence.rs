//! Zone presence with hysteresis: what a signal's demand reads.
//!
//! A detector that misses a waiting car for a frame must not drop the call, and one false box
//! must not place it. Per zone and class, presence turns on after an object has been inside for
//! `enter_frames` consecutive updates and off only `exit_ms` after the last object inside was
//! seen. While it holds, the zone reports the last number of objects seen inside.

use std::time::Duration;

use crate::config::{ZoneConfig, MAX_CLASSES};

/// Presence of one class in one zone.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ClassPresence {
    occupied: bool,
    /// Consecutive updates with an object inside.
    streak: u32,
    last_seen: Duration,
    /// Objects inside at the latest update that had any.
    last_count: u32,
}

/// A zone's dwell figures: completed stays of tracks in it, and the longest stay still going
/// on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dwell {
    /// Completed stays: a track left the zone, or was evicted (lost) while in it.
    pub visits: u64,
    /// Their total length.
    pub total: Duration,
    /// The longest of them.
    pub longest: Duration,
    /// The longest stay of a track still in the zone at the latest update (zero if none).
    pub current_longest: Duration,
}

impl Dwell {
    /// Mean length of a completed stay (zero before the first).
    pub fn mean(&self) -> Duration {
        match u32::try_from(self.visits) {
            Ok(0) => Duration::ZERO,
            Ok(n) => self.total / n,
            Err(_) => Duration::from_secs_f64(self.total.as_secs_f64() / self.visits as f64),
        }
    }
}

/// One zone's presence per counted class, plus its visit and dwell figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ZonePresence {
    enter_frames: u32,
    exit: Duration,
    classes: [ClassPresence; MAX_CLASSES],
    occupied_periods: u64,
    visits: u64,
    dwell_total: Duration,
    dwell_longest: Duration,
    current_longest: Duration,
}

impl ZonePresence {
    /// Presence for a zone with `config`'s hysteresis.
    pub fn new(config: &ZoneConfig) -> ZonePresence {
        ZonePresence {
            enter_frames: config.enter_frames.max(1),
            exit: Duration::from_millis(config.exit_ms),
            classes: [ClassPresence::default(); MAX_CLASSES],
            occupied_periods: 0,
            visits: 0,
            dwell_total: Duration::ZERO,
            dwell_longest: Duration::ZERO,
            current_longest: Duration::ZERO,
        }
    }

    /// One update at `now`: `inside[c]` objects of counted class `c` were seen inside. Writes
    /// the presence to report into `out` (0 for a free class).
    pub fn update(
        &mut self,
        inside: &[u32; MAX_CLASSES],
        now: Duration,
        out: &mut [u32; MAX_CLASSES],
    ) {
        let was_occupied = self.is_occupied();
        for ((p, &n), o) in self.classes.iter_mut().zip(inside).zip(out.iter_mut()) {
            if n > 0 {
                p.streak = p.streak.saturating_add(1);
                p.last_seen = now;
                p.last_count = n;
                if p.streak >= self.enter_frames {
                    p.occupied = true;
                }
            } else {
                p.streak = 0;
                if p.occupied && now.saturating_sub(p.last_seen) >= self.exit {
                    p.occupied = false;
                }
            }
            *o = if p.occupied { p.last_count } else { 0 };
        }
        if !was_occupied && self.is_occupied() {
            self.occupied_periods += 1;
        }
    }

    /// Whether any class is present.
    pub fn is_occupied(&self) -> bool {
        self.classes.iter().any(|p| p.occupied)
    }

    /// How many times the zone went from free to occupied.
    pub fn occupied_periods(&self) -> u64 {
        self.occupied_periods
    }

    /// Records the end of one track's stay in the zone.
    pub fn record_visit(&mut self, dwell: Duration) {
        self.visits += 1;
        self.dwell_total += dwell;
        self.dwell_longest = self.dwell_longest.max(dwell);
    }

    /// Completed stays: `(count, total dwell, longest dwell)`.
    pub fn visits(&self) -> (u64, Duration, Duration) {
        (self.visits, self.dwell_total, self.dwell_longest)
    }

    /// Records the longest stay of a track now in the zone (zero if none is).
    pub fn set_current_longest(&mut self, dwell: Duration) {
        self.current_longest = dwell;
    }

    /// Visits, total, longest and current longest dwell.
    pub fn dwell(&self) -> Dwell {
        Dwell {
            visits: self.visits,
            total: self.dwell_total,
            longest: self.dwell_longest,
            current_longest: self.current_longest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Anchor;

    fn presence(enter_frames: u32, exit_ms: u64) -> ZonePresence {
        ZonePresence::new(&ZoneConfig {
            name: "z".into(),
            camera: None,
            points: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]],
            anchor: Anchor::BottomCenter,
            enter_frames,
            exit_ms,
            ignore_stationary: false,
        })
    }

    fn step(p: &mut ZonePresence, class0: u32, t_ms: u64) -> u32 {
        let mut inside = [0; MAX_CLASSES];
        inside[0] = class0;
        let mut out = [0; MAX_CLASSES];
        p.update(&inside, Duration::from_millis(t_ms), &mut out);
        out[0]
    }

    #[test]
    fn occupied_after_k_frames_free_after_m_ms() {
        let mut p = presence(3, 500);
        // One false box never places a call.
        assert_eq!(step(&mut p, 1, 0), 0);
        assert_eq!(step(&mut p, 0, 100), 0);
        assert_eq!(step(&mut p, 1, 200), 0);
        assert_eq!(step(&mut p, 2, 300), 0);
        assert_eq!(step(&mut p, 2, 400), 2);
        assert_eq!(p.occupied_periods(), 1);
        // Missed for a few frames: the call holds, with the last count.
        assert_eq!(step(&mut p, 0, 500), 2);
        assert_eq!(step(&mut p, 0, 850), 2);
        assert_eq!(step(&mut p, 1, 900), 1);
        assert_eq!(step(&mut p, 0, 1000), 1);
        // Free exactly exit_ms after the last sighting.
        assert_eq!(step(&mut p, 0, 1399), 1);
        assert_eq!(step(&mut p, 0, 1400), 0);
        assert!(!p.is_occupied());
        // A new arrival is a second period, again after k frames.
        for t in [1500, 1600] {
            assert_eq!(step(&mut p, 1, t), 0);
        }
        assert_eq!(step(&mut p, 1, 1700), 1);
        assert_eq!(p.occupied_periods(), 2);
    }

    #[test]
    fn visits_accumulate_dwell() {
        let mut p = presence(1, 0);
        p.record_visit(Duration::from_secs(3));
        p.record_visit(Duration::from_secs(5));
        assert_eq!(
            p.visits(),
            (2, Duration::from_secs(8), Duration::from_secs(5))
        );
        p.set_current_longest(Duration::from_secs(7));
        let d = p.dwell();
        assert_eq!((d.visits, d.mean()), (2, Duration::from_secs(4)));
        assert_eq!(
            (d.longest, d.current_longest),
            (Duration::from_secs(5), Duration::from_secs(7))
        );
        assert_eq!(Dwell::default().mean(), Duration::ZERO);
    }
}
