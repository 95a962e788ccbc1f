//! Seeding the data directory of one member of a new cluster from a backup
//! (docs/operations.md, "Backup and restore"), as `etcdutl snapshot
//! restore` does: the same keys, sessions and TTL deadlines (cluster time
//! goes on from the backup's), under a new cluster id and the voters given,
//! at the backup's index and term.
//!
//! The directory is built beside its destination (`.NAME.restoring`) and
//! renamed into place once complete, so a refusal or a crash leaves the
//! destination as it was. Every member's restore derives the same cluster
//! id from the backup and the voters, without talking to the others.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::file::{Backup, FileError};
use crate::kv::{Limits, StateMachine};
use crate::raft::{HardState, LogId, LogIndex, Membership, NodeId, Snapshot, SnapshotMeta, Term};
use crate::storage::{Identity, Storage, StorageError};

/// Why a restore was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0}")]
    BadInput(String),
    #[error(
        "--data-dir {} {why}: a restore only seeds a new, empty data directory; nothing was changed",
        path.display()
    )]
    DataDir { path: PathBuf, why: String },
    #[error("cannot restore into {}: {source}; nothing was changed", path.display())]
    Storage { path: PathBuf, source: StorageError },
    #[error("cannot restore into {}: {source}; nothing was changed", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to restore: this member, the new cluster's voters (default: the
/// backup's) and its id (default: derived, see [`derived_cluster_id`]).
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub data_dir: &'a Path,
    pub member: u64,
    pub voters: &'a [u64],
    pub cluster_id: Option<&'a str>,
    /// Turn auth off in the restored state.
    pub disable_auth: bool,
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub member: u64,
    pub cluster_id: String,
    pub voters: Vec<u64>,
    pub index: u64,
    pub term: u64,
    pub keys: u64,
    /// The cluster the backup was taken from.
    pub from_cluster_id: String,
}

/// Restores `backup` (read and verified) into `plan.data_dir`.
pub fn restore(backup: &Backup, plan: &Plan) -> Result<Restored, RestoreError> {
    let header = &backup.header;
    let voters: BTreeSet<u64> = if plan.voters.is_empty() {
        header.voters.iter().copied().collect()
    } else {
        plan.voters.iter().copied().collect()
    };
    if voters.is_empty() {
        return Err(RestoreError::BadInput(
            "the backup names no voters: give the new cluster's with --voters".into(),
        ));
    }
    if !voters.contains(&plan.member) {
        let voters: Vec<String> = voters.iter().map(u64::to_string).collect();
        return Err(RestoreError::BadInput(format!(
            "--member {} is not one of the new cluster's voters ({}; set them with --voters)",
            plan.member,
            voters.join(",")
        )));
    }
    let voters: Vec<u64> = voters.into_iter().collect();
    let cluster_id = match plan.cluster_id {
        Some(id) if id.is_empty() || id.contains(['\n', '\r']) => {
            return Err(RestoreError::BadInput(format!(
                "--cluster-id {id:?} must be non-empty and on one line"
            )));
        }
        Some(id) if id == header.cluster_id => {
            return Err(RestoreError::BadInput(format!(
                "--cluster-id {id:?} is the backed-up cluster's own id: a restored cluster needs \
                 a new one, or nodes of the old cluster would take it for theirs"
            )));
        }
        Some(id) => id.to_string(),
        None => derived_cluster_id(backup, &voters),
    };
    let data = state(backup, plan.disable_auth)?;
    let destination = Destination::check(plan.data_dir)?;
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            last: LogId::new(header.term, header.index),
            membership: Membership::new(voters.iter().map(|&v| NodeId(v))),
        },
        data,
    };
    let identity = Identity {
        cluster_id: cluster_id.clone(),
        node_id: plan.member,
        incarnation: rand::random::<u64>() | 1,
    };
    destination.build(|dir| seed(dir, &snapshot, &identity))?;
    Ok(Restored {
        data_dir: plan.data_dir.to_path_buf(),
        member: plan.member,
        cluster_id,
        voters,
        index: header.index,
        term: header.term,
        keys: header.keys,
        from_cluster_id: header.cluster_id.clone(),
    })
}

