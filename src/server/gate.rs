//! What the peer service and the probes see of this node while it starts.
//!
//! The peer listener serves `Raft/Hello` before the node exists, because the
//! initial members ask one another before any of them bootstraps
//! (docs/operations.md, "First boot"). The gate holds this node's standing
//! for those answers, remembers which initial members asked while still
//! deciding, and, once the node loop runs, its handle: only then are Raft
//! messages delivered (earlier ones are dropped, which Raft tolerates).

use super::node::NodeHandle;
use super::peer_check::PeerHealth;
use crate::observe::Health;
use crate::pb;
use futures::future::BoxFuture;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

/// How this node answers `Hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The data directory is not read yet: no answer.
    Starting,
    /// No identity: waiting for every initial member to be empty too.
    Deciding,
    /// No identity: joining an existing cluster (`--join`).
    Joining,
    /// The data directory belongs to this cluster.
    Member(String),
}

/// The running node, once it exists.
pub struct Active {
    pub cluster_id: String,
    pub node: NodeHandle,
}

pub struct Gate {
    id: u64,
    standing: Mutex<Standing>,
    /// Initial members that said hello while deciding, i.e. with an empty
    /// data directory (see `discovery::Survey`).
    deciding_askers: Mutex<BTreeSet<u64>>,
    active: OnceLock<Active>,
    /// What the first-boot survey still waits for, once it has waited a
    /// while (for the readiness probe).
    waiting: Mutex<Option<String>>,
    /// Peers whose messages were refused (another cluster, other lease
    /// parameters): readiness fails while most peers disagree with us.
    pub peers: Arc<PeerHealth>,
}

impl Gate {
    pub fn new(id: u64) -> Gate {
        Gate {
            id,
            standing: Mutex::new(Standing::Starting),
            deciding_askers: Mutex::new(BTreeSet::new()),
            active: OnceLock::new(),
            waiting: Mutex::new(None),
            peers: Arc::default(),
        }
    }

    pub fn set_standing(&self, standing: Standing) {
        if matches!(standing, Standing::Member(_)) {
            // The survey is over: what it waited for is no longer news.
            *self.waiting.lock().expect("gate lock") = None;
        }
        *self.standing.lock().expect("gate lock") = standing;
    }

    /// Records what the first-boot survey waits for (see `ready`).
    pub fn set_waiting(&self, what: String) {
        *self.waiting.lock().expect("gate lock") = Some(what);
    }

    pub fn standing(&self) -> Standing {
        self.standing.lock().expect("gate lock").clone()
    }

    /// Records who asked, then answers; `None` while the answer is not
    /// known yet (data directory not read; or, for a joining asker, whether
    /// it is still a voter here, until the node loop runs). The asker is
    /// recorded before the answer leaves, so a peer that bootstraps on this
    /// answer is already known here as a fellow founder when its next answer
    /// says it is a member.
    pub async fn hello(&self, req: &pb::HelloRequest) -> Option<pb::HelloResponse> {
        use pb::hello_response::Standing as Pb;
        if !req.joining {
            self.deciding_askers
                .lock()
                .expect("gate lock")
                .insert(req.from);
        }
        let (standing, cluster_id) = match self.standing() {
            Standing::Starting => return None,
            Standing::Deciding => (Pb::Deciding, String::new()),
            Standing::Joining => (Pb::Joining, String::new()),
            Standing::Member(c) => (Pb::Member, c),
        };
        let asker_is_voter =
            standing == Pb::Member && req.joining && self.is_voter(req.from).await?;
        Some(pb::HelloResponse {
            id: self.id,
            standing: standing as i32,
            cluster_id,
            asker_is_voter,
        })
    }

    /// Whether `id` is a voter in the running node's latest configuration.
    async fn is_voter(&self, id: u64) -> Option<bool> {
        let status = self.active()?.node.status().await.ok()?;
        Some(status.membership.is_some_and(|m| m.voters.contains(&id)))
    }

    /// Initial members that asked while deciding.
    pub fn deciding_askers(&self) -> BTreeSet<u64> {
        self.deciding_askers.lock().expect("gate lock").clone()
    }

    /// Opens the gate to Raft messages; called once, when the node loop runs.
    pub fn activate(&self, active: Active) {
        if self.active.set(active).is_err() {
            tracing::warn!("node activated twice; keeping the first");
        }
    }

    pub fn active(&self) -> Option<&Active> {
        self.active.get()
    }
}

/// Before the node exists the process is alive (a liveness probe must not
/// restart a node waiting for its peers) but not ready.
impl Health for Gate {
    fn live(&self) -> BoxFuture<'_, Result<(), String>> {
        match self.active() {
            Some(a) => a.node.live(),
            None => Box::pin(async { Ok(()) }),
        }
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), String>> {
        match self.active() {
            Some(a) => Box::pin(async move {
                self.peers.ready()?;
                a.node.ready().await
            }),
            None => {
                let waiting = self.waiting.lock().expect("gate lock").clone();
                let why = match (self.standing(), waiting) {
                    (Standing::Starting, _) => "starting: reading the data directory".to_string(),
                    (Standing::Member(_), _) => "starting: opening the log".to_string(),
                    (_, Some(what)) => format!("starting: {what}"),
                    (Standing::Joining, None) => {
                        "joining: waiting for a peer to name its cluster".to_string()
                    }
                    (_, None) => "starting: waiting for the initial members".to_string(),
                };
                Box::pin(async move { Err(why) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(from: u64, joining: bool) -> pb::HelloRequest {
        pb::HelloRequest { from, joining }
    }

    #[tokio::test]
    async fn answers_only_once_the_data_directory_is_read() {
        let gate = Gate::new(1);
        assert!(gate.hello(&hello(0, false)).await.is_none());
        gate.set_standing(Standing::Member("c".into()));
        let a = gate.hello(&hello(0, false)).await.unwrap();
        assert_eq!(a.id, 1);
        assert_eq!(a.standing(), pb::hello_response::Standing::Member);
        assert_eq!(a.cluster_id, "c");
        // Whether a joining asker still votes is known once the node runs.
        assert!(gate.hello(&hello(0, true)).await.is_none());
    }

    #[tokio::test]
    async fn readiness_before_first_boot_names_what_the_node_waits_for() {
        let gate = Gate::new(0);
        let why = gate.ready().await.unwrap_err();
        assert!(why.contains("reading the data directory"), "{why}");
        gate.set_standing(Standing::Deciding);
        let why = gate.ready().await.unwrap_err();
        assert_eq!(why, "starting: waiting for the initial members");
        gate.set_waiting("waiting for every initial member before bootstrapping: 1 (raftkv-1:7380): unreachable: dns error".into());
        let why = gate.ready().await.unwrap_err();
        assert!(
            why.contains("1 (raftkv-1:7380): unreachable: dns error"),
            "{why}"
        );
        assert!(gate.live().await.is_ok(), "alive while it waits");
        gate.set_standing(Standing::Member("c".into()));
        let why = gate.ready().await.unwrap_err();
        assert_eq!(why, "starting: opening the log");
    }

    #[tokio::test]
    async fn remembers_deciding_askers_but_not_joining_ones() {
        let gate = Gate::new(1);
        gate.set_standing(Standing::Deciding);
        gate.hello(&hello(0, false)).await;
        gate.hello(&hello(2, true)).await;
        assert_eq!(gate.deciding_askers(), BTreeSet::from([0]));
    }
}
