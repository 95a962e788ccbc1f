//! Recomputing the checksums of mutated on-disk data. Nearly every random
//! change to a file breaks its CRC, so without this the fuzzer spends its
//! time on the checksum test and never reaches the decoders behind it. The
//! targets repair only when the input asks (a flag), so that the refusal
//! of a bad checksum stays covered too. Each function walks the layout as
//! far as it makes sense and leaves the rest of the bytes as they are.

/// A WAL segment: `[u32 len][u32 crc32c(payload)][payload]`, repeated.
/// Stops at a length that runs past the end (left for the torn-tail logic).
pub(super) fn wal_segment(data: &mut [u8]) {
    let mut off = 0;
    while data.len() - off >= 8 {
        let len = u32::from_le_bytes(data[off..off + 4].try_into().expect("4 bytes")) as usize;
        let Some(end) = (off + 8).checked_add(len).filter(|&end| end <= data.len()) else {
            return;
        };
        let crc = crc32c::crc32c(&data[off + 8..end]);
        data[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

/// A snapshot file: `[u32 meta len][meta][data][u32 crc32c(all before)]`;
/// the state machine snapshot in `data`, if it looks like one, first.
pub(super) fn snapshot_file(data: &mut [u8]) {
    if data.len() < 8 {
        return;
    }
    let body_end = data.len() - 4;
    let meta_len = u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) as usize;
    if let Some(start) = 4usize.checked_add(meta_len).filter(|&s| s <= body_end) {
        kv_snapshot(&mut data[start..body_end]);
    }
    let crc = crc32c::crc32c(&data[..body_end]);
    data[body_end..].copy_from_slice(&crc.to_le_bytes());
}

/// A state machine snapshot: `RKVS`, `[u32 version][u32 crc32c(body)][body]`.
/// Only when the magic is there: other bytes are not meant as one.
pub(super) fn kv_snapshot(data: &mut [u8]) {
    if data.len() < 12 || &data[..4] != b"RKVS" {
        return;
    }
    let crc = crc32c::crc32c(&data[12..]);
    data[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// The identity file: `key=value` lines, the last `crc32c=<8 hex digits>`
/// over the lines before it.
pub(super) fn identity(data: &mut [u8]) {
    const KEY: &[u8] = b"crc32c=";
    let Some(at) = data.windows(KEY.len()).rposition(|w| w == KEY) else {
        return;
    };
    let digits = at + KEY.len();
    if data.len() < digits + 8 {
        return;
    }
    let crc = format!("{:08x}", crc32c::crc32c(&data[..at]));
    data[digits..digits + 8].copy_from_slice(crc.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repaired_wal_records_pass_their_checksum() {
        let mut data = Vec::new();
        for payload in [&b"\x01abc"[..], b"\x02"] {
            data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            data.extend_from_slice(&[0; 4]);
            data.extend_from_slice(payload);
        }
        data.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0, 1]);
        wal_segment(&mut data);
        assert_eq!(data[4..8], crc32c::crc32c(b"\x01abc").to_le_bytes());
        assert_eq!(data[16..20], crc32c::crc32c(b"\x02").to_le_bytes());
        assert_eq!(data[25..29], [0; 4], "a record past the end is left alone");
    }

    #[test]
    fn repaired_identity_passes_its_checksum() {
        let body = "cluster_id=c\nnode_id=1\nincarnation=2\n";
        let mut text = format!("{body}crc32c=00000000\n").into_bytes();
        identity(&mut text);
        let want = format!("{body}crc32c={:08x}\n", crc32c::crc32c(body.as_bytes()));
        assert_eq!(String::from_utf8(text).unwrap(), want);
    }
}
