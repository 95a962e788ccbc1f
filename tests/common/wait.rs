//! The one polling loop of the process tests: ask until there is an
//! answer, fail naming what never came. Both forms share the deadline and
//! the pause between polls, so a test says only what it waits for.

use std::fmt::Display;
use std::future::Future;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The first pause between polls; it doubles up to [`MAX_PAUSE`], so a
/// quick answer is seen at once and a slow one (a `docker` call, a node's
/// election) is not polled hard on the two shared cores.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// A `what` whose text is made only on a timeout: the state at that moment
/// (a node's log, the writes so far), which would be stale if made before.
pub struct Later<F: Fn() -> String>(pub F);

impl<F: Fn() -> String> Display for Later<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.0)())
    }
}

struct Deadline {
    end: Instant,
    limit: Duration,
    pause: Duration,
}

impl Deadline {
    fn new(limit: Duration) -> Deadline {
        Deadline {
            end: Instant::now() + limit,
            limit,
            pause: FIRST_PAUSE,
        }
    }

    /// Panics if the time is up; otherwise the pause before the next poll.
    fn next_pause(&mut self, what: &dyn Display) -> Duration {
        assert!(
            Instant::now() < self.end,
            "timed out after {:?} waiting for {what}",
            self.limit
        );
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        pause
    }
}

/// Polls `poll` until it answers `Some`, and returns the answer; panics
/// with `what` after `limit`.
pub fn wait_for<T>(what: impl Display, limit: Duration, mut poll: impl FnMut() -> Option<T>) -> T {
    let mut deadline = Deadline::new(limit);
    loop {
        if let Some(answer) = poll() {
            return answer;
        }
        std::thread::sleep(deadline.next_pause(&what));
    }
}

/// [`wait_for`] for a test on a tokio runtime, whose polls are async.
pub async fn wait_for_async<T, F: Future<Output = Option<T>>>(
    what: impl Display,
    limit: Duration,
    mut poll: impl FnMut() -> F,
) -> T {
    let mut deadline = Deadline::new(limit);
    loop {
        if let Some(answer) = poll().await {
            return answer;
        }
        tokio::time::sleep(deadline.next_pause(&what)).await;
    }
}

/// Waits for `child` to exit by itself within `limit`; its status. On a
/// timeout the child is killed, so a failed test leaves no process behind.
pub fn wait_exit(child: &mut Child, what: impl Display, limit: Duration) -> ExitStatus {
    struct KillOnPanic<'a>(&'a mut Child);
    impl Drop for KillOnPanic<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let guard = KillOnPanic(child);
    wait_for(what, limit, || guard.0.try_wait().unwrap())
}
