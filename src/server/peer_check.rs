//! What the gRPC edge checks on every peer message before the core sees it,
//! beyond its format (`wire`): that the sender runs with this node's lease
//! parameters, and that the message is one a sane peer could send. A
//! refused message is dropped and logged (rate-limited); refusals also feed
//! readiness, so an operator sees a misconfigured node.
//!
//! Lease parameters must be equal on every node (docs/consensus.md, "The
//! leader lease"): the lease
//! argument compares a leader's `L × (1 − ρ)` with the lease its voters
//! report, measured with their own `L` and `ρ`. Rather than replicate them
//! through the log, every peer batch (and unary RPC) carries the sender's
//! values and a receiver with different ones drops it. Dropping is a
//! partition as far as Raft is concerned, which it already tolerates.

use crate::kv::Limits;
use crate::pb;
use crate::raft::{Message, MessageBody, NodeId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::metadata::MetadataMap;

/// How long one kind of complaint stays quiet after it was logged.
const QUIET: Duration = Duration::from_secs(30);
/// A refusal counts against readiness for this long (senders reconnect
/// within 2 s, so a persistent mismatch stays fresh).
const RECENT: Duration = Duration::from_secs(10);

/// The parameters every node must share, in exact units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub lease_micros: u64,
    pub max_clock_drift_ppm: u64,
    pub election_timeout_micros: u64,
    /// The state machine's size limits: `apply` refuses an entry beyond
    /// them, so a node with other limits would answer an entry otherwise
    /// than its peers (a write acknowledged under a leader's higher limit,
    /// refused by followers with lower ones, lost at the next failover).
    pub max_key_bytes: u64,
    pub max_value_bytes: u64,
}

impl Params {
    pub fn new(
        lease: Duration,
        max_clock_drift: f64,
        election_timeout: Duration,
        limits: &Limits,
    ) -> Params {
        Params {
            lease_micros: micros(lease),
            max_clock_drift_ppm: (max_clock_drift * 1e6).round() as u64,
            election_timeout_micros: micros(election_timeout),
            max_key_bytes: limits.max_key_bytes as u64,
            max_value_bytes: limits.max_value_bytes as u64,
        }
    }

    pub fn to_pb(self) -> pb::PeerParams {
        pb::PeerParams {
            lease_micros: self.lease_micros,
            max_clock_drift_ppm: self.max_clock_drift_ppm,
            election_timeout_micros: self.election_timeout_micros,
            max_key_bytes: self.max_key_bytes,
            max_value_bytes: self.max_value_bytes,
        }
    }

    fn from_pb(p: &pb::PeerParams) -> Params {
        Params {
            lease_micros: p.lease_micros,
            max_clock_drift_ppm: p.max_clock_drift_ppm,
            election_timeout_micros: p.election_timeout_micros,
            max_key_bytes: p.max_key_bytes,
            max_value_bytes: p.max_value_bytes,
        }
    }

    /// The most of an old lease a voter can honestly report (the core's
    /// `old_lease_bound` at its largest: `L × (1 + ρ)`), plus a rounding
    /// margin.
    pub fn lease_report_bound(self) -> Duration {
        let l = self.lease_micros as u128;
        let bound = l * (1_000_000 + self.max_clock_drift_ppm as u128) / 1_000_000 + 1;
        Duration::from_micros(u64::try_from(bound).unwrap_or(u64::MAX))
    }

    /// Whether a sender's `theirs` equal these; else the operator's message.
    pub fn check(self, theirs: Option<&pb::PeerParams>) -> Result<(), String> {
        let Some(theirs) = theirs else {
            return Err(format!(
                "the sender carries no lease parameters (an older version?); this node has {self}"
            ));
        };
        let theirs = Params::from_pb(theirs);
        if theirs == self {
            return Ok(());
        }
        Err(format!(
            "cluster parameters differ: the sender has {theirs}, this node has {self}; \
             --lease-ms, --max-clock-drift, --election-timeout-ms, --max-key-bytes and \
             --max-value-bytes must be equal on every node"
        ))
    }
}

