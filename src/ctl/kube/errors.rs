//! Kubernetes API errors in the words a Kubernetes user knows (the ones
//! kubectl prints), with raftctl's exit codes.

use crate::ctl::exit::{CtlError, Exit};

/// What raftctl was doing, for the message: "cannot get statefulset raftkv".
pub fn api_error(doing: &str, e: kube::Error) -> CtlError {
    match e {
        kube::Error::Api(status) => {
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            let (exit, hint) = match status.code {
                401 => (
                    Exit::Error,
                    "Unauthorized: the credentials of the kubeconfig context were refused (expired token? run your provider's login again)",
                ),
                403 => (
                    Exit::Error,
                    "Forbidden: your user lacks the RBAC permission (check with `kubectl auth can-i`)",
                ),
                404 => (Exit::Error, "NotFound"),
                409 => (
                    Exit::Error,
                    "Conflict: another field manager owns these fields or the object changed meanwhile; retry, or resolve the conflict",
                ),
                410 => (Exit::Error, "Gone: the resource version is too old; retry"),
                422 => (
                    Exit::BadInput,
                    "Invalid: the API server rejected the object",
                ),
                429 => (
                    Exit::Unhealthy,
                    "TooManyRequests: the API server is throttling; retry later",
                ),
                500..=599 => (
                    Exit::Unhealthy,
                    "the API server failed (server error or timeout)",
                ),
                _ => (Exit::Error, ""),
            };
            let hint = if hint.is_empty() {
                format!("HTTP {}", status.code)
            } else {
                hint.to_string()
            };
            CtlError::new(exit, format!("cannot {doing}: {hint}: {message}"))
        }
        kube::Error::InferConfig(e) => CtlError::new(
            Exit::Unreachable,
            format!(
                "no Kubernetes cluster configured: no kubeconfig (~/.kube/config, $KUBECONFIG, --kubeconfig) and not running in a pod ({e})"
            ),
        ),
        kube::Error::InferKubeconfig(e) => {
            CtlError::new(Exit::BadInput, format!("cannot use the kubeconfig: {e}"))
        }
        kube::Error::Auth(e) => CtlError::new(
            Exit::Error,
            format!("cannot {doing}: authentication failed: {e}"),
        ),
        other => {
            let text = one_line(&other);
            CtlError::new(
                Exit::Unreachable,
                format!(
                    "cannot {doing}: the API server is unreachable (is the cluster running and the context right?): {text}"
                ),
            )
        }
    }
}

/// The error and its causes on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}

/// Whether `e` is the API server's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: message.into(),
            ..kube::core::Status::default()
        }))
    }

    #[test]
    fn api_statuses_read_like_kubectl() {
        let e = api_error(
            "list pods",
            status(
                403,
                "Forbidden",
                "pods is forbidden: User \"u\" cannot list resource \"pods\"",
            ),
        );
        assert_eq!(e.exit, Exit::Error);
        assert!(e.message.starts_with("cannot list pods: Forbidden"), "{e}");
        assert!(e.message.contains("cannot list resource"), "{e}");
        let e = api_error(
            "apply statefulset raftkv",
            status(409, "Conflict", "conflict with \"helm\""),
        );
        assert!(e.message.contains("Conflict: another field manager"), "{e}");
        let e = api_error("get statefulset raftkv", status(504, "Timeout", ""));
        assert_eq!(e.exit, Exit::Unhealthy);
        assert!(e.message.ends_with(": Timeout"), "{e}");
        assert_eq!(
            api_error("x", status(422, "Invalid", "bad")).exit,
            Exit::BadInput
        );
        assert!(is_not_found(&status(404, "NotFound", "")));
        assert!(!is_not_found(&status(403, "Forbidden", "")));
    }
}
