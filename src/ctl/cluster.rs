//! Cluster subcommands: status, members, member add/remove, transfer-leader.

use serde::Serialize;
use std::time::Duration;

use super::cli::{MemberCommand, Output};
use super::exit::{CtlError, Exit};
use super::output::{print_structured, table};
use crate::client::{Client, ClientError};
use crate::pb;

/// One endpoint's line in `raftctl status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    pub endpoint: String,
    pub id: Option<u64>,
    pub address: String,
    pub role: String,
    pub term: Option<u64>,
    pub leader: Option<u64>,
    pub lease_remaining_seconds: Option<f64>,
    pub commit: Option<u64>,
    pub applied: Option<u64>,
    /// Entries this node has yet to apply: the leader's commit index minus
    /// this node's applied index (its own commit index if no leader answered).
    pub lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Status rows from per-endpoint answers; lag is measured against the
/// leader that answered, if any.
pub fn rows(answers: &[(String, Result<pb::StatusResponse, ClientError>)]) -> Vec<NodeStatus> {
    let leader_commit = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .filter(|s| s.role == "leader")
        .map(|s| s.commit_index)
        .max();
    answers
        .iter()
        .map(|(endpoint, answer)| match answer {
            Ok(s) => NodeStatus {
                endpoint: endpoint.clone(),
                id: Some(s.id),
                address: if s.client_address.is_empty() {
                    endpoint.clone()
                } else {
                    s.client_address.clone()
                },
                role: s.role.clone(),
                term: Some(s.term),
                leader: s.leader,
                lease_remaining_seconds: Some(s.lease_remaining_seconds),
                commit: Some(s.commit_index),
                applied: Some(s.applied_index),
                lag: Some(
                    leader_commit
                        .unwrap_or(s.commit_index)
                        .saturating_sub(s.applied_index),
                ),
                error: None,
            },
            Err(e) => NodeStatus {
                endpoint: endpoint.clone(),
                id: None,
                address: endpoint.clone(),
                role: "unreachable".into(),
                term: None,
                leader: None,
                lease_remaining_seconds: None,
                commit: None,
                applied: None,
                lag: None,
                error: Some(match e {
                    // `last` already names the endpoint.
                    ClientError::Unreachable { last, .. } => last
                        .strip_prefix(&format!("{endpoint}: "))
                        .unwrap_or(last)
                        .to_string(),
                    other => other.to_string(),
                }),
            },
        })
        .collect()
}

/// Whether the cluster is healthy as seen from these rows: `Ok` if every
/// endpoint answered and a leader holds its lease.
pub fn health(rows: &[NodeStatus]) -> Result<(), CtlError> {
    let down = rows.iter().filter(|r| r.error.is_some()).count();
    if down == rows.len() {
        return Err(CtlError::new(Exit::Unreachable, "no endpoint answered"));
    }
    let leased = rows
        .iter()
        .any(|r| r.role == "leader" && r.lease_remaining_seconds.unwrap_or(0.0) > 0.0);
    if !leased {
        return Err(CtlError::new(Exit::Unhealthy, "no leader holds a lease"));
    }
    if down > 0 {
        return Err(CtlError::new(
            Exit::Unhealthy,
            format!("unhealthy: {down} of {} endpoints unreachable", rows.len()),
        ));
    }
    Ok(())
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn status_table(rows: &[NodeStatus]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                dash(r.id),
                r.address.clone(),
                r.role.clone(),
                dash(r.term),
                dash(r.leader),
                r.lease_remaining_seconds
                    .filter(|s| *s > 0.0)
                    .map_or("-".into(), |s| format!("{s:.2}s")),
                dash(r.commit),
                dash(r.applied),
                dash(r.lag),
            ]
        })
        .collect();
    let headers = [
        "ID", "ADDRESS", "ROLE", "TERM", "LEADER", "LEASE", "COMMIT", "APPLIED", "LAG",
    ];
    table(&headers, &cells)
}

/// Prints the status of every endpoint; the exit code tells the health.
pub async fn status(client: &Client, output: Output) -> Result<(), CtlError> {
    let rows = rows(&client.status_all().await);
    match output {
        Output::Table => {
            print!("{}", status_table(&rows));
            for row in rows.iter().filter(|r| r.error.is_some()) {
                let error = row.error.as_deref().unwrap_or_default();
                eprintln!("{}: {error}", row.endpoint);
            }
        }
        _ => print_structured(output, &rows)?,
    }
    health(&rows)
}

#[derive(Debug, Serialize)]
struct Member {
    id: u64,
    client_address: String,
    peer_address: String,
    voter: bool,
    leader: bool,
}

pub async fn members(client: &Client, output: Output) -> Result<(), CtlError> {
    let answer = client.members().await?;
    let members: Vec<Member> = answer
        .members
        .into_iter()
        .map(|m| Member {
            leader: answer.leader == Some(m.id),
            id: m.id,
            client_address: m.client_address,
            peer_address: m.peer_address,
            voter: m.voter,
        })
        .collect();
    if output != Output::Table {
        return print_structured(output, &members);
    }
    let cells: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.client_address.clone(),
                m.peer_address.clone(),
                if m.voter { "voter" } else { "learner" }.to_string(),
                if m.leader { "*" } else { "" }.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["ID", "CLIENT", "PEER", "KIND", "LEADER"], &cells)
    );
    Ok(())
}

