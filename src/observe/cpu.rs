//! `raftkv_process_cpu_seconds_total{mode="user"|"system"}`: the node's own
//! CPU time, read with `getrusage` at scrape time.
//!
//! The Prometheus process collector's `process_cpu_seconds_total` (kept
//! too, for dashboards that expect it) adds user and system time and, in
//! the `prometheus` crate, counts whole seconds only, so a CPU-per-request
//! figure from it needs minutes of load. These counters split the two and
//! step by microseconds, so `raftctl bench` can read a short run's CPU from
//! `/metrics` alone — as it must where the node's `/proc` is out of reach,
//! on Kubernetes (docs/performance.md).

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, Opts};

/// Reads the process's CPU time at every scrape.
#[derive(Clone)]
pub struct CpuCollector {
    seconds: CounterVec,
}

impl CpuCollector {
    pub fn new() -> CpuCollector {
        let opts = Opts::new(
            "raftkv_process_cpu_seconds_total",
            "CPU time this process has used, by mode (user, system), in microsecond steps.",
        );
        CpuCollector {
            seconds: CounterVec::new(opts, &["mode"]).unwrap(),
        }
    }
}

/// The process's user and system CPU time, in seconds.
fn usage() -> Option<(f64, f64)> {
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct,
    // and getrusage only writes into the one we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some((seconds(usage.ru_utime), seconds(usage.ru_stime)))
}

impl Collector for CpuCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.seconds.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // A counter is only ever added to: each scrape sets it to the
        // kernel's figure by a reset and an add, which two scrapes at once
        // must not interleave (a reader would see it fall).
        static ONE_SCRAPE: Mutex<()> = Mutex::new(());
        let _one = ONE_SCRAPE.lock().unwrap_or_else(|e| e.into_inner());
        let Some((user, system)) = usage() else {
            return Vec::new();
        };
        for (mode, value) in [("user", user), ("system", system)] {
            let counter = self.seconds.with_label_values(&[mode]);
            counter.reset();
            counter.inc_by(value);
        }
        self.seconds.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters read the process's CPU in fine steps: work done
    /// between two scrapes shows, and nothing goes back.
    #[test]
    fn the_counters_follow_the_process_cpu_time() {
        let c = CpuCollector::new();
        let read = |c: &CpuCollector| -> Vec<f64> {
            let family = c.collect().pop().unwrap();
            assert_eq!(family.name(), "raftkv_process_cpu_seconds_total");
            let mut by_mode: Vec<(String, f64)> = family
                .get_metric()
                .iter()
                .map(|m| {
                    (
                        m.get_label()[0].value().to_string(),
                        m.get_counter().get_value(),
                    )
                })
                .collect();
            by_mode.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(by_mode[0].0, "system");
            assert_eq!(by_mode[1].0, "user");
            by_mode.into_iter().map(|(_, v)| v).collect()
        };
        let before = read(&c);
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = read(&c);
        assert!(
            after[0] >= before[0] && after[1] > before[1],
            "{before:?} {after:?}"
        );
        // Far below whole seconds: 50 ms of spinning shows as tens of ms.
        assert!(after[1] - before[1] < 1.0, "{before:?} {after:?}");
    }
}
