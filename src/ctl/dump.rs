//! `raftctl dump DATA_DIR`: the storage layer's read-only rendering of a
//! node's data directory.

use std::path::Path;

use super::exit::{CtlError, Exit};
use crate::storage;

pub fn run(data_dir: &Path) -> Result<(), CtlError> {
    // Checked here so a typo is bad input, not a storage error.
    if !data_dir.is_dir() {
        return Err(CtlError::new(
            Exit::BadInput,
            format!("{} is not a directory", data_dir.display()),
        ));
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
        let err = run(Path::new("/nonexistent/raftkv-data/node-0")).unwrap_err();
        assert_eq!(err.exit, Exit::BadInput);
    }

    #[test]
    fn an_empty_directory_dumps() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(run(dir.path()), Ok(()));
    }
}
