//! Getting one RPC answered by the leader: channels per node, redirects,
//! failover to other endpoints and exponential backoff under a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;
use tonic::Status;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::error::ClientError;
use super::failure::{Failure, classify};
use super::options::ClientOptions;
use super::route::Router;

/// Shared connection state of a client (one per [`Client`](super::Client)).
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) options: ClientOptions,
    router: Mutex<Router>,
    channels: Mutex<HashMap<String, Channel>>,
    /// The auth token of `options.credentials`, once authenticated (empty:
    /// the cluster does not need one). Any node verifies it.
    token: Mutex<Option<String>>,
}

/// A channel to one node that sends the client's auth token, if any.
pub(crate) type Chan = InterceptedService<Channel, TokenHeader>;

/// Adds the token to every request (metadata `authorization`).
#[derive(Clone, Debug)]
pub(crate) struct TokenHeader(Option<AsciiMetadataValue>);

impl Interceptor for TokenHeader {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            r.metadata_mut().insert("authorization", token.clone());
        }
        Ok(r)
    }
}

/// Builds the channel endpoint for `HOST:PORT`, or says why it is malformed.
pub(crate) fn endpoint(addr: &str, options: &ClientOptions) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    Ok(endpoint
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5)))
}

/// Exponential delays with jitter between rounds of failed attempts.
pub(crate) fn backoff(options: &ClientOptions) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(options.min_backoff)
        .with_max_delay(options.max_backoff)
        .with_jitter()
        .without_max_times()
        .build()
}

impl Transport {
    /// `endpoints` are normalized and valid (checked by `Client::connect`).
    pub(crate) fn new(endpoints: Vec<String>, options: ClientOptions) -> Transport {
        Transport {
            options,
            router: Mutex::new(Router::new(endpoints)),
            channels: Mutex::new(HashMap::new()),
            token: Mutex::new(None),
        }
    }

    fn cached_token(&self) -> MutexGuard<'_, Option<String>> {
        self.token.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token header for requests to `addr`: authenticates there with the
    /// credentials first if no token is cached. Also says whether the token
    /// is new (a new token that is refused will not get better).
    async fn token_header(
        &self,
        addr: &str,
        channel: &Channel,
    ) -> Result<(TokenHeader, bool), Status> {
        let Some(credentials) = &self.options.credentials else {
            return Ok((TokenHeader(None), false));
        };
        let cached = self.cached_token().clone();
        let (token, fresh) = match cached {
            Some(token) => (token, false),
            None => {
                let request = crate::pb::AuthenticateRequest {
                    user: credentials.user.clone(),
                    password: credentials.password.clone(),
                };
                let answer = crate::pb::auth_client::AuthClient::new(channel.clone())
                    .authenticate(request)
                    .await?
                    .into_inner();
                tracing::debug!(node = addr, "authenticated");
                *self.cached_token() = Some(answer.token.clone());
                (answer.token, true)
            }
        };
        if token.is_empty() {
            return Ok((TokenHeader(None), fresh));
        }
        let value: AsciiMetadataValue = MetadataValue::try_from(token.as_str())
            .map_err(|_| Status::internal("the node sent a token that is not ASCII"))?;
        Ok((TokenHeader(Some(value)), fresh))
    }

