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
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A TLS refusal somewhere in `e`'s source chain, in words: a
/// [`HandshakeFailed`] from our connector, or an alert the node sent after
/// the handshake (with TLS 1.3 a server judges the client's certificate
/// after the client has finished). tonic and hyper wrap both in their own
/// errors and in `io::Error`.
pub fn handshake_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(e) = next {
        // io::Error's `source` skips the error it wraps: look inside.
        let inner = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for e in [Some(e), inner].into_iter().flatten() {
            if let Some(h) = e.downcast_ref::<HandshakeFailed>() {
                return Some(h.to_string());
            }
            if let Some(tls) = e.downcast_ref::<rustls::Error>()
                && is_verdict(tls)
            {
                return Some(format!("TLS: {}", explain(tls, Side::Dialer)));
            }
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
    let mut config = tls.0.get();
    let asked = Arc::new(AskedForCertificate::default());
    if tls.0.files().identity.is_none() {
        let mut own = (*config).clone();
        own.client_auth_cert_resolver = asked.clone();
        config = Arc::new(own);
    }
    let refused = |why: String| {
        io::Error::other(HandshakeFailed {
            addr: addr.clone(),
            why,
        })
    };
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(verdict) if is_verdict(verdict) => refused(explain(verdict, Side::Dialer)),
                _ => e,
            },
        )?;
    // With TLS 1.3 our side finishes before the node judges our (missing)
    // certificate; its alert would then reach hyper as a closed connection.
    if asked.0.load(Ordering::Relaxed) {
        return Err(refused(
            "the node requires a client certificate (raftctl: --cert and --key)".into(),
        ));
    }
    Ok(stream)
}

/// Presents no certificate, and remembers whether the node asked for one.
#[derive(Debug, Default)]
struct AskedForCertificate(AtomicBool);

impl rustls::client::ResolvesClientCert for AskedForCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.store(true, Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}
