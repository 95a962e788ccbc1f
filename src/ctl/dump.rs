//! `raftctl dump DATA_DIR`: a node's data directory, read-only — identity,
//! hard state, snapshot, WAL segments, and every log entry with its command
//! decoded (`SET k = v`, `INCR k`, a time entry, a membership change, ...),
//! as text or `-o json|yaml`.
//!
//! One raftctl write often shows as two entries: every raftctl run is a new
//! client, and a client's first write registers its session (a `REGISTER`
//! entry) so that retries of that write apply once; the write follows. A
//! long-lived client (the library, `bench`) registers once. Idle leaders
//! also append time entries while keys with a TTL exist (docs/node.md).

use std::fmt::Write as _;
use std::path::Path;

use prost::Message;
use serde::Serialize;

use super::cli::Output;
use super::exit::{CtlError, Exit};
use super::output::print_structured;
use crate::pb::{self, command::Op};
use crate::raft::{Entry, Payload};
use crate::storage::{self, Storage};

/// Bytes of a key or value shown in the text rendering.
const PREVIEW: usize = 64;

/// Dumps `data_dir`; refuses one a running node holds (its log moves under
/// the reader, so the dump could mix two states) unless `force`.
pub fn run(data_dir: &Path, force: bool, output: Output) -> Result<(), CtlError> {
    // Checked here so a typo is bad input, not a storage error.
    if !data_dir.exists() {
        return Err(CtlError::new(
            Exit::BadInput,
            format!("{} does not exist", data_dir.display()),
        ));
    }
    if !data_dir.is_dir() {
        return Err(CtlError::new(
            Exit::BadInput,
            format!("{} is not a directory", data_dir.display()),
        ));
    }
    let cannot = |e: storage::StorageError| {
        CtlError::error(format!("cannot read {}: {e}", data_dir.display()))
    };
    match storage::holder(data_dir).map_err(cannot)? {
        Some(h) if !force => {
            return Err(CtlError::error(format!(
                "{} is in use: {h}; stop that node first, or pass --force to read it anyway",
                data_dir.display()
            )));
        }
        Some(h) => eprintln!("warning: {h}; the dump may be inconsistent"),
        None => {}
    }
    let dump = read(data_dir).map_err(cannot)?;
    match output {
        Output::Table => {
            print!("{}", render(&dump));
            Ok(())
        }
        format => print_structured(format, &dump),
    }
}

/// What `dump` shows, in the shape JSON and YAML print.
#[derive(Debug, Serialize)]
pub struct Dump {
    pub data_directory: String,
    pub identity: Option<IdentityView>,
    pub hard_state: HardStateView,
    pub snapshot: Option<SnapshotView>,
    pub segments: Vec<Segment>,
    pub warnings: Vec<String>,
    pub entries: Vec<EntryView>,
}

#[derive(Debug, Serialize)]
pub struct IdentityView {
    pub cluster_id: String,
    pub node_id: u64,
    pub incarnation: u64,
}

#[derive(Debug, Serialize)]
pub struct HardStateView {
    pub term: u64,
    pub vote: Option<u64>,
    pub commit: u64,
}

#[derive(Debug, Serialize)]
pub struct SnapshotView {
    pub last_index: u64,
    pub last_term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub bytes: usize,
}

#[derive(Debug, Serialize)]
pub struct Segment {
    pub file: String,
    pub bytes: u64,
}

/// One log entry, decoded.
#[derive(Debug, Serialize)]
pub struct EntryView {
    pub index: u64,
    pub term: u64,
    /// noop, config, time, command, or undecodable.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The command as text: `SET k = "v"`, `INCR k`, `REGISTER`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The client session (id, sequence number) a command came with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<(u64, u64)>,
    /// The cluster time the leader stamped (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stamp_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voters: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learners: Option<Vec<u64>>,
}

/// Reads the directory without taking its lock (`Storage::inspect`).
pub fn read(dir: &Path) -> Result<Dump, storage::StorageError> {
    let rec = Storage::inspect(dir)?;
    let hs = rec.persisted.hard_state;
    let wal = dir.join("wal");
    let mut segments: Vec<Segment> = std::fs::read_dir(&wal)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| Segment {
            file: e.path().display().to_string(),
            bytes: e.metadata().map_or(0, |m| m.len()),
        })
        .collect();
    segments.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(Dump {
        data_directory: dir.display().to_string(),
        identity: rec.identity.map(|i| IdentityView {
            cluster_id: i.cluster_id,
            node_id: i.node_id,
            incarnation: i.incarnation,
        }),
        hard_state: HardStateView {
            term: hs.term.0,
            vote: hs.voted_for.map(|v| v.0),
            commit: hs.commit.0,
        },
        snapshot: rec.persisted.snapshot.as_ref().map(|s| SnapshotView {
            last_index: s.meta.last.index.0,
            last_term: s.meta.last.term.0,
            voters: ids(&s.meta.membership.voters),
            learners: ids(&s.meta.membership.learners),
            bytes: s.data.len(),
        }),
        segments,
        warnings: rec.warnings,
        entries: rec.persisted.entries.iter().map(decode).collect(),
    })
}

