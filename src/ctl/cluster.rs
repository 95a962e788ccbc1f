//! Cluster subcommands: status, members, member add/remove, transfer-leader.

use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::cli::{MemberCommand, Output, StatusArgs};
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

/// A row of `raftctl status`: a node's status (as `rows` builds it) and
/// what tells an operator whether it is the node they think: its cluster,
/// version, process, log, and its place in the leader's configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberRow {
    #[serde(flatten)]
    pub node: NodeStatus,
    pub cluster_id: Option<String>,
    pub version: Option<String>,
    pub pid: Option<u32>,
    pub uptime_seconds: Option<f64>,
    pub last_index: Option<u64>,
    /// voter or learner in the leader's configuration, `removed` if not in
    /// it, `other cluster`; absent when no leader answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<String>,
}

/// What the leader says the cluster is.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterView {
    pub cluster_id: String,
    pub leader: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

type Answers = [(String, Result<pb::StatusResponse, ClientError>)];

impl ClusterView {
    fn of(answers: &Answers) -> Option<ClusterView> {
        let leader = answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok())
            .filter(|s| s.role == "leader")
            .max_by_key(|s| s.term)?;
        let membership = leader.membership.clone().unwrap_or_default();
        Some(ClusterView {
            cluster_id: leader.cluster_id.clone(),
            leader: leader.id,
            voters: membership.voters,
            learners: membership.learners,
        })
    }

    /// `None` when the leader sent no configuration (nothing to judge by).
    fn place(&self, id: u64) -> Option<&'static str> {
        if self.voters.contains(&id) {
            Some("voter")
        } else if self.learners.contains(&id) {
            Some("learner")
        } else if self.voters.is_empty() {
            None
        } else {
            Some("removed")
        }
    }
}

/// Rows for `answers` (the endpoints asked and the members found), placed
/// in the leader's configuration when a leader answered.
pub fn member_rows(answers: &Answers) -> (Vec<MemberRow>, Option<ClusterView>) {
    let view = ClusterView::of(answers);
    let rows = rows(answers)
        .into_iter()
        .zip(answers)
        .map(|(mut node, (_, answer))| {
            let s = answer.as_ref().ok();
            let membership = match (&view, s) {
                (Some(v), Some(s)) if s.cluster_id == v.cluster_id => v.place(s.id),
                (Some(_), Some(_)) => Some("other cluster"),
                _ => None,
            };
            if let Some(place @ ("removed" | "other cluster")) = membership {
                node.role = place.to_string();
            }
            MemberRow {
                node,
                cluster_id: s.map(|s| s.cluster_id.clone()),
                version: s.map(|s| s.version.clone()).filter(|v| !v.is_empty()),
                pid: s.map(|s| s.pid).filter(|p| *p != 0),
                uptime_seconds: s.map(|s| s.uptime_seconds).filter(|u| *u > 0.0),
                last_index: s.map(|s| s.last_index),
                membership: membership.map(str::to_string),
            }
        })
        .collect();
    (rows, view)
}

/// Whether the cluster is healthy, as `etcdctl endpoint health` would
/// judge it: every endpoint unreachable is exit 2; exit 4 for no leader
/// holding a lease, a member (or, without a leader, an endpoint) that does
/// not answer, a member more than `max_lag` entries behind, or a node of
/// another cluster. A removed node is shown but does not count.
pub fn member_health(
    rows: &[MemberRow],
    view: Option<&ClusterView>,
    max_lag: u64,
) -> Result<(), CtlError> {
    let nodes: Vec<NodeStatus> = rows.iter().map(|r| r.node.clone()).collect();
    let Some(view) = view else {
        return health(&nodes);
    };
    let unhealthy = |why: String| Err(CtlError::new(Exit::Unhealthy, format!("unhealthy: {why}")));
    if let Some(r) = rows.iter().find(|r| r.node.role == "other cluster") {
        return unhealthy(format!(
            "{} belongs to cluster {}, not {}",
            r.node.address,
            r.cluster_id.as_deref().unwrap_or("?"),
            view.cluster_id
        ));
    }
    let members: Vec<&MemberRow> = rows
        .iter()
        .filter(|r| r.membership.as_deref() != Some("removed"))
        .collect();
    let down: Vec<&str> = members
        .iter()
        .filter(|r| r.node.error.is_some())
        .map(|r| r.node.endpoint.as_str())
        .collect();
    if !down.is_empty() {
        return unhealthy(format!(
            "{} of {} members unreachable ({})",
            down.len(),
            members.len(),
            down.join(", ")
        ));
    }
    health(&nodes)?;
    if let Some(r) = members.iter().find(|r| r.node.lag.unwrap_or(0) > max_lag) {
        return unhealthy(format!(
            "node {} is {} entries behind the leader's commit (bound {max_lag}, --max-lag)",
            dash(r.node.id),
            dash(r.node.lag)
        ));
    }
    Ok(())
}

