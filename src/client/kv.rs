//! Key-value operations: typed wrappers over Kv.Write / Get / Ttl, with
//! local size checks and the session that makes writes exactly-once.

use std::sync::Arc;

use bytes::Bytes;

use super::Client;
use super::error::ClientError;
use super::options::ClientOptions;
use super::session::Session;
use super::transport::{Chan, Transport};
use crate::pb;
use crate::pb::command::Op;
use crate::pb::kv_client::KvClient;
use crate::pb::write_response::Result as Answer;

/// Time to live of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (or has expired).
    NoKey,
    /// The key exists and never expires.
    NoExpiry,
    /// The key expires in this many seconds.
    Seconds(u64),
}

/// The answer to a compare-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the new value was written.
    pub swapped: bool,
    /// The key's value after the command (`None`: no such key).
    pub current: Option<Bytes>,
}

impl Client {
    /// Writes `value` under `key` (clears any TTL).
    pub async fn set(&self, key: &[u8], value: &[u8]) -> Result<(), ClientError> {
        self.check_key(key)?;
        self.check_value(value)?;
        let op = Op::Set(pb::SetCmd {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        });
        match self.write(op).await? {
            Answer::Set(_) => Ok(()),
            other => Err(unexpected("SET", &other)),
        }
    }

    /// The latest committed value of `key`, `None` if it does not exist.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ClientError> {
        self.check_key(key)?;
        let request = pb::GetRequest {
            key: Bytes::copy_from_slice(key),
        };
        let response = self
            .transport
            .call(|channel| {
                let request = request.clone();
                let mut kv = kv_client(channel, self.options());
                async move { Ok(kv.get(request).await?.into_inner()) }
            })
            .await?;
        Ok(response.found.then_some(response.value))
    }

    /// One page of the keys starting with `prefix` after `after` (empty:
    /// from the first), in byte order, read like [`get`](Self::get); at most
    /// `limit` keys (0: the server's page size). Continue with `after` =
    /// the last key returned while `more` is set; `count` (every key under
    /// the prefix) is given with the first page only.
    pub async fn range_page(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: u32,
        keys_only: bool,
    ) -> Result<pb::RangeResponse, ClientError> {
        let request = pb::RangeRequest {
            prefix: Bytes::copy_from_slice(prefix),
            after: Bytes::copy_from_slice(after),
            limit,
            keys_only,
        };
        self.transport
            .call(|channel| {
                let request = request.clone();
                let mut kv = kv_client(channel, self.options());
                async move { Ok(kv.range(request).await?.into_inner()) }
            })
            .await
    }

    /// Every key starting with `prefix` (with its value unless `keys_only`),
    /// up to `limit` keys (0: all), fetched page by page; and the number of
    /// keys under the prefix. Each page is linearizable on its own; keys
    /// written between two pages may or may not appear.
    pub async fn range(
        &self,
        prefix: &[u8],
        limit: u64,
        keys_only: bool,
    ) -> Result<(Vec<pb::KeyValue>, u64), ClientError> {
        let mut items: Vec<pb::KeyValue> = Vec::new();
        let mut count = 0;
        let mut after = Bytes::new();
        loop {
            let left = if limit == 0 {
                0
            } else {
                let left = limit - items.len() as u64;
                u32::try_from(left).unwrap_or(u32::MAX)
            };
            let page = self.range_page(prefix, &after, left, keys_only).await?;
            if after.is_empty() {
                count = page.count;
            }
            items.extend(page.items);
            let full = limit != 0 && items.len() as u64 >= limit;
            match items.last() {
                Some(last) if page.more && !full => after = last.key.clone(),
                _ => return Ok((items, count)),
            }
        }
    }

    /// Removes `key`; whether it existed.
    pub async fn del(&self, key: &[u8]) -> Result<bool, ClientError> {
        self.check_key(key)?;
        let op = Op::Del(pb::DelCmd {
            key: Bytes::copy_from_slice(key),
        });
        match self.write(op).await? {
            Answer::Del(r) => Ok(r.existed),
            other => Err(unexpected("DEL", &other)),
        }
    }

    /// Adds 1 to the integer at `key` (a missing key counts as 0); the new value.
    pub async fn incr(&self, key: &[u8]) -> Result<i64, ClientError> {
        self.check_key(key)?;
        let op = Op::Incr(pb::IncrCmd {
            key: Bytes::copy_from_slice(key),
        });
        match self.write(op).await? {
            Answer::Incr(r) => Ok(r.value),
            other => Err(unexpected("INCR", &other)),
        }
    }

    /// Deletes `key` `seconds` after this commits; false if there is no such key.
    pub async fn expire(&self, key: &[u8], seconds: u64) -> Result<bool, ClientError> {
        self.check_key(key)?;
        let op = Op::Expire(pb::ExpireCmd {
            key: Bytes::copy_from_slice(key),
            seconds,
        });
        match self.write(op).await? {
            Answer::Expire(r) => Ok(r.applied),
            other => Err(unexpected("EXPIRE", &other)),
        }
    }

    /// How long `key` has left.
    pub async fn ttl(&self, key: &[u8]) -> Result<Ttl, ClientError> {
        self.check_key(key)?;
        let request = pb::TtlRequest {
            key: Bytes::copy_from_slice(key),
        };
        let response = self
            .transport
            .call(|channel| {
                let request = request.clone();
                let mut kv = kv_client(channel, self.options());
                async move { Ok(kv.ttl(request).await?.into_inner()) }
            })
            .await?;
        Ok(match (response.found, response.seconds) {
            (false, _) => Ttl::NoKey,
            (true, None) => Ttl::NoExpiry,
            (true, Some(seconds)) => Ttl::Seconds(seconds),
        })
    }

    /// Writes `new` if the key's value is `expected` (`None`: the key must
    /// not exist).
    pub async fn cas(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<CasOutcome, ClientError> {
        self.check_key(key)?;
        if let Some(expected) = expected {
            self.check_value(expected)?;
        }
        self.check_value(new)?;
        let op = Op::Cas(pb::CasCmd {
            key: Bytes::copy_from_slice(key),
            expected: expected.map(Bytes::copy_from_slice),
            value: Bytes::copy_from_slice(new),
        });
        match self.write(op).await? {
            Answer::Cas(r) => Ok(CasOutcome {
                swapped: r.swapped,
                current: r.current,
            }),
            other => Err(unexpected("CAS", &other)),
        }
    }

    /// Sends one command through this client's session (registering it
    /// first if needed) and returns the state machine's answer. A refusal
    /// (`WriteResponse.error`) becomes [`ClientError::Rejected`].
    pub async fn write(&self, op: Op) -> Result<Answer, ClientError> {
        self.write_at(op).await.map(|(answer, _)| answer)
    }

    /// Proposes a state check (every replica hashes its state at the
    /// entry) and returns the entry's log index, where members' hashes
    /// can then be compared (see `StatusResponse::state_hashes`).
    pub async fn state_check(&self) -> Result<u64, ClientError> {
        match self.write_at(Op::StateCheck(pb::StateCheckCmd {})).await? {
            (Answer::StateCheck(_), index) => Ok(index),
            (other, _) => Err(unexpected("STATE-CHECK", &other)),
        }
    }

    /// [`Client::write`], with the log index of the entry that answered.
    pub async fn write_at(&self, op: Op) -> Result<(Answer, u64), ClientError> {
        if matches!(op, Op::Register(_)) {
            return Err(ClientError::InvalidArgument(
                "sessions are registered by the client itself".into(),
            ));
        }
        let command = pb::Command { op: Some(op) };
        let (response, session, retried) = self
            .through_session(|channel, session| {
                let request = pb::WriteRequest {
                    session: Some(session),
                    command: Some(command.clone()),
                };
                let mut kv = kv_client(channel, self.options());
                async move { Ok(kv.write(request).await?.into_inner()) }
            })
            .await?;
        match response.result {
            Some(Answer::Error(e)) => Err(self.refused(&session, e, retried, "write").await),
            Some(answer) => Ok((answer, response.index)),
            None => Err(ClientError::Other("empty write response".into())),
        }
    }

    /// Sends one request through this client's session (registering it
    /// first if needed): `attempt` makes each attempt with the session
    /// header, the same sequence number every time, so the cluster answers
    /// a retry of an applied request with its first answer. Returns the
    /// answer, the session, and whether an earlier attempt's outcome was
    /// unknown.
    pub(crate) async fn through_session<T, F, Fut>(
        &self,
        mut attempt: F,
    ) -> Result<(T, Arc<Session>, bool), ClientError>
    where
        F: FnMut(Chan, pb::Session) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let session = self.current_session().await?;
        let seq = session.begin();
        let (answer, retried) = self
            .transport
            .call_tracked(|channel| attempt(channel, seq.header()))
            .await?;
        Ok((answer, session, retried))
    }

    /// The error for a request (`what`) the cluster refused, `e`: when the
    /// cluster forgot the session, or the answer it kept for this request,
    /// the next request registers a new one, and if an earlier attempt may
    /// have taken effect, the refusal of the retry says nothing about it.
    pub(crate) async fn refused(
        &self,
        session: &Arc<Session>,
        e: pb::KvError,
        retried: bool,
        what: &str,
    ) -> ClientError {
        if e.code() != pb::kv_error::Code::SessionExpired {
            return ClientError::Rejected(e);
        }
        self.forget_session(session).await;
        if retried {
            ClientError::OutcomeUnknown(format!(
                "the {what} may or may not have been applied: an earlier attempt's outcome was \
                 unknown and the retry was refused ({})",
                e.message
            ))
        } else {
            ClientError::Rejected(e)
        }
    }

    /// This client's session, registering one on first use (concurrent
    /// first writes wait for the same registration).
    async fn current_session(&self) -> Result<Arc<Session>, ClientError> {
        let mut slot = self.session.lock().await;
        if let Some(session) = slot.as_ref() {
            return Ok(Arc::clone(session));
        }
        let client_id = register(&self.transport).await?;
        let session = Session::new(client_id);
        *slot = Some(Arc::clone(&session));
        Ok(session)
    }

    /// The cluster forgot `stale`: the next write registers a new session.
    async fn forget_session(&self, stale: &Arc<Session>) {
        let mut slot = self.session.lock().await;
        if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, stale)) {
            *slot = None;
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), ClientError> {
        let max = self.options().max_key_bytes;
        if key.is_empty() {
            Err(ClientError::InvalidArgument("empty key".into()))
        } else if key.len() > max {
            Err(ClientError::InvalidArgument(format!(
                "key too large: {} bytes (limit {max})",
                key.len()
            )))
        } else {
            Ok(())
        }
    }

    fn check_value(&self, value: &[u8]) -> Result<(), ClientError> {
        let max = self.options().max_value_bytes;
        if value.len() > max {
            Err(ClientError::InvalidArgument(format!(
                "value too large: {} bytes (limit {max})",
                value.len()
            )))
        } else {
            Ok(())
        }
    }
}