fn ids(set: &std::collections::BTreeSet<crate::raft::NodeId>) -> Vec<u64> {
    set.iter().map(|n| n.0).collect()
}

/// Decodes one entry: its payload, and for a command the proposal inside.
pub fn decode(e: &Entry) -> EntryView {
    let mut view = EntryView {
        index: e.index().0,
        term: e.term().0,
        kind: "noop",
        command: None,
        session: None,
        stamp_ms: None,
        voters: None,
        learners: None,
    };
    match &e.payload {
        Payload::Noop => {}
        Payload::Config { membership: m, .. } => {
            view.kind = "config";
            view.voters = Some(ids(&m.voters));
            view.learners = Some(ids(&m.learners));
        }
        Payload::Command(bytes) => match pb::Proposal::decode(bytes.as_ref()) {
            Ok(p) => {
                view.stamp_ms = Some(p.stamp_ms);
                view.session = p
                    .session
                    .filter(|s| s.client_id != 0)
                    .map(|s| (s.client_id, s.seq));
                match p.command.and_then(|c| c.op) {
                    None => view.kind = "time",
                    Some(op) => {
                        view.kind = "command";
                        view.command = Some(command_text(&op));
                    }
                }
            }
            Err(err) => {
                view.kind = "undecodable";
                view.command = Some(format!("{} bytes: {err}", bytes.len()));
            }
        },
    }
    view
}

/// A command as an operator would type it.
pub fn command_text(op: &Op) -> String {
    match op {
        Op::Set(c) => format!("SET {} = {}", show(&c.key), show(&c.value)),
        Op::Del(c) => format!("DEL {}", show(&c.key)),
        Op::Incr(c) => format!("INCR {}", show(&c.key)),
        Op::Expire(c) => format!("EXPIRE {} {}s", show(&c.key), c.seconds),
        Op::Cas(c) => format!(
            "CAS {} {} -> {}",
            show(&c.key),
            c.expected.as_deref().map_or("(absent)".into(), show),
            show(&c.value)
        ),
        Op::Register(_) => "REGISTER (opens a client session)".into(),
        Op::MemberAddrs(m) => format!(
            "MEMBER-ADDRS node {} peer {} client {}",
            m.id, m.peer_addr, m.client_addr
        ),
        Op::StateCheck(_) => "STATE-CHECK (every replica hashes its state here)".into(),
        Op::StateReport(r) => format!(
            "STATE-REPORT node {} hashed entry {} to {:016x}",
            r.reporter, r.index, r.hash
        ),
        Op::Auth(a) => format!("AUTH {}", auth_text(a)),
    }
}

/// An auth change without its secrets (hashes, signing key).
fn auth_text(a: &crate::pb::AuthCmd) -> String {
    use crate::pb::auth_cmd::Op as A;
    match &a.op {
        None => "(no operation)".into(),
        Some(A::UserAdd(c)) => format!("USER-ADD {}", c.name),
        Some(A::UserDelete(c)) => format!("USER-DELETE {}", c.name),
        Some(A::UserPasswd(c)) => format!("USER-PASSWD {}", c.name),
        Some(A::UserGrant(c)) => format!("USER-GRANT {} {}", c.user, c.role),
        Some(A::UserRevoke(c)) => format!("USER-REVOKE {} {}", c.user, c.role),
        Some(A::RoleAdd(c)) => format!("ROLE-ADD {}", c.name),
        Some(A::RoleDelete(c)) => format!("ROLE-DELETE {}", c.name),
        Some(A::RoleGrant(c)) => format!(
            "ROLE-GRANT {} {} {}",
            c.role,
            show(&c.prefix),
            c.permission().as_str_name()
        ),
        Some(A::RoleRevoke(c)) => format!("ROLE-REVOKE {} {}", c.role, show(&c.prefix)),
        Some(A::Enable(_)) => "AUTH-ENABLE".into(),
        Some(A::Disable(_)) => "AUTH-DISABLE".into(),
    }
}

