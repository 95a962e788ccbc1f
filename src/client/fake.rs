//! Fake nodes for tests: a "leader" that answers like the state machine
//! (with the exactly-once table) and a "follower" that redirects, both real
//! tonic servers on loopback.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::pb;
use crate::pb::cluster_server::{Cluster, ClusterServer};
use crate::pb::command::Op;
use crate::pb::kv_server::{Kv, KvServer};
use crate::pb::write_response::Result as Answer;
use crate::status;

/// What the fake leader saw and holds.
#[derive(Default)]
pub(crate) struct LeaderState {
    /// Every write request received, in order.
    pub(crate) writes: Vec<pb::WriteRequest>,
    pub(crate) sessions: u64,
    pub(crate) data: HashMap<Bytes, Bytes>,
    /// Answers by (client_id, seq): the exactly-once table.
    pub(crate) answers: HashMap<(u64, u64), pb::WriteResponse>,
    /// Fail this many writes with `outcome unknown` after applying them.
    pub(crate) lose_answers: usize,
    /// With `lose_answers`: the cluster also forgets the session whose
    /// answer was lost (evicted or expired before the retry arrives).
    pub(crate) expire_lost_sessions: bool,
    /// Clients whose session the cluster forgot: SESSION_EXPIRED.
    pub(crate) expired: Vec<u64>,
    /// Refuse this many writes, unapplied, as the node does during a
    /// leadership transfer (the node's own status, `status::busy`).
    pub(crate) busy_answers: usize,
    /// Refuse this many promotions as the node does for a learner that has
    /// not caught up.
    pub(crate) learner_behind: usize,
}

#[derive(Clone, Default)]
pub(crate) struct FakeLeader {
    state: Arc<Mutex<LeaderState>>,
}

impl FakeLeader {
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, LeaderState> {
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
        Op::StateCheck(_) => Answer::StateCheck(pb::StateCheckResult {}),
        Op::MemberAddrs(_) | Op::StateReport(_) | Op::Auth(_) => Answer::Error(pb::KvError {
            code: pb::kv_error::Code::Invalid as i32,
            message: "proposed by the leader only".into(),
        }),
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
        if state.busy_answers > 0 {
            state.busy_answers -= 1;
            return Err(status::busy("leadership transfer under way"));
        }
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
            (Some(_), Some(session)) if state.expired.contains(&session.client_id) => {
                pb::WriteResponse {
                    result: Some(Answer::Error(pb::KvError {
                        code: pb::kv_error::Code::SessionExpired as i32,
                        message: format!("client {} has no session", session.client_id),
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
            _ => return Err(status::invalid_argument("write without command or session")),
        };
        if state.lose_answers > 0 {
            state.lose_answers -= 1;
            if state.expire_lost_sessions {
                let client = request.session.map_or(0, |s| s.client_id);
                state.expired.push(client);
            }
            return Err(status::outcome_unknown("leadership lost"));
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

    /// Pages of at most 2 keys, so that tests see the client continue.
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        let state = self.state();
        let mut keys: Vec<&Bytes> = state
            .data
            .keys()
            .filter(|k| k.starts_with(&r.prefix))
            .collect();
        keys.sort();
        let count = if r.after.is_empty() {
            keys.len() as u64
        } else {
            0
        };
        let page = if r.limit == 0 { 2 } else { r.limit.min(2) } as usize;
        let rest: Vec<&Bytes> = keys
            .into_iter()
            .filter(|k| r.after.is_empty() || **k > r.after)
            .collect();
        let items = rest
            .iter()
            .take(page)
            .map(|k| pb::KeyValue {
                key: (*k).clone(),
                value: state.data[*k].clone(),
            })
            .collect();
        Ok(Response::new(pb::RangeResponse {
            items,
            more: rest.len() > page,
            count,
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
            lease_remaining_seconds: 1.0,
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
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.state();
        if request.promote && state.learner_behind > 0 {
            state.learner_behind -= 1;
            return Err(status::learner_behind(request.id));
        }
        Ok(Response::new(pb::ChangeResponse {
            index: 7,
            error: None,
        }))
    }
    async fn remove_member(
        &self,
        _: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Ok(Response::new(pb::ChangeResponse {
            index: 8,
            error: None,
        }))
    }
    async fn transfer_leader(
        &self,
        _: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        Ok(Response::new(pb::ChangeResponse {
            index: 9,
            error: None,
        }))
    }

    type SnapshotStream = crate::server::backup::SnapshotStream;

    /// A backup of [`FAKE_SNAPSHOT`] at index 7, in two data chunks.
    async fn snapshot(
        &self,
        _: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        use pb::snapshot_chunk::Part;
        use sha2::Digest;
        let data = Bytes::from_static(FAKE_SNAPSHOT);
        let parts = [
            Part::Header(pb::SnapshotHeader {
                cluster_id: "fake".into(),
                index: 7,
                term: 2,
                data_bytes: data.len() as u64,
                ..Default::default()
            }),
            Part::Data(data.slice(..4)),
            Part::Data(data.slice(4..)),
            Part::Trailer(pb::SnapshotTrailer {
                data_bytes: data.len() as u64,
                data_sha256: sha2::Sha256::digest(&data).to_vec().into(),
            }),
        ];
        let chunks = parts.map(|part| Ok(pb::SnapshotChunk { part: Some(part) }));
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
}

/// The data of the fake leader's backup.
pub(crate) const FAKE_SNAPSHOT: &[u8] = b"fake state";

/// A follower: answers Status itself, every other RPC with not-leader.
#[derive(Clone)]
pub(crate) struct FakeFollower {
    /// The leader's client address it names, if it knows one.
    pub(crate) leader: Option<String>,
    pub(crate) hits: Arc<Mutex<usize>>,
}

impl FakeFollower {
    fn not_leader(&self) -> Status {
        *self.hits.lock().unwrap() += 1;
        status::not_leader(self.leader.as_deref().map(|addr| (1, addr)))
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
    async fn range(
        &self,
        _: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
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

    type SnapshotStream = crate::server::backup::SnapshotStream;

    async fn snapshot(
        &self,
        _: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(self.not_leader())
    }
}

/// Serves `node` on a fresh loopback port; its `HOST:PORT`.
pub(crate) fn serve<T: Kv + Cluster + Clone>(node: T) -> String {
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
pub(crate) fn dead_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A follower naming `leader` (or none).
pub(crate) fn follower(leader: Option<String>) -> FakeFollower {
    FakeFollower {
        leader,
        hits: Arc::default(),
    }
}
