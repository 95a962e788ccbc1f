//! `raftctl check`: do the members hold the same state? It proposes a
//! state check through the leader (every replica hashes its whole state
//! machine as of that log entry), waits for each member to report its hash
//! there, and compares them (docs/consensus.md, "Replica hash checks").
//! `raftctl chaos` ends its run with the same comparison.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::cli::Output;
use super::exit::{CtlError, Exit};
use super::output::{print_structured, table};
use crate::client::Client;
use crate::pb;

/// How often members are asked again while their hash is computed.
const POLL: Duration = Duration::from_millis(100);

/// One member's hash at the check's index, or why there is none.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MemberHash {
    pub node: u64,
    /// Where it was asked (an endpoint, or its client address).
    pub endpoint: String,
    /// The hash in hex, if the member reported one at the index.
    pub hash: Option<String>,
    /// Why there is no hash (unreachable, did not apply the entry, ...).
    pub note: String,
}

/// What the comparison found.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StateVerdict {
    /// Every member reported the same hash.
    Equal,
    /// Two members reported different hashes: a replica diverged.
    Differ,
    /// Some member could not be compared (the others agree).
    Incomplete,
}

/// The members' hashes at one state check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StateCheck {
    pub index: u64,
    pub verdict: StateVerdict,
    pub members: Vec<MemberHash>,
}

impl StateCheck {
    /// The verdict of `members`' hashes.
    fn judge(index: u64, members: Vec<MemberHash>) -> StateCheck {
        let mut hashes: Vec<&String> = members.iter().filter_map(|m| m.hash.as_ref()).collect();
        hashes.dedup();
        let verdict = if hashes.len() > 1 {
            StateVerdict::Differ
        } else if members.iter().any(|m| m.hash.is_none()) {
            StateVerdict::Incomplete
        } else {
            StateVerdict::Equal
        };
        StateCheck {
            index,
            verdict,
            members,
        }
    }

