//! The node's Prometheus metrics (docs/observability.md), in one registry.
//!
//! One struct holds every metric so the node loop, the transport and the gRPC
//! layer update the same handles; the HTTP server only encodes the registry.

use super::lease_clock::LeaseClock;
use super::round_trip::RoundTrips;
use crate::storage::DiskBytes;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Every metric of a node.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub term: IntGauge,
    pub is_leader: IntGauge,
    pub has_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub elections_started: IntCounter,
    pub lease_valid: IntGauge,
    pub lease_remaining_seconds: Gauge,
    /// Seconds this node held a valid lease (see [`Metrics::note_lease`]).
    pub lease_held_seconds: Counter,
    lease_clock: Arc<Mutex<LeaseClock>>,
    /// 1 while `/readyz` would answer 200 (quorum of ready members on the dashboards).
    pub ready: IntGauge,
    /// Voting members in this node's configuration (quorum = voters / 2 + 1).
    pub voters: IntGauge,
    /// `raftkv_node_info{cluster_id, node_id, version} 1` (see [`Metrics::identify`]).
    node_info: IntGaugeVec,
    pub commit_index: IntGauge,
    pub applied_index: IntGauge,
    pub commit_lag: IntGauge,
    pub follower_lag_entries: IntGaugeVec,
    pub proposals_committed: IntCounter,
    pub proposals_failed: IntCounter,
    pub wal_fsync_duration: Histogram,
    pub grpc_request_duration: HistogramVec,
    /// Client-port answers by `service`, `method` and gRPC `code`
    /// (counted by `server::grpc_metrics`).
    pub grpc_requests: IntCounterVec,
    /// Heartbeat round trips to each peer, on the leader
    /// (`raftkv_peer_round_trip_seconds{peer}`).
    pub peer_round_trips: Arc<RoundTrips>,
    /// The data directory's byte counts, once the storage is open (see
    /// [`Metrics::watch_disk`]).
    disk: Arc<OnceLock<Arc<DiskBytes>>>,
    pub snapshots: IntCounter,
    pub snapshot_last_index: IntGauge,
    pub snapshot_duration: Histogram,
    /// The part of a snapshot spent on the node loop (copying the state).
    pub snapshot_copy_duration: Histogram,
    /// One turn of the node loop, from waking to waiting again (a sync
    /// included, while which peers' messages are still stepped).
    pub loop_busy: Histogram,
    /// How long a peer's message waited in the node loop's queue.
    pub peer_queue_wait: Histogram,
    pub keys: IntGauge,
    pub peer_messages_dropped: IntCounter,
    /// Comparisons of this replica's state hash with a leader's report, by
    /// `result` (`match`, `mismatch`).
    pub state_checks: IntCounterVec,
    /// The index of the latest state check where this replica's hash
    /// differed from the leader's (0: none since the process started).
    pub state_hash_mismatch_index: IntGauge,
    /// The index of the latest state check hashed here.
    pub state_hash_last_index: IntGauge,
    /// Time to hash the state machine at a state check (off the loop).
    pub state_hash_duration: Histogram,
    /// 1 while the TLS files on disk (by `files`: client-port, peer-port,
    /// client-dialer, peer-dialer) changed and do not load: the previous
    /// certificate stays in force.
    pub tls_reload_failing: IntGaugeVec,
    /// When the certificate in force expires, by `files`.
    pub tls_certificate_expiry: IntGaugeVec,
    /// Handshakes refused on a TLS port, by `port` (client, peer).
    pub tls_handshake_failures: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric (and the process collector on Linux).
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let m = Metrics {
            term: gauge(r, "raftkv_term", "Current Raft term of this node."),
            is_leader: gauge(r, "raftkv_is_leader", "1 if this node is the leader."),
            has_leader: gauge(r, "raftkv_has_leader", "1 if this node knows a leader."),
            leader_changes: counter(
                r,
                "raftkv_leader_changes_total",
                "Times the known leader changed.",
            ),
            elections_started: counter(
                r,
                "raftkv_elections_started_total",
                "Elections this node started.",
            ),
            lease_valid: gauge(
                r,
                "raftkv_lease_valid",
                "1 while this node holds a valid leader lease.",
            ),
            lease_remaining_seconds: register(
                r,
                Gauge::new(
                    "raftkv_lease_remaining_seconds",
                    "Time left on the leader lease.",
                )
                .unwrap(),
            ),
            lease_held_seconds: register(
                r,
                Counter::new(
                    "raftkv_lease_held_seconds_total",
                    "Seconds this node held a valid leader lease (writes and lease reads served).",
                )
                .unwrap(),
            ),
            lease_clock: Arc::default(),
            ready: gauge(
                r,
                "raftkv_ready",
                "1 while the node is ready: a member that knows a leader and has applied what was committed.",
            ),
            voters: gauge(
                r,
                "raftkv_voters",
                "Voting members in this node's configuration.",
            ),
            node_info: gauge_vec(
                r,
                "raftkv_node_info",
                "Identity of this node: 1, labelled with its cluster id, node id and version.",
                &["cluster_id", "node_id", "version"],
            ),
            commit_index: gauge(
                r,
                "raftkv_commit_index",
                "Highest log index known committed.",
            ),
            applied_index: gauge(
                r,
                "raftkv_applied_index",
                "Highest log index applied to the state machine.",
            ),
            commit_lag: gauge(
                r,
                "raftkv_commit_lag",
                "Committed entries not applied yet (commit - applied).",
            ),
            follower_lag_entries: gauge_vec(
                r,
                "raftkv_follower_lag_entries",
                "Entries a follower is behind the leader's log (on the leader).",
                &["peer"],
            ),
            proposals_committed: counter(
                r,
                "raftkv_proposals_committed_total",
                "Client proposals committed and answered.",
            ),
            proposals_failed: counter(
                r,
                "raftkv_proposals_failed_total",
                "Client proposals refused or with unknown outcome.",
            ),
            wal_fsync_duration: histogram(
                r,
                "raftkv_wal_fsync_duration_seconds",
                "Duration of one WAL sync (group commit).",
                fsync_buckets(),
            ),
            grpc_request_duration: {
                let opts = HistogramOpts::new(
                    "raftkv_grpc_request_duration_seconds",
                    "Duration of client gRPC requests.",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14).unwrap());
                register(r, HistogramVec::new(opts, &["method"]).unwrap())
            },
            grpc_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "raftkv_grpc_requests_total",
                        "Client-port gRPC requests answered, by service, method and gRPC status code.",
                    ),
                    &["service", "method", "code"],
                )
                .unwrap(),
            ),
            peer_round_trips: {
                let opts = HistogramOpts::new(
                    "raftkv_peer_round_trip_seconds",
                    "Time from a heartbeat to a peer to its answer, on the leader, by peer node id.",
                )
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap());
                let h = register(r, HistogramVec::new(opts, &["peer"]).unwrap());
                Arc::new(RoundTrips::new(h))
            },
            disk: {
                let disk = Arc::default();
                register(r, DiskCollector::new(&disk));
                disk
            },
            snapshots: counter(
                r,
                "raftkv_snapshot_count_total",
                "Snapshots taken or installed.",
            ),
            snapshot_last_index: gauge(
                r,
                "raftkv_snapshot_last_index",
                "Last log index covered by the latest snapshot.",
            ),
            snapshot_duration: histogram(
                r,
                "raftkv_snapshot_duration_seconds",
                "Time to take and save a snapshot.",
                prometheus::exponential_buckets(0.001, 2.0, 14).unwrap(),
            ),
            snapshot_copy_duration: histogram(
                r,
                "raftkv_snapshot_copy_duration_seconds",
                "Time the node loop spent copying the state machine for a snapshot.",
                prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap(),
            ),
            loop_busy: histogram(
                r,
                "raftkv_loop_turn_duration_seconds",
                "One turn of the node loop: taking a batch, persisting, sending, applying.",
                prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap(),
            ),
            peer_queue_wait: histogram(
                r,
                "raftkv_peer_message_queue_seconds",
                "Time a peer's message waited before the node loop stepped it.",
                prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap(),
            ),
            keys: gauge(r, "raftkv_keys", "Keys in the state machine."),
            peer_messages_dropped: counter(
                r,
                "raftkv_peer_messages_dropped_total",
                "Peer messages dropped because a peer's queue was full.",
            ),
            state_checks: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "raftkv_state_checks_total",
                        "Comparisons of this replica's state hash with the leader's at a state check, by result.",
                    ),
                    &["result"],
                )
                .unwrap(),
            ),
            state_hash_mismatch_index: gauge(
                r,
                "raftkv_state_hash_mismatch_index",
                "Log index of the latest state check where this replica's state hash differed from the leader's (0: none).",
            ),
            state_hash_last_index: gauge(
                r,
                "raftkv_state_hash_last_index",
                "Log index of the latest state check hashed on this node.",
            ),
            state_hash_duration: histogram(
                r,
                "raftkv_state_hash_duration_seconds",
                "Time to hash the whole state machine at a state check (off the node loop).",
                prometheus::exponential_buckets(0.0001, 2.0, 18).unwrap(),
            ),
            tls_reload_failing: gauge_vec(
                r,
                "raftkv_tls_reload_failing",
                "1 while changed TLS files do not load (the previous certificate stays in force), by files.",
                &["files"],
            ),
            tls_certificate_expiry: gauge_vec(
                r,
                "raftkv_tls_certificate_expiry_timestamp_seconds",
                "Unix time at which the certificate in force expires, by files.",
                &["files"],
            ),
            tls_handshake_failures: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "raftkv_tls_handshake_failures_total",
                        "TLS handshakes refused on a port (plaintext, unknown CA, expired or missing client certificate), by port.",
                    ),
                    &["port"],
                )
                .unwrap(),
            ),
            registry,
        };
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = m.registry.register(Box::new(pc));
            register(&m.registry, super::cpu::CpuCollector::new());
        }
        m
    }

    /// Publishes the node's identity once it is settled (after bootstrap or
    /// join): one `raftkv_node_info` series, replacing any earlier one.
    pub fn identify(&self, cluster_id: &str, node_id: u64) {
        self.node_info.reset();
        self.node_info
            .with_label_values(&[cluster_id, &node_id.to_string(), env!("CARGO_PKG_VERSION")])
            .set(1);
    }

    /// Called by the node loop at every tick with the lease left now (`None`
    /// without a valid lease): sets the lease gauges and adds the seconds held
    /// since the previous call to `raftkv_lease_held_seconds_total`.
    pub fn note_lease(&self, remaining: Option<Duration>) {
        self.lease_valid.set(i64::from(remaining.is_some()));
        self.lease_remaining_seconds
            .set(remaining.unwrap_or_default().as_secs_f64());
        let held = self
            .lease_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(Instant::now(), remaining);
        self.lease_held_seconds.inc_by(held);
    }

    /// Publishes the data directory's byte counts (`raftkv_wal_bytes`,
    /// `raftkv_snapshot_bytes`) from the storage's own tally; the first
    /// storage given wins (a node opens one).
    pub fn watch_disk(&self, bytes: Arc<DiskBytes>) {
        let _ = self.disk.set(bytes);
    }

    /// The registry in the Prometheus text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// `raftkv_wal_bytes` and `raftkv_snapshot_bytes`, read at scrape time from
