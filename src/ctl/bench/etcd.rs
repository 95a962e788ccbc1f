//! `raftctl bench --target etcd`: the same load against etcd's v3 API, to
//! compare the two systems with one load generator (docs/performance.md).
//! Built only with `--features etcd`: the client crate compiles etcd's
//! protocol with `protoc`, which raftkv's own build does not need.

use bytes::Bytes;
use etcd_client::Client;

use super::target::Target;
use crate::ctl::exit::{CtlError, Exit};

/// One etcd client: its own gRPC connection(s) to `endpoints`, which it
/// balances over as etcd's clients do by default (a follower forwards a
/// write to its leader).
pub struct Etcd(Client);

impl Etcd {
    pub async fn connect(endpoints: &[String]) -> Result<Etcd, CtlError> {
        Client::connect(endpoints, None)
            .await
            .map(Etcd)
            .map_err(|e| CtlError::new(Exit::Unreachable, format!("etcd at {endpoints:?}: {e}")))
    }
}

fn failed(e: etcd_client::Error) -> CtlError {
    CtlError::error(format!("etcd: {e}"))
}

impl Target for Etcd {
    async fn set(&mut self, key: &[u8], value: &Bytes) -> Result<(), CtlError> {
        self.0
            .put(key, value.to_vec(), None)
            .await
            .map(drop)
            .map_err(failed)
    }

    async fn get(&mut self, key: &[u8]) -> Result<(), CtlError> {
        // The default range is linearizable (not serializable), as raftkv's
        // GET is.
        self.0.get(key, None).await.map(drop).map_err(failed)
    }
}
