//! raftctl commands end to end (parse, run, exit code) against the fake
//! nodes of the client's tests.

use clap::Parser;

use super::cli::Cli;
use super::exit::{CtlError, Exit};
use super::run;
use crate::client::fake::{FakeLeader, dead_addr, follower, serve};

/// Runs `raftctl --endpoints ENDPOINTS --timeout 1s ARGS...`.
async fn raftctl(endpoints: &str, args: &[&str]) -> Result<(), CtlError> {
    let base = ["raftctl", "--endpoints", endpoints, "--timeout", "1s"];
    let cli = Cli::try_parse_from(base.iter().chain(args)).expect("valid command line");
    run(cli).await
}

fn exit_of(result: Result<(), CtlError>) -> Exit {
    result.err().map_or(Exit::Ok, |e| e.exit)
}

#[tokio::test]
async fn kv_commands_and_their_exit_codes() {
    let leader = serve(FakeLeader::default());
    let redirecting = serve(follower(Some(leader.clone())));
    let eps = &redirecting;

    assert_eq!(raftctl(eps, &["set", "k", "v"]).await, Ok(()));
    assert_eq!(raftctl(eps, &["get", "k"]).await, Ok(()));
    let missing = raftctl(eps, &["get", "nope"]).await.unwrap_err();
    assert_eq!(
        (missing.exit, missing.message.as_str()),
        (Exit::Error, "key not found")
    );
    assert_eq!(exit_of(raftctl(eps, &["ttl", "nope"]).await), Exit::Error);
    assert_eq!(raftctl(eps, &["-o", "json", "ttl", "k"]).await, Ok(()));

    assert_eq!(raftctl(eps, &["incr", "n"]).await, Ok(()));
    let refused = raftctl(eps, &["incr", "k"]).await.unwrap_err();
    assert_eq!(refused.exit, Exit::Error);
    assert!(refused.message.contains("not an integer"), "{refused}");

    assert_eq!(raftctl(eps, &["cas", "c", "--absent", "one"]).await, Ok(()));
    assert_eq!(raftctl(eps, &["cas", "c", "one", "two"]).await, Ok(()));
    let stale = raftctl(eps, &["cas", "c", "one", "three"])
        .await
        .unwrap_err();
    assert_eq!(stale.message, "not swapped: the current value is \"two\"");

    assert_eq!(raftctl(eps, &["expire", "c", "5"]).await, Ok(()));
    assert_eq!(raftctl(eps, &["-o", "yaml", "del", "c"]).await, Ok(()));
    assert_eq!(
        exit_of(raftctl(eps, &["set", "", "v"]).await),
        Exit::BadInput
    );
    let long_key = "k".repeat(4097);
    assert_eq!(
        exit_of(raftctl(eps, &["get", &long_key]).await),
        Exit::BadInput
    );
}

#[tokio::test]
async fn cluster_commands() {
    let leader = serve(FakeLeader::default());
    let redirecting = serve(follower(Some(leader.clone())));
    let both = format!("{leader},{redirecting}");

    assert_eq!(raftctl(&both, &["status"]).await, Ok(()));
    assert_eq!(raftctl(&both, &["-o", "json", "members"]).await, Ok(()));
    let add = ["member", "add", "3", "--peer-addr", "127.0.0.1:7410"];
    assert_eq!(raftctl(&redirecting, &add).await, Ok(()));
    assert_eq!(
        raftctl(&redirecting, &["member", "remove", "3"]).await,
        Ok(())
    );
    assert_eq!(
        raftctl(&redirecting, &["transfer-leader", "2"]).await,
        Ok(())
    );

    let one_down = format!("{leader},{}", dead_addr());
    let unhealthy = raftctl(&one_down, &["status"]).await.unwrap_err();
    assert_eq!(unhealthy.exit, Exit::Unhealthy);
    let leaderless = serve(follower(None));
    assert_eq!(
        exit_of(raftctl(&leaderless, &["status"]).await),
        Exit::Unhealthy
    );
}

#[tokio::test]
async fn unreachable_and_leaderless_clusters() {
    let dead = format!("{},{}", dead_addr(), dead_addr());
    assert_eq!(
        exit_of(raftctl(&dead, &["get", "k"]).await),
        Exit::Unreachable
    );
    assert_eq!(
        exit_of(raftctl(&dead, &["status"]).await),
        Exit::Unreachable
    );
    let leaderless = serve(follower(None));
    assert_eq!(
        exit_of(raftctl(&leaderless, &["set", "k", "v"]).await),
        Exit::Unhealthy
    );
    // A malformed endpoint is refused while parsing, as bad input.
    let e = Cli::try_parse_from(["raftctl", "--endpoints", "bad host:1", "get", "k"]).unwrap_err();
    assert_eq!(super::parse_exit(&e), Exit::BadInput);
}

#[tokio::test]
async fn bench_runs_a_fixed_number_of_requests() {
    let leader = FakeLeader::default();
    let endpoint = serve(leader.clone());
    let args = [
        "bench",
        "mixed",
        "--clients",
        "4",
        "--requests",
        "40",
        "--key-space",
        "5",
    ];
    assert_eq!(raftctl(&endpoint, &args).await, Ok(()));
    let writes = leader.state().writes.len();
    // 4 registrations plus the sets among the 40 requests.
    assert!((4..=44).contains(&writes), "{writes}");
    assert_eq!(leader.state().sessions, 4, "one session per bench client");
}
