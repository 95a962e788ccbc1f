//! Small durable-filesystem helpers. A rename or a new file is only durable
//! once its directory is fsynced, which `std` does not do for us.

use super::error::{StorageError, io_err};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Suffix of files being written; they are ignored on recovery and removed on open.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates `dir` if missing and makes its directory entry durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Writes `dir/name` so that after a crash it holds either the old content or
/// all of `parts`, never a mix: temp file, fsync, rename, fsync directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, parts: &[&[u8]]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dest = dir.join(name);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    for part in parts {
        f.write_all(part).map_err(io_err(&tmp))?;
    }
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
    sync_dir(dir)
}

/// Removes leftover temp files (from a crash mid-write); returns what it removed.
pub(crate) fn remove_temps(dir: &Path) -> Result<Vec<String>, StorageError> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return Ok(removed);
    };
    for ent in rd {
        let ent = ent.map_err(io_err(dir))?;
        let path = ent.path();
        if ent.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed.push(format!("removed leftover temp file {}", path.display()));
        }
    }
    Ok(removed)
}
