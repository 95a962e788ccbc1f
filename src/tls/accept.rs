//! The TLS side of a listening port: each connection's handshake runs in
//! its own task, bounded in time, so a slow or hostile client never holds
//! up the others; a refused one is logged in words and counted. The
//! accepted streams carry the client's certificates to the services, which
//! read them as tonic connect info ([`PeerCerts`]).

use super::explain::{Side, explain};
use super::load::{Reloadable, ServerFiles};
use futures::Stream;
use rustls_pki_types::CertificateDer;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

/// A client must finish its handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Who is at the other end of an accepted connection.
#[derive(Clone, Debug)]
pub struct PeerCerts {
    pub remote: SocketAddr,
    /// The certificate chain the client presented, leaf first (empty when
    /// the port does not ask for one).
    pub chain: Arc<Vec<CertificateDer<'static>>>,
}

/// An accepted TLS connection.
pub struct Accepted {
    io: TlsStream<TcpStream>,
    peer: PeerCerts,
}

impl Connected for Accepted {
    type ConnectInfo = PeerCerts;

    fn connect_info(&self) -> PeerCerts {
        self.peer.clone()
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Called with `(client address, why)` for each refused handshake.
pub type OnRefusal = Arc<dyn Fn(SocketAddr, &str) + Send + Sync>;

/// The accepted TLS connections of `listener`, for tonic's
/// `serve_with_incoming_shutdown`. Each handshake uses the configuration in
/// force when the connection arrived. The accept task ends (and the port
/// closes) on `stop` or when the server drops the stream.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloadable<ServerFiles>>,
    on_refusal: OnRefusal,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = io::Result<Accepted>> + Send + 'static {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let (tcp, remote) = tokio::select! {
                _ = &mut stop => return,
                _ = tx.closed() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of descriptors, say: wait rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = TlsAcceptor::from(tls.get());
            let tx = tx.clone();
            let on_refusal = on_refusal.clone();
            tokio::spawn(async move {
                // The hand-over to the server is bounded too: a server that
                // stopped taking connections must not pin this one open.
                let accept = async {
                    let accepted = handshake(acceptor, tcp, remote).await?;
                    let _ = tx.send(Ok(accepted)).await;
                    Ok(())
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                    Ok(Ok(())) => {}
                    Ok(Err(Refused::Quietly(why))) => {
                        tracing::debug!(client = %remote, why, "connection closed before TLS");
                    }
                    Ok(Err(Refused::Loudly(why))) => on_refusal(remote, &why),
                    Err(_) => on_refusal(remote, "no TLS handshake within 10 s"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Why a connection did not become a TLS session.
enum Refused {
    /// Closed or reset before saying anything: a TCP health check or a
    /// port scan, not worth a warning.
    Quietly(String),
    /// A client that spoke and was refused: logged and counted.
    Loudly(String),
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
) -> Result<Accepted, Refused> {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(0) => return Err(Refused::Quietly("closed before the handshake".into())),
        Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
            return Err(Refused::Loudly(
                "sent plaintext to a TLS port: the client must use TLS (raftctl: --cacert)".into(),
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(Refused::Quietly(e.to_string())),
    }
    let io = acceptor.accept(tcp).await.map_err(|e| {
        Refused::Loudly(
            match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(tls) => explain(tls, Side::Listener),
                None => e.to_string(),
            },
        )
    })?;
    let chain = io.get_ref().1.peer_certificates().unwrap_or_default();
    let chain = chain.iter().map(|c| c.clone().into_owned()).collect();
    Ok(Accepted {
        io,
        peer: PeerCerts {
            remote,
            chain: Arc::new(chain),
        },
    })
}
