//! The faults `raftctl chaos` injects into the pod it chooses: one
//! vocabulary that every platform shares. A platform carries out what it
//! can and refuses the rest with a message that says why (see
//! `Platform::pause_pod`); a fault is never skipped silently.

use std::time::Duration;

use super::duration::parse_duration;

/// How long `pause` freezes a pod when no length is given: a few election
/// timeouts at the defaults, so that the followers elect a new leader
/// while the old one, frozen with its lease, cannot tell.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// What a fault does to the pod it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Deletes the pod (forced or graceful, as chaos's `--grace` says); it
    /// comes back with its data.
    Kill,
    /// Freezes the pod's process for this long, then lets it run on: a
    /// stop-the-world pause (a long GC, a stalled VM, SIGSTOP) of a node
    /// that may believe it still leads with a lease.
    Pause(Duration),
}

impl FaultKind {
    /// `kill`, `pause` or `pause=DURATION` (e.g. `pause=900ms`).
    pub fn parse(text: &str) -> Result<FaultKind, String> {
        match text.split_once('=') {
            None if text == "kill" => Ok(FaultKind::Kill),
            None if text == "pause" => Ok(FaultKind::Pause(DEFAULT_PAUSE)),
            Some(("pause", length)) => match parse_duration(length)? {
                d if d.is_zero() => Err("a pause must last longer than 0".into()),
                d => Ok(FaultKind::Pause(d)),
            },
            _ => Err(format!(
                "{text:?} is not a fault: use kill, pause or pause=DURATION"
            )),
        }
    }

    /// How the report names it.
    pub fn label(&self) -> String {
        match self {
            FaultKind::Kill => "kill".into(),
            FaultKind::Pause(d) => format!("pause {d:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(FaultKind::parse("kill"), Ok(FaultKind::Kill));
        assert_eq!(
            FaultKind::parse("pause"),
            Ok(FaultKind::Pause(DEFAULT_PAUSE))
        );
        assert_eq!(
            FaultKind::parse("pause=900ms"),
            Ok(FaultKind::Pause(Duration::from_millis(900)))
        );
        assert_eq!(
            FaultKind::Pause(Duration::from_millis(900)).label(),
            "pause 900ms"
        );
        for bad in ["partition", "kill=1s", "pause=0s", "pause=soon", ""] {
            assert!(FaultKind::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(FaultKind::parse("nap").unwrap_err().contains("kill, pause"));
    }
}
