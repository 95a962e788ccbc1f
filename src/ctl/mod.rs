//! raftctl: the command-line tool. `main` parses the command line (usage
//! errors exit 128), runs one subcommand on a tokio runtime, and turns its
//! error into one stderr line and a documented exit code.

pub mod any_platform;
pub mod auth;
pub mod bench;
pub mod chaos;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod dump;
pub mod duration;
pub mod exit;
pub mod fault;
mod faults;
pub mod kube;
pub mod kv;
pub mod local;
pub mod output;
pub mod platform;
pub mod signals;
pub mod snapshot;

#[cfg(test)]
mod wiring_tests;

use std::process::ExitCode;

use clap::Parser;

use crate::client::{Client, ClientOptions};
use any_platform::AnyPlatform;
use cli::{Cli, Command, PlatformKind};
use exit::{CtlError, Exit};

/// Entry point of the `raftctl` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_failure(&e).into(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    let plaintext = cli.cacert.is_none();
    match runtime.block_on(run(cli)) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            eprintln!("{e}");
            if plaintext && e.exit == Exit::Unreachable && dropped_after_connect(&e.message) {
                // A TLS port drops a plaintext client without a word.
                eprintln!("hint: if the cluster uses TLS, give --cacert (and --cert, --key)");
            }
            if !plaintext && e.exit == Exit::Unreachable && e.message.contains("connection closed")
            {
                // With TLS 1.3 a node judges our certificate after we finished.
                eprintln!(
                    "hint: a node that closes the connection after the TLS handshake may refuse \
                     the client certificate (--cert): its log says why"
                );
            }
            e.exit.into()
        }
    }
}

