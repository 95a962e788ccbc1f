//! The TLS side of a dialed connection: a connector for tonic channels
//! that verifies the node's certificate against the configured CA and, if
//! configured, presents ours. A refused handshake becomes a
//! [`HandshakeFailed`] that callers find in the error's source chain, so
//! raftctl can say what was wrong and stop retrying a pairing that cannot
//! work.

use super::explain::{Side, explain, is_verdict};
use super::load::{ClientFiles, Reloadable, TlsError};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::io;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// The dialing side's TLS files, shared by every channel that dials with
/// them (and reloaded in place, see [`Reloadable`]).
#[derive(Clone, Debug)]
pub struct ClientTls(Arc<Reloadable<ClientFiles>>);

impl ClientTls {
    /// Loads the files; the error names the file at fault.
    pub fn new(files: ClientFiles) -> Result<ClientTls, TlsError> {
        Ok(ClientTls(Arc::new(Reloadable::new(files)?)))
    }

    /// The reloadable files, for a watcher.
    pub fn files(&self) -> &Reloadable<ClientFiles> {
        &self.0
    }
}

/// A TLS handshake that the other side or we refused: a verdict on the
/// certificates or the protocol, not a broken connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS with {addr}: {why}")]
pub struct HandshakeFailed {
    pub addr: String,
    pub why: String,
}

/// The [`HandshakeFailed`] somewhere in `e`'s source chain (tonic and
/// hyper wrap it in their own errors and in `io::Error`).
pub fn handshake_failure<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a HandshakeFailed> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<HandshakeFailed>() {
            return Some(h);
        }
        // io::Error's `source` skips the error it wraps.
        if let Some(h) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<HandshakeFailed>())
        {
            return Some(h);
        }
        next = e.source();
    }
    None
}

/// A channel over TLS (when `tls` is set) that connects on first use.
pub fn lazy_channel(endpoint: Endpoint, tls: Option<&ClientTls>) -> Channel {
    match tls {
        None => endpoint.connect_lazy(),
        Some(tls) => endpoint.connect_with_connector_lazy(connector(tls.clone())),
    }
}

/// A channel over TLS (when `tls` is set), connected now.
pub async fn channel(
    endpoint: Endpoint,
    tls: Option<&ClientTls>,
) -> Result<Channel, tonic::transport::Error> {
    match tls {
        None => endpoint.connect().await,
        Some(tls) => {
            endpoint
                .connect_with_connector(connector(tls.clone()))
                .await
        }
    }
}

type Connecting = std::pin::Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

fn connector(
    tls: ClientTls,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = io::Error,
    Future = Connecting,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: Uri| -> Connecting {
        let tls = tls.clone();
        Box::pin(async move { dial(&tls, &uri).await.map(TokioIo::new) })
    })
}

async fn dial(
    tls: &ClientTls,
    uri: &Uri,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in address"))?;
    let port = uri.port_u16().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = format!("{host}:{port}");
    let name = ServerName::try_from(bare.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{bare}: {e}")))?;
    let tcp = TcpStream::connect(&addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(tls.0.get())
        .connect(name, tcp)
        .await
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(verdict) if is_verdict(verdict) => io::Error::other(HandshakeFailed {
                    addr: addr.clone(),
                    why: explain(verdict, Side::Dialer),
                }),
                _ => e,
            },
        )
}
