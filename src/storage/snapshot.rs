//! Snapshot files: `snap/<term>-<index>.snap` (both 20 digits), holding
//! `[u32 LE meta length][pb::SnapshotMeta][data][u32 LE CRC-32C of all before]`.
//! Written atomically (temp + fsync + rename + dir fsync), so a crash leaves
//! either the old snapshot or the new one, plus at worst an ignored temp file;
//! the temp file is pushed to disk in 1 MiB chunks as it is written.

use super::codec;
use super::error::{StorageError, corrupt, io_err};
use super::fsutil::{SYNC_CHUNK, TMP_SUFFIX, sync_dir, write_atomic_observed};
use crate::pb;
use crate::raft::{LogId, Snapshot};
use bytes::Bytes;
use prost::Message;
use std::fs;
use std::path::{Path, PathBuf};

const SUFFIX: &str = ".snap";

pub(crate) fn file_name(last: LogId) -> String {
    format!("{:020}-{:020}{SUFFIX}", last.term.0, last.index.0)
}

fn parse_name(name: &str) -> Option<LogId> {
    let (term, index) = name.strip_suffix(SUFFIX)?.split_once('-')?;
    let num = |s: &str| {
        (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    Some(LogId::new(num(term)?, num(index)?))
}

/// Durably writes `snap` into `dir`; returns its path. The file is pushed
/// to disk as it is written (`fsutil::write_atomic`), so writing a large
/// snapshot does not hold up the WAL's fsyncs on the same disk.
pub(crate) fn write(dir: &Path, snap: &Snapshot) -> Result<PathBuf, StorageError> {
    write_observed(dir, snap, SYNC_CHUNK, &mut |_| {})
}

/// [`write`] in chunks of `chunk` bytes, calling `pushed` after each (see
/// `fsutil::write_atomic_observed`).
pub(crate) fn write_observed(
    dir: &Path,
    snap: &Snapshot,
    chunk: u64,
    pushed: &mut dyn FnMut(u64),
) -> Result<PathBuf, StorageError> {
    let meta = codec::snapshot_meta_to_pb(&snap.meta).encode_to_vec();
    let len = (meta.len() as u32).to_le_bytes();
    let crc = [&len[..], &meta, &snap.data]
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    let name = file_name(snap.meta.last);
    let crc = crc.to_le_bytes();
    let parts: [&[u8]; 4] = [&len, &meta, &snap.data, &crc];
    write_atomic_observed(dir, &name, &parts, chunk, pushed)?;
    Ok(dir.join(name))
}

/// Snapshot files in `dir` (temp files excluded), oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<(LogId, PathBuf)>, StorageError> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(found);
    };
    for ent in rd {
        let ent = ent.map_err(io_err(dir))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.ends_with(TMP_SUFFIX) || !name.ends_with(SUFFIX) {
            continue;
        }
        let id = parse_name(&name).ok_or_else(|| {
            StorageError::Invalid(format!(
                "unexpected snapshot file {}: not named <term>-<index>.snap",
                ent.path().display()
            ))
        })?;
        // The name is the snapshot's identity before its contents are read.
        for (value, what) in [(id.term.0, "term"), (id.index.0, "index")] {
            codec::stored(value, what).map_err(|e| {
                StorageError::Invalid(format!("snapshot file {}: {e}", ent.path().display()))
            })?;
        }
        found.push((id, ent.path()));
    }
    found.sort_by_key(|(id, _)| (id.index, id.term));
    Ok(found)
}

/// Reads and fully verifies one snapshot file.
pub(crate) fn read(path: &Path, expect: LogId) -> Result<Snapshot, StorageError> {
    let buf = fs::read(path).map_err(io_err(path))?;
    if buf.len() < 8 {
        return Err(corrupt(
            path,
            0,
            format!("snapshot file too short ({} bytes)", buf.len()),
        ));
    }
    let (body, trailer) = buf.split_at(buf.len() - 4);
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc32c::crc32c(body) != stored {
        return Err(corrupt(
            path,
            body.len() as u64,
            "snapshot checksum mismatch",
        ));
    }
    let meta_len = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
    if meta_len > body.len() - 4 {
        return Err(corrupt(
            path,
            0,
            format!("bad snapshot header length {meta_len}"),
        ));
    }
    let meta = pb::SnapshotMeta::decode(&body[4..4 + meta_len])
        .map_err(|e| e.to_string())
        .and_then(|m| codec::snapshot_meta_from_pb(&m).map_err(|e| e.to_string()))
        .map_err(|e| corrupt(path, 4, format!("bad snapshot metadata: {e}")))?;
    if meta.last != expect {
        return Err(corrupt(
            path,
            4,
            format!("metadata says {:?}, file name says {expect:?}", meta.last),
        ));
    }
    let data = Bytes::copy_from_slice(&body[4 + meta_len..]);
    Ok(Snapshot { meta, data })
}

/// Deletes every snapshot file except `keep`.
pub(crate) fn remove_others(dir: &Path, keep: &Path) -> Result<(), StorageError> {
    let mut removed = false;
    for (_, path) in list(dir)? {
        if path != keep {
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}