fn uptime(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "-".into();
    };
    let s = s as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

fn status_table(rows: &[MemberRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|m| {
            let r = &m.node;
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
                dash(m.last_index),
                dash(r.lag),
                m.version.clone().unwrap_or_else(|| "-".into()),
                dash(m.pid),
                uptime(m.uptime_seconds),
            ]
        })
        .collect();
    let headers = [
        "ID", "ADDRESS", "ROLE", "TERM", "LEADER", "LEASE", "COMMIT", "APPLIED", "LAST", "LAG",
        "VERSION", "PID", "UPTIME",
    ];
    table(&headers, &cells)
}

/// The statuses of the given endpoints and of every member the leader
/// knows of that was not among them.
async fn gather(client: &Client) -> Vec<(String, Result<pb::StatusResponse, ClientError>)> {
    let mut answers = client.status_all().await;
    // Followers name the leader: ask it too if it was not among the endpoints.
    let named: Vec<String> = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok())
        .map(|s| s.leader_address.clone())
        .filter(|a| !a.is_empty())
        .collect();
    if ClusterView::of(&answers).is_none()
        && let Some(leader) = named
            .into_iter()
            .find(|a| !answers.iter().any(|(e, _)| e == a))
    {
        let status = client.status(&leader).await;
        answers.push((leader, status));
    }
    if ClusterView::of(&answers).is_none() {
        return answers;
    }
    let Ok(members) = client.members().await else {
        return answers;
    };
    let asked: Vec<u64> = answers
        .iter()
        .filter_map(|(_, a)| a.as_ref().ok().map(|s| s.id))
        .collect();
    let missing = members
        .members
        .iter()
        .filter(|m| !asked.contains(&m.id) && !m.client_address.is_empty())
        .filter(|m| !answers.iter().any(|(e, _)| *e == m.client_address));
    let extra = futures::future::join_all(missing.map(|m| async {
        let status = client.status(&m.client_address).await;
        (m.client_address.clone(), status)
    }))
    .await;
    answers.extend(extra);
    answers
}

/// One round of `status`: the text for stdout, notes for stderr (why a
/// node did not answer), and the health.
type Round = (String, String, Result<(), CtlError>);

async fn status_once(client: &Client, output: Output, max_lag: u64) -> Result<Round, CtlError> {
    let (rows, view) = member_rows(&gather(client).await);
    let health = member_health(&rows, view.as_ref(), max_lag);
    let (text, notes) = match output {
        Output::Table => {
            let mut text = String::new();
            if let Some(v) = &view {
                text.push_str(&format!(
                    "cluster {}: leader node {}, {} voters, {} learners\n",
                    v.cluster_id,
                    v.leader,
                    v.voters.len(),
                    v.learners.len()
                ));
            }
            text.push_str(&status_table(&rows));
            let notes = rows
                .iter()
                .filter_map(|r| Some(format!("{}: {}\n", r.node.endpoint, r.node.error.as_ref()?)))
                .collect();
            (text, notes)
        }
        _ => (super::output::structured(output, &rows)?, String::new()),
    };
    Ok((text, notes, health))
}

