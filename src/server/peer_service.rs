//! The `Raft` gRPC service: receives the other peers' streams (and unary
//! RPCs) and answers their `Hello` (see `discovery`).
//!
//! Every message from the network is checked where it enters, before the
//! node loop sees it: the batch's cluster id and lease parameters
//! (`peer_check`), the message's format (`wire`) and its sender and
//! addressee. A bad message is dropped and logged, rate-limited; it never
//! reaches an `expect` in the core and never ends the process.

use super::gate::{Active, Gate};
use super::peer_check::{self, Params};
use super::security::MemberCheck;
use super::wire;
use crate::pb;
use crate::raft::{Message, NodeId};
use crate::tls::PeerCerts;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// The `Raft` gRPC service: answers `Hello` from the start and hands peers'
/// messages to the node loop once it runs (see `Gate`).
pub struct RaftService {
    pub id: NodeId,
    pub gate: Arc<Gate>,
    /// This node's lease parameters: a sender's must be equal.
    pub params: Params,
    /// With mutual TLS on the peer port: the check that the sender's
    /// certificate names the member its messages claim to come from.
    pub members: Option<MemberCheck>,
}

/// The peer port's server, with its message size limits set to
/// `message_limit` (see `transport::peer_message_limit`).
pub fn server(
    service: RaftService,
    message_limit: usize,
) -> pb::raft_server::RaftServer<RaftService> {
    pb::raft_server::RaftServer::new(service)
        .max_decoding_message_size(message_limit)
        .max_encoding_message_size(message_limit)
}

impl RaftService {
    /// Refuses a sender from another cluster or with other lease
    /// parameters: recorded for readiness, logged (rate-limited), and
    /// answered with FAILED_PRECONDITION so the sender logs it too.
    fn admit(
        &self,
        active: &Active,
        from: Option<u64>,
        cluster_id: Option<&str>,
        params: Option<&pb::PeerParams>,
    ) -> Result<(), Status> {
        let why = if cluster_id != Some(active.cluster_id.as_str()) {
            format!(
                "cluster id mismatch: this node belongs to cluster {:?}, the sender to {:?}",
                active.cluster_id,
                cluster_id.unwrap_or("(none)")
            )
        } else {
            match self.params.check(params) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            }
        };
        let health = &self.gate.peers;
        let who = from.map_or("an unknown node".to_string(), |f| format!("node {f}"));
        if let Some(from) = from {
            health.refused(from, &why);
        }
        health
            .complaints
            .error(&format!("refuse-{who}"), &format!("from {who}: {why}"));
        Err(Status::failed_precondition(why))
    }

    /// Checks one message and hands it to the node loop; a bad one is
    /// dropped and logged.
    async fn deliver(&self, active: &Active, m: pb::PeerMessage) -> Result<(), Status> {
        match check(m, self.id, self.params) {
            Ok(msg) => active.node.peer_message(msg).await,
            Err(why) => {
                let complaints = &self.gate.peers.complaints;
                complaints.error("malformed", &format!("dropped: {why}"));
                Ok(())
            }
        }
    }

    /// The running node, or Unavailable while it is still starting.
    fn active(&self) -> Result<&Active, Status> {
        self.gate
            .active()
            .ok_or_else(|| Status::unavailable("node is starting"))
    }

    /// Refuses a sender whose certificate does not name member `from`
    /// (when the peer port uses mutual TLS).
    fn authenticate(&self, peer: Option<&PeerCerts>, from: Option<u64>) -> Result<(), Status> {
        let Some(members) = &self.members else {
            return Ok(());
        };
        match from {
            Some(from) => members.admit(peer, from),
            None => Err(Status::invalid_argument("a peer message without a sender")),
        }
    }

    /// Unary RPCs carry the cluster id and lease parameters as metadata
    /// (`peer_check::to_metadata`); answers travel on the streams.
    async fn unary<T>(
        &self,
        r: Request<T>,
        body: impl FnOnce(T) -> pb::peer_message::Body,
    ) -> Result<Response<pb::PeerAck>, Status> {
        let active = self.active()?;
        let peer = r.extensions().get::<PeerCerts>().cloned();
        let (cluster_id, params) = peer_check::from_metadata(r.metadata());
        let m = pb::PeerMessage {
            body: Some(body(r.into_inner())),
        };
        let from = wire::sender_of(&m);
        self.authenticate(peer.as_ref(), from)?;
        self.admit(active, from, cluster_id.as_deref(), params.as_ref())?;
        self.deliver(active, m).await?;
        Ok(Response::new(pb::PeerAck {}))
    }
}

/// What node `me` makes of one message from a peer before its loop sees
/// it: the core's message if its format (`wire`) and its sender, addressee
/// and lease report (`peer_check`) pass, else why it is dropped.
pub fn check(m: pb::PeerMessage, me: NodeId, params: Params) -> Result<Message, String> {
    let msg = wire::message_from_pb(m).map_err(|e| e.to_string())?;
    peer_check::check_message(&msg, me, params)?;
    Ok(msg)
}

/// The sender of a batch, as its first message names it.
fn batch_sender(batch: &pb::PeerBatch) -> Option<u64> {
    batch.messages.first().and_then(wire::sender_of)
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn send(
        &self,
        request: Request<Streaming<pb::PeerBatch>>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        let peer = request.extensions().get::<PeerCerts>().cloned();
        let mut stream = request.into_inner();
        let mut admitted = None;
        while let Some(batch) = stream.message().await? {
            // Before the node exists its messages are dropped; the stream
            // stays open so they flow as soon as it does.
            let Some(active) = self.gate.active() else {
                continue;
            };
            let from = match admitted {
                Some(from) => Some(from),
                None => {
                    let from = batch_sender(&batch);
                    if from.is_some() {
                        self.authenticate(peer.as_ref(), from)?;
                    }
                    from
                }
            };
            self.admit(
                active,
                from,
                Some(batch.cluster_id.as_str()),
                batch.params.as_ref(),
            )?;
            if let Some(from) = from {
                admitted = Some(from);
                self.gate.peers.heard(from);
            }
            for m in batch.messages {
                // On an authenticated stream every message is the member's.
                if self.members.is_some() && wire::sender_of(&m) != admitted {
                    let complaints = &self.gate.peers.complaints;
                    let why = format!(
                        "dropped: a message claiming node {:?} on member {:?}'s stream",
                        wire::sender_of(&m),
                        admitted
                    );
                    complaints.error("impostor-message", &why);
                    continue;
                }
                self.deliver(active, m).await?;
            }
        }
        Ok(Response::new(pb::PeerAck {}))
    }

    async fn append_entries(
        &self,
        r: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(r, pb::peer_message::Body::Append).await
    }

    async fn request_vote(
        &self,
        r: Request<pb::RequestVoteRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(r, pb::peer_message::Body::Vote).await
    }

    async fn install_snapshot(
        &self,
        r: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(r, pb::peer_message::Body::Snapshot).await
    }

    async fn timeout_now(
        &self,
        r: Request<pb::TimeoutNowRequest>,
    ) -> Result<Response<pb::PeerAck>, Status> {
        self.unary(r, pb::peer_message::Body::TimeoutNow).await
    }

    async fn hello(
        &self,
        r: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloResponse>, Status> {
        let peer = r.extensions().get::<PeerCerts>();
        self.authenticate(peer, Some(r.get_ref().from))?;
        self.gate
            .hello(r.get_ref())
            .await
            .map(Response::new)
            .ok_or_else(|| Status::unavailable("node is starting"))
    }
}