/// The client address of a node from its peer address: same host, port − 1
/// (the shared convention in docs/internals.md).
pub fn client_addr_for(peer_addr: &str) -> Result<String, CtlError> {
    let bad = || {
        CtlError::new(
            Exit::BadInput,
            format!("cannot derive a client address from {peer_addr:?}; give --client-addr"),
        )
    };
    let (host, port) = peer_addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let port = port.checked_sub(1).ok_or_else(bad)?;
    Ok(format!("{host}:{port}"))
}

pub async fn member(
    client: &Client,
    output: Output,
    command: &MemberCommand,
) -> Result<(), CtlError> {
    let (text, index) = match command {
        MemberCommand::Add {
            id,
            peer_addr,
            client_addr,
            learner,
        } => {
            let client_addr = match client_addr {
                Some(a) => a.clone(),
                None => client_addr_for(peer_addr)?,
            };
            add_member(client, *id, peer_addr, &client_addr, *learner).await?
        }
        MemberCommand::Remove { id } => {
            let index = client.remove_member(*id).await?;
            (format!("removed node {id}"), index)
        }
    };
    change_done(output, &text, index)
}

/// How long `member add` waits for a new node to catch up before promoting it.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// Adds node `id` as a learner unless it is already a member, then (unless
/// `learner`) promotes it as soon as the leader says it has caught up.
async fn add_member(
    client: &Client,
    id: u64,
    peer_addr: &str,
    client_addr: &str,
    learner: bool,
) -> Result<(String, u64), CtlError> {
    let members = client.members().await?;
    let known = members.members.iter().find(|m| m.id == id);
    let mut index = 0;
    if known.is_none() {
        index = client.add_member(id, peer_addr, client_addr, false).await?;
    }
    if learner {
        return Ok((format!("added node {id} as a learner"), index));
    }
    if known.is_some_and(|m| m.voter) {
        return Ok((format!("node {id} is already a voter"), index));
    }
    let started = tokio::time::Instant::now();
    let mut told = false;
    loop {
        match client.add_member(id, peer_addr, client_addr, true).await {
            Ok(index) => return Ok((format!("added node {id} as a voter"), index)),
            Err(ClientError::Other(m))
                if m.contains("has not caught up") && started.elapsed() < CATCH_UP_LIMIT =>
            {
                if !told {
                    eprintln!(
                        "node {id} is a learner; waiting for it to catch up before promoting it..."
                    );
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn transfer_leader(client: &Client, output: Output, id: u64) -> Result<(), CtlError> {
    let index = client.transfer_leader(id).await?;
    change_done(
        output,
        &format!("leadership transferred to node {id}"),
        index,
    )
}

fn change_done(output: Output, text: &str, index: u64) -> Result<(), CtlError> {
    #[derive(Serialize)]
    struct Change<'a> {
        result: &'a str,
        index: u64,
    }
    match output {
        Output::Table if index == 0 => {
            println!("{text}");
            Ok(())
        }
        Output::Table => {
            println!("{text} (log index {index})");
            Ok(())
        }
        _ => print_structured(
            output,
            &Change {
                result: text,
                index,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, role: &str, lease: f64, commit: u64, applied: u64) -> pb::StatusResponse {
        pb::StatusResponse {
            id,
            role: role.into(),
            term: 3,
            leader: Some(1),
            commit_index: commit,
            applied_index: applied,
            lease_remaining_seconds: lease,
            client_address: format!("127.0.0.1:{}", 7379 + 10 * id),
            ..Default::default()
        }
    }

    fn down(endpoint: &str) -> (String, Result<pb::StatusResponse, ClientError>) {
        let error = ClientError::Unreachable {
            endpoints: endpoint.into(),
            last: "refused".into(),
        };
        (endpoint.into(), Err(error))
    }

    #[test]
    fn lag_is_measured_against_the_leader() {
        let answers = vec![
            ("a".into(), Ok(node(0, "follower", 0.0, 8, 7))),
            ("b".into(), Ok(node(1, "leader", 0.8, 10, 10))),
        ];
        let rows = rows(&answers);
        assert_eq!(rows[0].lag, Some(3));
        assert_eq!(rows[1].lag, Some(0));
        assert_eq!(rows[0].address, "127.0.0.1:7379");
        assert_eq!(health(&rows), Ok(()));
        let text = status_table(&rows);
        assert!(text.starts_with("ID  ADDRESS "), "{text}");
        assert!(text.contains("leader    3     1       0.80s"), "{text}");
    }

    #[test]
    fn health_reports_down_nodes_and_missing_leases() {
        let rows_down = rows(&[down("a"), down("b")]);
        assert_eq!(health(&rows_down).unwrap_err().exit, Exit::Unreachable);
        let no_lease = rows(&[("a".into(), Ok(node(1, "leader", 0.0, 1, 1)))]);
        assert_eq!(health(&no_lease).unwrap_err().exit, Exit::Unhealthy);
        let one_down = rows(&[("a".into(), Ok(node(1, "leader", 0.5, 1, 1))), down("b")]);
        assert_eq!(one_down[1].error.as_deref(), Some("refused"));
        let err = health(&one_down).unwrap_err();
        assert_eq!(
            (err.exit, err.message.as_str()),
            (Exit::Unhealthy, "unhealthy: 1 of 2 endpoints unreachable")
        );
        assert_eq!(one_down[1].role, "unreachable");
    }

    #[test]
    fn client_address_is_derived_from_the_peer_address() {
        assert_eq!(client_addr_for("10.0.0.3:7380").unwrap(), "10.0.0.3:7379");
        assert_eq!(client_addr_for("[::1]:7380").unwrap(), "[::1]:7379");
        assert_eq!(client_addr_for("nohost").unwrap_err().exit, Exit::BadInput);
    }
}