    pub(crate) fn router(&self) -> MutexGuard<'_, Router> {
        // The router holds no invariant a panicking holder could break.
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A lazily connecting channel to `addr`, shared by all calls to it.
    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let channel =
            crate::tls::lazy_channel(endpoint(addr, &self.options)?, self.options.tls.as_ref());
        channels.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }

    /// One attempt at one node, bounded by `limit`.
    async fn attempt<T, F, Fut>(
        &self,
        addr: &str,
        op: &mut F,
        limit: Duration,
    ) -> Result<T, Failure>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let channel = self
            .channel(addr)
            .map_err(|e| Failure::Unreachable(format!("{addr}: {e}")))?;
        let mut fresh = false;
        let run = async {
            // A refused authentication is final, not an expired token.
            fresh = true;
            let (header, new) = self.token_header(addr, &channel).await?;
            fresh = new;
            op(InterceptedService::new(channel.clone(), header)).await
        };
        match tokio::time::timeout(limit, run).await {
            Ok(Ok(value)) => Ok(value),
            // An expired or voided token: authenticate again and retry.
            Ok(Err(status))
                if status.code() == tonic::Code::Unauthenticated
                    && self.options.credentials.is_some()
                    && !fresh =>
            {
                *self.cached_token() = None;
                Err(Failure::Busy(format!(
                    "{addr}: {}; authenticating again",
                    status.message()
                )))
            }
            Ok(Err(status)) => match classify(&status) {
                Failure::Unreachable(detail) => {
                    Err(Failure::Unreachable(format!("{addr}: {detail}")))
                }
                other => Err(other),
            },
            Err(_) => Err(Failure::Unreachable(format!(
                "{addr}: no answer within {limit:?}"
            ))),
        }
    }

    /// Runs `op` against the leader until it succeeds, fails for good, or the
    /// deadline passes. `op` must be safe to repeat: writes carry the same
    /// session sequence number on every attempt.
    pub(crate) async fn call<T, F, Fut>(&self, op: F) -> Result<T, ClientError>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_tracked(op).await.map(|(value, _)| value)
    }

    /// [`call`](Self::call), also telling whether an earlier, failed attempt
    /// may have been executed by a node (its outcome was unknown, or the
    /// node stopped answering after the request may have reached it). A
    /// write's session refusal means "not applied" only when none was.
    pub(crate) async fn call_tracked<T, F, Fut>(&self, mut op: F) -> Result<(T, bool), ClientError>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut maybe_executed = false;
        let start = Instant::now();
        let deadline = start + self.options.timeout;
        let mut backoff = backoff(&self.options);
        // Attempts since the last backoff: redirects and failover are
        // immediate, but only for one pass over the endpoints.
        let mut hops = 0;
        let mut answered = false;
        // Endpoints tried without an answer, while no node has answered.
        let mut silent: Vec<String> = Vec::new();
        let mut last: Option<Failure> = None;
        // Why a node refused our TLS handshake: when no node answers at
        // all, that is the error to report, not "unreachable".
        let mut tls_refused: Option<String> = None;
        loop {
            let now = Instant::now();
            if now >= deadline || self.dial_given_up(answered, &silent, start) {
                if let (false, Some(why)) = (answered, tls_refused) {
                    return Err(ClientError::Other(why));
                }
                let endpoints = self.router().endpoints().join(",");
                return Err(exhausted(last, answered, &endpoints, start.elapsed()));
            }
            let target = self.router().target();
            let limit = (deadline - now).min(self.options.attempt_timeout);
            let failure = match self.attempt(&target, &mut op, limit).await {
                Ok(value) => {
                    self.router().set_leader(&target);
                    return Ok((value, maybe_executed));
                }
                Err(failure) => failure,
            };
            maybe_executed |= matches!(
                failure,
                Failure::OutcomeUnknown(_) | Failure::Unreachable(_) | Failure::Internal(_)
            );
            let immediate = match &failure {
                Failure::InvalidArgument(m) => return Err(ClientError::InvalidArgument(m.clone())),
                Failure::LearnerBehind { id, detail } => {
                    return Err(ClientError::LearnerBehind {
                        id: *id,
                        detail: detail.clone(),
                    });
                }
                Failure::Fatal(m) => return Err(ClientError::Other(m.clone())),
                Failure::NotLeader {
                    leader: Some(leader),
                    ..
                } if *leader != target => {
                    answered = true;
                    self.router().set_leader(leader);
                    true
                }
                Failure::NotLeader { .. } => {
                    answered = true;
                    self.router().failed(&target);
                    true
                }
                Failure::OutcomeUnknown(_) => {
                    // The leader lost leadership: look for the new one.
                    answered = true;
                    self.router().failed(&target);
                    false
                }
                Failure::Busy(_) => {
                    answered = true;
                    false
                }
                Failure::Internal(_) => {
                    // Not the request's fault: another node may serve it.
                    answered = true;
                    self.router().failed(&target);
                    false
                }
                Failure::Unreachable(_) | Failure::TlsRefused(_) => {
                    if let Failure::TlsRefused(why) = &failure {
                        tls_refused = Some(why.clone());
                    }
                    if !silent.contains(&target) {
                        silent.push(target.clone());
                    }
                    self.router().failed(&target);
                    true
                }
            };
            tracing::debug!(target = %target, failure = ?failure, "client attempt failed");
            last = Some(failure);
            hops += 1;
            if !immediate || hops > self.router().endpoints().len() {
                hops = 0;
                let delay = backoff.next().unwrap_or(self.options.max_backoff);
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(delay.min(left)).await;
            }
        }
    }

    /// Whether to stop retrying because the cluster looks down: the dial
    /// timeout has passed, no node answered, and every endpoint was tried.
    fn dial_given_up(&self, answered: bool, silent: &[String], start: Instant) -> bool {
        let Some(dial) = self.options.dial_timeout else {
            return false;
        };
        !answered
            && start.elapsed() >= dial
            && self.router().endpoints().iter().all(|e| silent.contains(e))
    }

    /// One attempt at the node `addr` itself (no redirect), for per-node RPCs.
    pub(crate) async fn call_at<T, F, Fut>(&self, addr: &str, mut op: F) -> Result<T, ClientError>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let limit = self.options.attempt_timeout.min(self.options.timeout);
        self.attempt(addr, &mut op, limit)
            .await
            .map_err(|failure| match failure {
                Failure::Unreachable(last) => ClientError::Unreachable {
                    endpoints: addr.to_string(),
                    last,
                },
                Failure::NotLeader { detail, .. } => ClientError::NoLeader(detail),
                Failure::InvalidArgument(m) => ClientError::InvalidArgument(m),
                Failure::LearnerBehind { id, detail } => ClientError::LearnerBehind { id, detail },
                Failure::OutcomeUnknown(m)
                | Failure::Busy(m)
                | Failure::Internal(m)
                | Failure::TlsRefused(m)
                | Failure::Fatal(m) => ClientError::Other(m),
            })
    }
}

