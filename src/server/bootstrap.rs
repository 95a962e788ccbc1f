//! Identity and first boot (DESIGN.md §5.1, minimal version).
//!
//! A fresh data directory with a static peer list: every founding member
//! writes the same bootstrap entry and a cluster id derived from the sorted
//! peer list (or `--cluster-id`), so the founders agree without talking. On
//! restart the recorded identity must match this node's id and, if given,
//! `--cluster-id`. The identity file is written last: it marks a completed
//! bootstrap.
//!
//! Limitation (documented in docs/operations.md): a member whose volume came
//! back empty bootstraps again under its old id; asking the cluster to add it
//! as a new incarnation is not implemented yet.

use super::config::Config;
use crate::raft::{self, Membership, NodeId, Persisted};
use crate::storage::{Identity, Recovered, Storage};

/// The identity and the state the core starts from.
pub struct Boot {
    pub identity: Identity,
    pub persisted: Persisted,
    pub fresh: bool,
}

/// Checks or creates the data directory's identity.
pub fn prepare(
    config: &Config,
    storage: &mut Storage,
    recovered: Recovered,
) -> Result<Boot, String> {
    for w in &recovered.warnings {
        tracing::warn!(warning = %w, "storage repaired on open");
    }
    let dir = config.data_dir.display();
    if let Some(identity) = recovered.identity {
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
        return Ok(Boot {
            identity,
            persisted: into_raft(recovered.persisted),
            fresh: false,
        });
    }
    let membership = Membership::new(config.peers.iter().map(|p| NodeId(p.id)));
    let boot = raft::bootstrap(membership);
    let on_disk = into_raft(recovered.persisted);
    let empty = on_disk.snapshot.is_none() && on_disk.entries.is_empty();
    if !empty && on_disk.entries != boot.entries {
        return Err(format!(
            "data directory {dir} has a log but no identity file; refusing to guess whose it is"
        ));
    }
    let identity = Identity {
        cluster_id: cluster_id(config),
        node_id: config.id,
        incarnation: rand::random::<u64>() | 1,
    };
    storage
        .append(&boot.entries)
        .map_err(|e| format!("bootstrap: {e}"))?;
    storage
        .set_hard_state(boot.hard_state)
        .map_err(|e| format!("bootstrap: {e}"))?;
    storage.sync().map_err(|e| format!("bootstrap: {e}"))?;
    storage
        .set_identity(&identity)
        .map_err(|e| format!("bootstrap: {e}"))?;
    tracing::info!(cluster_id = %identity.cluster_id, node = config.id, members = config.peers.len(), "bootstrapped a new data directory");
    Ok(Boot {
        identity,
        persisted: boot,
        fresh: true,
    })
}

/// `--cluster-id` if given, else a name derived from the sorted peer list.
pub fn cluster_id(config: &Config) -> String {
    if let Some(id) = &config.cluster_id {
        return id.clone();
    }
    let list: Vec<String> = config
        .peers
        .iter()
        .map(|p| format!("{}={}", p.id, p.peer_addr))
        .collect();
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in list.join(",").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("raftkv-{h:016x}")
}

fn into_raft(p: crate::storage::Persisted) -> Persisted {
    Persisted {
        hard_state: p.hard_state,
        snapshot: p.snapshot,
        entries: p.entries,
    }
}
