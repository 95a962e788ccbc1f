//! The signals raftctl's long operations react to: Ctrl-C and SIGTERM stop
//! them cleanly, SIGHUP asks `local` to restart dead nodes.

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
