//! `raftctl dump DATA_DIR`: the storage layer's read-only rendering of a
//! node's data directory.

use std::path::Path;

use super::exit::{CtlError, Exit};
use crate::storage;

/// Dumps `data_dir`; refuses one a running node holds (its log moves under
/// the reader, so the dump could mix two states) unless `force`.
pub fn run(data_dir: &Path, force: bool) -> Result<(), CtlError> {
    // Checked here so a typo is bad input, not a storage error.
    if !data_dir.is_dir() {
        return Err(CtlError::new(
            Exit::BadInput,
            format!("{} is not a directory", data_dir.display()),
        ));
    }
    let holder = storage::holder(data_dir)
        .map_err(|e| CtlError::error(format!("cannot read {}: {e}", data_dir.display())))?;
    match holder {
        Some(h) if !force => {
            return Err(CtlError::error(format!(
                "{} is in use: {h}; stop that node first, or pass --force to read it anyway",
                data_dir.display()
            )));
        }
        Some(h) => eprintln!("warning: {h}; the dump may be inconsistent"),
        None => {}
    }
    let text = storage::dump(data_dir)
        .map_err(|e| CtlError::error(format!("cannot read {}: {e}", data_dir.display())))?;
    print!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directory_is_bad_input() {
        let err = run(Path::new("/nonexistent/raftkv-data/node-0"), false).unwrap_err();
        assert_eq!(err.exit, Exit::BadInput);
    }

    #[test]
    fn an_empty_directory_dumps() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run(dir.path(), false), Ok(()));
    }

    #[test]
    fn a_directory_held_by_a_node_is_refused_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let (_storage, _) = storage::Storage::open(dir.path()).unwrap();
        let err = run(dir.path(), false).unwrap_err();
        assert_eq!(err.exit, Exit::Error);
        let pid = std::process::id().to_string();
        assert!(
            err.message.contains(&pid) && err.message.contains("--force"),
            "{err}"
        );
        assert_eq!(run(dir.path(), true), Ok(()));
    }
}
