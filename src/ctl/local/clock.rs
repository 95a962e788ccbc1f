//! A local node on a skewed clock: the supervisor starts its process with
//! libfaketime preloaded and a rate (`FAKETIME="+0 x0.995"`), so that every
//! clock the node reads — the boot-time clock its leases and timers run on,
//! the monotonic clock tokio's timers use, the wall clock — runs at that
//! fraction of real time from the process's start, and its sleeps are
//! scaled alike. `raftctl chaos --faults skew=RATE` uses it to run a node
//! outside (or at the edge of) the drift bound the lease argument assumes
//! (docs/consensus.md, "The leader lease").
//!
//! The rate is fixed for the life of the process: libfaketime scales time
//! since the process started, so changing the rate of a running process
//! would make its monotonic clock jump. A skew therefore restarts the node.

use std::path::PathBuf;

use tokio::time::Instant;

/// Where to find libfaketime when it is not in a usual place.
pub const LIBRARY_ENV: &str = "RAFTKV_LIBFAKETIME";

/// Where Debian's and upstream's `faketime` packages put the library.
const USUAL_PLACES: [&str; 4] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// The libfaketime to preload: `$RAFTKV_LIBFAKETIME`, else the first of the
/// usual places that exists; an error saying what to install if none.
pub fn library() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(LIBRARY_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{LIBRARY_ENV}={} is not a file (it should name libfaketime.so.1)",
                path.display()
            ))
        };
    }
    USUAL_PLACES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "libfaketime is not installed (looked in {}): install Debian's `faketime` \
                 package, or set {LIBRARY_ENV} to the library",
                USUAL_PLACES.join(", ")
            )
        })
}

/// A node's clock rate while it is skewed, and when the supervisor puts it
/// back on the real clock by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Skew {
    /// Millionths of real time (995000: 0.5 % slow).
    pub rate_ppm: u32,
    pub library: PathBuf,
    pub until: Instant,
}

impl Skew {
    /// The environment that runs a process on this clock. The monotonic
    /// clocks must be faked too (`FAKETIME_DONT_FAKE_MONOTONIC=0`): they
    /// are the ones the node's leases trust.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", self.library.display().to_string()),
            ("FAKETIME", format!("+0 x{}", rate_text(self.rate_ppm))),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "0".into()),
        ]
    }
}

/// `rate_ppm` as a decimal rate: 995000 is `0.995`.
pub fn rate_text(rate_ppm: u32) -> String {
    format!("{}", f64::from(rate_ppm) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_fakes_the_monotonic_clocks_at_the_rate() {
        let skew = Skew {
            rate_ppm: 995_000,
            library: PathBuf::from("/lib/libfaketime.so.1"),
            until: Instant::now(),
        };
        let env = skew.env();
        assert!(env.contains(&("FAKETIME", "+0 x0.995".into())));
        assert!(env.contains(&("FAKETIME_DONT_FAKE_MONOTONIC", "0".into())));
        assert!(env.contains(&("LD_PRELOAD", "/lib/libfaketime.so.1".into())));
        assert_eq!(rate_text(2_000_000), "2");
    }
}
