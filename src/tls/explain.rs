//! A failed handshake in the words of the one who must fix it: which
//! certificate, and what is wrong with it (not rustls's enum names).

use rustls::{AlertDescription, CertificateError, Error};

/// Which end of the handshake we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// We dialed: "its certificate" is the server's.
    Dialer,
    /// We accepted: "its certificate" is the client's.
    Listener,
}

/// Whether a handshake error is a verdict on certificates or protocol (as
/// opposed to a connection that broke): retrying the same pair fails again.
pub(crate) fn is_verdict(e: &Error) -> bool {
    !matches!(
        e,
        Error::FailedToGetCurrentTime | Error::FailedToGetRandomBytes
    )
}

/// What went wrong, for a log line or raftctl's error.
pub(crate) fn explain(e: &Error, side: Side) -> String {
    let whose = match side {
        Side::Dialer => "the node's certificate",
        Side::Listener => "the client's certificate",
    };
    match e {
        Error::InvalidCertificate(c) => certificate(c, whose, side),
        Error::NoCertificatesPresented => match side {
            Side::Listener => "the client presented no certificate (the port requires one)".into(),
            Side::Dialer => "the node presented no certificate".into(),
        },
        Error::AlertReceived(alert) => match (side, alert) {
            (Side::Dialer, AlertDescription::CertificateRequired) => {
                "the node requires a client certificate (raftctl: --cert and --key)".into()
            }
            (Side::Dialer, AlertDescription::HandshakeFailure) => {
                "the node refused the handshake (does it require a client certificate? raftctl: --cert and --key)".into()
            }
            (
                Side::Dialer,
                a @ (AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateExpired
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::DecryptError
                | AlertDescription::AccessDenied),
            ) => format!("the node refused our client certificate ({a:?})"),
            (Side::Dialer, a) => format!("the node ended the handshake ({a:?})"),
            (Side::Listener, AlertDescription::UnknownCA) => {
                "the client does not trust this node's certificate (its CA file lacks our CA)".into()
            }
            (Side::Listener, AlertDescription::BadCertificate) => {
                "the client refused this node's certificate (for the name it dialed, or its CA)"
                    .into()
            }
            (Side::Listener, AlertDescription::CertificateExpired) => {
                "the client finds this node's certificate expired or not valid yet (check clocks)"
                    .into()
            }
            (Side::Listener, a) => format!("the client ended the handshake ({a:?})"),
        },
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => match side {
            Side::Dialer => "the node did not answer in TLS (is TLS on at that port?)".into(),
            Side::Listener => "the client did not speak TLS".into(),
        },
        e => e.to_string(),
    }
}

fn certificate(c: &CertificateError, whose: &str, side: Side) -> String {
    let ca_file = match side {
        Side::Dialer => "raftctl's --cacert, or a member's trusted CA file",
        Side::Listener => {
            "this node's trusted-ca-file or peer-trusted-ca-file, or the client's --cert"
        }
    };
    match c {
        CertificateError::UnknownIssuer => {
            format!("{whose} is not signed by a trusted CA (check {ca_file})")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("{whose} has expired")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("{whose} is not valid yet (or a clock is wrong)")
        }
        CertificateError::NotValidForName => format!("{whose} is not valid for the name dialed"),
        CertificateError::NotValidForNameContext { expected, .. } => {
            format!(
                "{whose} is not valid for {} (not among its subject alternative names)",
                expected.to_str()
            )
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!("{whose} is not meant for this use (its extended key usage)")
        }
        CertificateError::BadSignature => format!(
            "{whose} has a bad signature (signed by another CA of the same name? check the CA file)"
        ),
        c => format!("{whose} is refused: {c}"),
    }
}
