//! First boot (docs/operations.md): a node whose data directory has no identity
//! asks every other initial member (`Raft/Hello`) before it writes one.
//!
//! An empty data directory does not tell a brand-new node from one whose
//! volume was wiped; only the peers can. A wiped member must not bootstrap
//! again: it may have voted for, or acknowledged, entries it no longer has.
//! So an initial member bootstraps only once every other initial member has
//! been seen empty and deciding too, and refuses if any peer already belongs
//! to a cluster. A joining node (`--join`) takes the cluster id from a peer
//! that is a member, once no member still lists it as a voter (its old
//! incarnation must be removed first, or it would vote with an empty log).
//!
//! Founders see one another in either direction: an answer "deciding", or a
//! hello sent by a deciding founder (`Gate::hello` records it before
//! answering). A founder that bootstraps has seen every peer this way, so
//! each of them has seen it too, and a "member" answer from a peer already
//! seen deciding means "bootstrapped together", not "wiped".

use super::config::Config;
use super::gate::Gate;
use crate::pb::{self, hello_response::Standing as PbStanding, raft_client::RaftClient};
use crate::tls::ClientTls;
use backon::{ExponentialBuilder, Retryable};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::transport::Endpoint;

/// How often the survey logs whom it is still waiting for.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How often the survey looks at the hellos it received.
const RECHECK_EVERY: Duration = Duration::from_millis(200);
/// Pause before asking again a peer whose answer settles nothing yet.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(1);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a node with an empty data directory is trying to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An initial member: bootstrap together with the others.
    Found,
    /// `--join`: become a member of the peers' existing cluster.
    Join,
}

/// A peer's answer to `Hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerStanding {
    Deciding,
    Joining,
    Member(String),
    /// A member of this cluster whose configuration still lists the joining
    /// asker as a voter.
    ListsUsAsVoter(String),
}

/// The outcome of a survey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not enough is known yet.
    Wait,
    /// Every other initial member is empty and deciding: bootstrap.
    Bootstrap,
    /// Join this cluster (the peers' cluster id).
    Join(String),
    /// `peer` already belongs to `cluster_id`: this node must not bootstrap.
    Refuse { peer: u64, cluster_id: String },
    /// Two peers belong to different clusters: nothing safe to join.
    Disagree { a: (u64, String), b: (u64, String) },
}

/// What is known of the other initial members so far (pure: no I/O).
#[derive(Clone, Debug, Default)]
pub struct Survey {
    peers: Vec<u64>,
    answers: BTreeMap<u64, PeerStanding>,
    /// Peers seen empty and deciding, by their answer or their own hello:
    /// a later "member" answer from one of them means it bootstrapped with
    /// us, not that this node lost its volume.
    deciding: BTreeSet<u64>,
    /// Peers that answered our hello with "deciding". Only such an answer
    /// proves the peer has recorded this node as deciding too (it records
    /// every asker before answering), so only it allows bootstrapping: a
    /// peer seen only through its own hello may have missed our answer and
    /// would then refuse us once we bootstrap.
    answered_deciding: BTreeSet<u64>,
    /// This node is not an initial member (a scaled-up ordinal), so the
    /// initial members are exactly `peers`.
    outsider: bool,
}

impl Survey {
    /// A survey of `peers`, the other initial members.
    pub fn new(peers: Vec<u64>) -> Survey {
        Survey {
            peers,
            ..Survey::default()
        }
    }

    /// The survey of a node that is not an initial member itself.
    pub fn outsider(mut self) -> Survey {
        self.outsider = true;
        self
    }

    /// A peer's latest answer.
    pub fn record(&mut self, peer: u64, standing: PeerStanding) {
        if standing == PeerStanding::Deciding {
            self.deciding.insert(peer);
            self.answered_deciding.insert(peer);
        }
        self.answers.insert(peer, standing);
    }

    /// A peer said hello while deciding.
    pub fn saw_deciding(&mut self, peer: u64) {
        self.deciding.insert(peer);
    }

    /// Peers whose standing still keeps the decision open.
    pub fn waiting_for(&self, mode: Mode) -> Vec<u64> {
        self.peers
            .iter()
            .copied()
            .filter(|p| match mode {
                Mode::Found => !self.settled_with_us(*p),
                Mode::Join => !matches!(self.answers.get(p), Some(PeerStanding::Member(_))),
            })
            .collect()
    }