/// The new cluster's id when none is given: `raftkv-` and 16 hex digits of
/// a hash of the backup (its cluster, index, term and data) and the voters,
/// so every member's restore agrees and it differs from the old cluster's.
pub fn derived_cluster_id(backup: &Backup, voters: &[u64]) -> String {
    let h = &backup.header;
    let mut hasher = Sha256::new();
    hasher.update(b"raftkv restore\0");
    hasher.update(h.cluster_id.as_bytes());
    hasher.update([0]);
    hasher.update(h.index.to_le_bytes());
    hasher.update(h.term.to_le_bytes());
    hasher.update(Sha256::digest(&backup.data));
    for v in voters {
        hasher.update(v.to_le_bytes());
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("raftkv-{hex}")
}

/// The backup's state machine, decoded and checked whole, re-encoded
/// without the old members' addresses (the new members are given theirs),
/// and with auth off if asked.
fn state(backup: &Backup, disable_auth: bool) -> Result<bytes::Bytes, RestoreError> {
    let corrupt = |detail: String| FileError::Corrupt {
        path: PathBuf::from("the backup"),
        detail,
    };
    let mut sm = StateMachine::restore(Limits::default(), &backup.data)
        .map_err(|e| corrupt(format!("its state does not decode: {}", e.message)))?;
    if sm.applied_index() != backup.header.index {
        return Err(corrupt(format!(
            "its state is at index {} but its header says {}",
            sm.applied_index(),
            backup.header.index
        ))
        .into());
    }
    sm.forget_member_addresses();
    if disable_auth {
        sm.auth_mut().disable();
    }
    Ok(sm.snapshot())
}

/// Writes the data directory: the snapshot (as a node installs one from its
/// leader), the hard state (the backup's term, committed up to its index,
/// no vote) and, last, the identity.
fn seed(dir: &Path, snapshot: &Snapshot, identity: &Identity) -> Result<(), StorageError> {
    let (mut storage, recovered) = Storage::open(dir)?;
    if recovered.identity.is_some() || recovered.persisted.snapshot.is_some() {
        return Err(StorageError::Invalid(format!(
            "{} is not empty",
            dir.display()
        )));
    }
    storage.install_snapshot(snapshot)?;
    let last = snapshot.meta.last;
    storage.set_hard_state(HardState {
        term: Term(last.term.0),
        voted_for: None,
        commit: LogIndex(last.index.0),
    })?;
    storage.sync()?;
    storage.set_identity(identity)
}

/// The directory to restore into, checked, and the temporary sibling the
/// restore builds.
struct Destination {
    path: PathBuf,
    parent: PathBuf,
    staging: PathBuf,
    /// The destination exists (as an empty directory).
    exists: bool,
}

impl Destination {
    /// Refuses anything but a missing or empty directory.
    fn check(path: &Path) -> Result<Destination, RestoreError> {
        let refuse = |why: String| RestoreError::DataDir {
            path: path.to_path_buf(),
            why,
        };
        let name = path
            .file_name()
            .ok_or_else(|| refuse("does not name a directory".into()))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let exists = match fs::read_dir(path) {
            Ok(entries) => {
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|e| refuse(format!("cannot be read ({e})")))?;
                    names.push(entry.file_name());
                }
                let interrupted = names.iter().any(|n| n == IN_PLACE);
                let has_identity = names.iter().any(|n| n == "identity");
                let foreign = names
                    .iter()
                    .any(|n| n != LOST_FOUND && (!interrupted || has_identity));
                if foreign {
                    return Err(refuse(
                        "is not empty (a node's data, or another restore's)".into(),
                    ));
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) if path.exists() && !path.is_dir() => {
                return Err(refuse(format!("is not a directory ({e})")));
            }
            Err(e) => return Err(refuse(format!("cannot be read ({e})"))),
        };
        // An existing directory (a volume's mount point, whose parent may be
        // read-only) is filled in place from a staging directory inside it.
        let staging = if exists {
            path.join(IN_PLACE)
        } else {
            let mut staging = std::ffi::OsString::from(".");
            staging.push(name);
            staging.push(".restoring");
            parent.join(staging)
        };
        Ok(Destination {
            path: path.to_path_buf(),
            parent,
            staging,
            exists,
        })
    }

    /// Runs `fill` on a fresh staging directory, then renames it into
    /// place; on any failure the staging directory is removed.
    fn build(
        &self,
        fill: impl FnOnce(&Path) -> Result<(), StorageError>,
    ) -> Result<(), RestoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RestoreError::Io { path, source }
        };
        if self.exists {
            // Left by an interrupted in-place restore (`check` saw no
            // identity): everything but lost+found goes.
            for entry in fs::read_dir(&self.path).map_err(io(&self.path))? {
                let entry = entry.map_err(io(&self.path))?;
                if entry.file_name() == LOST_FOUND {
                    continue;
                }
                let p = entry.path();
                if entry.file_type().map_err(io(&p))?.is_dir() {
                    fs::remove_dir_all(&p).map_err(io(&p))?;
                } else {
                    fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        } else {
            fs::create_dir_all(&self.parent).map_err(io(&self.parent))?;
        }
        // Left by a restore that was interrupted: never a node's directory.
        if self.staging.exists() {
            fs::remove_dir_all(&self.staging).map_err(io(&self.staging))?;
        }
        let result = fill(&self.staging)
            .map_err(|source| RestoreError::Storage {
                path: self.path.clone(),
                source,
            })
            .and_then(|()| {
                if self.exists {
                    return self.move_in();
                }
                fs::rename(&self.staging, &self.path).map_err(io(&self.path))?;
                fs::File::open(&self.parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&self.parent))
            });
        if result.is_err() {
            let _ = fs::remove_dir_all(&self.staging);
        }
        result
    }

    /// In place: moves the staging directory's entries up, the identity
    /// last (a directory without it is not a node's: a rerun starts over),
    /// then removes the staging directory.
    fn move_in(&self) -> Result<(), RestoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RestoreError::Io { path, source }
        };
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(&self.staging)
            .map_err(io(&self.staging))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(&self.staging))?;
        names.sort_by_key(|n| n == "identity");
        for name in &names {
            if name == "identity" {
                fs::File::open(&self.path)
                    .and_then(|d| d.sync_all())
                    .map_err(io(&self.path))?;
            }
            fs::rename(self.staging.join(name), self.path.join(name)).map_err(io(&self.path))?;
        }
        fs::remove_dir(&self.staging).map_err(io(&self.staging))?;
        fs::File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.path))
    }
}

