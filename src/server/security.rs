//! TLS on a node's ports, from its settings (docs/security.md): the
//! listeners' and dialers' certificate files, a watcher that reloads them
//! when they change, and the check that a peer's certificate names the
//! member it claims to be.

use super::config::Config;
use super::peer_check::PeerHealth;
use crate::observe::Metrics;
use crate::tls::{
    self, ClientFiles, ClientTls, Load, PeerCerts, Reload, Reloadable, ServerFiles, TlsFiles,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::Status;

/// How often the certificate files are looked at (the kubelet updates a
/// mounted Secret within about a minute).
const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// The loaded TLS files of a node; `None` where a port is plaintext.
pub(crate) struct NodeTls {
    pub client_port: Option<Arc<Reloadable<ServerFiles>>>,
    /// To other members' client ports (auto-join asks the leader there).
    pub client_dialer: Option<ClientTls>,
    pub peer_port: Option<Arc<Reloadable<ServerFiles>>>,
    /// To other members' peer ports, presenting this member's certificate.
    pub peer_dialer: Option<ClientTls>,
}

impl NodeTls {
    /// Loads every configured file; the error names the setting and file.
    pub fn load(config: &Config) -> Result<NodeTls, String> {
        let client = match &config.tls.client {
            Some(c) => Some(port_and_dialer(&c.files, c.client_cert_auth, "client")?),
            None => None,
        };
        let peer = match &config.tls.peer {
            Some(files) => Some(port_and_dialer(files, true, "peer")?),
            None => None,
        };
        let (client_port, client_dialer) = client.unzip();
        let (peer_port, peer_dialer) = peer.unzip();
        Ok(NodeTls {
            client_port,
            client_dialer,
            peer_port,
            peer_dialer,
        })
    }

    /// Looks at the files every few seconds for as long as the node runs:
    /// reloads changed ones, and keeps the previous certificate (logging an
    /// error and setting `raftkv_tls_reload_failing`) when they do not load.
    /// Ends on `stop`.
    pub fn watch(
        &self,
        metrics: Metrics,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let client_port = self.client_port.clone();
        let client_dialer = self.client_dialer.clone();
        let peer_port = self.peer_port.clone();
        let peer_dialer = self.peer_dialer.clone();
        let look_all = move || {
            if let Some(r) = &client_port {
                look(r, "client-port", &metrics);
            }
            if let Some(d) = &client_dialer {
                look(d.files(), "client-dialer", &metrics);
            }
            if let Some(r) = &peer_port {
                look(r, "peer-port", &metrics);
            }
            if let Some(d) = &peer_dialer {
                look(d.files(), "peer-dialer", &metrics);
            }
        };
        let look_all = Arc::new(look_all);
        let looking = async move {
            loop {
                // File reads off the runtime: a hung volume must not stall
                // the node loop's threads.
                let look_all = look_all.clone();
                let _ = tokio::task::spawn_blocking(move || look_all()).await;
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        };
        async move {
            tokio::select! {
                () = looking => {}
                () = stop => {}
            }
        }
    }
}

/// One certificate on a port, served there and presented when dialing
/// that port of the other members; `what` names the port in errors.
fn port_and_dialer(
    files: &TlsFiles,
    require_client_cert: bool,
    what: &str,
) -> Result<(Arc<Reloadable<ServerFiles>>, ClientTls), String> {
    let port = ServerFiles {
        files: files.clone(),
        require_client_cert,
    };
    let port = Reloadable::new(port).map_err(|e| format!("{what} TLS: {e}"))?;
    let dialer = ClientFiles {
        ca: files.ca.clone(),
        identity: Some((files.cert.clone(), files.key.clone())),
    };
    let dialer = ClientTls::new(dialer).map_err(|e| format!("{what} TLS: {e}"))?;
    Ok((Arc::new(port), dialer))
}

fn look<F: Load>(files: &Reloadable<F>, name: &str, metrics: &Metrics) {
    match files.reload_if_changed() {
        Reload::Unchanged => {}
        Reload::Reloaded => tracing::info!(files = name, "reloaded TLS certificate"),
        Reload::Failed(e) => tracing::error!(
            files = name,
            error = %e,
            "new TLS files do not load; the previous certificate stays in force"
        ),
    }
    let failing = metrics.tls_reload_failing.with_label_values(&[name]);
    failing.set(files.failing() as i64);
    if let Some(at) = files.expires() {
        let expiry = metrics.tls_certificate_expiry.with_label_values(&[name]);
        expiry.set(at);
    }
}

/// Logs and counts each handshake a TLS port refused.
pub(crate) fn refusal_reporter(port: &'static str, metrics: Metrics) -> tls::OnRefusal {
    Arc::new(move |remote: SocketAddr, why: &str| {
        metrics
            .tls_handshake_failures
            .with_label_values(&[port])
            .inc();
        tracing::warn!(port, client = %remote, why, "TLS handshake refused");
    })
}

/// The check that a peer's certificate names the member its messages come
/// from (mutual TLS on the peer port): a valid certificate of member 1 is
/// refused on a stream whose messages claim member 2.
#[derive(Clone)]
pub struct MemberCheck {
    config: Arc<Config>,
    health: Arc<PeerHealth>,
}

impl MemberCheck {
    pub(crate) fn new(config: &Config, health: Arc<PeerHealth>) -> MemberCheck {
        MemberCheck {
            config: Arc::new(config.clone()),
            health,
        }
    }

    /// Admits a request whose messages claim to come from member `from`,
    /// or refuses it with PERMISSION_DENIED (logged, rate-limited).
    pub fn admit(&self, peer: Option<&PeerCerts>, from: u64) -> Result<(), Status> {
        let Some(leaf) = peer.and_then(|p| p.chain.first()) else {
            return Err(Status::unauthenticated(
                "the peer port requires a member certificate",
            ));
        };
        let host = self.config.peer_host(from);
        tls::identity::names_member(leaf, from, host.as_deref()).map_err(|why| {
            let remote = peer.map(|p| p.remote.to_string()).unwrap_or_default();
            let why = format!("a peer at {remote} claims to be member {from}, but {why}");
            self.health
                .complaints
                .error(&format!("impostor-{from}"), &why);
            Status::permission_denied(why)
        })
    }
}
