//! The signals raftctl's long operations react to: Ctrl-C and SIGTERM stop
//! them cleanly, SIGHUP asks `local` to restart dead nodes.

use crate::ctl::exit::{CtlError, Exit};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Stop,
    Restart,
}

/// Listeners installed once, so no signal is lost between polls.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.interrupt.recv() => Request::Stop,
            _ = self.terminate.recv() => Request::Stop,
            _ = self.hangup.recv() => Request::Restart,
        }
    }

    /// Waits for Ctrl-C or SIGTERM (SIGHUP is ignored).
    pub async fn stop(&mut self) {
        while self.next().await != Request::Stop {}
    }
}

/// Runs `wait` until it ends or `stop` does (Ctrl-C). A deploy's wait that
/// is interrupted leaves what it applied in place: the error says so in
/// `applied` (what exists and how to see it) and exits as unhealthy.
pub async fn wait_or_stop<T>(
    wait: impl Future<Output = Result<T, CtlError>>,
    stop: impl Future<Output = ()>,
    applied: &str,
) -> Result<T, CtlError> {
    tokio::select! {
        biased;
        _ = stop => {
            eprintln!();
            Err(CtlError::new(
                Exit::Unhealthy,
                format!("interrupted while waiting: {applied}, and deploy again to resume waiting"),
            ))
        }
        result = wait => result,
    }
}