/// The error for a deadline that passed; `last` is the last attempt's failure.
fn exhausted(
    last: Option<Failure>,
    answered: bool,
    endpoints: &str,
    after: Duration,
) -> ClientError {
    match last {
        Some(Failure::Unreachable(last)) if !answered => ClientError::Unreachable {
            endpoints: endpoints.to_string(),
            last,
        },
        Some(failure @ (Failure::NotLeader { .. } | Failure::Unreachable(_))) => {
            ClientError::NoLeader(failure.detail().to_string())
        }
        Some(failure) => ClientError::Timeout {
            after,
            last: failure.detail().to_string(),
        },
        None => ClientError::Timeout {
            after,
            last: "the deadline passed before any attempt".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(10);

    #[test]
    fn only_silence_everywhere_is_unreachable() {
        let e = exhausted(
            Some(Failure::Unreachable("a: refused".into())),
            false,
            "a,b",
            AFTER,
        );
        assert!(matches!(e, ClientError::Unreachable { ref endpoints, .. } if endpoints == "a,b"));
        let e = exhausted(
            Some(Failure::Unreachable("a: refused".into())),
            true,
            "a,b",
            AFTER,
        );
        assert!(matches!(e, ClientError::NoLeader(_)));
    }

    #[test]
    fn no_leader_and_unknown_outcomes_map_to_their_variants() {
        let not_leader = Failure::NotLeader {
            leader: None,
            detail: "not leader; no leader known".into(),
        };
        assert!(matches!(
            exhausted(Some(not_leader), true, "a", AFTER),
            ClientError::NoLeader(m) if m == "not leader; no leader known"
        ));
        assert!(matches!(
            exhausted(Some(Failure::OutcomeUnknown("outcome unknown".into())), true, "a", AFTER),
            ClientError::Timeout { last, .. } if last == "outcome unknown"
        ));
        assert!(matches!(
            exhausted(None, false, "a", AFTER),
            ClientError::Timeout { .. }
        ));
    }

    #[test]
    fn endpoint_rejects_malformed_addresses() {
        let options = ClientOptions::default();
        assert!(endpoint("127.0.0.1:7379", &options).is_ok());
        assert!(endpoint("bad host:1", &options).is_err());
    }
}
