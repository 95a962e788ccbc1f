//! The backup file `raftctl snapshot save` writes and `restore` and
//! `status` read (docs/operations.md, "Backup and restore"):
//!
//! ```text
//! b"RKVBAKUP"        magic, 8 bytes
//! u32 LE             format version (1)
//! frames             each a u32 LE length and a `pb::SnapshotChunk` of that
//!                    length: one header, the data in frames of at most
//!                    1 MiB, one trailer (the data's length and SHA-256)
//! 32 bytes           SHA-256 of every byte before it
//! ```
//!
//! The frames are the leader's stream as received, so the file says what
//! the leader sent (cluster id, index, term) next to the data. It is written
//! to `FILE.tmp`, fsynced and renamed, so a save that fails leaves no file
//! that looks complete; and it is read whole and verified (file checksum,
//! frame order, the data's length and checksum) before anything uses it.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::pb::{self, snapshot_chunk::Part};

pub const MAGIC: &[u8; 8] = b"RKVBAKUP";
pub const VERSION: u32 = 1;
/// Magic and version.
const PREFIX: usize = 12;
/// The file's closing SHA-256.
const SUM: usize = 32;
/// Data bytes per frame written.
const FRAME_DATA: usize = 1 << 20;
/// Largest frame read: a larger length is damage, not data.
const MAX_FRAME: usize = 4 << 20;

/// Why a backup file cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a raftkv backup (it does not start with the backup magic)", path.display())]
    NotABackup { path: PathBuf },
    #[error(
        "{}: backup format version {found} is not supported (this raftctl reads version {VERSION})",
        path.display()
    )]
    Version { path: PathBuf, found: u32 },
    #[error(
        "{} is truncated: it ends at byte {size}, inside its {inside} (the save that wrote it \
         did not finish, or the copy is incomplete); nothing was changed",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        size: u64,
        inside: &'static str,
    },
    #[error("{} is corrupt: {detail}; nothing was changed", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("the leader's snapshot stream is inconsistent: {0}; nothing was saved")]
    Stream(String),
}

impl FileError {
    /// Whether the file (or the stream) is at fault rather than the disk.
    pub fn is_bad_data(&self) -> bool {
        !matches!(self, FileError::Io { .. })
    }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// `FILE.tmp`: where a save writes before the rename.
pub fn temporary_path(path: &Path) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(".tmp");
    Some(path.with_file_name(name))
}

/// A backup file being written. Dropped unfinished, it deletes its
/// temporary file.
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    file_hash: Sha256,
    data_hash: Sha256,
    data_bytes: u64,
    /// The data size the header announced.
    announced: u64,
    finished: bool,
}

/// What a finished save wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub file_bytes: u64,
    /// SHA-256 of the file (its last 32 bytes), in hex.
    pub sha256: String,
}

impl Writer {
    /// Starts `FILE.tmp` with the magic, the version and `header`.
    pub fn create(path: &Path, header: &pb::SnapshotHeader) -> Result<Writer, FileError> {
        let tmp = temporary_path(path).ok_or_else(|| FileError::Io {
            action: "write",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?;
        let file = File::create(&tmp).map_err(io("create", &tmp))?;
        let mut writer = Writer {
            path: path.to_path_buf(),
            tmp,
            out: BufWriter::with_capacity(FRAME_DATA, file),
            file_hash: Sha256::new(),
            data_hash: Sha256::new(),
            data_bytes: 0,
            announced: header.data_bytes,
            finished: false,
        };
        writer.put(MAGIC)?;
        writer.put(&VERSION.to_le_bytes())?;
        writer.frame(Part::Header(header.clone()))?;
        Ok(writer)
    }

    /// Appends data as received (in frames of at most 1 MiB).
    pub fn data(&mut self, data: &Bytes) -> Result<(), FileError> {
        if self.data_bytes + data.len() as u64 > self.announced {
            return Err(FileError::Stream(format!(
                "more data than the {} bytes its header announced",
                self.announced
            )));
        }
        let mut offset = 0;
        while offset < data.len() {
            let end = (offset + FRAME_DATA).min(data.len());
            let piece = data.slice(offset..end);
            self.data_hash.update(&piece);
            self.data_bytes += piece.len() as u64;
            self.frame(Part::Data(piece))?;
            offset = end;
        }
        Ok(())
    }

    /// Checks the data against `trailer` (and the header), writes the
    /// trailer and the file's checksum, fsyncs, and renames `FILE.tmp` to
    /// `FILE` (then fsyncs the directory).
    pub fn finish(mut self, trailer: &pb::SnapshotTrailer) -> Result<Written, FileError> {
        let data_sha = self.data_hash.clone().finalize();
        if trailer.data_bytes != self.data_bytes || self.data_bytes != self.announced {
            return Err(FileError::Stream(format!(
                "{} data bytes received, the header announced {} and the trailer says {}",
                self.data_bytes, self.announced, trailer.data_bytes
            )));
        }
        if trailer.data_sha256[..] != data_sha[..] {
            return Err(FileError::Stream(
                "the data's SHA-256 differs from the leader's".into(),
            ));
        }
        self.frame(Part::Trailer(trailer.clone()))?;
        let sum = self.file_hash.clone().finalize();
        self.out.write_all(&sum).map_err(io("write", &self.tmp))?;
        self.out.flush().map_err(io("write", &self.tmp))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(io("fsync", &self.tmp))?;
        let file_bytes = self
            .out
            .get_ref()
            .metadata()
            .map_err(io("read", &self.tmp))?
            .len();
        fs::rename(&self.tmp, &self.path).map_err(io("rename into", &self.path))?;
        self.finished = true;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &dir))?;
        Ok(Written {
            file_bytes,
            sha256: hex(&sum),
        })
    }