/// Opens a session. Registration is not deduplicated (there is no session
/// yet), so a retry may leave an unused session behind; the cluster expires it.
async fn register(transport: &Transport) -> Result<u64, ClientError> {
    let request = pb::WriteRequest {
        session: None,
        command: Some(pb::Command {
            op: Some(Op::Register(pb::RegisterSession {})),
        }),
    };
    let response = transport
        .call(|channel| {
            let request = request.clone();
            let mut kv = kv_client(channel, &transport.options);
            async move { Ok(kv.write(request).await?.into_inner()) }
        })
        .await?;
    match response.result {
        Some(Answer::Register(r)) => Ok(r.client_id),
        Some(Answer::Error(e)) => Err(ClientError::Rejected(e)),
        other => Err(ClientError::Other(format!(
            "unexpected answer to session registration: {other:?}"
        ))),
    }
}

/// A Kv stub whose message size limits follow the configured key and value
/// limits (the node sets the same, `crate::status::client_message_limit`).
fn kv_client(channel: Chan, options: &ClientOptions) -> KvClient<Chan> {
    let limit = crate::status::client_message_limit(options.max_key_bytes, options.max_value_bytes);
    KvClient::new(channel)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit)
}

fn unexpected(command: &str, answer: &Answer) -> ClientError {
    ClientError::Other(format!("unexpected answer to {command}: {answer:?}"))
}
