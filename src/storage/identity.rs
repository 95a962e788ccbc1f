//! The `identity` file: which cluster and node this data directory belongs
//! to, so a node refuses to run on a PersistentVolume of another cluster.
//! Plain `key=value` text (readable by an operator) with a CRC-32C line, so a
//! flipped digit cannot silently turn the node into another node.

use super::Identity;
use super::error::{StorageError, corrupt, io_err};
use super::fsutil::write_atomic;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

pub(crate) const FILE: &str = "identity";

fn body(id: &Identity) -> String {
    format!(
        "cluster_id={}\nnode_id={}\nincarnation={}\n",
        id.cluster_id, id.node_id, id.incarnation
    )
}

pub(crate) fn write(dir: &Path, id: &Identity) -> Result<(), StorageError> {
    if id.cluster_id.is_empty() || id.cluster_id.contains(['\n', '\r']) {
        return Err(StorageError::Invalid(format!(
            "cluster id {:?} must be non-empty and on one line",
            id.cluster_id
        )));
    }
    let body = body(id);
    let text = format!("{body}crc32c={:08x}\n", crc32c::crc32c(body.as_bytes()));
    write_atomic(dir, FILE, &[text.as_bytes()])
}

/// `None` if the file does not exist (a fresh data directory).
pub(crate) fn read(dir: &Path) -> Result<Option<Identity>, StorageError> {
    let path = dir.join(FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let bad = |reason: String| corrupt(&path, 0, reason);
    let mut fields = [None; 4];
    let keys = ["cluster_id", "node_id", "incarnation", "crc32c"];
    for line in text.lines() {
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("malformed line {line:?}")))?;
        let slot = keys
            .iter()
            .position(|&key| key == k)
            .ok_or_else(|| bad(format!("unknown key {k:?}")))?;
        if fields[slot].replace(v).is_some() {
            return Err(bad(format!("key {k:?} appears twice")));
        }
    }
    let [
        Some(cluster_id),
        Some(node_id),
        Some(incarnation),
        Some(crc),
    ] = fields
    else {
        return Err(bad("missing key".into()));
    };
    let num = |key: &str, v: &str| {
        v.parse::<u64>()
            .map_err(|_| bad(format!("{key} {v:?} is not a number")))
    };
    let id = Identity {
        cluster_id: cluster_id.to_string(),
        node_id: num("node_id", node_id)?,
        incarnation: num("incarnation", incarnation)?,
    };
    let want = format!("{:08x}", crc32c::crc32c(body(&id).as_bytes()));
    if crc != want {
        return Err(bad(format!(
            "checksum mismatch (stored {crc}, computed {want})"
        )));
    }
    Ok(Some(id))
}
