//! Integrates the time a node holds a valid leader lease, for the
//! `raftkv_lease_held_seconds_total` counter behind the uptime SLO.
//!
//! Why a counter and not only the `raftkv_lease_valid` gauge: a gauge is seen
//! once per scrape, so a failover shorter than the scrape interval (raftkv's
//! is well under a second) is either missed or counted as a whole interval.
//! The node itself knows exactly when its lease runs out, so it adds up the
//! seconds and Prometheus only has to take differences.

use std::time::{Duration, Instant};

/// What was known at the previous look: when, and how much lease was left.
#[derive(Debug, Default)]
pub struct LeaseClock {
    last: Option<(Instant, Option<Duration>)>,
}

impl LeaseClock {
    /// Records that at `at` the lease has `remaining` left (`None`: no valid
    /// lease) and returns the seconds of lease held since the previous call.
    ///
    /// Between two looks the lease was certainly valid from the previous look
    /// until `min(now, previous + remaining then)`: it either ran out at its
    /// known expiry or was renewed (which only extends it). A lease acquired
    /// between two looks counts from the second one, so the total errs short
    /// by at most one look interval per acquisition, never long.
    pub fn note(&mut self, at: Instant, remaining: Option<Duration>) -> f64 {
        let held = match self.last {
            Some((then, Some(left))) => at.saturating_duration_since(then).min(left),
            _ => Duration::ZERO,
        };
        self.last = Some((at, remaining));
        held.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_renewed_lease_in_full_and_stops_at_expiry() {
        let t0 = Instant::now();
        let mut c = LeaseClock::default();
        assert_eq!(c.note(t0, None), 0.0);
        // Acquired between looks: counts from the first look that sees it.
        assert_eq!(c.note(t0 + ms(100), Some(ms(800))), 0.0);
        // Renewed every look: every interval counts.
        assert_eq!(c.note(t0 + ms(200), Some(ms(800))), 0.1);
        assert_eq!(c.note(t0 + ms(300), Some(ms(150))), 0.1);
        // A stall of 1 s: the lease ran out 150 ms after the last look.
        assert_eq!(c.note(t0 + ms(1300), None), 0.15);
        assert_eq!(c.note(t0 + ms(1400), None), 0.0);
    }

    #[test]
    fn a_clock_going_backwards_adds_nothing() {
        let t0 = Instant::now() + ms(1000);
        let mut c = LeaseClock::default();
        c.note(t0, Some(ms(500)));
        assert_eq!(c.note(t0 - ms(10), Some(ms(500))), 0.0);
    }
}
