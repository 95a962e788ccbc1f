//! WAL record framing: `[u32 LE payload length][u32 LE CRC-32C of payload][payload]`,
//! payload = 1-byte kind + body (protobuf, except the restart marker: the
//! snapshot's term and index as two u64 LE). The scanner decides, per bad spot, whether
//! it is a torn tail (a crash mid-write: cut it off) or corruption (stop).

use super::codec;
use super::error::{StorageError, corrupt};
use crate::pb;
use crate::raft::{Entry, HardState, LogId};
use prost::Message;
use std::path::Path;

pub(crate) const HEADER_LEN: usize = 8;
/// Far above any real entry; a larger length field can only be corruption.
pub const MAX_PAYLOAD: usize = 1 << 30;
/// Intact records searched for after a suspected torn tail are at most this
/// long; bounds the cost of that search (small records are the common case).
const RESYNC_MAX_PAYLOAD: usize = 1 << 20;

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_RESTART: u8 = 3;

pub(crate) enum Record {
    Entry(Entry),
    HardState(HardState),
    /// Written by `Storage::install_snapshot` before it writes the snapshot
    /// `LogId`: once that snapshot is durable, every entry written before
    /// this record is void and the log restarts right after it (see
    /// `recovery`).
    Restart(LogId),
}

/// Replaces `out` with the framed record of `e` (reusing its allocation).
pub(crate) fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    frame(out, KIND_ENTRY, &codec::entry_to_pb(e));
}

pub(crate) fn encode_hard_state(hs: HardState, out: &mut Vec<u8>) {
    frame(out, KIND_HARD_STATE, &codec::hard_state_to_pb(hs));
}

pub(crate) fn encode_restart(snapshot: LogId, out: &mut Vec<u8>) {
    start_frame(out, KIND_RESTART);
    out.extend_from_slice(&snapshot.term.0.to_le_bytes());
    out.extend_from_slice(&snapshot.index.0.to_le_bytes());
    finish_frame(out);
}

fn frame(out: &mut Vec<u8>, kind: u8, msg: &impl Message) {
    start_frame(out, kind);
    msg.encode(out)
        .expect("a Vec grows as needed, so encoding cannot run out of space");
    finish_frame(out);
}

fn start_frame(out: &mut Vec<u8>, kind: u8) {
    out.clear();
    out.extend_from_slice(&[0; HEADER_LEN]);
    out.push(kind);
}

fn finish_frame(out: &mut [u8]) {
    let len = (out.len() - HEADER_LEN) as u32;
    let crc = crc32c::crc32c(&out[HEADER_LEN..]);
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn decode_payload(payload: &[u8]) -> Result<Record, String> {
    match payload.split_first() {
        None => Err("empty record payload".into()),
        Some((&KIND_ENTRY, body)) => {
            let e = pb::Entry::decode(body).map_err(|e| format!("undecodable entry: {e}"))?;
            let e = codec::entry_from_pb(e).map_err(|e| format!("invalid entry: {e}"))?;
            log_id_in_range(e.id, "entry")?;
            Ok(Record::Entry(e))
        }
        Some((&KIND_HARD_STATE, body)) => {
            let hs = pb::HardState::decode(body)
                .map(codec::hard_state_from_pb)
                .map_err(|e| format!("undecodable hard state: {e}"))?;
            in_range(hs.term.0, "hard state term")?;
            in_range(hs.commit.0, "hard state commit index")?;
            Ok(Record::HardState(hs))
        }
        Some((&KIND_RESTART, body)) => match <[u8; 16]>::try_from(body) {
            Ok(b) => {
                let term = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
                let index = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
                let id = LogId::new(term, index);
                log_id_in_range(id, "restart marker")?;
                Ok(Record::Restart(id))
            }
            Err(_) => Err(format!("restart marker of {} bytes, not 16", body.len())),
        },
        Some((k, _)) => Err(format!("unknown record kind {k}")),
    }
}

fn in_range(value: u64, what: &str) -> Result<u64, String> {
    codec::stored(value, what).map_err(|e| e.0)
}

fn log_id_in_range(id: LogId, what: &str) -> Result<(), String> {
    in_range(id.term.0, &format!("{what} term"))?;
    in_range(id.index.0, &format!("{what} index"))?;
    Ok(())
}

/// A bad spot at the end of the last segment, presumed to be an interrupted write.
pub(crate) struct Torn {
    pub offset: u64,
    pub reason: String,
}

/// Walks every record of one segment's bytes, calling `visit(offset, record)`.
/// `is_last_segment`: only there may a torn tail be tolerated (returned, not
/// cut: the caller decides whether it may modify the file).
pub(crate) fn scan(
    path: &Path,
    data: &[u8],
    is_last_segment: bool,
    mut visit: impl FnMut(u64, Record) -> Result<(), StorageError>,
) -> Result<Option<Torn>, StorageError> {
    let mut off = 0usize;
    let tail = |off: usize, reason: String| {
        if is_last_segment {
            Ok(Some(Torn {
                offset: off as u64,
                reason,
            }))
        } else {
            Err(corrupt(
                path,
                off as u64,
                format!("{reason}, in a segment that is not the last"),
            ))
        }
    };
    while off < data.len() {
        let rest = &data[off..];
        if rest.len() < HEADER_LEN {
            return tail(
                off,
                format!(
                    "partial record header ({} of {HEADER_LEN} bytes)",
                    rest.len()
                ),
            );
        }
        if rest.iter().all(|&b| b == 0) {
            return tail(off, "zero-filled tail".into());
        }
        let (len, crc) = header(rest);
        if len > MAX_PAYLOAD {
            return Err(corrupt(
                path,
                off as u64,
                format!("bad record length {len}"),
            ));
        }
        let end = HEADER_LEN + len;
        if end > rest.len() {
            // A crash mid-write looks like this, but so does a flipped bit in
            // a length field; only the former leaves no intact record after it.
            if let Some(at) = intact_record_after(rest, 1) {
                let reason = format!(
                    "bad record length {len}: an intact record follows at offset {}",
                    off + at
                );
                return Err(corrupt(path, off as u64, reason));
            }
            return tail(
                off,
                format!("record of {len} bytes extends past the end of the file"),
            );
        }
        let payload = &rest[HEADER_LEN..end];
        if crc32c::crc32c(payload) != crc {
            if rest[end..].iter().all(|&b| b == 0) {
                return tail(off, "checksum mismatch in the final record".into());
            }
            return Err(corrupt(path, off as u64, "checksum mismatch"));
        }
        let record = decode_payload(payload).map_err(|r| corrupt(path, off as u64, r))?;
        visit(off as u64, record)?;
        off += end;
    }
    Ok(None)
}

fn header(b: &[u8]) -> (usize, u32) {
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    (len, crc)
}

/// Offset (relative to `data`) of the first intact, decodable record starting
/// at or after `from`, if any.
fn intact_record_after(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(HEADER_LEN)).find(|&at| {
        let (len, crc) = header(&data[at..]);
        let end = at + HEADER_LEN + len;
        len > 0
            && len <= RESYNC_MAX_PAYLOAD
            && end <= data.len()
            && crc32c::crc32c(&data[at + HEADER_LEN..end]) == crc
            && decode_payload(&data[at + HEADER_LEN..end]).is_ok()
    })
}
