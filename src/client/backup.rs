//! Taking a backup: the leader's snapshot stream (docs/operations.md,
//! "Backup and restore"). Opening the stream follows redirects and retries
//! like any request to the leader; once open, the stream is read to its
//! end or fails (a backup is not resumed halfway: take it again).

use std::time::Duration;

use bytes::Bytes;
use tonic::Streaming;

use super::Client;
use super::error::ClientError;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::{self, snapshot_chunk::Part};

/// An open backup stream: its header, then [`SnapshotDownload::next`]
/// until the trailer.
#[derive(Debug)]
pub struct SnapshotDownload {
    pub header: pb::SnapshotHeader,
    stream: Streaming<pb::SnapshotChunk>,
    stall: Duration,
    done: bool,
}

/// What follows the header: data, then one trailer.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotPiece {
    Data(Bytes),
    Trailer(pb::SnapshotTrailer),
}

impl Client {
    /// Asks the leader for a consistent snapshot (every write acknowledged
    /// before this call is in it) and reads its header. `stall` bounds the
    /// wait for each message once the stream is open: the leader encodes
    /// its state before the header, which takes about a second per million
    /// keys.
    pub async fn snapshot(&self, stall: Duration) -> Result<SnapshotDownload, ClientError> {
        let stream = self
            .transport
            .call(|channel| async move {
                Ok(ClusterClient::new(channel)
                    .snapshot(pb::SnapshotRequest {})
                    .await?
                    .into_inner())
            })
            .await?;
        let mut download = SnapshotDownload {
            header: pb::SnapshotHeader::default(),
            stream,
            stall,
            done: false,
        };
        match download.part().await? {
            Part::Header(header) => download.header = header,
            other => return Err(out_of_order("the header", &other)),
        }
        Ok(download)
    }
}

impl SnapshotDownload {
    /// The next piece after the header; an error after the trailer.
    pub async fn next(&mut self) -> Result<SnapshotPiece, ClientError> {
        if self.done {
            return Err(ClientError::Other(
                "the snapshot stream already ended with its trailer".into(),
            ));
        }
        match self.part().await? {
            Part::Data(data) => Ok(SnapshotPiece::Data(data)),
            Part::Trailer(trailer) => {
                self.done = true;
                Ok(SnapshotPiece::Trailer(trailer))
            }
            other => Err(out_of_order("data or the trailer", &other)),
        }
    }

    async fn part(&mut self) -> Result<Part, ClientError> {
        let message = match tokio::time::timeout(self.stall, self.stream.message()).await {
            Err(_) => {
                return Err(ClientError::Timeout {
                    after: self.stall,
                    last: "the leader sent no snapshot data meanwhile".into(),
                });
            }
            Ok(Err(status)) => {
                return Err(ClientError::Other(format!(
                    "the snapshot stream failed: {}",
                    status.message()
                )));
            }
            Ok(Ok(message)) => message,
        };
        match message {
            Some(pb::SnapshotChunk { part: Some(part) }) => Ok(part),
            Some(pb::SnapshotChunk { part: None }) => Err(ClientError::Other(
                "the leader sent an empty snapshot message".into(),
            )),
            None => Err(ClientError::Other(
                "the snapshot stream ended before its trailer (the leader stopped or lost \
                 leadership): take the backup again"
                    .into(),
            )),
        }
    }
}

fn out_of_order(expected: &str, got: &Part) -> ClientError {
    let got = match got {
        Part::Header(_) => "a header",
        Part::Data(_) => "data",
        Part::Trailer(_) => "a trailer",
    };
    ClientError::Other(format!(
        "the snapshot stream is out of order: expected {expected}, got {got}"
    ))
}
