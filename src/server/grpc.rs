//! The client services (Kv, Cluster): thin adapters from gRPC to the node
//! loop, with the not-leader convention of docs/internals.md and a duration
//! histogram per method.

use super::auth::{AuthView, denied_status, need_to_propose, prepare};
use super::node::{ChangeRequest, MemberAddrs, NodeError, NodeHandle, ReadAnswer, ReadKind};
use super::peer_check::PeerHealth;
use crate::kv::Need;
use crate::observe::Metrics;
use crate::pb;
use crate::raft::{ConfChange, NodeId};
use crate::status;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// Serves Kv and Cluster by forwarding to the node loop.
#[derive(Clone)]
pub struct ClientService {
    pub node: NodeHandle,
    pub metrics: Metrics,
    /// Refusals between this node and its peers, shown in `Status`.
    pub peers: Arc<PeerHealth>,
    /// When the process started serving, for `Status.uptime_seconds`.
    pub started: Instant,
    /// Who sends each request, and what it may do (docs/security.md).
    pub auth: AuthView,
}

/// The gRPC status of a node error, in the shared vocabulary
/// (`crate::status`).
pub fn to_status(e: NodeError) -> Status {
    match e {
        NodeError::NotLeader { leader } => {
            status::not_leader(leader.as_ref().map(|(id, addr)| (*id, addr.as_str())))
        }
        NodeError::OutcomeUnknown(why) => status::outcome_unknown(&why),
        NodeError::Stopped => status::stopping(),
        NodeError::InvalidArgument(why) => status::invalid_argument(&why),
        NodeError::Internal(why) => status::internal(&why),
        NodeError::LearnerBehind(id) => status::learner_behind(id),
        // Transient (a transfer or membership change under way): the client
        // retries after a backoff instead of failing the write for good.
        NodeError::Busy(why) => status::busy(&why),
    }
}

