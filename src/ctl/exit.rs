//! raftctl's exit codes and its one error type, mapped from client errors.

use std::process::ExitCode;

use crate::client::ClientError;

/// The documented exit codes (see `raftctl --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    Unreachable = 2,
    BadInput = 3,
    Unhealthy = 4,
    Usage = 128,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A failed subcommand: the one line for stderr and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtlError {
    pub exit: Exit,
    pub message: String,
}

impl CtlError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CtlError {
        CtlError {
            exit,
            message: message.into(),
        }
    }

    /// A general failure (exit 1).
    pub fn error(message: impl Into<String>) -> CtlError {
        CtlError::new(Exit::Error, message)
    }
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> CtlError {
        let exit = match &e {
            _ if e.is_bad_input() => Exit::BadInput,
            ClientError::Unreachable { .. } => Exit::Unreachable,
            ClientError::NoLeader(_)
            | ClientError::Timeout { .. }
            | ClientError::LearnerBehind { .. } => Exit::Unhealthy,
            ClientError::Rejected(_)
            | ClientError::InvalidArgument(_)
            | ClientError::OutcomeUnknown(_)
            | ClientError::Other(_) => Exit::Error,
        };
        // One line on stderr, whatever the cause chain held.
        CtlError::new(exit, e.to_string().replace('\n', " "))
    }
}

impl From<std::io::Error> for CtlError {
    fn from(e: std::io::Error) -> CtlError {
        CtlError::error(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn exit_of(e: ClientError) -> Exit {
        CtlError::from(e).exit
    }

    #[test]
    fn client_errors_map_to_documented_codes() {
        let unreachable = ClientError::Unreachable {
            endpoints: "a".into(),
            last: "refused".into(),
        };
        assert_eq!(exit_of(unreachable), Exit::Unreachable);
        assert_eq!(exit_of(ClientError::NoLeader("x".into())), Exit::Unhealthy);
        let timeout = ClientError::Timeout {
            after: std::time::Duration::from_secs(1),
            last: "x".into(),
        };
        assert_eq!(exit_of(timeout), Exit::Unhealthy);
        assert_eq!(
            exit_of(ClientError::InvalidArgument("x".into())),
            Exit::BadInput
        );
        assert_eq!(exit_of(ClientError::Other("x".into())), Exit::Error);
        let refused = |code: pb::kv_error::Code| {
            ClientError::Rejected(pb::KvError {
                code: code as i32,
                message: "m".into(),
            })
        };
        assert_eq!(
            exit_of(refused(pb::kv_error::Code::NotAnInteger)),
            Exit::Error
        );
        assert_eq!(
            exit_of(refused(pb::kv_error::Code::KeyTooLarge)),
            Exit::BadInput
        );
    }

    #[test]
    fn messages_are_one_line() {
        let e = CtlError::from(ClientError::Other("a\nb".into()));
        assert_eq!(e.message, "a b");
        assert_eq!(ExitCode::from(Exit::Usage), ExitCode::from(128));
    }
}