/// Bytes quoted and escaped, cut after [`PREVIEW`] bytes.
fn show(bytes: &[u8]) -> String {
    let shown: String = bytes[..bytes.len().min(PREVIEW)]
        .iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect();
    if bytes.len() > PREVIEW {
        format!("\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

fn membership_text(voters: &[u64], learners: &[u64]) -> String {
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    format!("voters [{}] learners [{}]", list(voters), list(learners))
}

/// The text rendering, one line per fact and per entry.
pub fn render(d: &Dump) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "data directory: {}", d.data_directory);
    match &d.identity {
        Some(i) => {
            let _ = writeln!(
                out,
                "identity: cluster {} node {} incarnation {}",
                i.cluster_id, i.node_id, i.incarnation
            );
        }
        None => out.push_str("identity: none (fresh directory)\n"),
    }
    let hs = &d.hard_state;
    let vote = hs.vote.map_or("none".to_string(), |n| n.to_string());
    let _ = writeln!(
        out,
        "hard state: term {} vote {vote} commit {}",
        hs.term, hs.commit
    );
    match &d.snapshot {
        Some(s) => {
            let _ = writeln!(
                out,
                "snapshot: last index {} term {}, {}, {} bytes",
                s.last_index,
                s.last_term,
                membership_text(&s.voters, &s.learners),
                s.bytes
            );
        }
        None => out.push_str("snapshot: none\n"),
    }
    for s in &d.segments {
        let _ = writeln!(out, "segment: {} ({} bytes)", s.file, s.bytes);
    }
    for w in &d.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(out, "entries: {}", d.entries.len());
    for e in &d.entries {
        let body = match e.kind {
            "config" => format!(
                "config {}",
                membership_text(
                    e.voters.as_deref().unwrap_or_default(),
                    e.learners.as_deref().unwrap_or_default()
                )
            ),
            "time" => format!("time entry (cluster time {} ms)", e.stamp_ms.unwrap_or(0)),
            "noop" => "noop (a new leader's first entry)".into(),
            _ => {
                let mut text = e.command.clone().unwrap_or_default();
                if let Some((client, seq)) = e.session {
                    let _ = write!(text, "  [client {client} seq {seq}]");
                }
                text
            }
        };
        let _ = writeln!(out, "  {:>6}  term {}  {body}", e.index, e.term);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Membership;
    use bytes::Bytes;

    fn config_entry(index: u64, m: Membership) -> Entry {
        Entry {
            id: crate::raft::LogId {
                term: crate::raft::Term(1),
                index: crate::raft::LogIndex(index),
            },
            payload: Payload::config(m),
        }
    }

    #[test]
    fn missing_or_plain_file_is_bad_input() {
        let err = run(
            Path::new("/nonexistent/raftkv-data/node-0"),
            false,
            Output::Table,
        )
        .unwrap_err();
        assert_eq!(err.exit, Exit::BadInput);
        assert!(err.message.contains("does not exist"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = run(file.path(), false, Output::Table).unwrap_err();
        assert_eq!(err.exit, Exit::BadInput);
        assert!(err.message.ends_with("is not a directory"), "{err}");
    }

    #[test]
    fn an_empty_directory_dumps() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run(dir.path(), false, Output::Table), Ok(()));
        assert_eq!(run(dir.path(), false, Output::Json), Ok(()));
    }

    #[test]
    fn a_directory_held_by_a_node_is_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let (_storage, _) = storage::Storage::open(dir.path()).unwrap();
        let err = run(dir.path(), false, Output::Table).unwrap_err();
        assert_eq!(err.exit, Exit::Error);
        let pid = std::process::id().to_string();
        assert!(
            err.message.contains(&pid) && err.message.contains("--force"),
            "{err}"
        );
        assert_eq!(run(dir.path(), true, Output::Table), Ok(()));
    }

    fn command_entry(index: u64, proposal: pb::Proposal) -> Entry {
        Entry {
            id: crate::raft::LogId {
                term: crate::raft::Term(2),
                index: crate::raft::LogIndex(index),
            },
            payload: Payload::Command(Bytes::from(proposal.encode_to_vec())),
        }
    }

    #[test]
    fn commands_are_decoded() {
        let set = pb::Proposal {
            session: Some(pb::Session {
                client_id: 7,
                seq: 1,
                first_incomplete: 1,
            }),
            stamp_ms: 42,
            command: Some(pb::Command {
                op: Some(Op::Set(pb::SetCmd {
                    key: Bytes::from_static(b"greeting"),
                    value: Bytes::from_static(b"hi\n"),
                })),
            }),
            user: String::new(),
        };
        let v = decode(&command_entry(5, set));
        assert_eq!(v.kind, "command");
        assert_eq!(v.command.as_deref(), Some(r#"SET "greeting" = "hi\n""#));
        assert_eq!(v.session, Some((7, 1)));
        let time = decode(&command_entry(
            6,
            pb::Proposal {
                stamp_ms: 99,
                ..Default::default()
            },
        ));
        assert_eq!((time.kind, time.stamp_ms), ("time", Some(99)));
        let m = Membership::new([crate::raft::NodeId(0), crate::raft::NodeId(1)]);
        let c = decode(&config_entry(1, m));
        assert_eq!((c.kind, c.voters.clone()), ("config", Some(vec![0, 1])));
        let junk = Entry {
            id: crate::raft::LogId::default(),
            payload: Payload::Command(Bytes::from_static(b"\xff\xff\xff")),
        };
        assert_eq!(decode(&junk).kind, "undecodable");
        let text = render(&Dump {
            data_directory: "d".into(),
            identity: None,
            hard_state: HardStateView {
                term: 2,
                vote: None,
                commit: 5,
            },
            snapshot: None,
            segments: vec![],
            warnings: vec![],
            entries: vec![v, time],
        });
        assert!(
            text.contains(r#"     5  term 2  SET "greeting" = "hi\n"  [client 7 seq 1]"#),
            "{text}"
        );
        assert!(text.contains("time entry (cluster time 99 ms)"), "{text}");
    }
}