impl ClientService {
    /// Times `f` into the histogram under `method`.
    async fn timed<T>(
        &self,
        method: &str,
        f: impl std::future::Future<Output = Result<T, NodeError>>,
    ) -> Result<Response<T>, Status> {
        let start = Instant::now();
        let r = f.await;
        self.metrics
            .grpc_request_duration
            .with_label_values(&[method])
            .observe(start.elapsed().as_secs_f64());
        r.map(Response::new).map_err(to_status)
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for ClientService {
    async fn write(
        &self,
        r: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let need = match &r.get_ref().command {
            Some(command) => need_to_propose(command),
            None => Need::Nothing,
        };
        let user = self.auth.admit(&self.node, &r, need).await?;
        let mut request = r.into_inner();
        if let Some(command) = &mut request.command {
            prepare(command).await?;
        }
        let response = self
            .timed("Write", self.node.write(request, user.clone()))
            .await?;
        // Refused when applied: a permission error, not an answer.
        if let Some(pb::write_response::Result::Error(e)) = &response.get_ref().result
            && e.code() == pb::kv_error::Code::PermissionDenied
        {
            return Err(denied_status(&user, &e.message));
        }
        Ok(response)
    }

    async fn get(&self, r: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let need = Need::Key(&r.get_ref().key, pb::Permission::Read);
        self.auth.admit(&self.node, &r, need).await?;
        let key = r.into_inner().key;
        self.timed("Get", async {
            match self.node.read(ReadKind::Get(key)).await? {
                ReadAnswer::Get(g) => Ok(g),
                _ => Err(wrong_answer()),
            }
        })
        .await
    }

    async fn ttl(&self, r: Request<pb::TtlRequest>) -> Result<Response<pb::TtlResponse>, Status> {
        let need = Need::Key(&r.get_ref().key, pb::Permission::Read);
        self.auth.admit(&self.node, &r, need).await?;
        let key = r.into_inner().key;
        self.timed("Ttl", async {
            match self.node.read(ReadKind::Ttl(key)).await? {
                ReadAnswer::Ttl(t) => Ok(t),
                _ => Err(wrong_answer()),
            }
        })
        .await
    }

    /// A page of a prefix, on the read path of Get (lease or ReadIndex).
    async fn range(
        &self,
        r: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let need = Need::Key(&r.get_ref().prefix, pb::Permission::Read);
        self.auth.admit(&self.node, &r, need).await?;
        let request = r.into_inner();
        self.timed("Range", async {
            match self.node.read(ReadKind::Range(request)).await? {
                ReadAnswer::Range(page) => Ok(page),
                _ => Err(wrong_answer()),
            }
        })
        .await
    }
}

fn wrong_answer() -> NodeError {
    NodeError::Internal("the node loop answered a read with another kind of answer".into())
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClientService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.timed("Status", async {
            let mut status = self.node.status().await?;
            status.peer_problems = self.peers.problems();
            status.pid = std::process::id();
            status.version = env!("CARGO_PKG_VERSION").to_string();
            status.uptime_seconds = self.started.elapsed().as_secs_f64();
            Ok(status)
        })
        .await
    }

    async fn members(
        &self,
        _: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        self.timed("Members", self.node.members()).await
    }

    async fn add_member(
        &self,
        r: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let user = self.auth.admit(&self.node, &r, Need::Root).await?;
        let r = r.into_inner();
        self.timed("AddMember", async {
            let change = if r.promote {
                ConfChange::Promote(NodeId(r.id))
            } else {
                ConfChange::AddLearner(NodeId(r.id))
            };
            let addrs = MemberAddrs {
                peer: r.peer_address,
                client: r.client_address,
            };
            let request = ChangeRequest {
                change,
                addrs: Some(addrs),
                context: change_context(r.session, user),
            };
            self.node.change(request).await
        })
        .await
    }

    async fn remove_member(
        &self,
        r: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        let user = self.auth.admit(&self.node, &r, Need::Root).await?;
        let r = r.into_inner();
        self.timed("RemoveMember", async {
            let request = ChangeRequest {
                change: ConfChange::Remove(NodeId(r.id)),
                addrs: None,
                context: change_context(r.session, user),
            };
            self.node.change(request).await
        })
        .await
    }

    async fn transfer_leader(
        &self,
        r: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::ChangeResponse>, Status> {
        self.auth.admit(&self.node, &r, Need::Root).await?;
        let to = r.into_inner().to;
        self.timed("TransferLeader", async {
            self.node.transfer(Some(NodeId(to))).await?;
            // A transfer has no log index of its own.
            Ok(pb::ChangeResponse {
                index: 0,
                error: None,
            })
        })
        .await
    }

    type SnapshotStream = super::backup::SnapshotStream;

    /// A backup: the stream opens once the leader has copied its state.
    async fn snapshot(
        &self,
        r: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        // The backup holds password hashes and the token signing key.
        self.auth.admit(&self.node, &r, Need::Root).await?;
        self.timed("Snapshot", super::backup::snapshot(&self.node))
            .await
    }
}

/// The context that makes a membership change exactly-once: the client's
/// session (none: evaluated afresh on each attempt, as before clients sent
/// one) and who asked.
fn change_context(session: Option<pb::Session>, user: String) -> Option<pb::ChangeContext> {
    let session = session.filter(|s| s.client_id != 0)?;
    Some(pb::ChangeContext {
        session: Some(session),
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Kind, kind};

    #[test]
    fn a_busy_leader_is_retryable_not_final() {
        let s = to_status(NodeError::Busy("leadership transfer under way".into()));
        assert_eq!(kind(&s), Kind::Busy);
        assert!(s.message().contains("leadership transfer under way"));
    }

    #[test]
    fn every_node_error_keeps_its_meaning_on_the_wire() {
        let leader = Some((2, "h:7399".to_string()));
        let s = to_status(NodeError::NotLeader { leader });
        assert_eq!(kind(&s), Kind::NotLeader);
        assert_eq!(status::leader(&s), Some((2, "h:7399".to_string())));
        assert_eq!(
            kind(&to_status(NodeError::OutcomeUnknown("lost".into()))),
            Kind::OutcomeUnknown
        );
        assert_eq!(kind(&to_status(NodeError::Stopped)), Kind::Unreachable);
        assert_eq!(
            kind(&to_status(NodeError::InvalidArgument("bad".into()))),
            Kind::InvalidArgument
        );
        assert_eq!(
            kind(&to_status(NodeError::Internal("bug".into()))),
            Kind::Internal
        );
        let s = to_status(NodeError::LearnerBehind(3));
        assert_eq!(kind(&s), Kind::LearnerBehind);
        assert_eq!(status::learner(&s), Some(3));
    }
}
