//! In-process tests of the network paths against fake nodes: a "follower"
//! that redirects and a "leader" that answers, both real tonic servers on
//! loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tonic::metadata::MetadataValue;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::{Client, ClientError, ClientOptions, LEADER_ADDR_HEADER, Ttl};
use crate::pb;
use crate::pb::cluster_server::{Cluster, ClusterServer};
use crate::pb::command::Op;
use crate::pb::kv_server::{Kv, KvServer};
use crate::pb::write_response::Result as Answer;

/// What the fake leader saw and holds.
#[derive(Default)]
struct LeaderState {
    /// Every write request received, in order.
    writes: Vec<pb::WriteRequest>,
    sessions: u64,
    data: HashMap<Bytes, Bytes>,
    /// Answers by (client_id, seq): the exactly-once table.
    answers: HashMap<(u64, u64), pb::WriteResponse>,
    /// Fail this many writes with `outcome unknown` after applying them.
    lose_answers: usize,
}

#[derive(Clone, Default)]
struct FakeLeader {
    state: Arc<Mutex<LeaderState>>,
}

impl FakeLeader {
    fn state(&self) -> std::sync::MutexGuard<'_, LeaderState> {
        self.state.lock().unwrap()
    }
}

fn apply(data: &mut HashMap<Bytes, Bytes>, op: Op) -> Answer {
    match op {
        Op::Set(c) => {
            data.insert(c.key, c.value);
            Answer::Set(pb::SetResult {})
        }
        Op::Del(c) => Answer::Del(pb::DelResult {
            existed: data.remove(&c.key).is_some(),
        }),
        Op::Incr(c) => {
            let old = data.get(&c.key).cloned().unwrap_or_else(|| "0".into());
            let Some(n) = std::str::from_utf8(&old)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            else {
                return Answer::Error(pb::KvError {
                    code: pb::kv_error::Code::NotAnInteger as i32,
                    message: "value is not an integer".into(),
                });
            };
            data.insert(c.key, (n + 1).to_string().into());
            Answer::Incr(pb::IncrResult { value: n + 1 })
        }
        Op::Cas(c) => {
            let current = data.get(&c.key).cloned();
            let swapped = current == c.expected;
            if swapped {
                data.insert(c.key, c.value.clone());
            }
            Answer::Cas(pb::CasResult {
                swapped,
                current: if swapped { Some(c.value) } else { current },
            })
        }
        Op::Expire(c) => Answer::Expire(pb::ExpireResult {
            applied: data.contains_key(&c.key),
        }),
        Op::Register(_) => unreachable!("registration is handled by the caller"),
    }
}

#[tonic::async_trait]
impl Kv for FakeLeader {
    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.state();
        state.writes.push(request.clone());
        let op = request.command.and_then(|c| c.op);
        let response = match (op, request.session) {
            (Some(Op::Register(_)), _) => {
                state.sessions += 1;
                pb::WriteResponse {
                    result: Some(Answer::Register(pb::RegisterResult {
                        client_id: 100 + state.sessions,
                    })),
                    index: 0,
                }
            }
            (Some(op), Some(session)) => {
                let id = (session.client_id, session.seq);
                match state.answers.get(&id) {
                    Some(answer) => answer.clone(),
                    None => {
                        let result = Some(apply(&mut state.data, op));
                        let answer = pb::WriteResponse { result, index: 0 };
                        state.answers.insert(id, answer.clone());
                        answer
                    }
                }
            }
            _ => return Err(Status::invalid_argument("write without command or session")),
        };
        if state.lose_answers > 0 {
            state.lose_answers -= 1;
            return Err(Status::unavailable("outcome unknown: leadership lost"));
        }
        Ok(Response::new(response))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let value = self.state().data.get(&request.into_inner().key).cloned();
        Ok(Response::new(pb::GetResponse {
            found: value.is_some(),
            value: value.unwrap_or_default(),
        }))
    }

    async fn ttl(
        &self,
        request: Request<pb::TtlRequest>,
    ) -> Result<Response<pb::TtlResponse>, Status> {
        let found = self.state().data.contains_key(&request.into_inner().key);
        Ok(Response::new(pb::TtlResponse {
            found,
            seconds: None,
        }))
    }
}

#[tonic::async_trait]
impl Cluster for FakeLeader {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            id: 1,
            role: "leader".into(),
            leader: Some(1),
            ..Default::default()
        }))
    }
    async fn members(
        &self,
        _: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        Ok(Response::new(pb::MembersResponse {
            members: vec![],
            leader: Some(1),
        }))
    }
    async fn add_member(
        &self,
        _: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Ok(Response::new(pb::ChangeResponse { index: 7 }))
    }
    async fn remove_member(
        &self,
        _: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Ok(Response::new(pb::ChangeResponse { index: 8 }))
    }
    async fn transfer_leader(
        &self,
        _: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Ok(Response::new(pb::ChangeResponse { index: 9 }))
    }
}

