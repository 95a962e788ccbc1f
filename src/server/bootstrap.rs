//! Identity and first boot (docs/operations.md, "First boot waits for every
//! initial member").
//!
//! A data directory with an identity starts as recorded: the identity must
//! match this node's id and, if given, `--cluster-id`. A fresh one asks the
//! other initial members first (`discovery`): if all of them are fresh too,
//! every founder writes the same bootstrap entry and a cluster id derived
//! from the sorted peer list (or `--cluster-id`); if any already belongs to a
//! cluster, this node lost its volume and refuses to start, because
//! bootstrapping again under its old id could lose committed entries. With
//! `--join` it takes the peers' cluster id and starts with an empty log,
//! as the learner an operator added. The identity file is written last: it
//! marks a completed bootstrap or join.
//!
//! With `--auto-join` the node does that recovery itself (`auto_join`): a
//! founder that finds its peers already in a cluster, and any node that is
//! not a founder (a StatefulSet ordinal added by scaling up), asks the
//! leader to replace its old incarnation by a learner, joins, and is
//! promoted once caught up. A non-founder never bootstraps.

mod auto_join;

pub use auto_join::promote;

use super::config::Config;
use super::discovery::{self, Decision, Mode};
use super::gate::{Gate, Standing};
use crate::raft::{self, Membership, NodeId, Persisted};
use crate::storage::{Identity, Recovered, Storage};
use std::time::Duration;

/// How long a restarted node given `--join` waits for peers to name their
/// cluster before it starts anyway.
const JOIN_CHECK_LIMIT: Duration = Duration::from_secs(2);

/// How long a restarting node waits for its peers to name their cluster
/// before it starts anyway (see `check_peers_cluster`).
const PEER_CHECK_LIMIT: Duration = Duration::from_secs(1);

/// The identity and the state the core starts from.
pub struct Boot {
    pub identity: Identity,
    pub persisted: Persisted,
    pub fresh: bool,
    /// Once serving, ask the leader to promote this node if it is a
    /// learner (`--auto-join`).
    pub promote: bool,
}

/// Checks or creates the data directory's identity, asking the peers first
/// if there is none; sets the standing `gate` answers `Hello` with.
pub async fn prepare(
    config: &Config,
    storage: &mut Storage,
    recovered: Recovered,
    gate: &Gate,
) -> Result<Boot, String> {
    for w in &recovered.warnings {
        tracing::warn!(warning = %w, "storage repaired on open");
    }
    if let Some(identity) = recovered.identity {
        check_identity(config, &identity)?;
        gate.set_standing(Standing::Member(identity.cluster_id.clone()));
        if config.join {
            check_join_target(config, &identity).await?;
        } else {
            check_peers_cluster(config, &identity).await?;
        }
        return Ok(Boot {
            identity,
            persisted: recovered.persisted,
            fresh: false,
            // A learner that restarted before its promotion resumes it.
            promote: config.auto_join,
        });
    }
    if !config.founder && recovered.persisted.entries.is_empty() {
        return join_as_outsider(config, storage, gate).await;
    }
    let boot = raft::bootstrap(founders(config));
    let on_disk = recovered.persisted;
    if on_disk.snapshot.is_some() || !on_disk.entries.is_empty() {
        if on_disk.entries != boot.entries {
            return Err(format!(
                "data directory {} has a log but no identity file; refusing to guess whose it is",
                config.data_dir.display()
            ));
        }
        // This node had decided to bootstrap and stopped before writing its
        // identity: it acknowledged nothing since, so it finishes.
        tracing::info!("finishing an interrupted bootstrap");
        return found(config, storage, gate, boot);
    }
    let mode = if config.join { Mode::Join } else { Mode::Found };
    gate.set_standing(match mode {
        Mode::Found => Standing::Deciding,
        Mode::Join => Standing::Joining,
    });
    match discovery::survey(config, mode, gate).await {
        Decision::Bootstrap => found(config, storage, gate, boot),
        Decision::Join(cluster_id) => join(config, storage, gate, cluster_id),
        Decision::Refuse { peer, cluster_id } if config.auto_join => {
            tracing::warn!(node = config.id, peer, cluster_id = %cluster_id, "data directory is empty but the peers already form a cluster: replacing this node's old incarnation (--auto-join)");
            auto_join(config, storage, gate).await
        }
        Decision::Refuse { peer, cluster_id } => Err(refusal(config, peer, &cluster_id)),
        Decision::Disagree { a, b } => Err(format!(
            "--join: peers disagree on the cluster: node {} is in {:?}, node {} in {:?}",
            a.0, a.1, b.0, b.1
        )),
        Decision::Wait => unreachable!("a survey never ends undecided"),
    }
}