impl std::fmt::Display for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lease {} ms, max clock drift {}, election timeout {} ms, \
             max key {} bytes, max value {} bytes",
            self.lease_micros as f64 / 1000.0,
            self.max_clock_drift_ppm as f64 / 1e6,
            self.election_timeout_micros as f64 / 1000.0,
            self.max_key_bytes,
            self.max_value_bytes
        )
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Metadata keys of the unary peer RPCs (a stream carries these in each
/// `PeerBatch` instead).
pub const CLUSTER_ID_HEADER: &str = "x-raftkv-cluster-id";
const LEASE_HEADER: &str = "x-raftkv-lease-us";
const DRIFT_HEADER: &str = "x-raftkv-max-clock-drift-ppm";
const ELECTION_HEADER: &str = "x-raftkv-election-timeout-us";
const MAX_KEY_HEADER: &str = "x-raftkv-max-key-bytes";
const MAX_VALUE_HEADER: &str = "x-raftkv-max-value-bytes";

/// Writes `cluster_id` and `params` into a unary peer request's metadata.
pub fn to_metadata(md: &mut MetadataMap, cluster_id: &str, params: Params) {
    if let Ok(v) = cluster_id.parse() {
        md.insert(CLUSTER_ID_HEADER, v);
    }
    md.insert(LEASE_HEADER, params.lease_micros.into());
    md.insert(DRIFT_HEADER, params.max_clock_drift_ppm.into());
    md.insert(ELECTION_HEADER, params.election_timeout_micros.into());
    md.insert(MAX_KEY_HEADER, params.max_key_bytes.into());
    md.insert(MAX_VALUE_HEADER, params.max_value_bytes.into());
}

/// The cluster id and parameters a unary peer request carries, if complete.
pub fn from_metadata(md: &MetadataMap) -> (Option<String>, Option<pb::PeerParams>) {
    let text = |k: &str| md.get(k).and_then(|v| v.to_str().ok());
    let num = |k: &str| text(k).and_then(|v| v.parse::<u64>().ok());
    let cluster_id = text(CLUSTER_ID_HEADER).map(str::to_string);
    let params = match (
        num(LEASE_HEADER),
        num(DRIFT_HEADER),
        num(ELECTION_HEADER),
        num(MAX_KEY_HEADER),
        num(MAX_VALUE_HEADER),
    ) {
        (Some(l), Some(d), Some(e), Some(k), Some(v)) => Some(pb::PeerParams {
            lease_micros: l,
            max_clock_drift_ppm: d,
            election_timeout_micros: e,
            max_key_bytes: k,
            max_value_bytes: v,
        }),
        _ => None,
    };
    (cluster_id, params)
}

/// Checks a well-formed message against what this node knows: it is for
/// `me`, not from `me` (a second process with this node's ordinal would
/// make two leaders of one id), and a vote response reports no more old
/// lease than an honest voter can (a huge one would stall the new leader).
pub fn check_message(msg: &Message, me: NodeId, params: Params) -> Result<(), String> {
    if msg.to != me {
        return Err(format!("message for node {} arrived at node {me}", msg.to));
    }
    if msg.from == me {
        return Err(format!(
            "message from node {me}, this node's own id: is a second node running with id {me}?"
        ));
    }
    if let MessageBody::VoteResponse {
        lease_remaining, ..
    } = &msg.body
    {
        let bound = params.lease_report_bound();
        if *lease_remaining > bound {
            return Err(format!(
                "vote response from node {} reports {lease_remaining:?} of old lease, above the bound {bound:?}",
                msg.from
            ));
        }
    }
    Ok(())
}

/// Logs each kind of complaint at most once per [`QUIET`], with how many
/// were suppressed since.
#[derive(Default)]
pub struct Complaints {
    last: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Complaints {
    /// Logs `message` at error level unless `kind` was logged recently;
    /// returns whether it was logged.
    pub fn error(&self, kind: &str, message: &str) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get_mut(kind) {
            Some((at, suppressed)) if now.duration_since(*at) < QUIET => {
                *suppressed += 1;
                false
            }
            entry => {
                let suppressed = entry.map_or(0, |(_, s)| *s);
                tracing::error!(kind, suppressed, "peer message refused: {message}");
                last.insert(kind.to_string(), (now, 0));
                true
            }
        }
    }
}

/// Which peers this node recently refused (or was refused by) and which it
/// recently heard from: readiness and `Status` show the refusals.
#[derive(Default)]
pub struct PeerHealth {
    pub complaints: Complaints,
    refused: Mutex<HashMap<u64, (Instant, String)>>,
    heard: Mutex<HashMap<u64, Instant>>,
}

impl PeerHealth {
    /// Messages between this node and `peer` were refused for `why`.
    pub fn refused(&self, peer: u64, why: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused.insert(peer, (Instant::now(), why.to_string()));
    }

    /// A batch from `peer` was accepted.
    pub fn heard(&self, peer: u64) {
        let mut heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.insert(peer, Instant::now());
    }

    /// Recent refusals, one line per peer (for `Status`).
    pub fn problems(&self) -> Vec<String> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(u64, String)> = refused
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < RECENT)
            .map(|(peer, (_, why))| (*peer, format!("node {peer}: {why}")))
            .collect();
        v.sort();
        v.into_iter().map(|(_, line)| line).collect()
    }

    /// Not ready while more peers recently refused this node's messages (or
    /// had theirs refused) than were recently heard from without a problem:
    /// then it is this node that disagrees with the cluster. A healthy node
    /// beside one misconfigured peer stays ready.
    pub fn ready(&self) -> Result<(), String> {
        let problems = self.problems();
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let fine = heard
            .iter()
            .filter(|(peer, at)| {
                at.elapsed() < RECENT
                    && refused.get(peer).is_none_or(|(r, _)| r.elapsed() >= RECENT)
            })
            .count();
        if !problems.is_empty() && problems.len() > fine {
            return Err(format!("peers refuse this node: {}", problems.join("; ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Term;

    fn params(lease_ms: u64) -> Params {
        Params::new(
            Duration::from_millis(lease_ms),
            0.01,
            Duration::from_millis(300),
            &Limits::default(),
        )
    }

    #[test]
    fn different_lease_parameters_are_refused_naming_both() {
        let ours = params(250);
        assert_eq!(ours.check(Some(&params(250).to_pb())), Ok(()));
        let err = ours.check(Some(&params(200).to_pb())).unwrap_err();
        assert!(
            err.contains("lease 200 ms") && err.contains("lease 250 ms"),
            "{err}"
        );
        let drift = Params::new(
            Duration::from_millis(250),
            0.02,
            Duration::from_millis(300),
            &Limits::default(),
        );
        assert!(ours.check(Some(&drift.to_pb())).is_err());
        assert!(ours.check(None).is_err());
    }

    /// A node whose size limits differ would refuse in `apply` what its
    /// leader acknowledged (or the reverse): its messages are refused like
    /// those of a node with other lease parameters.
    #[test]
    fn different_size_limits_are_refused_naming_both() {
        let ours = params(250);
        let raised = Limits {
            max_value_bytes: 2 << 20,
            ..Limits::default()
        };
        let theirs = Params::new(
            Duration::from_millis(250),
            0.01,
            Duration::from_millis(300),
            &raised,
        );
        let err = ours.check(Some(&theirs.to_pb())).unwrap_err();
        assert!(
            err.contains("max value 2097152 bytes") && err.contains("max value 1048576 bytes"),
            "{err}"
        );
        assert!(err.contains("--max-value-bytes"), "{err}");
    }

    #[test]
    fn unary_metadata_round_trips() {
        let mut md = MetadataMap::new();
        to_metadata(&mut md, "c-1", params(250));
        let (cluster, p) = from_metadata(&md);
        assert_eq!(cluster.as_deref(), Some("c-1"));
        assert_eq!(params(250).check(p.as_ref()), Ok(()));
        assert_eq!(p.map(|p| p.max_value_bytes), Some(1 << 20));
        assert_eq!(from_metadata(&MetadataMap::new()), (None, None));
    }

    #[test]
    fn messages_from_our_own_id_or_with_huge_lease_reports_are_refused() {
        let vote = |from: u64, lease_remaining: Duration| Message {
            from: NodeId(from),
            to: NodeId(1),
            term: Term(2),
            body: MessageBody::VoteResponse {
                granted: true,
                pre_vote: false,
                lease_remaining,
                lease_term: Term(1),
            },
        };
        let p = params(250);
        let honest = Duration::from_micros(252_500);
        assert_eq!(check_message(&vote(0, honest), NodeId(1), p), Ok(()));
        assert!(check_message(&vote(1, honest), NodeId(1), p).is_err());
        assert!(check_message(&vote(0, honest), NodeId(2), p).is_err());
        let huge = Duration::from_secs(1 << 40);
        assert!(check_message(&vote(0, huge), NodeId(1), p).is_err());
    }

    #[test]
    fn a_node_refused_by_most_peers_is_not_ready_but_its_healthy_peers_are() {
        let bad = PeerHealth::default();
        bad.refused(0, "lease parameters differ");
        bad.refused(2, "lease parameters differ");
        assert!(
            bad.ready()
                .unwrap_err()
                .contains("node 0: lease parameters differ")
        );
        let good = PeerHealth::default();
        good.refused(1, "lease parameters differ");
        good.heard(2);
        assert_eq!(good.ready(), Ok(()));
        assert_eq!(good.problems(), vec!["node 1: lease parameters differ"]);
    }

    #[test]
    fn complaints_are_rate_limited_per_kind() {
        let c = Complaints::default();
        assert!(c.error("lease", "x"));
        assert!(!c.error("lease", "x"));
        assert!(c.error("cluster", "y"));
    }
}
