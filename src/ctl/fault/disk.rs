//! The disk faults of `raftctl chaos` (`disk=fsync`, `disk=full`) and the
//! steps in which a platform carries one out, so that the run can watch
//! the node between them: what each means is in docs/testing.md
//! ("Faults").

use serde::{Deserialize, Serialize};

/// How a node's disk fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskFault {
    /// Every fsync and fdatasync of the node's process fails with EIO
    /// (libfiu): the node must stop rather than retry.
    Fsync,
    /// The volume under the node's data directory fills up: its next write
    /// fails with ENOSPC and the node must stop.
    Full,
}

impl DiskFault {
    pub const ALL: [DiskFault; 2] = [DiskFault::Fsync, DiskFault::Full];

    pub fn name(&self) -> &'static str {
        match self {
            DiskFault::Fsync => "fsync",
            DiskFault::Full => "full",
        }
    }

    pub(super) fn parse(text: &str) -> Result<DiskFault, String> {
        DiskFault::ALL
            .into_iter()
            .find(|d| d.name() == text)
            .ok_or_else(|| format!("{text:?} is not a disk fault: use fsync or full"))
    }

    /// What the node's last line must say when it stopped for this fault
    /// (the storage layer's wording, src/storage/error.rs).
    pub fn stop_line(&self) -> &'static str {
        match self {
            DiskFault::Fsync => "the node stops rather than retry",
            DiskFault::Full => "the volume is full",
        }
    }
}

/// One step of a disk fault, as the run asks a platform for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", content = "fault", rename_all = "kebab-case")]
pub enum DiskStep {
    /// Restart the node where its disk can be made to fail (under
    /// `fiu-run`, on a small volume of its own); it still works.
    Prepare(DiskFault),
    /// Make the disk fail now, while the node serves.
    Fail,
    /// Only report the node's state.
    Look,
    /// Put the node back on a sound disk (the fault lifted, space back,
    /// its data in its own directory again) and start it.
    Restore,
}

/// How a node under a disk fault ended, as its supervisor saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeExit {
    /// The exit status as the operating system tells it (`exit status: 1`).
    pub status: String,
    /// Whether the process reported failure (a non-zero status or a signal).
    pub failed: bool,
    /// The last line the node wrote (its reason, for a node that stopped
    /// itself).
    pub last_line: String,
}

/// What the platform says of a node under a disk fault after a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskState {
    /// The node's process, while it runs.
    pub pid: Option<u32>,
    /// How it ended after the disk failed, once it has.
    pub exit: Option<NodeExit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_read_as_the_control_socket_documents_them() {
        let prepare = serde_json::to_string(&DiskStep::Prepare(DiskFault::Fsync)).unwrap();
        assert_eq!(prepare, r#"{"step":"prepare","fault":"fsync"}"#);
        assert_eq!(
            serde_json::to_string(&DiskStep::Fail).unwrap(),
            r#"{"step":"fail"}"#
        );
        let full: DiskStep = serde_json::from_str(r#"{"step":"prepare","fault":"full"}"#).unwrap();
        assert_eq!(full, DiskStep::Prepare(DiskFault::Full));
    }
}
