//! The one way the process tests run `raftctl`: a command line built with
//! [`Ctl`] (endpoints, environment, flags every call of a test adds), run
//! to its end, and its [`CtlOutput`], whose checks panic with the command
//! line and everything raftctl printed.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::process::{Command, Output};

pub const RAFTCTL: &str = env!("CARGO_BIN_EXE_raftctl");
pub const RAFTKV: &str = env!("CARGO_BIN_EXE_raftkv");

/// Variables raftctl reads instead of a flag: removed unless a test sets
/// them, so the shell that runs the tests does not pick the cluster.
const OWN_ENV: [&str; 8] = [
    "RAFTKV_ENDPOINTS",
    "RAFTKV_PLATFORM",
    "RAFTKV_CACERT",
    "RAFTKV_CERT",
    "RAFTKV_KEY",
    "RAFTKV_USER",
    "RAFTKV_PASSWORD",
    "RAFTKV_NEW_PASSWORD",
];

/// `raftctl ARGS` in a clean environment.
pub fn raftctl(args: &[&str]) -> CtlOutput {
    Ctl::new().run(args)
}

/// A raftctl command line, before the command's own arguments.
#[derive(Clone, Default)]
pub struct Ctl {
    /// Flags after the command's arguments (a subcommand's flags must follow it).
    tail: Vec<OsString>,
    env: Vec<(String, String)>,
    remove: Vec<String>,
}

impl Ctl {
    pub fn new() -> Ctl {
        Ctl::default()
    }

    /// Runs against `endpoints` (comma separated), as `RAFTKV_ENDPOINTS`,
    /// so that a test's own `--endpoints` still wins.
    pub fn endpoints(self, endpoints: &str) -> Ctl {
        self.env("RAFTKV_ENDPOINTS", endpoints)
    }

    /// Adds `args` after every command's own arguments.
    pub fn tail<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Ctl {
        self.tail
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Ctl {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Ctl {
        self.remove.push(key.into());
        self
    }

    /// The command `raftctl ARGS`, to spawn when a test must signal it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(RAFTCTL);
        cmd.args(args).args(&self.tail);
        for key in OWN_ENV
            .iter()
            .copied()
            .chain(self.remove.iter().map(String::as_str))
        {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `raftctl ARGS` to its end.
    pub fn run(&self, args: &[&str]) -> CtlOutput {
        let mut cmd = self.command(args);
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        CtlOutput::new(self.line(args), out)
    }

    /// [`run`](Self::run) on a tokio runtime, which keeps serving the
    /// test's own servers meanwhile.
    pub async fn run_async(&self, args: &[&str]) -> CtlOutput {
        let mut cmd = tokio::process::Command::from(self.command(args));
        let out = cmd
            .output()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.line(args)));
        CtlOutput::new(self.line(args), out)
    }

    /// The command line as a shell would show it, for messages.
    fn line(&self, args: &[&str]) -> String {
        let env = self.env.iter().map(|(k, v)| format!("{k}={v} "));
        let tail = self.tail.iter().map(|a| a.to_string_lossy().into_owned());
        let words: Vec<String> = args.iter().map(|a| a.to_string()).chain(tail).collect();
        format!("{}raftctl {}", env.collect::<String>(), words.join(" "))
    }
}

/// What one raftctl run did.
pub struct CtlOutput {
    /// The command line, for messages.
    pub line: String,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Whether stdout was valid UTF-8 (`stdout` is lossy otherwise).
    utf8: bool,
}

impl CtlOutput {
    fn new(line: String, out: Output) -> CtlOutput {
        CtlOutput {
            line,
            code: out.status.code(),
            utf8: std::str::from_utf8(&out.stdout).is_ok(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts exit code `code` and UTF-8 output.
    pub fn expect(self, code: i32) -> CtlOutput {
        assert_eq!(self.code, Some(code), "{self}");
        assert!(self.utf8, "stdout is not UTF-8: {self}");
        self
    }

    /// Asserts exit 0.
    pub fn ok(self) -> CtlOutput {
        self.expect(0)
    }

    /// Asserts exit code `code` and that stderr mentions `text`; the stderr.
    pub fn fails(self, code: i32, text: &str) -> String {
        let out = self.expect(code);
        assert!(out.stderr.contains(text), "stderr lacks {text:?}: {out}");
        out.stderr
    }

    /// Stdout as JSON (any exit code: check it first).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// Stdout and stderr together, as a terminal shows them.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for CtlOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited {:?}\n--- stdout\n{}--- stderr\n{}",
            self.line, self.code, self.stdout, self.stderr
        )
    }
}