/// The staging directory of a restore into an existing directory.
const IN_PLACE: &str = ".restoring";
/// What mkfs leaves on a fresh ext4 volume: not data.
const LOST_FOUND: &str = "lost+found";

/// Whether `dir` holds a node's data (an identity): what
/// `--skip-if-initialized` checks.
pub fn initialized(dir: &Path) -> bool {
    dir.join("identity").is_file()
}

/// The node id of StatefulSet pod `pod` (`NAME-<ordinal>`).
pub fn ordinal_of(pod: &str) -> Option<u64> {
    let (_, digits) = pod.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::file::{self, Writer};
    use super::*;
    use crate::pb;
    use bytes::Bytes;
    use prost::Message;

    /// A state machine with keys (one with a TTL), a session and the
    /// address of a member added at run time, after `n` entries.
    fn state_machine() -> StateMachine {
        let mut sm = StateMachine::new(Limits::default());
        let proposal = |command: Option<pb::command::Op>, session: Option<pb::Session>| {
            pb::Proposal {
                session,
                stamp_ms: 1_000_000,
                command: command.map(|op| pb::Command { op: Some(op) }),
                user: String::new(),
            }
            .encode_to_vec()
        };
        use pb::command::Op;
        sm.apply(
            1,
            &proposal(Some(Op::Register(pb::RegisterSession {})), None),
        );
        let session = Some(pb::Session {
            client_id: 1,
            seq: 1,
            first_incomplete: 1,
        });
        let set = |k: &str| {
            Op::Set(pb::SetCmd {
                key: Bytes::from(k.to_string()),
                value: Bytes::from_static(b"v"),
            })
        };
        sm.apply(2, &proposal(Some(set("a")), session));
        sm.apply(3, &proposal(Some(set("b")), None));
        let expire = Op::Expire(pb::ExpireCmd {
            key: Bytes::from_static(b"b"),
            seconds: 60,
        });
        sm.apply(4, &proposal(Some(expire), None));
        let member = Op::MemberAddrs(pb::MemberAddrsCmd {
            id: 3,
            peer_addr: "old:1".into(),
            client_addr: "old:2".into(),
        });
        sm.apply(5, &proposal(Some(member), None));
        sm
    }

    fn backup_of(sm: &StateMachine, dir: &Path) -> Backup {
        let data = sm.snapshot();
        let header = pb::SnapshotHeader {
            cluster_id: "raftkv-old".into(),
            index: sm.applied_index(),
            term: 4,
            voters: vec![0, 1, 2],
            keys: sm.len() as u64,
            data_bytes: data.len() as u64,
            ..Default::default()
        };
        let path = dir.join("backup");
        let mut w = Writer::create(&path, &header).unwrap();
        w.data(&data).unwrap();
        w.finish(&pb::SnapshotTrailer {
            data_bytes: data.len() as u64,
            data_sha256: Sha256::digest(&data).to_vec().into(),
        })
        .unwrap();
        file::read(&path).unwrap()
    }

    fn plan(dir: &Path, member: u64) -> Plan<'_> {
        Plan {
            data_dir: dir,
            member,
            voters: &[],
            cluster_id: None,
            disable_auth: false,
        }
    }

    #[test]
    fn a_restored_directory_holds_the_state_under_a_new_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let sm = state_machine();
        let backup = backup_of(&sm, tmp.path());
        let mut ids = BTreeSet::new();
        for member in 0..3 {
            let dir = tmp.path().join(format!("new/node-{member}"));
            let restored = restore(&backup, &plan(&dir, member)).unwrap();
            assert_eq!((restored.index, restored.term), (5, 4));
            assert_eq!(restored.voters, [0, 1, 2]);
            ids.insert(restored.cluster_id.clone());

            let rec = Storage::inspect(&dir).unwrap();
            let identity = rec.identity.unwrap();
            assert_eq!(identity.node_id, member);
            assert_eq!(identity.cluster_id, restored.cluster_id);
            assert_eq!(rec.persisted.hard_state.term, Term(4));
            assert_eq!(rec.persisted.hard_state.commit, LogIndex(5));
            let snap = rec.persisted.snapshot.unwrap();
            assert_eq!(snap.meta.last, LogId::new(4, 5));
            assert_eq!(
                snap.meta.membership,
                Membership::new([NodeId(0), NodeId(1), NodeId(2)])
            );
            // Everything but the old members' addresses: keys, deadlines,
            // sessions, cluster time and the applied index.
            let back = StateMachine::restore(Limits::default(), &snap.data).unwrap();
            let mut expected = sm.clone();
            expected.forget_member_addresses();
            assert_eq!(back, expected);
            assert!(back.members().is_empty() && !sm.members().is_empty());
            assert!(back.has_sessions() && back.has_deadlines());
        }
        assert_eq!(ids.len(), 1, "every member derives the same id");
        assert!(!ids.contains("raftkv-old"));
        assert!(!tmp.path().join("new/.node-0.restoring").exists());
    }

    /// Writes a backup of `RAFTKV_BACKUP_KEYS` keys (default 1,000,000) of
    /// 100-byte values to `RAFTKV_BACKUP_OUT`, timing the write, the read
    /// and one member's restore, for docs/performance.md ("Backup and
    /// restore"): restore it into a `raftctl local` directory to time a
    /// save of that many keys.
    #[test]
    #[ignore = "a measurement, not a check: RAFTKV_BACKUP_OUT=/tmp/1m.backup cargo test \
                --release --lib ctl::snapshot::restore::tests::a_large_backup -- --ignored --nocapture"]
    fn a_large_backup() {
        let n: u64 = std::env::var("RAFTKV_BACKUP_KEYS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let out = PathBuf::from(std::env::var("RAFTKV_BACKUP_OUT").expect("RAFTKV_BACKUP_OUT"));
        let time = |what: &str, started: std::time::Instant, bytes: u64| {
            let s = started.elapsed().as_secs_f64();
            println!(
                "{n} keys: {what} took {s:.2}s ({:.0} MB/s)",
                bytes as f64 / 1e6 / s
            );
        };
        let mut sm = StateMachine::new(Limits::default());
        for i in 0..n {
            let proposal = pb::Proposal {
                session: None,
                stamp_ms: 1_000_000,
                command: Some(pb::Command {
                    op: Some(pb::command::Op::Set(pb::SetCmd {
                        key: Bytes::from(format!("key-{i:08}")),
                        value: Bytes::from(vec![b'v'; 100]),
                    })),
                }),
                user: String::new(),
            };
            sm.apply(i + 1, &proposal.encode_to_vec());
        }
        let started = std::time::Instant::now();
        let data = sm.snapshot();
        time("encode", started, data.len() as u64);
        let header = pb::SnapshotHeader {
            cluster_id: "raftkv-measure".into(),
            index: n,
            term: 1,
            voters: vec![0, 1, 2],
            keys: n,
            data_bytes: data.len() as u64,
            ..Default::default()
        };
        let started = std::time::Instant::now();
        let mut w = Writer::create(&out, &header).unwrap();
        w.data(&data).unwrap();
        let written = w
            .finish(&pb::SnapshotTrailer {
                data_bytes: data.len() as u64,
                data_sha256: Sha256::digest(&data).to_vec().into(),
            })
            .unwrap();
        time("write (hash, fsync)", started, written.file_bytes);
        let started = std::time::Instant::now();
        let backup = file::read(&out).unwrap();
        time("read and verify", started, written.file_bytes);
        let tmp = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        restore(&backup, &plan(&tmp.path().join("node-0"), 0)).unwrap();
        time("restore of one member", started, written.file_bytes);
        let mounted = tmp.path().join("volume");
        fs::create_dir(&mounted).unwrap();
        let started = std::time::Instant::now();
        restore(&backup, &plan(&mounted, 1)).unwrap();
        time(
            "restore of one member into an existing directory (in place)",
            started,
            written.file_bytes,
        );
    }

    #[test]
    fn an_existing_mount_point_is_filled_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let backup = backup_of(&state_machine(), tmp.path());
        let dir = tmp.path().join("volume");
        fs::create_dir_all(dir.join(LOST_FOUND)).unwrap();
        assert!(!initialized(&dir));
        let restored = restore(&backup, &plan(&dir, 1)).unwrap();
        assert!(initialized(&dir));
        let identity = Storage::inspect(&dir).unwrap().identity.unwrap();
        assert_eq!(
            (identity.node_id, identity.cluster_id),
            (1, restored.cluster_id)
        );
        assert!(dir.join(LOST_FOUND).is_dir(), "lost+found stays");
        assert!(!dir.join(IN_PLACE).exists());
        assert!(!tmp.path().join(".volume.restoring").exists());
        // A node's directory now: refused.
        let e = restore(&backup, &plan(&dir, 1)).unwrap_err();
        assert!(matches!(e, RestoreError::DataDir { .. }), "{e}");

        // Interrupted before the identity moved in: redone from scratch.
        let half = tmp.path().join("half");
        fs::create_dir_all(half.join(IN_PLACE).join("snap")).unwrap();
        fs::create_dir_all(half.join("wal")).unwrap();
        fs::write(half.join("wal/junk"), b"x").unwrap();
        restore(&backup, &plan(&half, 2)).unwrap();
        assert!(initialized(&half) && !half.join("wal/junk").exists());
        assert_eq!(
            Storage::inspect(&half).unwrap().identity.unwrap().node_id,
            2
        );
    }

    #[test]
    fn pod_names_give_ordinals() {
        assert_eq!(ordinal_of("raftkv-2"), Some(2));
        assert_eq!(ordinal_of("prod-kv-14"), Some(14));
        assert_eq!(ordinal_of("raftkv"), None);
        assert_eq!(ordinal_of("raftkv-"), None);
        assert_eq!(ordinal_of("raftkv-x1"), None);
    }

    #[test]
    fn refusals_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let backup = backup_of(&state_machine(), tmp.path());
        let dir = tmp.path().join("node-0");

        let not_a_voter = restore(&backup, &plan(&dir, 5)).unwrap_err();
        assert!(
            matches!(not_a_voter, RestoreError::BadInput(_)),
            "{not_a_voter}"
        );
        let old_id = Plan {
            cluster_id: Some("raftkv-old"),
            ..plan(&dir, 0)
        };
        assert!(matches!(
            restore(&backup, &old_id),
            Err(RestoreError::BadInput(_))
        ));
        let mut damaged = backup.clone();
        damaged.data = Bytes::from_static(b"RKVS not a state");
        let e = restore(&damaged, &plan(&dir, 0)).unwrap_err();
        assert!(e.to_string().contains("does not decode"), "{e}");
        assert!(!dir.exists(), "nothing was created");

        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("keep"), b"x").unwrap();
        let e = restore(&backup, &plan(&dir, 0)).unwrap_err();
        assert!(matches!(e, RestoreError::DataDir { .. }), "{e}");
        assert_eq!(fs::read(dir.join("keep")).unwrap(), b"x");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

        // Other voters, and an empty directory that exists already.
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        let five = Plan {
            voters: &[0, 1, 2, 3, 4],
            ..plan(&empty, 4)
        };
        let restored = restore(&backup, &five).unwrap();
        assert_eq!(restored.voters, [0, 1, 2, 3, 4]);
        assert_ne!(
            restored.cluster_id,
            derived_cluster_id(&backup, &[0, 1, 2]),
            "other voters, another cluster"
        );
        assert!(Storage::inspect(&empty).unwrap().identity.is_some());
    }
}
