//! The leader's side of a backup (docs/operations.md, "Backup and
//! restore"): a linearizable read barrier, an O(1) copy of the applied
//! state at it, the copy's encoding on a background thread, and the stream
//! of chunks a `raftctl snapshot save` writes to its file.
//!
//! The stream is a header (cluster id, index and term of the last entry
//! applied, the data's size), the snapshot encoding of the state machine
//! (`StateMachine::snapshot`, the format a node's own snapshots use) in
//! chunks of [`CHUNK_BYTES`], and a trailer with the data's SHA-256. Only
//! the encoding is held in memory, as for a node's own snapshots; the node
//! loop only makes the copy, so writes go on meanwhile.

use super::node::{NodeError, NodeHandle, ReadAnswer, ReadKind};
use crate::pb::{self, snapshot_chunk::Part};
use crate::replica::StateCopy;
use futures::Stream;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Bytes of snapshot data per message.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Messages queued ahead of a slow reader: the encoding thread waits for it.
const QUEUE: usize = 4;

/// The stream of a backup, as the Cluster service returns it.
pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotChunk, Status>> + Send>>;

/// Takes a consistent copy of the applied state (only the leader serves
/// it, after a read barrier like a `Get`'s, so every write acknowledged
/// before the request is in it) and streams it.
pub async fn snapshot(node: &NodeHandle) -> Result<SnapshotStream, NodeError> {
    let status = node.status().await?;
    let copy = match node.read(ReadKind::State).await? {
        ReadAnswer::State(copy) => copy,
        _ => {
            return Err(NodeError::Internal(
                "the node loop answered a backup with another kind of answer".into(),
            ));
        }
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    let identity = (status.cluster_id, status.id);
    // The receiver only reports a failure to start the thread: the stream
    // then ends without its trailer, which the reader refuses.
    drop(super::driver::in_background("backup", move || {
        stream_state(*copy, identity, &tx)
    }));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Encodes `copy` and sends the header, the data and the trailer; stops
/// early if the reader goes away.
fn stream_state(
    copy: StateCopy,
    (cluster_id, leader): (String, u64),
    tx: &mpsc::Sender<Result<pb::SnapshotChunk, Status>>,
) {
    let started = Instant::now();
    let data = copy.sm.snapshot();
    let header = pb::SnapshotHeader {
        cluster_id,
        index: copy.index,
        term: copy.term,
        voters: copy.voters,
        leader,
        cluster_time_ms: copy.sm.time_ms(),
        keys: copy.sm.len() as u64,
        version: env!("CARGO_PKG_VERSION").to_string(),
        taken_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        data_bytes: data.len() as u64,
    };
    // The copy shares its structure with the live state: drop it now.
    drop(copy.sm);
    let send = |part: Part| {
        tx.blocking_send(Ok(pb::SnapshotChunk { part: Some(part) }))
            .is_ok()
    };
    let index = header.index;
    if !send(Part::Header(header)) {
        return;
    }
    let mut hasher = Sha256::new();
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + CHUNK_BYTES).min(data.len());
        let chunk = data.slice(offset..end);
        hasher.update(&chunk);
        if !send(Part::Data(chunk)) {
            tracing::info!(index, sent = offset, "backup reader went away");
            return;
        }
        offset = end;
    }
    let trailer = pb::SnapshotTrailer {
        data_bytes: data.len() as u64,
        data_sha256: hasher.finalize().to_vec().into(),
    };
    if send(Part::Trailer(trailer)) {
        tracing::info!(
            index,
            bytes = data.len(),
            seconds = started.elapsed().as_secs_f64(),
            "backup streamed"
        );
    }
}
