//! Certificate, key and CA files, loaded into rustls configurations and
//! reloaded when their contents change (the kubelet rewrites a mounted
//! Secret in place). A new set that does not load leaves the previous one
//! in force.

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use xxhash_rust::xxh3::Xxh3;

/// A certificate, its private key and the CA that verifies the other side,
/// as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Why a set of TLS files does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("{path}: the certificate expired at {when}")]
    Expired { path: PathBuf, when: String },
    #[error("{path}: the certificate is not valid before {when}")]
    NotYetValid { path: PathBuf, when: String },
    #[error("{cert} and {key} do not go together: the key is not the certificate's")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// A kind of TLS files and the rustls configuration they make.
pub trait Load {
    type Output: Send + Sync;
    /// The files, in a fixed order (their contents decide a reload).
    fn paths(&self) -> Vec<&Path>;
    /// Builds the configuration from the files' contents, in `paths` order.
    fn build(&self, contents: &[Vec<u8>]) -> Result<Self::Output, TlsError>;
    /// The moment (Unix seconds) this side's own certificate expires, if it
    /// presents one.
    fn expires(&self, contents: &[Vec<u8>]) -> Option<i64>;
}

/// The listening side: our certificate, and the CA that client
/// certificates must chain to when they are required.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    pub files: TlsFiles,
    /// Refuse clients without a certificate signed by `files.ca`.
    pub require_client_cert: bool,
}

/// The dialing side: the CA that the server's certificate must chain to,
/// and our own certificate when the server asks for one.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    pub ca: PathBuf,
    /// Certificate and key presented to servers that require one.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl Load for ServerFiles {
    type Output = ServerConfig;

    fn paths(&self) -> Vec<&Path> {
        vec![&self.files.cert, &self.files.key, &self.files.ca]
    }

    fn build(&self, contents: &[Vec<u8>]) -> Result<ServerConfig, TlsError> {
        let f = &self.files;
        let key = certified_key(&f.cert, &contents[0], &f.key, &contents[1])?;
        let roots = roots(&f.ca, &contents[2])?;
        let provider = provider();
        let verifier = if self.require_client_cert {
            WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| invalid(&f.ca, e))?
        } else {
            WebPkiClientVerifier::no_client_auth()
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&f.cert, e))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    fn expires(&self, contents: &[Vec<u8>]) -> Option<i64> {
        leaf_not_after(&contents[0])
    }
}

impl Load for ClientFiles {
    type Output = ClientConfig;

    fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.ca.as_path()];
        if let Some((cert, key)) = &self.identity {
            paths.extend([cert.as_path(), key.as_path()]);
        }
        paths
    }

    fn build(&self, contents: &[Vec<u8>]) -> Result<ClientConfig, TlsError> {
        let roots = roots(&self.ca, &contents[0])?;
        let provider = provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| invalid(&self.ca, e))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&self.ca, e))?
            .with_webpki_verifier(verifier);
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let ck = certified_key(cert, &contents[1], key, &contents[2])?;
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(ck)))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    fn expires(&self, contents: &[Vec<u8>]) -> Option<i64> {
        self.identity
            .as_ref()
            .and_then(|_| leaf_not_after(&contents[1]))
    }
}

/// What a look at the files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The files are as they were.
    Unchanged,
    /// New contents loaded and now in force.
    Reloaded,
    /// New contents that do not load; the previous configuration stays.
    Failed(TlsError),
}

/// A configuration built from files, rebuilt when their contents change.
pub struct Reloadable<F: Load> {
    files: F,
    state: RwLock<State<F::Output>>,
}

struct State<T> {
    config: Arc<T>,
    /// Contents hash of the files `config` was built from.
    loaded: u64,
    /// Contents hash of the last set that failed to load (not retried
    /// unless `retry`).
    failed: Option<u64>,
    /// The failure may pass with time (a certificate not valid yet).
    retry: bool,
    expires: Option<i64>,
}

impl<F: Load> Reloadable<F> {
    /// The files this configuration is built from.
    pub fn files(&self) -> &F {
        &self.files
    }

    /// Loads the files; an error names the file and what is wrong with it.
    pub fn new(files: F) -> Result<Self, TlsError> {
        let (hash, contents) = read_all(&files.paths())?;
        let config = files.build(&contents)?;
        let expires = files.expires(&contents);
        Ok(Reloadable {
            files,
            state: RwLock::new(State {
                config: Arc::new(config),
                loaded: hash,
                failed: None,
                retry: false,
                expires,
            }),
        })
    }