/// A node that is not an initial member (a StatefulSet ordinal at or above
/// `--replicas`): it joins, by itself with `--auto-join`, or as the learner
/// an operator added with `--join`; it never bootstraps.
async fn join_as_outsider(
    config: &Config,
    storage: &mut Storage,
    gate: &Gate,
) -> Result<Boot, String> {
    if config.auto_join {
        tracing::info!(
            node = config.id,
            "not an initial member: joining the cluster (--auto-join)"
        );
        return auto_join(config, storage, gate).await;
    }
    if !config.join {
        return Err(format!(
            "node {} is not an initial member (--replicas); it can only join an existing cluster: \
             set --auto-join (RAFTKV_AUTO_JOIN=true), or run `raftctl member add {} --peer-addr {} --client-addr {} --learner` \
             and start it with --join",
            config.id,
            config.id,
            config.me().peer_addr,
            config.advertise_client_addr
        ));
    }
    gate.set_standing(Standing::Joining);
    finish_join(config, storage, gate).await
}

/// `--auto-join`: become a learner in place of any old incarnation, then
/// join as `--join` would; promoted once serving.
async fn auto_join(config: &Config, storage: &mut Storage, gate: &Gate) -> Result<Boot, String> {
    gate.set_standing(Standing::Joining);
    auto_join::add_as_learner(config).await?;
    let mut boot = finish_join(config, storage, gate).await?;
    boot.promote = true;
    Ok(boot)
}

/// Waits until a majority of the initial members name their cluster and
/// none lists this node as a voter, then joins it.
async fn finish_join(config: &Config, storage: &mut Storage, gate: &Gate) -> Result<Boot, String> {
    match discovery::survey(config, Mode::Join, gate).await {
        Decision::Join(cluster_id) => join(config, storage, gate, cluster_id),
        Decision::Disagree { a, b } => Err(format!(
            "join: peers disagree on the cluster: node {} is in {:?}, node {} in {:?}",
            a.0, a.1, b.0, b.1
        )),
        other => Err(format!("join: unexpected survey outcome {other:?}")),
    }
}

/// The recorded identity must be this node's, of the expected cluster.
fn check_identity(config: &Config, identity: &Identity) -> Result<(), String> {
    let dir = config.data_dir.display();
    if identity.node_id != config.id {
        return Err(format!(
            "data directory {dir} belongs to node {} but this is node {} (--id / pod name)",
            identity.node_id, config.id
        ));
    }
    if let Some(expected) = &config.cluster_id {
        if &identity.cluster_id != expected {
            return Err(format!(
                "data directory {dir} belongs to cluster {:?}, not {expected:?} (--cluster-id)",
                identity.cluster_id
            ));
        }
    }
    Ok(())
}

/// `--join` on a data directory that already has an identity: an error if
/// the peers that answer belong to another cluster, else ignored.
async fn check_join_target(config: &Config, identity: &Identity) -> Result<(), String> {
    let answers = discovery::member_clusters(config, JOIN_CHECK_LIMIT).await;
    if let Some((peer, other)) = answers.iter().find(|(_, c)| *c != identity.cluster_id) {
        return Err(format!(
            "--join: data directory {} belongs to cluster {:?} but peer {peer} is in cluster {other:?}",
            config.data_dir.display(),
            identity.cluster_id
        ));
    }
    tracing::info!(cluster_id = %identity.cluster_id, "--join ignored: the data directory already belongs to this cluster");
    Ok(())
}

/// A data directory of one cluster among peers of another can never join
/// them: every message would be refused, for ever, while the node looked
/// alive. Refused at start when the peers that answer (within
/// [`PEER_CHECK_LIMIT`]) are all members of another cluster; peers that do
/// not answer prove nothing (a whole cluster restarting), so the node then
/// starts and any later mismatch shows in its readiness and status.
async fn check_peers_cluster(config: &Config, identity: &Identity) -> Result<(), String> {
    let answers = discovery::member_clusters(config, PEER_CHECK_LIMIT).await;
    if answers.is_empty() || answers.iter().any(|(_, c)| *c == identity.cluster_id) {
        return Ok(());
    }
    let peers: Vec<String> = answers
        .iter()
        .map(|(peer, c)| format!("node {peer} is in cluster {c:?}"))
        .collect();
    Err(format!(
        "cluster id mismatch: data directory {} belongs to cluster {:?} but its peers belong to \
         another cluster ({}); this node can never join them: give it its own cluster's data \
         directory, or an empty one to join as a new member",
        config.data_dir.display(),
        identity.cluster_id,
        peers.join(", ")
    ))
}

/// The initial membership: every initial member votes.
fn founders(config: &Config) -> Membership {
    Membership::new(initial_members(config).map(|p| NodeId(p.id)))
}