    /// Ok if every member holds the same state; else the one-line error.
    pub fn outcome(&self) -> Result<(), CtlError> {
        let missing = || {
            self.members
                .iter()
                .filter(|m| m.hash.is_none())
                .map(|m| format!("node {} ({})", m.node, m.note))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.verdict {
            StateVerdict::Equal => Ok(()),
            StateVerdict::Differ => Err(CtlError::error(format!(
                "the members' states differ at index {}: {}",
                self.index,
                self.members
                    .iter()
                    .filter_map(|m| m.hash.as_ref().map(|h| format!("node {} {h}", m.node)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            StateVerdict::Incomplete => Err(CtlError::new(
                Exit::Unhealthy,
                format!(
                    "not every member could be compared at index {}: {}",
                    self.index,
                    missing()
                ),
            )),
        }
    }

    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .members
            .iter()
            .map(|m| {
                vec![
                    m.node.to_string(),
                    m.endpoint.clone(),
                    self.index.to_string(),
                    m.hash.clone().unwrap_or_else(|| "-".into()),
                    m.note.clone(),
                ]
            })
            .collect();
        table(&["NODE", "ENDPOINT", "INDEX", "HASH", "NOTE"], &rows)
    }
}

/// Proposes a state check and collects every member's hash at it, waiting
/// up to `wait` for hashes still being computed.
pub async fn compare(client: &Client, wait: Duration) -> Result<StateCheck, CtlError> {
    let index = client.state_check().await?;
    let targets = targets(client).await;
    let deadline = Instant::now() + wait;
    loop {
        let members = ask(client, &targets, index).await;
        let pending = members.iter().any(|m| m.hash.is_none());
        if !pending || Instant::now() >= deadline {
            return Ok(StateCheck::judge(index, members));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where to ask: the endpoints given, and the client address of every
/// member the leader knows that they do not cover, by node id when known.
async fn targets(client: &Client) -> Vec<(Option<u64>, String)> {
    let mut targets: Vec<(Option<u64>, String)> =
        client.endpoints().into_iter().map(|e| (None, e)).collect();
    if let Ok(members) = client.members().await {
        for m in members.members {
            if !targets.iter().any(|(_, e)| *e == m.client_address) {
                targets.push((Some(m.id), m.client_address));
            }
        }
    }
    targets
}

/// Every target's hash at `index`, one row per node (the first endpoint
/// that answers for it).
async fn ask(client: &Client, targets: &[(Option<u64>, String)], index: u64) -> Vec<MemberHash> {
    let answers = futures::future::join_all(targets.iter().map(|(_, e)| client.status(e))).await;
    let mut rows: BTreeMap<u64, MemberHash> = BTreeMap::new();
    let mut unknown = 0;
    for ((id, endpoint), answer) in targets.iter().zip(answers) {
        let row = match answer {
            Ok(status) => hash_row(&status, endpoint, index),
            Err(e) => MemberHash {
                node: id.unwrap_or(0),
                endpoint: endpoint.clone(),
                hash: None,
                note: format!("unreachable: {e}"),
            },
        };
        let key = match (id, &row) {
            (_, r) if r.node != 0 => r.node,
            (Some(id), _) => *id,
            // An endpoint that did not answer and names no node: its own row.
            (None, _) => {
                unknown += 1;
                u64::MAX - unknown
            }
        };
        let better = rows.get(&key).is_none_or(|r| r.hash.is_none());
        if better {
            rows.insert(key, row);
        }
    }
    rows.into_values().collect()
}

/// A member's row from its status at the check's `index`.
fn hash_row(status: &pb::StatusResponse, endpoint: &str, index: u64) -> MemberHash {
    let found = status.state_hashes.iter().find(|h| h.index == index);
    let note = match found {
        Some(_) => String::new(),
        None if status.applied_index < index => {
            format!("applied up to {} only", status.applied_index)
        }
        None => "no hash at this index (restored from a snapshot past it?)".into(),
    };
    MemberHash {
        node: status.id,
        endpoint: endpoint.to_string(),
        hash: found.map(|h| format!("{:016x}", h.hash)),
        note,
    }
}

/// `raftctl check`: prints each member's hash at one index; exits 1 if two
/// differ, 4 if a member could not be compared.
pub async fn command(client: &Client, output: Output, wait: Duration) -> Result<(), CtlError> {
    let check = compare(client, wait).await?;
    match output {
        Output::Table => print!("{}", check.table()),
        format => print_structured(format, &check)?,
    }
    check.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: u64, hash: Option<&str>) -> MemberHash {
        MemberHash {
            node,
            endpoint: format!("e{node}"),
            hash: hash.map(str::to_string),
            note: String::new(),
        }
    }

    #[test]
    fn equal_differ_and_incomplete() {
        let equal = StateCheck::judge(7, vec![member(1, Some("aa")), member(2, Some("aa"))]);
        assert_eq!(equal.verdict, StateVerdict::Equal);
        assert!(equal.outcome().is_ok());
        let differ = StateCheck::judge(7, vec![member(1, Some("aa")), member(2, Some("bb"))]);
        assert_eq!(differ.verdict, StateVerdict::Differ);
        let e = differ.outcome().unwrap_err();
        assert_eq!(e.exit, Exit::Error);
        assert!(e.message.contains("node 2 bb"), "{}", e.message);
        let missing = StateCheck::judge(7, vec![member(1, Some("aa")), member(2, None)]);
        assert_eq!(missing.verdict, StateVerdict::Incomplete);
        assert_eq!(missing.outcome().unwrap_err().exit, Exit::Unhealthy);
        let both = StateCheck::judge(
            7,
            vec![
                member(1, Some("aa")),
                member(2, None),
                member(3, Some("cc")),
            ],
        );
        assert_eq!(
            both.verdict,
            StateVerdict::Differ,
            "a difference comes first"
        );
    }

    #[test]
    fn a_member_behind_or_past_the_check_is_named() {
        let status = |applied: u64, hashes: &[(u64, u64)]| pb::StatusResponse {
            id: 3,
            applied_index: applied,
            state_hashes: hashes
                .iter()
                .map(|&(index, hash)| pb::StateHash { index, hash })
                .collect(),
            ..Default::default()
        };
        let row = hash_row(&status(9, &[(5, 0xab)]), "e", 5);
        assert_eq!(row.hash.as_deref(), Some("00000000000000ab"));
        assert!(
            hash_row(&status(4, &[]), "e", 5)
                .note
                .contains("applied up to 4")
        );
        assert!(hash_row(&status(9, &[]), "e", 5).note.contains("no hash"));
    }
}