    fn frame(&mut self, part: Part) -> Result<(), FileError> {
        let message = pb::SnapshotChunk { part: Some(part) }.encode_to_vec();
        self.put(&(message.len() as u32).to_le_bytes())?;
        self.put(&message)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        self.file_hash.update(bytes);
        self.out.write_all(bytes).map_err(io("write", &self.tmp))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A verified backup.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    pub header: pb::SnapshotHeader,
    /// The state machine's snapshot encoding.
    pub data: Bytes,
    pub file_bytes: u64,
    /// SHA-256 of the file (its last 32 bytes), in hex.
    pub sha256: String,
}

/// Reads and verifies the backup at `path`.
pub fn read(path: &Path) -> Result<Backup, FileError> {
    let buf = fs::read(path).map_err(io("read", path))?;
    parse(path, &buf)
}

/// Verifies `buf`, the bytes of the backup file `path`. A damaged file is
/// told apart from a truncated one by its checksum: a truncated file ends
/// before its frames do; any other damage is corrupt.
pub fn parse(path: &Path, buf: &[u8]) -> Result<Backup, FileError> {
    let size = buf.len() as u64;
    let truncated = |inside| FileError::Truncated {
        path: path.to_path_buf(),
        size,
        inside,
    };
    if buf.len() < MAGIC.len() {
        return Err(if MAGIC.starts_with(buf) {
            truncated("magic")
        } else {
            FileError::NotABackup {
                path: path.to_path_buf(),
            }
        });
    }
    if &buf[..MAGIC.len()] != MAGIC {
        return Err(FileError::NotABackup {
            path: path.to_path_buf(),
        });
    }
    if buf.len() < PREFIX {
        return Err(truncated("format version"));
    }
    let version = u32::from_le_bytes(buf[8..PREFIX].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(FileError::Version {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let summed = buf.len() >= PREFIX + SUM && {
        let (body, sum) = buf.split_at(buf.len() - SUM);
        Sha256::digest(body)[..] == *sum
    };
    match frames(path, buf) {
        Ok(backup) if summed => Ok(backup),
        Err(e) if summed || matches!(e, FileError::Truncated { .. }) => Err(e),
        _ => Err(FileError::Corrupt {
            path: path.to_path_buf(),
            detail: "its SHA-256 does not match its contents (the file was damaged after it \
                     was written)"
                .into(),
        }),
    }
}

/// Walks the frames of `buf` (its magic and version checked) and checks
/// the data against the trailer.
fn frames(path: &Path, buf: &[u8]) -> Result<Backup, FileError> {
    let size = buf.len() as u64;
    let corrupt = |detail: String| FileError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut header: Option<pb::SnapshotHeader> = None;
    let mut data = BytesMut::new();
    let mut at = PREFIX;
    let trailer = loop {
        let inside = if header.is_none() { "header" } else { "data" };
        let truncated = FileError::Truncated {
            path: path.to_path_buf(),
            size,
            inside,
        };
        let Some(length) = buf.get(at..at + 4) else {
            return Err(truncated);
        };
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        if length > MAX_FRAME {
            return Err(corrupt(format!(
                "the frame at byte {at} claims {length} bytes (at most {MAX_FRAME})"
            )));
        }
        let Some(message) = buf.get(at + 4..at + 4 + length) else {
            return Err(truncated);
        };
        let chunk = pb::SnapshotChunk::decode(message)
            .map_err(|e| corrupt(format!("the frame at byte {at} does not decode: {e}")))?;
        at += 4 + length;
        match (chunk.part, &header) {
            (Some(Part::Header(h)), None) => header = Some(h),
            (Some(Part::Data(d)), Some(_)) => data.extend_from_slice(&d),
            (Some(Part::Trailer(t)), Some(_)) => break t,
            _ => {
                return Err(corrupt(format!(
                    "the frame ending at byte {at} is out of order"
                )));
            }
        }
    };
    let header = header.expect("a trailer follows a header");
    let rest = buf.len() - at;
    if rest < SUM {
        return Err(FileError::Truncated {
            path: path.to_path_buf(),
            size,
            inside: "checksum",
        });
    }
    if rest > SUM {
        return Err(corrupt(format!(
            "{} unexpected bytes follow its checksum",
            rest - SUM
        )));
    }
    let data = data.freeze();
    if trailer.data_bytes != data.len() as u64 || header.data_bytes != data.len() as u64 {
        return Err(corrupt(format!(
            "it holds {} data bytes, its header says {} and its trailer {}",
            data.len(),
            header.data_bytes,
            trailer.data_bytes
        )));
    }
    if Sha256::digest(&data)[..] != trailer.data_sha256[..] {
        return Err(corrupt(
            "the data's SHA-256 differs from the one the leader sent".into(),
        ));
    }
    Ok(Backup {
        header,
        data,
        file_bytes: size,
        sha256: hex(&buf[buf.len() - SUM..]),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(data: &[u8]) -> pb::SnapshotHeader {
        pb::SnapshotHeader {
            cluster_id: "raftkv-test".into(),
            index: 42,
            term: 3,
            voters: vec![0, 1, 2],
            data_bytes: data.len() as u64,
            ..Default::default()
        }
    }

    fn trailer(data: &[u8]) -> pb::SnapshotTrailer {
        pb::SnapshotTrailer {
            data_bytes: data.len() as u64,
            data_sha256: Sha256::digest(data).to_vec().into(),
        }
    }

    /// A backup of `data` (received in chunks of `chunk` bytes) at `path`.
    fn save(path: &Path, data: &[u8], chunk: usize) -> Written {
        let mut w = Writer::create(path, &header(data)).unwrap();
        for piece in data.chunks(chunk) {
            w.data(&Bytes::copy_from_slice(piece)).unwrap();
        }
        w.finish(&trailer(data)).unwrap()
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_saved_file_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.snap");
        // Larger than a frame, received in odd chunks.
        let data = data(FRAME_DATA * 2 + 12_345);
        let written = save(&path, &data, 700_001);
        let backup = read(&path).unwrap();
        assert_eq!(backup.data, data);
        assert_eq!(backup.header, header(&data));
        assert_eq!(backup.sha256, written.sha256);
        assert_eq!(backup.file_bytes, written.file_bytes);
        assert!(!temporary_path(&path).unwrap().exists());
    }

    #[test]
    fn every_truncation_is_refused_as_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.snap");
        save(&path, &data(5000), 1000);
        let whole = fs::read(&path).unwrap();
        for len in 0..whole.len() {
            match parse(&path, &whole[..len]) {
                Err(FileError::Truncated { size, .. }) => assert_eq!(size, len as u64),
                other => panic!("{len} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.snap");
        save(&path, &data(300), 100);
        let whole = fs::read(&path).unwrap();
        for i in 0..whole.len() {
            let mut bad = whole.clone();
            bad[i] ^= 0x10;
            let e = parse(&path, &bad).unwrap_err();
            assert!(e.is_bad_data(), "byte {i}: {e}");
            if i >= PREFIX {
                assert!(
                    matches!(e, FileError::Corrupt { .. } | FileError::Truncated { .. }),
                    "byte {i}: {e}"
                );
            }
        }
        // A flip in the data itself (frames intact) is named corrupt.
        let mut bad = whole.clone();
        bad[whole.len() - SUM - 120] ^= 1;
        let e = parse(&path, &bad).unwrap_err();
        assert!(e.to_string().contains("is corrupt"), "{e}");
    }

    #[test]
    fn other_files_and_versions_are_named() {
        let path = Path::new("x");
        assert!(matches!(
            parse(path, b"RKVS\x01\0\0\0 a node's snapshot"),
            Err(FileError::NotABackup { .. })
        ));
        let mut v2 = MAGIC.to_vec();
        v2.extend_from_slice(&2u32.to_le_bytes());
        let e = parse(path, &v2).unwrap_err();
        assert!(e.to_string().contains("version 2 is not supported"), "{e}");
    }

    #[test]
    fn a_stream_that_disagrees_with_its_trailer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.snap");
        let data = data(1000);
        let mut w = Writer::create(&path, &header(&data)).unwrap();
        w.data(&Bytes::copy_from_slice(&data[..999])).unwrap();
        w.data(&Bytes::from_static(b"X")).unwrap();
        let e = w.finish(&trailer(&data)).unwrap_err();
        assert!(matches!(e, FileError::Stream(_)), "{e}");
        assert!(!path.exists());
        assert!(!temporary_path(&path).unwrap().exists());

        // More than announced is refused at once; dropping cleans up.
        let mut w = Writer::create(&path, &header(&data)).unwrap();
        assert!(w.data(&Bytes::from(vec![0; 1001])).is_err());
        drop(w);
        assert!(!path.exists() && !temporary_path(&path).unwrap().exists());
    }
}