/// The configured peers that are initial members (all but a non-founder self).
fn initial_members(config: &Config) -> impl Iterator<Item = &super::config::Peer> {
    config
        .peers
        .iter()
        .filter(|p| config.founder || p.id != config.id)
}

/// Writes the bootstrap entry, then the identity.
fn found(
    config: &Config,
    storage: &mut Storage,
    gate: &Gate,
    boot: Persisted,
) -> Result<Boot, String> {
    let identity = new_identity(config, cluster_id(config));
    let fail = |e| format!("bootstrap: {e}");
    storage.append(&boot.entries).map_err(fail)?;
    storage.set_hard_state(boot.hard_state).map_err(fail)?;
    storage.sync().map_err(fail)?;
    storage.set_identity(&identity).map_err(fail)?;
    gate.set_standing(Standing::Member(identity.cluster_id.clone()));
    tracing::info!(cluster_id = %identity.cluster_id, node = config.id, members = config.peers.len(), "bootstrapped a new data directory");
    Ok(Boot {
        identity,
        persisted: boot,
        fresh: true,
        promote: false,
    })
}

/// Writes the identity of a new incarnation in the peers' cluster; the log
/// stays empty until the leader replicates to this learner.
fn join(
    config: &Config,
    storage: &mut Storage,
    gate: &Gate,
    cluster_id: String,
) -> Result<Boot, String> {
    if let Some(expected) = config.cluster_id.as_ref().filter(|e| **e != cluster_id) {
        return Err(format!(
            "--join: the peers belong to cluster {cluster_id:?}, not {expected:?} (--cluster-id)"
        ));
    }
    let identity = new_identity(config, cluster_id);
    storage
        .set_identity(&identity)
        .map_err(|e| format!("join: {e}"))?;
    gate.set_standing(Standing::Member(identity.cluster_id.clone()));
    tracing::info!(cluster_id = %identity.cluster_id, node = config.id, "joined: waiting for the leader to replicate to this learner");
    Ok(Boot {
        identity,
        // No log, no membership (so it never campaigns), term 0 (any
        // leader's term is newer).
        persisted: Persisted::default(),
        fresh: true,
        promote: false,
    })
}

fn new_identity(config: &Config, cluster_id: String) -> Identity {
    Identity {
        cluster_id,
        node_id: config.id,
        incarnation: rand::random::<u64>() | 1,
    }
}

/// The one-line error of a node whose data directory came back empty while
/// its peers already form a cluster, with the recovery steps.
fn refusal(config: &Config, peer: u64, cluster_id: &str) -> String {
    let id = config.id;
    let peer_addr = config
        .peers
        .iter()
        .find(|p| p.id == peer)
        .map_or("?", |p| p.peer_addr.as_str());
    let add = format!(
        "raftctl member add {id} --peer-addr {} --client-addr {}",
        config.me().peer_addr,
        config.advertise_client_addr
    );
    format!(
        "data directory {} of node {id} is empty but peer {peer} ({peer_addr}) already belongs to cluster {cluster_id:?}: \
         this node may have lost acknowledged data and must not bootstrap again; \
         recover it as a new member: `raftctl member remove {id}`, `{add} --learner`, \
         restart this node with --join (RAFTKV_JOIN=true), and once it has caught up `{add}` \
         (see docs/operations.md); or let it do this itself with --auto-join (RAFTKV_AUTO_JOIN=true)",
        config.data_dir.display()
    )
}

/// `--cluster-id` if given; else derived from the sorted peer list, so that
/// founders agree without talking (plus a random part for a lone founder).
pub fn cluster_id(config: &Config) -> String {
    if let Some(id) = &config.cluster_id {
        return id.clone();
    }
    let derived = derived_cluster_id(initial_members(config).map(|p| (p.id, p.peer_addr.as_str())));
    if initial_members(config).count() > 1 {
        return derived;
    }
    // A lone founder agrees with nobody, so its id can be unique: if its
    // volume is lost after the cluster grew (`member add`), it bootstraps
    // again at once (there is no other initial member to ask), and a new id
    // keeps the old cluster's messages from reaching the amnesiac node.
    format!("{derived}-{:08x}", rand::random::<u32>())
}

/// The cluster id founders derive from their peer list (id, peer address),
/// sorted by id, without `--cluster-id`. Public for `raftctl local`, whose
/// nodes each see their peers behind other proxy addresses and are given
/// the id of the unproxied list.
pub fn derived_cluster_id<'a>(members: impl Iterator<Item = (u64, &'a str)>) -> String {
    let list: Vec<String> = members.map(|(id, addr)| format!("{id}={addr}")).collect();
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in list.join(",").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("raftkv-{h:016x}")
}

#[cfg(test)]
mod tests;
