//! The clock the node's core runs on: `CLOCK_BOOTTIME` on Linux.
//!
//! Lease safety needs a clock that never runs slow by more than the drift
//! bound while the rest of the cluster's time passes. `CLOCK_MONOTONIC`
//! (`std::time::Instant`) stops while the machine is suspended, or while a
//! VM is paused for a live migration; a leader resuming from that would
//! still believe in a lease whose real time ran out long ago, while a new
//! leader serves. `CLOCK_BOOTTIME` counts that time, so the leader sees its
//! lease expired the moment it resumes (docs/consensus.md, "Which clocks the
//! lease trusts"). Elsewhere, the monotonic clock is used.

use crate::raft;
use std::time::Duration;

/// Time since the node started, on the boot-time clock.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    origin: Duration,
}

impl BootClock {
    pub fn start() -> BootClock {
        BootClock { origin: read() }
    }

    /// The core's "now": time since [`BootClock::start`].
    pub fn now(&self) -> raft::Instant {
        raft::Instant(read().saturating_sub(self.origin))
    }
}

#[cfg(target_os = "linux")]
fn read() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given, which
    // lives on this stack frame for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // CLOCK_BOOTTIME exists on every Linux since 2.6.39; it cannot fail
    // with a valid pointer.
    assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn read() -> Duration {
    use std::sync::OnceLock;
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    BASE.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_real_time_and_never_back() {
        let clock = BootClock::start();
        let wall = std::time::Instant::now();
        let a = clock.now();
        std::thread::sleep(Duration::from_millis(20));
        let b = clock.now();
        assert!(b.0 >= a.0 + Duration::from_millis(20), "{a:?} {b:?}");
        // Without a suspend, boot time and monotonic time advance alike.
        let drift = b.0.as_secs_f64() - wall.elapsed().as_secs_f64();
        assert!(drift.abs() < 0.01, "{drift}");
    }
}