/// A follower: answers Status itself, every other RPC with not-leader.
#[derive(Clone)]
struct FakeFollower {
    /// The leader's client address it names, if it knows one.
    leader: Option<String>,
    hits: Arc<Mutex<usize>>,
}

impl FakeFollower {
    fn not_leader(&self) -> Status {
        *self.hits.lock().unwrap() += 1;
        match &self.leader {
            Some(addr) => {
                let mut status =
                    Status::unavailable(format!("not leader; leader is node 1 at {addr}"));
                status
                    .metadata_mut()
                    .insert(LEADER_ADDR_HEADER, MetadataValue::try_from(addr).unwrap());
                status
            }
            None => Status::unavailable("not leader; no leader known"),
        }
    }
}

#[tonic::async_trait]
impl Kv for FakeFollower {
    async fn write(
        &self,
        _: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        Err(self.not_leader())
    }
    async fn get(&self, _: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        Err(self.not_leader())
    }
    async fn ttl(&self, _: Request<pb::TtlRequest>) -> Result<Response<pb::TtlResponse>, Status> {
        Err(self.not_leader())
    }
}

#[tonic::async_trait]
impl Cluster for FakeFollower {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            id: 0,
            role: "follower".into(),
            ..Default::default()
        }))
    }
    async fn members(
        &self,
        _: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        Err(self.not_leader())
    }
    async fn add_member(
        &self,
        _: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Err(self.not_leader())
    }
    async fn remove_member(
        &self,
        _: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Err(self.not_leader())
    }
    async fn transfer_leader(
        &self,
        _: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Err(self.not_leader())
    }
}

/// Serves `node` on a fresh loopback port; its `HOST:PORT`.
fn serve<T: Kv + Cluster + Clone>(node: T) -> String {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap().to_string();
    tokio::spawn(
        Server::builder()
            .add_service(KvServer::new(node.clone()))
            .add_service(ClusterServer::new(node))
            .serve_with_incoming(incoming),
    );
    addr
}

/// A loopback address nothing listens on.
fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn fast(timeout: Duration) -> ClientOptions {
    ClientOptions {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    }
    .with_timeout(timeout)
}

fn follower(leader: Option<String>) -> FakeFollower {
    FakeFollower {
        leader,
        hits: Arc::default(),
    }
}

/// Writes with a session, ignoring registrations.
fn session_writes(leader: &FakeLeader) -> Vec<pb::Session> {
    leader
        .state()
        .writes
        .iter()
        .filter_map(|w| w.session)
        .collect()
}

#[tokio::test]
async fn follows_the_redirect_and_remembers_the_leader() {
    let leader = FakeLeader::default();
    let leader_addr = serve(leader.clone());
    let follower = follower(Some(leader_addr.clone()));
    let follower_addr = serve(follower.clone());

    let client = Client::lazy(vec![follower_addr], fast(Duration::from_secs(5))).unwrap();
    client.set(b"k", b"v").await.unwrap();
    assert_eq!(client.leader().as_deref(), Some(leader_addr.as_str()));
    let hits = *follower.hits.lock().unwrap();
    assert!(hits >= 1, "the follower redirected");

    // Later calls go straight to the remembered leader.
    assert_eq!(client.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(client.get(b"nope").await.unwrap(), None);
    assert_eq!(client.ttl(b"k").await.unwrap(), Ttl::NoExpiry);
    assert_eq!(client.members().await.unwrap().leader, Some(1));
    assert_eq!(*follower.hits.lock().unwrap(), hits);
}

#[tokio::test]
async fn connect_learns_the_leader_from_status() {
    let leader_addr = serve(FakeLeader::default());
    let client = Client::connect(
        vec![dead_addr(), leader_addr.clone()],
        fast(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(client.leader().as_deref(), Some(leader_addr.as_str()));
    let all = client.status_all().await;
    assert!(matches!(all[0].1, Err(ClientError::Unreachable { .. })));
    assert_eq!(all[1].1.as_ref().unwrap().role, "leader");
}

#[tokio::test]
async fn retries_an_unknown_outcome_with_the_same_seq() {
    let leader = FakeLeader::default();
    let leader_addr = serve(leader.clone());
    let follower_addr = serve(follower(Some(leader_addr.clone())));
    let client = Client::lazy(
        vec![leader_addr, follower_addr],
        fast(Duration::from_secs(5)),
    )
    .unwrap();

    assert_eq!(client.incr(b"n").await.unwrap(), 1);
    leader.state().lose_answers = 1;
    // Applied, answer lost, retried: exactly once.
    assert_eq!(client.incr(b"n").await.unwrap(), 2);
    assert_eq!(client.get(b"n").await.unwrap().as_deref(), Some(&b"2"[..]));

    let sessions = session_writes(&leader);
    assert_eq!(
        sessions.len(),
        3,
        "one first incr, the lost attempt, its retry"
    );
    assert_eq!(sessions[1].seq, sessions[2].seq);
    assert_eq!(sessions[1].client_id, sessions[2].client_id);
    assert!(sessions[0].seq < sessions[1].seq);
    assert_eq!(sessions[2].first_incomplete, sessions[2].seq);
}

#[tokio::test]
async fn registers_one_session_for_concurrent_writes() {
    let leader = FakeLeader::default();
    let leader_addr = serve(leader.clone());
    let client = Client::lazy(vec![leader_addr], fast(Duration::from_secs(5))).unwrap();
    assert_eq!(client.session_id().await, None);

    let writes = (0..16).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.set(format!("k{i}").as_bytes(), b"v").await })
    });
    for write in writes {
        write.await.unwrap().unwrap();
    }
    assert_eq!(leader.state().sessions, 1);
    assert_eq!(client.session_id().await, Some(101));

    let mut sessions = session_writes(&leader);
    assert!(sessions.iter().all(|s| s.client_id == 101));
    assert!(sessions.iter().all(|s| s.first_incomplete <= s.seq));
    sessions.sort_by_key(|s| s.seq);
    let seqs: Vec<u64> = sessions.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, (1..=16).collect::<Vec<_>>());

    // All answered: the next write's watermark is its own seq.
    client.del(b"k0").await.unwrap();
    let last = *session_writes(&leader).last().unwrap();
    assert_eq!((last.seq, last.first_incomplete), (17, 17));
}