/// Prints the status of every endpoint and member; the exit code tells the
/// health. With `--watch`, refreshes until Ctrl-C (exit 0).
pub async fn status(client: &Client, output: Output, args: &StatusArgs) -> Result<(), CtlError> {
    if !args.watch {
        let (text, notes, health) = status_once(client, output, args.max_lag).await?;
        print!("{text}");
        eprint!("{notes}");
        return health;
    }
    let tty = std::io::stdout().is_terminal();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let (text, notes, health) = status_once(client, output, args.max_lag).await?;
        let verdict = match health {
            Ok(()) => "healthy".to_string(),
            Err(e) => e.message,
        };
        let stamp = clock_time();
        if tty {
            // Home and clear: the table is redrawn in place.
            print!(
                "\x1b[H\x1b[2J{stamp}  {verdict}  (every {:?}; Ctrl-C stops)\n{text}{notes}",
                args.interval
            );
        } else {
            print!("--- {stamp}  {verdict}\n{text}");
            eprint!("{notes}");
        }
        std::io::stdout().flush()?;
        tokio::select! {
            _ = &mut interrupted => return Ok(()),
            _ = tokio::time::sleep(args.interval) => {}
        }
    }
}

/// The wall-clock time of day, UTC, `HH:MM:SS` (for --watch).
fn clock_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60
    )
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
            Err(ClientError::LearnerBehind { .. }) if started.elapsed() < CATCH_UP_LIMIT => {
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
    // Asked first so the answer says what happened: nothing, if the node
    // already leads (the server accepts that as done).
    let members = client.members().await?;
    if members.leader == Some(id) {
        let text = format!("node {id} already leads; nothing to transfer");
        return change_done(output, &text, 0);
    }
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
        let (members, view) = member_rows(&answers);
        let text = status_table(&members);
        assert!(text.starts_with("ID  ADDRESS "), "{text}");
        assert!(text.contains("leader    3     1       0.80s"), "{text}");
        assert_eq!(
            member_health(&members, view.as_ref(), 2).unwrap_err().exit,
            Exit::Unhealthy
        );
        assert_eq!(member_health(&members, view.as_ref(), 3), Ok(()));
    }

    #[test]
    fn removed_nodes_and_other_clusters_are_named() {
        let mut leader = node(1, "leader", 0.8, 10, 10);
        leader.cluster_id = "c1".into();
        leader.membership = Some(pb::Membership {
            voters: vec![1, 2],
            learners: vec![],
        });
        let mut removed = node(3, "learner", 0.0, 10, 10);
        removed.cluster_id = "c1".into();
        let mut stranger = node(2, "follower", 0.0, 10, 10);
        stranger.cluster_id = "c2".into();
        let answers = vec![("a".into(), Ok(leader.clone())), ("b".into(), Ok(removed))];
        let (rows, view) = member_rows(&answers);
        assert_eq!(rows[1].node.role, "removed");
        assert_eq!(rows[0].membership.as_deref(), Some("voter"));
        // A removed node does not make the cluster unhealthy.
        assert_eq!(member_health(&rows, view.as_ref(), 100), Ok(()));
        let answers = vec![("a".into(), Ok(leader)), ("c".into(), Ok(stranger))];
        let (rows, view) = member_rows(&answers);
        let err = member_health(&rows, view.as_ref(), 100).unwrap_err();
        assert_eq!(err.exit, Exit::Unhealthy);
        assert!(err.message.contains("cluster c2, not c1"), "{err}");
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

    #[tokio::test]
    async fn member_add_waits_while_the_learner_is_behind_then_promotes_it() {
        use crate::client::fake::{FakeLeader, serve};
        let leader = FakeLeader::default();
        leader.state().learner_behind = 2;
        let client = Client::lazy(vec![serve(leader.clone())], Default::default()).unwrap();
        let (text, index) = add_member(&client, 3, "h:7380", "h:7379", false)
            .await
            .unwrap();
        assert_eq!(text, "added node 3 as a voter");
        assert_eq!(index, 7);
        assert_eq!(leader.state().learner_behind, 0, "asked until promoted");
    }
}