    /// The configuration in force.
    pub fn get(&self) -> Arc<F::Output> {
        self.state().config.clone()
    }

    /// When the certificate in force expires (Unix seconds), if we present one.
    pub fn expires(&self) -> Option<i64> {
        self.state().expires
    }

    /// Whether the files on disk differ from the ones in force and do not load.
    pub fn failing(&self) -> bool {
        self.state().failed.is_some()
    }

    /// Reads the files and, if their contents changed, rebuilds. A failure
    /// is reported once per new contents (a reader that sees the same bad
    /// files again gets `Unchanged`, and `failing` stays true).
    pub fn reload_if_changed(&self) -> Reload {
        let read = read_all(&self.files.paths());
        // The files are read one by one: a certificate and key being
        // swapped right now can mismatch. Two equal reads mean a settled set.
        if let (Ok((first, _)), Ok((second, _))) = (&read, &read_all(&self.files.paths()))
            && first != second
        {
            return Reload::Unchanged;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let (hash, contents) = match read {
            Ok(r) => r,
            Err(e) => {
                // A file being replaced can be missing for a moment: the
                // next look decides. Reported once per distinct error.
                let hash = xxhash_rust::xxh3::xxh3_64(e.to_string().as_bytes());
                if state.failed == Some(hash) {
                    return Reload::Unchanged;
                }
                state.failed = Some(hash);
                return Reload::Failed(e);
            }
        };
        if hash == state.loaded {
            state.failed = None;
            return Reload::Unchanged;
        }
        if state.failed == Some(hash) && !state.retry {
            return Reload::Unchanged;
        }
        match self.files.build(&contents) {
            Ok(config) => {
                state.config = Arc::new(config);
                state.loaded = hash;
                state.failed = None;
                state.expires = self.files.expires(&contents);
                Reload::Reloaded
            }
            Err(e) => {
                // A certificate not valid yet becomes valid by itself (the
                // issuer's clock ran ahead): look again, report once.
                let again = state.failed == Some(hash);
                state.retry = matches!(e, TlsError::NotYetValid { .. });
                state.failed = Some(hash);
                if again {
                    Reload::Unchanged
                } else {
                    Reload::Failed(e)
                }
            }
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State<F::Output>> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl<F: Load + std::fmt::Debug> std::fmt::Debug for Reloadable<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("files", &self.files)
            .finish()
    }
}

/// The crypto of every TLS connection: ring, as the Kubernetes client uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_all(paths: &[&Path]) -> Result<(u64, Vec<Vec<u8>>), TlsError> {
    let mut hash = Xxh3::new();
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        hash.update(&(bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
        contents.push(bytes);
    }
    Ok((hash.digest(), contents))
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// The certificates of a PEM file, leaf first.
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE block in PEM format".into(),
        });
    }
    Ok(certs)
}

/// A certificate chain and its key, checked: the leaf is valid now and the
/// key is the leaf's.
fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert_path, cert_pem)?;
    check_validity(cert_path, &chain[0])?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: key_path.to_path_buf(),
        what: format!("no private key in PEM format: {e}"),
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        },
        e => invalid(key_path, e),
    })
}

/// The CAs of a PEM file.
fn roots(path: &Path, pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, pem)? {
        roots.add(cert).map_err(|e| invalid(path, e))?;
    }
    Ok(Arc::new(roots))
}

/// Refuses a certificate outside its validity period: a node that starts
/// with one would only be refused by every peer and client.
fn check_validity(path: &Path, der: &CertificateDer<'_>) -> Result<(), TlsError> {
    let (not_before, not_after) = super::identity::validity(der).map_err(|why| TlsError::Pem {
        path: path.to_path_buf(),
        what: why,
    })?;
    let now = super::identity::now();
    if now > not_after {
        return Err(TlsError::Expired {
            path: path.to_path_buf(),
            when: super::identity::utc(not_after),
        });
    }
    if now < not_before {
        return Err(TlsError::NotYetValid {
            path: path.to_path_buf(),
            when: super::identity::utc(not_before),
        });
    }
    Ok(())
}

fn leaf_not_after(pem: &[u8]) -> Option<i64> {
    let cert = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    super::identity::validity(&cert)
        .ok()
        .map(|(_, after)| after)
}