/// the counts the storage keeps as it writes and deletes files (nothing is
/// listed on disk); absent until the storage is open.
#[derive(Clone)]
struct DiskCollector {
    wal: IntGauge,
    snapshot: IntGauge,
    source: Arc<OnceLock<Arc<DiskBytes>>>,
}

impl DiskCollector {
    fn new(source: &Arc<OnceLock<Arc<DiskBytes>>>) -> DiskCollector {
        DiskCollector {
            wal: IntGauge::new(
                "raftkv_wal_bytes",
                "Bytes in the WAL segments of the data directory (buffered writes included).",
            )
            .unwrap(),
            snapshot: IntGauge::new(
                "raftkv_snapshot_bytes",
                "Bytes of the snapshot file in force in the data directory (0: none).",
            )
            .unwrap(),
            source: source.clone(),
        }
    }
}

impl Collector for DiskCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.wal.desc();
        d.extend(self.snapshot.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(bytes) = self.source.get() else {
            return Vec::new();
        };
        self.wal.set(bytes.wal() as i64);
        self.snapshot.set(bytes.snapshot() as i64);
        let mut families = self.wal.collect();
        families.extend(self.snapshot.collect());
        families
    }
}

fn fsync_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 16).unwrap()
}

/// Registers `m` with `r` and returns it (names are fixed, so a clash is a bug).
fn register<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone())).unwrap();
    m
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).unwrap())
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(r, IntGaugeVec::new(Opts::new(name, help), labels).unwrap())
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).unwrap())
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).unwrap(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_design_names() {
        let m = Metrics::new();
        m.follower_lag_entries.with_label_values(&["1"]).set(3);
        m.state_checks.with_label_values(&["match"]).inc();
        m.grpc_request_duration
            .with_label_values(&["Get"])
            .observe(0.001);
        m.grpc_requests
            .with_label_values(&["raftkv.v1.Kv", "Get", "OK"])
            .inc();
        let text = String::from_utf8(m.encode()).unwrap();
        for name in [
            "raftkv_term",
            "raftkv_is_leader",
            "raftkv_has_leader",
            "raftkv_leader_changes_total",
            "raftkv_elections_started_total",
            "raftkv_lease_valid",
            "raftkv_lease_remaining_seconds",
            "raftkv_commit_index",
            "raftkv_applied_index",
            "raftkv_commit_lag",
            "raftkv_follower_lag_entries{peer=\"1\"}",
            "raftkv_proposals_committed_total",
            "raftkv_proposals_failed_total",
            "raftkv_wal_fsync_duration_seconds_bucket",
            "raftkv_grpc_request_duration_seconds_bucket{method=\"Get\"",
            "raftkv_snapshot_count_total",
            "raftkv_snapshot_last_index",
            "raftkv_snapshot_duration_seconds_bucket",
            "raftkv_keys",
            "raftkv_lease_held_seconds_total",
            "raftkv_ready",
            "raftkv_voters",
            "raftkv_state_checks_total{result=\"match\"}",
            "raftkv_state_hash_mismatch_index",
            "raftkv_state_hash_last_index",
            "raftkv_state_hash_duration_seconds_bucket",
            "raftkv_grpc_requests_total{code=\"OK\",method=\"Get\",service=\"raftkv.v1.Kv\"}",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
    }

    #[test]
    fn disk_bytes_appear_once_the_storage_is_watched() {
        let m = Metrics::new();
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("raftkv_wal_bytes"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        let (storage, _) = crate::storage::Storage::open(dir.path()).unwrap();
        m.watch_disk(storage.disk_bytes());
        let text = String::from_utf8(m.encode()).unwrap();
        let wal = storage.disk_bytes().wal();
        assert!(wal > 0);
        assert!(
            text.contains(&format!("raftkv_wal_bytes {wal}\n")),
            "{text}"
        );
        assert!(text.contains("raftkv_snapshot_bytes 0\n"), "{text}");
    }

    #[test]
    fn identity_is_one_series_replaced_on_change() {
        let m = Metrics::new();
        m.identify("c-old", 2);
        m.identify("c-new", 2);
        let text = String::from_utf8(m.encode()).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        let want = format!(
            "raftkv_node_info{{cluster_id=\"c-new\",node_id=\"2\",version=\"{version}\"}} 1"
        );
        assert!(text.contains(&want), "{text}");
        assert!(!text.contains("c-old"));
    }

    #[test]
    fn lease_seconds_accumulate_while_the_lease_is_valid() {
        let m = Metrics::new();
        m.note_lease(Some(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(30));
        m.note_lease(None);
        let held = m.lease_held_seconds.get();
        assert!((0.03..1.0).contains(&held), "{held}");
        assert_eq!(m.lease_valid.get(), 0);
        std::thread::sleep(Duration::from_millis(10));
        m.note_lease(Some(Duration::from_secs(5)));
        assert_eq!(m.lease_held_seconds.get(), held);
        assert_eq!(m.lease_valid.get(), 1);
        assert_eq!(m.lease_remaining_seconds.get(), 5.0);
    }
}
