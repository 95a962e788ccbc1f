//! What a certificate says about who presents it: its validity period, and
//! for a peer, which member it is (docs/security.md, "Member identity").
//!
//! A member is named by a URI SAN `urn:raftkv:member:<id>` or, when the
//! certificate carries no such URI, by the exact DNS name of its peer
//! address (its StatefulSet DNS name). URI names decide alone: a
//! certificate that names member 1 by URI is member 1's whatever DNS names
//! it also carries. IP addresses never identify a member (members on one
//! machine share them), and neither does a wildcard DNS name (it would fit
//! every member).

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The URI SAN prefix naming a member: `urn:raftkv:member:2` is member 2.
pub const MEMBER_URI_PREFIX: &str = "urn:raftkv:member:";

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// `(not_before, not_after)` in Unix seconds.
pub fn validity(der: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    let cert = parse(der)?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Now, in Unix seconds (certificates are checked against the wall clock).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A Unix time as RFC 3339, for messages.
pub fn utc(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} (Unix time)"))
}

/// The member ids a certificate names by URI SAN.
pub fn member_uris(der: &CertificateDer<'_>) -> Result<Vec<u64>, String> {
    Ok(names(der)?
        .uris
        .iter()
        .filter_map(|u| u.strip_prefix(MEMBER_URI_PREFIX))
        .filter_map(|id| id.parse().ok())
        .collect())
}

/// The subject's common name, if any (names the user of a client certificate).
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let cert = parse(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

struct Names {
    dns: Vec<String>,
    uris: Vec<String>,
}

fn names(der: &CertificateDer<'_>) -> Result<Names, String> {
    let cert = parse(der)?;
    let mut names = Names {
        dns: Vec::new(),
        uris: Vec::new(),
    };
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("unreadable subject alternative names: {e}"))?;
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => names.dns.push(d.to_ascii_lowercase()),
            GeneralName::URI(u) => names.uris.push(u.to_string()),
            _ => {}
        }
    }
    Ok(names)
}

/// Checks that a peer's certificate (its leaf, already verified against
/// the cluster's CA) names member `id`, whose peer host is `host` if known.
/// The error says what the certificate names instead.
pub fn names_member(der: &CertificateDer<'_>, id: u64, host: Option<&str>) -> Result<(), String> {
    let members = member_uris(der)?;
    if !members.is_empty() {
        if members.contains(&id) {
            return Ok(());
        }
        let theirs: Vec<String> = members.iter().map(|m| format!("member {m}'s")).collect();
        return Err(format!(
            "the certificate is {}, not member {id}'s",
            theirs.join(" and ")
        ));
    }
    let dns = names(der)?.dns;
    let named_host = host.filter(|h| h.parse::<std::net::IpAddr>().is_err());
    if let Some(h) = named_host {
        if dns.iter().any(|d| d == &h.to_ascii_lowercase()) {
            return Ok(());
        }
    }
    let wanted = match named_host {
        Some(h) => format!("{MEMBER_URI_PREFIX}{id} nor the DNS name {h}"),
        None => format!("{MEMBER_URI_PREFIX}{id} (a URI SAN)"),
    };
    let has = if dns.is_empty() {
        "no member name".to_string()
    } else {
        format!("only {}", dns.join(", "))
    };
    Err(format!(
        "the certificate names neither {wanted}: it has {has}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate::{Authority, Leaf};

    fn leaf(leaf: Leaf) -> CertificateDer<'static> {
        let ca = Authority::new("test CA").unwrap();
        ca.issue(&leaf).unwrap().cert_der()
    }

    #[test]
    fn a_member_uri_decides_alone() {
        let cert = leaf(Leaf::member(1, &["raftkv-2.raftkv".into()]));
        assert_eq!(member_uris(&cert).unwrap(), vec![1]);
        assert!(names_member(&cert, 1, Some("raftkv-1.raftkv")).is_ok());
        let err = names_member(&cert, 2, Some("raftkv-2.raftkv")).unwrap_err();
        assert!(err.contains("member 1's, not member 2's"), "{err}");
    }

    #[test]
    fn without_a_uri_the_exact_dns_name_of_the_peer_address_names_the_member() {
        let mut l = Leaf::server("raftkv-1", &["raftkv-1.raftkv.ns.svc".into()]);
        l.member = None;
        let cert = leaf(l);
        assert!(names_member(&cert, 1, Some("RAFTKV-1.raftkv.ns.svc")).is_ok());
        let err = names_member(&cert, 2, Some("raftkv-2.raftkv.ns.svc")).unwrap_err();
        assert!(err.contains("only raftkv-1.raftkv.ns.svc"), "{err}");
    }

    #[test]
    fn ips_and_wildcards_never_name_a_member() {
        let cert = leaf(Leaf::server(
            "wild",
            &["*.raftkv.ns.svc".into(), "127.0.0.1".into()],
        ));
        let err = names_member(&cert, 0, Some("127.0.0.1")).unwrap_err();
        assert!(err.contains("urn:raftkv:member:0 (a URI SAN)"), "{err}");
        assert!(names_member(&cert, 0, Some("raftkv-0.raftkv.ns.svc")).is_err());
    }

    #[test]
    fn validity_and_common_name_are_read() {
        let cert = leaf(Leaf::user("alice"));
        let (before, after) = validity(&cert).unwrap();
        assert!(before <= now() && now() < after);
        assert_eq!(common_name(&cert).as_deref(), Some("alice"));
        assert!(utc(0).starts_with("1970-01-01T00:00:00"));
    }
}
