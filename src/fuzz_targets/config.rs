//! The `config` target: the node's YAML configuration file.

use super::Scratch;
use crate::raft::{Instant, Membership, NodeId, Raft, bootstrap};
use crate::server::config::{Args, Config};
use crate::server::startup;

/// Reading and validating a configuration file never panics, and what it
/// accepts is within what the node can run with.
///
/// Input: the file's bytes, named by `--config` with no other flag set.
/// What must hold: `Config::from_args` accepts or refuses it without a
/// panic; an accepted one satisfies every rule the validation states
/// (`valid`): the timing order heartbeat < lease < election timeout, the
/// drift and snapshot ratio ranges, positive thresholds and size limits,
/// key and value limits that fit a WAL record, a scheduled state check
/// interval that is not zero, a sorted peer list without duplicates that
/// names this node. From an accepted one the node derives, without a panic, what
/// it derives at start before it touches the disk or the network: its own
/// peer entry, the core's configuration (which may still refuse), the
/// lease parameters and the peer message limit, and a core built from
/// them that runs to its first election timeout.
pub fn config(data: &[u8]) {
    let scratch = Scratch::new("config");
    let path = scratch.path().join("raftkv.yaml");
    std::fs::write(&path, data).expect("scratch file");
    let args = Args {
        config: Some(path),
        ..Args::default()
    };
    let Ok(config) = Config::from_args(args, &|_| None) else {
        return;
    };
    if let Err(e) = valid(&config) {
        panic!("an accepted configuration breaks a limit: {e}\n{config:#?}");
    }
    assert_eq!(config.me().id, config.id);
    let _ = startup::params(&config);
    let Ok(mut rc) = startup::raft_config(&config) else {
        return;
    };
    startup::peer_limit(&config).expect("the core's configuration was accepted");
    // The node seeds from the OS; a fixed seed makes a failure reproducible.
    rc.seed = 0;
    let voters = config.peers.iter().map(|p| NodeId(p.id));
    let mut raft = Raft::new(rc, bootstrap(Membership::new(voters)), Instant::default());
    raft.tick(raft.next_deadline());
    let ready = raft.ready();
    raft.advance(ready.durable);
}

/// The rules an accepted configuration must satisfy, or the first broken.
fn valid(c: &Config) -> Result<(), String> {
    let rule = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_string()) };
    rule(!c.heartbeat.is_zero(), "the heartbeat is zero")?;
    rule(
        c.heartbeat < c.lease,
        "the heartbeat is not shorter than the lease",
    )?;
    rule(
        c.lease < c.election_timeout,
        "the lease is not shorter than the election timeout",
    )?;
    rule(
        (0.0..0.5).contains(&c.max_clock_drift),
        "the drift bound is not in [0, 0.5)",
    )?;
    rule(c.snapshot_threshold > 0, "the snapshot threshold is zero")?;
    rule(
        (0.0..=10.0).contains(&c.snapshot_log_ratio),
        "the snapshot log ratio is not in [0, 10]",
    )?;
    rule(
        c.max_key_bytes > 0 && c.max_value_bytes > 0,
        "a size limit is zero",
    )?;
    // The largest command (a CAS: a key and two values) at the limits,
    // with the proposal around it, must fit one WAL record: storage
    // refuses a larger entry, and a node that cannot persist a committed
    // entry stops.
    let entry = c
        .max_value_bytes
        .checked_mul(2)
        .and_then(|n| n.checked_add(c.max_key_bytes))
        .and_then(|n| n.checked_add(PROPOSAL_OVERHEAD));
    rule(
        entry.is_some_and(|n| n <= crate::storage::MAX_RECORD_BYTES),
        "a CAS at the key and value limits does not fit a WAL record",
    )?;
    rule(
        c.state_check_interval.is_none_or(|d| !d.is_zero()),
        "the state check interval is zero",
    )?;
    rule(
        c.peers.windows(2).all(|w| w[0].id < w[1].id),
        "the peers are not sorted by distinct ids",
    )?;
    rule(
        c.peers.iter().any(|p| p.id == c.id),
        "the peers do not name this node",
    )?;
    Ok(())
}

/// More than the framing around a command's key and value (entry, proposal,
/// session, command and record headers).
const PROPOSAL_OVERHEAD: usize = 4096;

/// The chart's configuration with an id, a static peer list, and a few
/// variations.
pub(super) fn seeds() -> Vec<Vec<u8>> {
    let chart = "id: 1
statefulset: raftkv
service: raftkv-headless
replicas: 3
cluster_domain: cluster.local
auto_join: true
data_dir: /var/lib/raftkv
client_addr: 0.0.0.0:7379
peer_addr: 0.0.0.0:7380
http_addr: 0.0.0.0:7381
election_timeout_ms: 300
heartbeat_ms: 50
lease_ms: 250
max_clock_drift: 0.01
snapshot_threshold: 10000
snapshot_log_ratio: 0.5
max_key_bytes: 4096
max_value_bytes: 1048576
log_format: json
log_level: \"info\"
";
    let peers = "id: 2
peers: 0=127.0.0.1:7380,1=127.0.0.1:7390,2=[::1]:7400
peer_client_addrs: 2=localhost:7399
advertise_client_addr: localhost:7399
cluster_id: c-1
join: false
";
    let scaled = "id: 4\nstatefulset: s\nservice: h\nnamespace: db\nreplicas: 3\n";
    [chart, peers, scaled]
        .map(|s| s.as_bytes().to_vec())
        .to_vec()
}
