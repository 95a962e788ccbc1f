//! Human-readable rendering of a data directory for `raftctl dump`.

use super::wal::{list_segments, segment_name};
use super::{Storage, StorageError};
use crate::raft::{Entry, Membership, Payload};
use std::fmt::Write;
use std::path::Path;

/// Bytes of a command shown in the preview.
const PREVIEW: usize = 32;

/// Renders identity, hard state, snapshot metadata, WAL segments and every
/// log entry. Read-only (uses `Storage::inspect`).
pub fn dump(dir: &Path) -> Result<String, StorageError> {
    let rec = Storage::inspect(dir)?;
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(out, "data directory: {}", dir.display());
    match &rec.identity {
        Some(id) => {
            let _ = writeln!(
                out,
                "identity: cluster {} node {} incarnation {}",
                id.cluster_id, id.node_id, id.incarnation
            );
        }
        None => out.push_str("identity: none (fresh directory)\n"),
    }
    let hs = rec.persisted.hard_state;
    let vote = hs.voted_for.map_or("none".to_string(), |n| n.to_string());
    let _ = writeln!(
        out,
        "hard state: term {} vote {vote} commit {}",
        hs.term, hs.commit
    );
    match &rec.persisted.snapshot {
        Some(s) => {
            let _ = writeln!(
                out,
                "snapshot: last index {} term {}, {}, {} bytes",
                s.meta.last.index,
                s.meta.last.term,
                membership(&s.meta.membership),
                s.data.len()
            );
        }
        None => out.push_str("snapshot: none\n"),
    }
    let wal_dir = dir.join("wal");
    for first in list_segments(&wal_dir)? {
        let path = wal_dir.join(segment_name(first));
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(out, "segment: {} ({size} bytes)", path.display());
    }
    for w in &rec.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(out, "entries: {}", rec.persisted.entries.len());
    for e in &rec.persisted.entries {
        let _ = writeln!(out, "  {}", entry_line(e));
    }
    Ok(out)
}

fn entry_line(e: &Entry) -> String {
    let body = match &e.payload {
        Payload::Noop => "noop".to_string(),
        Payload::Command(b) => {
            let shown: String = b[..b.len().min(PREVIEW)]
                .iter()
                .flat_map(|&c| std::ascii::escape_default(c))
                .map(char::from)
                .collect();
            let more = if b.len() > PREVIEW { "..." } else { "" };
            format!("command {} bytes \"{shown}{more}\"", b.len())
        }
        Payload::Config { membership: m, .. } => format!("config {}", membership(m)),
    };
    format!("index {} term {} {body}", e.index(), e.term())
}

fn membership(m: &Membership) -> String {
    let list = |s: &std::collections::BTreeSet<_>| {
        s.iter()
            .map(|n: &crate::raft::NodeId| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "voters [{}] learners [{}]",
        list(&m.voters),
        list(&m.learners)
    )
}
