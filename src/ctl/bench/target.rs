//! What the load generator drives, behind one small trait, so that raftkv
//! and etcd are measured by the same workers, schedule and histograms.

use std::future::Future;

use bytes::Bytes;

use crate::client::Client;
use crate::ctl::exit::CtlError;

/// One client connection of the system under test. A worker owns one and
/// sends one request at a time on it.
pub trait Target: Send + 'static {
    /// Writes `value` at `key`; Ok once the system acknowledged it.
    fn set(
        &mut self,
        key: &[u8],
        value: &Bytes,
    ) -> impl Future<Output = Result<(), CtlError>> + Send;
    /// A linearizable read of `key` (its value is dropped).
    fn get(&mut self, key: &[u8]) -> impl Future<Output = Result<(), CtlError>> + Send;
}

impl Target for Client {
    async fn set(&mut self, key: &[u8], value: &Bytes) -> Result<(), CtlError> {
        Client::set(self, key, value).await.map_err(CtlError::from)
    }

    async fn get(&mut self, key: &[u8]) -> Result<(), CtlError> {
        Client::get(self, key)
            .await
            .map(drop)
            .map_err(CtlError::from)
    }
}