#[tokio::test]
async fn fails_over_past_a_dead_endpoint() {
    let leader_addr = serve(FakeLeader::default());
    let client = Client::lazy(
        vec![dead_addr(), leader_addr.clone()],
        fast(Duration::from_secs(5)),
    )
    .unwrap();
    client.set(b"k", b"v").await.unwrap();
    assert_eq!(client.leader().as_deref(), Some(leader_addr.as_str()));
}

#[tokio::test]
async fn all_dead_is_unreachable() {
    let options = fast(Duration::from_millis(400));
    let client = Client::lazy(vec![dead_addr(), dead_addr()], options.clone()).unwrap();
    let err = client.get(b"k").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    let err = Client::connect(vec![dead_addr()], options)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn followers_without_a_leader_give_no_leader() {
    let a = serve(follower(None));
    let b = serve(follower(None));
    let client = Client::lazy(vec![a, b], fast(Duration::from_millis(300))).unwrap();
    let err = client.get(b"k").await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoLeader(ref m) if m.contains("no leader known")),
        "{err}"
    );
}

#[tokio::test]
async fn refusals_and_bad_input_are_not_retried() {
    let leader = FakeLeader::default();
    let client = Client::lazy(vec![serve(leader.clone())], fast(Duration::from_secs(5))).unwrap();
    client.set(b"t", b"text").await.unwrap();
    let err = client.incr(b"t").await.unwrap_err();
    assert_eq!(err.rejection_code(), Some(pb::kv_error::Code::NotAnInteger));
    assert_eq!(err.to_string(), "rejected: value is not an integer");

    let before = leader.state().writes.len();
    assert!(client.set(b"", b"v").await.unwrap_err().is_bad_input());
    let big_key = vec![b'k'; 4097];
    assert!(client.get(&big_key).await.unwrap_err().is_bad_input());
    let big_value = vec![b'v'; 1024 * 1024 + 1];
    assert!(
        client
            .set(b"k", &big_value)
            .await
            .unwrap_err()
            .is_bad_input()
    );
    assert_eq!(leader.state().writes.len(), before, "nothing was sent");
}

#[tokio::test]
async fn cas_and_cluster_changes_reach_the_leader() {
    let leader_addr = serve(FakeLeader::default());
    let follower_addr = serve(follower(Some(leader_addr.clone())));
    let client = Client::lazy(vec![follower_addr], fast(Duration::from_secs(5))).unwrap();

    let first = client.cas(b"c", None, b"one").await.unwrap();
    assert!(first.swapped);
    let stale = client.cas(b"c", None, b"two").await.unwrap();
    assert!(!stale.swapped);
    assert_eq!(stale.current.as_deref(), Some(&b"one"[..]));
    assert!(client.expire(b"c", 5).await.unwrap());
    assert!(client.del(b"c").await.unwrap());
    assert!(!client.del(b"c").await.unwrap());

    assert_eq!(
        client
            .add_member(3, "h:7410", "h:7409", true)
            .await
            .unwrap(),
        7
    );
    assert_eq!(client.remove_member(3).await.unwrap(), 8);
    assert_eq!(client.transfer_leader(2).await.unwrap(), 9);
    assert_eq!(client.leader(), None, "a transfer forgets the old leader");
}
