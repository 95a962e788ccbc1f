//! Users, roles and auth on/off (docs/security.md, "Users and roles").

use super::Client;
use super::error::ClientError;
use crate::pb;
use crate::pb::auth_client::AuthClient;
use crate::pb::kv_client::KvClient;
use crate::pb::write_response::Result as Answer;

impl Client {
    /// Applies a change of the auth store and returns its new revision.
    /// Sent without a session: a retry after an unknown outcome may be
    /// refused as already done (e.g. "user exists").
    pub async fn auth_change(&self, op: pb::auth_cmd::Op) -> Result<u64, ClientError> {
        let request = pb::WriteRequest {
            session: None,
            command: Some(pb::Command {
                op: Some(pb::command::Op::Auth(pb::AuthCmd { op: Some(op) })),
            }),
        };
        let response = self
            .transport
            .call(|channel| {
                let request = request.clone();
                async move { Ok(KvClient::new(channel).write(request).await?.into_inner()) }
            })
            .await?;
        match response.result {
            Some(Answer::Auth(r)) => Ok(r.revision),
            Some(Answer::Error(e)) => Err(ClientError::Rejected(e)),
            other => Err(ClientError::Other(format!(
                "unexpected answer to an auth change: {other:?}"
            ))),
        }
    }

    /// Whether auth is enabled, who this client is, and (to root, or to
    /// anyone while auth is off) the users and roles, as the leader applied them.
    pub async fn auth_status(&self) -> Result<pb::AuthStatusResponse, ClientError> {
        self.transport
            .call(|channel| async move {
                Ok(AuthClient::new(channel)
                    .status(pb::AuthStatusRequest {})
                    .await?
                    .into_inner())
            })
            .await
    }
}