    pub fn decide(&self, mode: Mode) -> Decision {
        match mode {
            Mode::Found => self.decide_found(),
            Mode::Join => self.decide_join(),
        }
    }

    /// Whether `peer` is known to treat this node as a fellow founder: it
    /// answered "deciding" (so it recorded us), or it was seen deciding and
    /// has since bootstrapped (which it does only after our answer).
    fn settled_with_us(&self, peer: u64) -> bool {
        self.answered_deciding.contains(&peer)
            || (self.deciding.contains(&peer)
                && matches!(self.answers.get(&peer), Some(PeerStanding::Member(_))))
    }

    fn decide_found(&self) -> Decision {
        for (&peer, standing) in &self.answers {
            if let PeerStanding::Member(cluster_id) | PeerStanding::ListsUsAsVoter(cluster_id) =
                standing
            {
                if !self.deciding.contains(&peer) {
                    return Decision::Refuse {
                        peer,
                        cluster_id: cluster_id.clone(),
                    };
                }
            }
        }
        if self.peers.iter().all(|p| self.settled_with_us(*p)) {
            Decision::Bootstrap
        } else {
            Decision::Wait
        }
    }

    fn decide_join(&self) -> Decision {
        let mut members = self.answers.iter().filter_map(|(&p, s)| match s {
            PeerStanding::Member(c) | PeerStanding::ListsUsAsVoter(c) => Some((p, c.clone())),
            _ => None,
        });
        let Some(first) = members.next() else {
            return Decision::Wait;
        };
        if let Some(other) = members.find(|(_, c)| *c != first.1) {
            return Decision::Disagree { a: first, b: other };
        }
        let still_voter = self
            .answers
            .values()
            .any(|s| matches!(s, PeerStanding::ListsUsAsVoter(_)));
        let named = self
            .answers
            .values()
            .filter(|s| matches!(s, PeerStanding::Member(_)))
            .count();
        // A majority of the initial members (this node cannot answer for
        // itself) must say it is no voter: a removal that has reached a
        // majority survives any leader change, one answer from a lagging or
        // uncommitted configuration might not.
        let members = self.peers.len() + usize::from(!self.outsider);
        let majority = members / 2 + 1;
        if named >= majority && !still_voter {
            Decision::Join(first.1)
        } else {
            Decision::Wait
        }
    }
}

/// The other initial members: (id, peer address).
fn other_peers(config: &Config) -> Vec<(u64, String)> {
    config
        .peers
        .iter()
        .filter(|p| p.id != config.id)
        .map(|p| (p.id, p.peer_addr.clone()))
        .collect()
}