/// Whether an unreachable node accepted the connection and then dropped
/// it, as a TLS port does with a plaintext client (the words vary with the
/// moment it happened).
fn dropped_after_connect(message: &str) -> bool {
    [
        "connection reset",
        "broken pipe",
        "connection closed",
        "stream closed",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Reports a command line clap refused: a value that does not parse is bad
/// input (exit 3, one line), anything else misuse (exit 128, clap's usage
/// text); --help and --version are answers (exit 0).
fn parse_failure(e: &clap::Error) -> Exit {
    let exit = parse_exit(e);
    if exit == Exit::BadInput {
        eprintln!("{}", one_line(e));
    } else {
        let _ = e.print();
    }
    exit
}

/// The exit code of a clap error (see `raftctl --help`).
fn parse_exit(e: &clap::Error) -> Exit {
    use clap::error::ErrorKind;
    match e.kind() {
        _ if !e.use_stderr() => Exit::Ok,
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => Exit::BadInput,
        _ => Exit::Usage,
    }
}

/// clap's message for a bad value on one line, without the "--help" hint.
fn one_line(e: &clap::Error) -> String {
    e.render()
        .to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    let tls = cli
        .client_tls()
        .map_err(|e| CtlError::new(Exit::BadInput, e))?;
    let credentials = auth::credentials(
        cli.user.as_deref(),
        std::env::var("RAFTKV_PASSWORD").ok(),
        &auth::Terminal,
    )?;
    let options = ClientOptions {
        tls,
        credentials,
        ..ClientOptions::default()
    }
    .with_timeout(cli.timeout)
    .with_dial_timeout(cli.dial_timeout);
    let output = cli.output;
    let client = || Client::lazy(cli.endpoints.clone(), options.clone());
    match &cli.command {
        Command::Set { key, value } => kv::set(&client()?, output, key, value.as_deref()).await,
        Command::Get(args) => kv::get(&client()?, output, args).await,
        Command::Keys(args) => kv::keys(&client()?, output, args).await,
        Command::Del { key } => kv::del(&client()?, output, key).await,
        Command::Incr { key } => kv::incr(&client()?, output, key).await,
        Command::Expire { key, seconds } => kv::expire(&client()?, output, key, *seconds).await,
        Command::Ttl { key } => kv::ttl(&client()?, output, key).await,
        Command::Cas(args) => kv::cas(&client()?, output, args).await,
        Command::Status(args) => match args.platform {
            Some(PlatformKind::Kube) => {
                kube::commands::status(args, output, options.tls.clone()).await
            }
            _ => cluster::status(&client()?, output, args).await,
        },
        Command::Check { wait } => check::command(&client()?, output, *wait).await,
        Command::Members => cluster::members(&client()?, output).await,
        Command::Member(command) => cluster::member(&client()?, output, command).await,
        Command::TransferLeader { id } => cluster::transfer_leader(&client()?, output, *id).await,
        Command::User(command) => auth::user(&client()?, output, command, &auth::Terminal).await,
        Command::Role(command) => auth::role(&client()?, output, command).await,
        Command::Auth(command) => auth::auth(&client()?, output, command).await,
        Command::Local(args) => local::run(args).await,
        Command::Dump { data_dir, force } => dump::run(data_dir, *force, output),
        Command::Bench(args) => {
            bench::run(args, cli.endpoints.clone(), options.clone(), output).await
        }
        Command::DeletePod(args) => faults::delete_pod(args, output, options.tls.clone()).await,
        Command::Chaos(args) => faults::chaos(args, output, options.tls.clone()).await,
        Command::Manifests(args) => kube::commands::manifests(args, output),
        Command::Deploy(args) => kube::commands::deploy(args, output, options.clone()).await,
        Command::Snapshot(command) => snapshot::command(command, client, output).await,
        Command::Scale(args) => {
            let chosen = AnyPlatform::from_args(&args.platform).await?;
            let endpoints = chosen.endpoints().await?;
            platform::scale::command(&chosen, endpoints, args, options.clone(), output).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_and_globals() {
        let cli =
            Cli::try_parse_from(["raftctl", "get", "k", "-o", "json", "--timeout", "2s"]).unwrap();
        assert_eq!(cli.output, cli::Output::Json);
        assert_eq!(cli.timeout, std::time::Duration::from_secs(2));
        assert!(matches!(cli.command, Command::Get(ref g) if g.key.as_deref() == Some("k")));
        let cli = Cli::try_parse_from(["raftctl", "--endpoints", "a:1,b:2", "status"]).unwrap();
        assert_eq!(cli.endpoints, ["a:1", "b:2"]);
    }

    #[test]
    fn cas_takes_expected_and_new_or_absent_and_new() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["raftctl", "cas"].iter().chain(args)).ok()?;
            match cli.command {
                Command::Cas(c) => {
                    let (e, n) = c.values();
                    Some((e.map(str::to_string), n.to_string()))
                }
                _ => None,
            }
        };
        assert_eq!(
            parse(&["k", "old", "new"]),
            Some((Some("old".into()), "new".into()))
        );
        assert_eq!(parse(&["k", "--absent", "new"]), Some((None, "new".into())));
        assert_eq!(parse(&["k", "old"]), None);
        assert_eq!(parse(&["k", "--absent", "a", "b"]), None);
    }

    #[test]
    fn usage_errors_are_reported_to_stderr() {
        let e = Cli::try_parse_from(["raftctl", "frobnicate"]).unwrap_err();
        assert!(e.use_stderr());
        let e = Cli::try_parse_from(["raftctl"]).unwrap_err();
        assert!(e.use_stderr());
        let e = Cli::try_parse_from(["raftctl", "--help"]).unwrap_err();
        assert!(!e.use_stderr());
        assert!(e.to_string().contains("128  usage error"));
    }

    fn exit_of(args: &[&str]) -> Exit {
        let args = std::iter::once("raftctl").chain(args.iter().copied());
        Cli::try_parse_from(args).map_or_else(|e| parse_exit(&e), |_| Exit::Ok)
    }

    #[test]
    fn bad_values_are_bad_input_and_misuse_is_usage() {
        for bad in [
            &["expire", "k", "-5"][..],
            &["expire", "k", "1.5"],
            &["expire", "k", "9223372036854775807"],
            &["expire", "k", "+5"],
            &["get", "k", "-o", "xml"],
            &["get", "k", "--endpoints", "nohost"],
            &["get", "k", "--endpoints", "h:99999"],
            &["get", "k", "--timeout", "1500"],
            &["get", "k", "--timeout", "0s"],
            &["get", "k", "--dial-timeout", "0"],
        ] {
            assert_eq!(exit_of(bad), Exit::BadInput, "{bad:?}");
        }
        for misuse in [&["frobnicate"][..], &["get", "k", "--frob"], &["get"], &[]] {
            assert_eq!(exit_of(misuse), Exit::Usage, "{misuse:?}");
        }
        assert_eq!(exit_of(&["--help"]), Exit::Ok);
        assert_eq!(exit_of(&["expire", "k", "9000000000"]), Exit::Ok);
    }

    #[test]
    fn negative_numbers_are_values() {
        let cli = Cli::try_parse_from(["raftctl", "set", "k", "-5"]).unwrap();
        assert!(matches!(cli.command, Command::Set { value: Some(ref v), .. } if v == "-5"));
        let cli = Cli::try_parse_from(["raftctl", "cas", "k", "-5", "-6"]).unwrap();
        let Command::Cas(c) = cli.command else {
            panic!("cas")
        };
        assert_eq!(c.values(), (Some("-5"), "-6"));
        // A flag where a value could be is still a flag.
        let cli = Cli::try_parse_from(["raftctl", "set", "k", "-o", "json"]).unwrap();
        assert!(matches!(cli.command, Command::Set { value: None, .. }));
        assert_eq!(cli.output, cli::Output::Json);
    }

    #[test]
    fn bench_and_local_flags() {
        let cli = Cli::try_parse_from(["raftctl", "bench", "mixed", "--requests", "10"]).unwrap();
        let Command::Bench(b) = cli.command else {
            panic!("bench")
        };
        assert_eq!(
            (b.workload, b.requests, b.clients),
            (cli::Workload::Mixed, Some(10), vec![64])
        );
        assert!(
            Cli::try_parse_from(["raftctl", "bench", "--requests", "1", "--duration", "1s"])
                .is_err()
        );
        let cli = Cli::try_parse_from(["raftctl", "local", "--nodes", "5"]).unwrap();
        let Command::Local(l) = cli.command else {
            panic!("local")
        };
        assert_eq!((l.nodes, l.base_port), (5, 7379));
        assert!(Cli::try_parse_from(["raftctl", "local", "--nodes", "4"]).is_err());
    }
}
