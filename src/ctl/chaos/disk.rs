//! A disk fault in a chaos run: one node restarted where its disk can fail
//! (made leader again if it led and the fault asks for the leader), the
//! disk failed while the node serves, the node seen to stop with the line
//! that names the cause while the others commit without it, left down for
//! the fault's length, then put back on a sound disk and the cluster seen
//! to converge. What the node must do when its disk fails is in
//! docs/node.md ("When the disk fails"); the run's own checks (no
//! acknowledged write lost, linearizable, exactly-once INCR) say whether
//! it did it without losing anything.

use std::time::Duration;

use tokio::time::Instant;

use super::links::{self, leader_and_term, statuses};
use super::members::{self, Changed};
use super::report::LinkCheck;
use crate::client::Client;
use crate::ctl::exit::CtlError;
use crate::ctl::fault::FaultKind;
use crate::ctl::fault::disk::{DiskFault, DiskState, DiskStep, NodeExit};
use crate::ctl::platform::{Platform, Target};

/// How long a restarted node has to rejoin, a transfer to take effect,
/// and a node whose disk fails to stop.
const SETTLE: Duration = Duration::from_secs(30);

const POLL: Duration = Duration::from_millis(100);

/// Whether `exit` is the stop `fault` must cause: a failure, with the line
/// that names it; what was seen.
pub fn stopped_as_it_must(fault: DiskFault, exit: &NodeExit) -> (bool, String) {
    let named = exit.last_line.contains(fault.stop_line());
    let seen = format!("it exited ({}), saying {:?}", exit.status, exit.last_line);
    match (exit.failed, named) {
        (true, true) => (true, seen),
        (false, _) => (false, format!("{seen}: a success, not a failure")),
        (true, false) => (
            false,
            format!(
                "{seen}: not the line that names the cause ({:?})",
                fault.stop_line()
            ),
        ),
    }
}

/// Injects disk fault `fault` into the pod `target` chooses (or the one
/// the fault names); `key` is a key outside the workload's for the write
/// that shows the others going on.
pub async fn fail<P: Platform>(
    platform: &P,
    admin: &Client,
    target: &Target,
    fault: FaultKind,
    key: &str,
) -> Result<Changed, CtlError> {
    let FaultKind::Disk {
        fault: disk,
        on,
        length,
    } = fault
    else {
        return Err(CtlError::error(format!(
            "{} is not a disk fault",
            fault.label()
        )));
    };
    let (pod, leader) = super::choose_node(platform, admin, target, on).await?;
    let was_leader = leader == Some(pod.id);
    // Restored by the platform itself some time after this run would have.
    let restore_after = length + SETTLE * 4;
    platform
        .set_disk(pod.id, DiskStep::Prepare(disk), restore_after)
        .await?;
    let watched = watch(platform, admin, &pod, disk, was_leader, length, key).await;
    let restored = platform
        .set_disk(pod.id, DiskStep::Restore, restore_after)
        .await;
    let mut check = watched?;
    restored?;
    let (recovered, recovery, recovered_after) = links::recover(admin).await;
    check.fault = fault.label();
    check.recovered = recovered;
    check.recovery = recovery;
    check.recovered_after_seconds = recovered_after;
    Ok(Changed {
        pod,
        was_leader,
        // Its unavailability counts from the preparation, as a skew's
        // does: the node's restart is this fault's doing, and counted
        // from the failure it would fall in the previous fault's window.
        setup: Duration::ZERO,
        check,
    })
}

/// From the prepared node's restart to the end of the fault's length:
/// the check so far (not yet recovered).
async fn watch<P: Platform>(
    platform: &P,
    admin: &Client,
    pod: &crate::ctl::platform::PodInfo,
    disk: DiskFault,
    was_leader: bool,
    length: Duration,
    key: &str,
) -> Result<LinkCheck, CtlError> {
    let mut notes = Vec::new();
    if !super::settle(admin, SETTLE).await {
        notes.push(format!(
            "the cluster was not healthy within {SETTLE:?} of {}'s restart",
            pod.name
        ));
    }
    // A leader chosen (by `@leader` or `--kill leader`) is made leader
    // again, so that its disk fails while it leads.
    if was_leader {
        let endpoint = pod.endpoint.clone().unwrap_or_default();
        if members::transfer_to(admin, pod.id, &endpoint, SETTLE)
            .await
            .is_none()
        {
            notes.push(format!("node {} never led again after its restart", pod.id));
        }
    }
    let (leader, term) = leader_and_term(&statuses(admin).await).unwrap_or_default();
    let failed_at = Instant::now();
    platform
        .set_disk(pod.id, DiskStep::Fail, Duration::ZERO)
        .await?;
    let exit = stopped(platform, pod.id, failed_at).await;
    let (mut confirmed, mut confirmation) = match &exit {
        Some(DiskState {
            exit: Some(exit), ..
        }) => stopped_as_it_must(disk, exit),
        _ => (
            false,
            format!(
                "node {} did not stop within {SETTLE:?} of its disk failing",
                pod.id
            ),
        ),
    };
    let confirmed_after = confirmed.then(|| failed_at.elapsed().as_secs_f64());
    if confirmed {
        // The others go on: a write commits while the node is down.
        match admin.set(key.as_bytes(), b"disk").await {
            Ok(()) => confirmation.push_str("; a write committed without it"),
            Err(e) => {
                confirmed = false;
                confirmation.push_str(&format!("; no write committed without it: {e}"));
            }
        }
    }
    tokio::time::sleep_until(failed_at + length).await;
    confirmed &= notes.is_empty();
    notes.insert(0, confirmation);
    let check = LinkCheck {
        fault: String::new(),
        at_seconds: 0.0,
        leader,
        term,
        links: Vec::new(),
        confirmed,
        confirmation: notes.join("; "),
        confirmed_after_seconds: confirmed_after,
        recovered: false,
        recovery: String::new(),
        recovered_after_seconds: None,
    };
    Ok(check)
}

/// Polls node `id` until it has stopped after its disk failed (within
/// [`SETTLE`] of `since`); its state then, or None.
async fn stopped<P: Platform>(platform: &P, id: u64, since: Instant) -> Option<DiskState> {
    while since.elapsed() < SETTLE {
        match platform.set_disk(id, DiskStep::Look, Duration::ZERO).await {
            Ok(state) if state.exit.is_some() => return Some(state),
            Ok(_) => {}
            Err(e) => eprintln!("\ncannot look at node {id}'s disk: {e}"),
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(failed: bool, line: &str) -> NodeExit {
        NodeExit {
            status: if failed {
                "exit status: 1"
            } else {
                "exit status: 0"
            }
            .into(),
            failed,
            last_line: line.into(),
        }
    }

    #[test]
    fn only_a_failed_exit_naming_the_cause_confirms_the_fault() {
        let fsync = "raftkv: fsync of d/wal/1.log failed: Input/output error (os error 5); what \
                     reached the disk is unknown, so the node stops rather than retry";
        assert!(stopped_as_it_must(DiskFault::Fsync, &exit(true, fsync)).0);
        let (ok, why) = stopped_as_it_must(DiskFault::Fsync, &exit(false, fsync));
        assert!(!ok && why.contains("a success"), "{why}");
        let (ok, why) = stopped_as_it_must(DiskFault::Full, &exit(true, fsync));
        assert!(!ok && why.contains("the volume is full"), "{why}");
        let full = "raftkv: I/O error on d/wal/2.log: No space left on device (os error 28) \
                    (the volume is full: free space or grow it)";
        assert!(stopped_as_it_must(DiskFault::Full, &exit(true, full)).0);
    }
}
