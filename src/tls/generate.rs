//! Making a CA and certificates signed by it: `raftctl local --tls` and the
//! tests use this; production clusters bring their own (cert-manager, an
//! existing Secret).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

/// A certificate authority that can sign leaves.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate and its private key, PEM-encoded.
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pair {
    /// The certificate in DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("rcgen writes valid PEM")
    }
}

/// What a leaf certificate says.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The subject's common name (a user's name for a client certificate).
    pub common_name: String,
    /// DNS names and IP addresses it is valid for.
    pub hosts: Vec<String>,
    /// The member it names by URI SAN (see `identity`).
    pub member: Option<u64>,
    /// Usable by a server (and, always, by a client).
    pub server: bool,
    /// Validity, in days from now: the start (negative: in the past) and the end.
    pub from_days: i64,
    pub until_days: i64,
}

impl Leaf {
    /// A member's certificate: it serves both ports and dials its peers.
    pub fn member(id: u64, hosts: &[String]) -> Leaf {
        Leaf {
            member: Some(id),
            ..Leaf::server(&format!("raftkv member {id}"), hosts)
        }
    }

    /// A server certificate without a member name.
    pub fn server(common_name: &str, hosts: &[String]) -> Leaf {
        Leaf {
            common_name: common_name.to_string(),
            hosts: hosts.to_vec(),
            member: None,
            server: true,
            from_days: -1,
            until_days: 365,
        }
    }

    /// A client certificate for user `name`.
    pub fn user(name: &str) -> Leaf {
        Leaf {
            server: false,
            ..Leaf::server(name, &[])
        }
    }
}

impl Authority {
    /// A new self-signed CA, valid for ten years.
    pub fn new(name: &str) -> Result<Authority, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            key_pem,
        })
    }

    /// Signs a new key pair's certificate as `leaf` says.
    pub fn issue(&self, leaf: &Leaf) -> Result<Pair, rcgen::Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.common_name.as_str());
        for host in &leaf.hosts {
            params.subject_alt_names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into()?),
            });
        }
        if let Some(id) = leaf.member {
            let uri = format!("{}{id}", super::identity::MEMBER_URI_PREFIX);
            params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if leaf.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now + Duration::days(leaf.from_days);
        params.not_after = now + Duration::days(leaf.until_days);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
