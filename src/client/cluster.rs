//! Cluster operations: per-node status, membership and leadership transfer.

use futures::future::join_all;

use super::Client;
use super::error::ClientError;
use super::transport::Chan;
use crate::pb;
use crate::pb::cluster_client::ClusterClient;

impl Client {
    /// The status of the node at `endpoint` itself (no redirect; one attempt
    /// bounded by the attempt timeout).
    pub async fn status(&self, endpoint: &str) -> Result<pb::StatusResponse, ClientError> {
        self.transport
            .call_at(endpoint, |channel| async move {
                Ok(ClusterClient::new(channel)
                    .status(pb::StatusRequest {})
                    .await?
                    .into_inner())
            })
            .await
    }

    /// The status of every endpoint, asked concurrently, in endpoint order.
    pub async fn status_all(&self) -> Vec<(String, Result<pb::StatusResponse, ClientError>)> {
        let endpoints = self.endpoints();
        let answers = join_all(endpoints.iter().map(|e| self.status(e))).await;
        endpoints.into_iter().zip(answers).collect()
    }

    /// The members as the leader knows them.
    pub async fn members(&self) -> Result<pb::MembersResponse, ClientError> {
        self.transport
            .call(|channel| async move {
                Ok(ClusterClient::new(channel)
                    .members(pb::MembersRequest {})
                    .await?
                    .into_inner())
            })
            .await
    }

    /// Adds node `id` as a learner (promoted to voter once caught up if
    /// `promote`); the log index of the change. Sent through the client's
    /// session, like a write: a retry after a lost answer gets the first
    /// answer (docs/consensus.md, "Membership changes, exactly once").
    pub async fn add_member(
        &self,
        id: u64,
        peer_address: &str,
        client_address: &str,
        promote: bool,
    ) -> Result<u64, ClientError> {
        let request = pb::AddMemberRequest {
            id,
            peer_address: peer_address.to_string(),
            client_address: client_address.to_string(),
            promote,
            session: None,
        };
        self.change(|channel, session| {
            let request = pb::AddMemberRequest {
                session: Some(session),
                ..request.clone()
            };
            async move {
                Ok(ClusterClient::new(channel)
                    .add_member(request)
                    .await?
                    .into_inner())
            }
        })
        .await
    }

    /// Removes node `id` from the membership; the log index of the change.
    /// Exactly-once, as [`Client::add_member`]: removing the leader through
    /// itself, whose answer its stepping down can lose, still answers.
    pub async fn remove_member(&self, id: u64) -> Result<u64, ClientError> {
        self.change(|channel, session| {
            let request = pb::RemoveMemberRequest {
                id,
                session: Some(session),
            };
            async move {
                Ok(ClusterClient::new(channel)
                    .remove_member(request)
                    .await?
                    .into_inner())
            }
        })
        .await
    }

    /// One membership change through the session; its log index.
    async fn change<F, Fut>(&self, attempt: F) -> Result<u64, ClientError>
    where
        F: FnMut(Chan, pb::Session) -> Fut,
        Fut: std::future::Future<Output = Result<pb::ChangeResponse, tonic::Status>>,
    {
        let (response, session, retried) = self.through_session(attempt).await?;
        match response.error {
            Some(e) => Err(self
                .refused(&session, e, retried, "membership change")
                .await),
            None => Ok(response.index),
        }
    }

    /// Asks the leader to hand leadership to node `to`.
    pub async fn transfer_leader(&self, to: u64) -> Result<u64, ClientError> {
        let index = self
            .transport
            .call(|channel| async move {
                Ok(ClusterClient::new(channel)
                    .transfer_leader(pb::TransferLeaderRequest { to })
                    .await?
                    .into_inner()
                    .index)
            })
            .await?;
        // The old leader is leader no more; find the new one on next use.
        let old = self.leader();
        if let Some(old) = old {
            self.transport.router().failed(&old);
        }
        Ok(index)
    }
}