/// Asks the other initial members until the decision is made (never
/// `Wait`). Peers that do not answer (DNS names not published yet, pods not
/// started) are asked again with backoff, indefinitely; progress is logged.
pub async fn survey(config: &Config, mode: Mode, gate: &Gate) -> Decision {
    let peers = other_peers(config);
    let mut survey = Survey::new(peers.iter().map(|(id, _)| *id).collect());
    if !config.founder {
        survey = survey.outsider();
    }
    let (tx, mut rx) = mpsc::channel(64);
    // Dropped on return: the askers stop with it.
    let mut askers = JoinSet::new();
    for (id, addr) in peers.iter().cloned() {
        askers.spawn(ask_until_settled(
            config.id,
            id,
            addr,
            mode,
            config.dial.peer.clone(),
            tx.clone(),
        ));
    }
    let mut last_error: BTreeMap<u64, String> = BTreeMap::new();
    let start = tokio::time::Instant::now();
    let mut progress = tokio::time::interval_at(start + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut recheck = tokio::time::interval(RECHECK_EVERY);
    loop {
        tokio::select! {
            Some((peer, answer)) = rx.recv() => match answer {
                Ok(standing) => {
                    last_error.remove(&peer);
                    survey.record(peer, standing);
                }
                Err(e) => {
                    last_error.insert(peer, e);
                }
            },
            _ = recheck.tick() => {}
            _ = progress.tick() => gate.set_waiting(progress_report(&survey, mode, &peers, &last_error)),
        }
        if mode == Mode::Found {
            for peer in gate.deciding_askers() {
                survey.saw_deciding(peer);
            }
        }
        let decision = survey.decide(mode);
        if decision != Decision::Wait {
            return decision;
        }
    }
}

/// Logs what the survey still waits for, and returns it for the readiness
/// probe: a node that can never bootstrap (a founding member that does not
/// exist) says so there, not only in its log.
fn progress_report(
    survey: &Survey,
    mode: Mode,
    peers: &[(u64, String)],
    errors: &BTreeMap<u64, String>,
) -> String {
    let waiting: Vec<String> = survey
        .waiting_for(mode)
        .into_iter()
        .map(|id| {
            let addr = peers
                .iter()
                .find(|(p, _)| *p == id)
                .map_or("?", |(_, a)| a.as_str());
            let state = match (survey.answers.get(&id), errors.get(&id)) {
                (_, Some(e)) => format!("unreachable: {e}"),
                (Some(PeerStanding::ListsUsAsVoter(_)), None) => {
                    "still lists this node as a voter (remove it first)".into()
                }
                (Some(s), None) => format!("{s:?}").to_lowercase(),
                (None, None) => "no answer yet".into(),
            };
            format!("{id} ({addr}): {state}")
        })
        .collect();
    let what = match mode {
        Mode::Found => "waiting for every initial member before bootstrapping",
        Mode::Join => "waiting for a member to name the cluster to join",
    };
    tracing::info!(waiting = ?waiting, "{what}");
    format!("{what}: {}", waiting.join("; "))
}

/// Asks one peer until its answer settles the question for `mode` (Found:
/// deciding or member; Join: member), reporting every answer and failure.
async fn ask_until_settled(
    me: u64,
    peer: u64,
    addr: String,
    mode: Mode,
    tls: Option<ClientTls>,
    tx: mpsc::Sender<(u64, Result<PeerStanding, String>)>,
) {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_millis(500))
        .with_jitter()
        .without_max_times();
    loop {
        let answer = (|| hello(me, peer, &addr, mode == Mode::Join, tls.as_ref()))
            .retry(backoff)
            .notify(|e: &String, _| {
                let _ = tx.try_send((peer, Err(e.clone())));
            })
            .await;
        let settled = matches!(
            (&answer, mode),
            (Ok(PeerStanding::Member(_)), _) | (Ok(PeerStanding::Deciding), Mode::Found)
        );
        if tx.send((peer, answer)).await.is_err() || settled {
            return;
        }
        tokio::time::sleep(ASK_AGAIN_AFTER).await;
    }
}

/// One `Hello` to `peer` at `addr`.
async fn hello(
    me: u64,
    peer: u64,
    addr: &str,
    joining: bool,
    tls: Option<&ClientTls>,
) -> Result<PeerStanding, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let channel = crate::tls::channel(endpoint, tls)
        .await
        .map_err(|e| root_cause(&e))?;
    let answer = RaftClient::new(channel)
        .hello(pb::HelloRequest { from: me, joining })
        .await
        .map_err(|s| crate::tls::handshake_failure(&s).unwrap_or_else(|| s.message().to_string()))?
        .into_inner();
    if answer.id != peer {
        // A stale DNS record can point at another node.
        return Err(format!("node {} answered at {addr}", answer.id));
    }
    Ok(match answer.standing() {
        PbStanding::Deciding => PeerStanding::Deciding,
        PbStanding::Joining => PeerStanding::Joining,
        PbStanding::Member if answer.asker_is_voter => {
            PeerStanding::ListsUsAsVoter(answer.cluster_id)
        }
        PbStanding::Member => PeerStanding::Member(answer.cluster_id),
    })
}

/// The innermost cause of a connection error: tonic's own message is only
/// "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(why) = crate::tls::handshake_failure(e) {
        return why;
    }
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Asks every other initial member once, concurrently, within `limit`:
/// the cluster ids of those that answered as members.
pub async fn member_clusters(config: &Config, limit: Duration) -> Vec<(u64, String)> {
    let asks = other_peers(config)
        .into_iter()
        .map(|(peer, addr)| async move {
            match tokio::time::timeout(
                limit,
                hello(config.id, peer, &addr, true, config.dial.peer.as_ref()),
            )
            .await
            {
                Ok(Ok(PeerStanding::Member(c) | PeerStanding::ListsUsAsVoter(c))) => {
                    Some((peer, c))
                }
                _ => None,
            }
        });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests;
