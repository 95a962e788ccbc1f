//! `raftctl local --tls`: a CA and the certificates of a secure local
//! cluster, kept in DATA_DIR/tls and reused when the cluster resumes. Every
//! node gets a certificate naming its member id (for the peer port) and
//! valid for 127.0.0.1 and localhost (for both ports); raftctl gets a
//! client certificate for user `root`.

use std::path::{Path, PathBuf};

use crate::tls::generate::{Authority, Leaf};
use crate::tls::{ClientFiles, ClientTls};

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const CLIENT: &str = "client";

/// The certificate directory of a local cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCerts {
    dir: PathBuf,
}

impl LocalCerts {
    /// Opens `data_dir`/tls, making the CA and the client certificate the
    /// first time.
    pub fn open(data_dir: &Path) -> Result<LocalCerts, String> {
        let certs = LocalCerts {
            dir: data_dir.join("tls"),
        };
        if !certs.ca().exists() {
            std::fs::create_dir_all(&certs.dir)
                .map_err(|e| format!("cannot create {}: {e}", certs.dir.display()))?;
            let ca = Authority::new("raftkv local CA").map_err(|e| e.to_string())?;
            certs.write(CA_KEY, &ca.key_pem)?;
            certs.write(CA_CERT, &ca.cert_pem)?;
        }
        let (cert, _) = certs.client();
        if !lasts(&cert) {
            certs.issue(CLIENT, &Leaf::user("root"))?;
        }
        Ok(certs)
    }

    /// The CA's certificate (raftctl's `--cacert`).
    pub fn ca(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// raftctl's certificate and key (`--cert`, `--key`), for user root.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        self.pair(CLIENT)
    }

    /// The TLS raftctl dials the local cluster with.
    pub fn client_tls(&self) -> Result<ClientTls, String> {
        let (cert, key) = self.client();
        ClientTls::new(ClientFiles {
            ca: self.ca(),
            identity: Some((cert, key)),
        })
        .map_err(|e| e.to_string())
    }

    /// Node `id`'s flags: its certificate on both ports, client
    /// certificates required. The certificate is made on first use.
    pub fn server_args(&self, id: u64) -> Result<Vec<String>, String> {
        let name = format!("node-{id}");
        let (cert, key) = self.pair(&name);
        if !lasts(&cert) {
            let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
            self.issue(&name, &Leaf::member(id, &hosts))?;
        }
        let (cert, key, ca) = (
            cert.display().to_string(),
            key.display().to_string(),
            self.ca().display().to_string(),
        );
        Ok(vec![
            "--cert-file".into(),
            cert.clone(),
            "--key-file".into(),
            key.clone(),
            "--trusted-ca-file".into(),
            ca.clone(),
            "--client-cert-auth".into(),
            "--peer-cert-file".into(),
            cert,
            "--peer-key-file".into(),
            key,
            "--peer-trusted-ca-file".into(),
            ca,
        ])
    }

    fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        )
    }

    fn issue(&self, name: &str, leaf: &Leaf) -> Result<(), String> {
        let read = |f: &str| {
            std::fs::read_to_string(self.dir.join(f))
                .map_err(|e| format!("cannot read {}: {e}", self.dir.join(f).display()))
        };
        let ca = Authority::load(&read(CA_CERT)?, &read(CA_KEY)?)
            .map_err(|e| format!("the local CA in {} does not load: {e}", self.dir.display()))?;
        let pair = ca.issue(leaf).map_err(|e| e.to_string())?;
        self.write(&format!("{name}.key"), &pair.key_pem)?;
        self.write(&format!("{name}.crt"), &pair.cert_pem)
    }

    /// Writes `file` whole (a temporary file renamed), readable by its
    /// owner only: keys are secrets.
    fn write(&self, file: &str, text: &str) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(file);
        let temporary = path.with_extension("tmp");
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&temporary, &path));
        result.map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

/// Whether the certificate at `path` exists and stays valid for another
/// month; a cluster resumed after a long pause gets new ones, from its CA.
fn lasts(path: &Path) -> bool {
    use rustls_pki_types::pem::PemObject;
    const MONTH: i64 = 30 * 24 * 3600;
    let Ok(der) = rustls_pki_types::CertificateDer::from_pem_file(path) else {
        return false;
    };
    crate::tls::identity::validity(&der)
        .is_ok_and(|(_, until)| until > crate::tls::identity::now() + MONTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_made_once_and_name_their_member() {
        let dir = tempfile::tempdir().unwrap();
        let certs = LocalCerts::open(dir.path()).unwrap();
        let args = certs.server_args(1).unwrap();
        assert!(args.contains(&"--client-cert-auth".to_string()));
        let cert = std::fs::read(dir.path().join("tls/node-1.crt")).unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(&cert).unwrap();
        assert_eq!(crate::tls::identity::member_uris(&der).unwrap(), vec![1]);
        // Opening again reuses the CA: node 1's certificate still verifies.
        let ca_before = std::fs::read(certs.ca()).unwrap();
        let again = LocalCerts::open(dir.path()).unwrap();
        again.server_args(2).unwrap();
        assert_eq!(std::fs::read(again.ca()).unwrap(), ca_before);
        assert_eq!(
            std::fs::read(dir.path().join("tls/node-1.crt")).unwrap(),
            cert
        );
        let key = dir.path().join("tls/node-1.key");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "keys are private");
        assert!(again.client_tls().is_ok());
    }
}
