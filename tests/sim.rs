//! The deterministic simulator (docs/consensus.md, "The deterministic
//! simulator"). `RAFTKV_SIM_SEEDS=a..b cargo test --release --test sim`
//! runs that seed range; a failing seed prints itself and its trace and
//! replays bit-for-bit.

#[path = "sim/scenarios.rs"]
mod scenarios;
#[path = "sim/world.rs"]
mod world;

use raftkv::check::linearizability;
use raftkv::raft::Broken;
use std::cell::Cell;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use world::script::Scenario;
use world::{Check, Failure, Options, Stats, Violation, World};

fn seeds_from_env(default: Range<u64>) -> Range<u64> {
    match std::env::var("RAFTKV_SIM_SEEDS") {
        Ok(s) => {
            let (a, b) = s
                .split_once("..")
                .expect("RAFTKV_SIM_SEEDS must look like 0..2000");
            a.trim().parse().expect("seed range start")..b.trim().parse().expect("seed range end")
        }
        Err(_) => default,
    }
}

/// Runs one seed: simulation, then the linearizability check of its history.
fn run_seed(seed: u64, opts: &Options) -> Result<world::Stats, Failure> {
    checked(seed, || World::new(seed, opts.clone()), World::run)
}

/// Plays a directed scenario with `seed`'s timings, then checks its history.
fn play(scenario: &Scenario, seed: u64, opts: &Options) -> Result<world::Stats, Failure> {
    checked(
        seed,
        || World::directed(seed, opts.clone(), scenario),
        |w| w.play(scenario),
    )
}

thread_local! {
    /// Set while this thread runs a world inside `checked`.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// A panic inside a world is caught and reported as a failure with its
/// message, so the default hook printing it too is noise. One process-wide
/// hook, installed once, is quiet only on a thread running a world: tests
/// running in parallel keep their own panic messages.
fn quiet_panics_in_worlds() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.get() {
                default(info);
            }
        }));
    });
}

/// Builds a world and runs it, then checks the linearizability of the
/// clients' history; a panic anywhere is a failure of its own kind.
fn checked(
    seed: u64,
    build: impl FnOnce() -> World,
    run: impl FnOnce(&mut World) -> Result<world::Stats, Failure>,
) -> Result<world::Stats, Failure> {
    quiet_panics_in_worlds();
    QUIET.set(true);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut w = build();
        let r = run(&mut w);
        (r, w.history().to_vec())
    }));
    QUIET.set(false);
    let (result, history) = outcome.map_err(|p| {
        let detail = world::panic_message(&*p);
        Failure::new(
            seed,
            Violation {
                check: Check::Panic,
                detail,
            },
        )
    })?;
    let stats = result?;
    match linearizability::check(&history) {
        linearizability::CheckResult::Ok => Ok(stats),
        other => Err(Failure::new(
            seed,
            Violation {
                check: Check::Linearizability,
                detail: format!("{other:?}"),
            },
        )),
    }
}

/// Runs seeds on every core; returns the failures (sorted by seed) and the
/// totals of the seeds that passed.
fn run_range(seeds: Range<u64>, opts: &Options, stop_at_first: bool) -> (Vec<Failure>, Stats) {
    let next = AtomicU64::new(seeds.start);
    let total = Mutex::new(Stats::default());
    let failures = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    if stop_at_first && !failures.lock().unwrap().is_empty() {
                        break;
                    }
                    match run_seed(seed, opts) {
                        Ok(st) => total.lock().unwrap().add(&st),
                        Err(f) => failures.lock().unwrap().push(f),
                    }
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap();
    f.sort_by_key(|f| f.seed);
    (f, total.into_inner().unwrap())
}

/// What failed, how to replay it, and the end of the trace.
fn report(f: &Failure, replay: &str) -> String {
    let tail: Vec<&String> = f
        .trace
        .iter()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!(
        "seed {} FAILED: {}\nreplay: {replay}\nlast events:\n{}",
        f.seed,
        f.what,
        tail.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn replay_seed(seed: u64) -> String {
    format!(
        "RAFTKV_SIM_SEEDS={seed}..{} cargo test --release --test sim -- seeds",
        seed + 1
    )
}

#[test]
fn seeds() {
    let range = seeds_from_env(0..2000);
    let started = Instant::now();
    let (failures, st) = run_range(range.clone(), &Options::default(), false);
    println!(
        "simulated seeds {range:?}: {} client operations checked ({} answered: {:?}; {} of unknown outcome, {} of them on an evicted session), reads at most {} ms behind real time, {} events, {} faults, {} elections, {} snapshots installed, {} local snapshots compacted and {} dropped as stale (finish_snapshot None), {} inputs stepped during a sync, {} heartbeats and answers sent during one, {} replica state hashes compared at equal indexes ({} of them against a state restored from a snapshot), {} state checks compared through the product's reports, {:.1}s",
        st.ops,
        st.by_command.values().sum::<usize>(),
        st.by_command,
        st.unknown,
        st.session_expired,
        st.max_read_lag_ms,
        st.events,
        st.faults,
        st.elections,
        st.snapshots,
        st.local_snapshots,
        st.stale_snapshots,
        st.steps_during_sync,
        st.heartbeats_during_sync,
        st.hash_comparisons,
        st.restored_hash_comparisons,
        st.state_reports_compared,
        started.elapsed().as_secs_f64()
    );
    if range.end - range.start >= 1000 {
        // The node loop's interleavings the simulator exists to cover.
        assert!(
            st.steps_during_sync > 0,
            "no input was stepped during a sync"
        );
        assert!(
            st.heartbeats_during_sync > 0,
            "no heartbeat left during a sync"
        );
        assert!(
            st.stale_snapshots > 0,
            "no local snapshot went stale under a leader's install"
        );
        assert!(
            st.restored_hash_comparisons > 0 && st.state_reports_compared > 0,
            "replica states were not compared after a restore, or through reports"
        );
    }
    if let Some(first) = failures.first() {
        panic!(
            "{} of {} seeds failed: {:?}\n{}",
            failures.len(),
            range.end - range.start,
            failures.iter().map(|f| f.seed).collect::<Vec<_>>(),
            report(first, &replay_seed(first.seed))
        );
    }
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let run = |seed| {
        let mut w = World::new(seed, Options::default());
        let r = w.run().map(|s| (s.events, s.ops)).map_err(|f| f.what);
        (r, format!("{:?}", w.history()))
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7).1, run(8).1);
}

fn broken(variant: Broken) -> Options {
    Options {
        broken: variant,
        ..Options::default()
    }
}

/// Each broken variant must be caught within this many seeds, by the check
/// its bug breaks (the first failing seed is the lowest: seeds are handed
/// out in order and each one started runs to its end). Faults come denser
/// and for longer than in the default run, to reach the rare interleavings
/// these bugs need sooner.
fn assert_caught(opts: Options, name: &str, check: Check) {
    let opts = Options {
        fault_phase: Duration::from_secs(6),
        max_fault_gap: Duration::from_millis(80),
        ..opts
    };
    let range = 0..3000;
    let (failures, _) = run_range(range, &opts, true);
    let f = failures
        .first()
        .unwrap_or_else(|| panic!("the simulator did not catch the broken variant `{name}`"));
    assert_eq!(
        f.check, check,
        "`{name}` caught by the wrong check: {}",
        f.what
    );
    println!("caught `{name}` at seed {}: {}", f.seed, f.what);
}

#[test]
fn catches_a_lease_timed_from_the_acknowledgement() {
    assert_caught(
        broken(Broken::LeaseFromAck),
        "lease from ack",
        Check::LeaseSafety,
    );
}

/// The crash model loses hard state written without an fsync: a voter that
/// forgets its vote can vote twice in one term.
#[test]
fn catches_a_vote_written_without_fsync() {
    assert_caught(
        broken(Broken::UnsyncedVote),
        "unsynced vote",
        Check::ElectionSafety,
    );
}

#[test]
fn catches_clocks_drifting_beyond_the_bound() {
    assert_caught(
        Options {
            drift_beyond_bound: true,
            ..Options::default()
        },
        "drift beyond bound",
        Check::LeaseSafety,
    );
}

/// Each directed scenario is played with the timings (network and disk
/// delays, election timeouts) of these seeds: the script steers by waiting
/// for states, not for instants, so it must reach its point under every one.
const SCENARIO_SEEDS: Range<u64> = 0..200;
const REPLAY_SCENARIOS: &str = "rerun the test: a directed run replays exactly";

/// The scenario must fail `check` under every seed, and nothing else first.
fn assert_scenario_caught(scenario: fn() -> Scenario, opts: Options, check: Check) {
    let scenario = scenario();
    for seed in SCENARIO_SEEDS {
        match play(&scenario, seed, &opts) {
            Err(f) if f.check == check => {
                if seed == SCENARIO_SEEDS.start {
                    println!("caught: {}", f.what);
                }
            }
            Err(f) => panic!(
                "{}: expected a {check:?} failure, got\n{}",
                scenario.name,
                report(&f, REPLAY_SCENARIOS)
            ),
            Ok(_) => panic!(
                "{} with seed {seed}: the simulator did not catch {:?}",
                scenario.name, opts.broken
            ),
        }
    }
}

/// The correct protocol passes every check in the scenario, under every seed.
fn assert_scenario_passes(scenario: fn() -> Scenario) {
    let scenario = scenario();
    for seed in SCENARIO_SEEDS {
        if let Err(f) = play(&scenario, seed, &Options::default()) {
            panic!("{}: {}", scenario.name, report(&f, REPLAY_SCENARIOS));
        }
    }
}

#[test]
fn a_new_leader_waits_out_the_old_lease() {
    assert_scenario_passes(scenarios::new_leader_during_old_lease);
}

/// A snapshot must not drop log entries that the
/// follower already acknowledged (they may be counted for a commit).
#[test]
fn a_snapshot_does_not_drop_acknowledged_entries() {
    assert_scenario_passes(scenarios::snapshot_while_replicating);
}

/// A new leader that steps down before its wait is
/// over still acknowledges no write until then.
#[test]
fn a_leader_stepping_down_during_its_wait_acknowledges_nothing_early() {
    assert_scenario_passes(scenarios::leader_steps_down_during_its_wait);
}

/// A new leader removed from the
/// membership before its wait is over acknowledges no write until then.
#[test]
fn a_leader_removed_during_its_wait_acknowledges_nothing_early() {
    assert_scenario_passes(scenarios::leader_removed_during_its_wait);
}

/// A membership change retried through its session after
/// its answer was lost is answered with success: it took effect once.
#[test]
fn a_retried_membership_change_gets_its_first_answer() {
    assert_scenario_passes(scenarios::member_change_answer_lost);
}

/// A gate that holds entries back only while the node leads lets a new
/// leader that steps down during its wait — handing over, or removed —
/// acknowledge a write while the old lease still serves reads.
#[test]
fn catches_a_gate_that_only_holds_while_leading() {
    for scenario in [
        scenarios::leader_steps_down_during_its_wait,
        scenarios::leader_removed_during_its_wait,
    ] {
        assert_scenario_caught(
            scenario,
            broken(Broken::GateOnlyWhileLeader),
            Check::Linearizability,
        );
    }
}

/// Fsyncs longer than the lease on every node, while
/// writes keep them busy, cost the leader neither its term nor its lease.
#[test]
fn slow_disks_do_not_cost_the_lease() {
    assert_scenario_passes(scenarios::slow_disks_keep_the_lease);
}

/// Heartbeats held back behind the sync, like every other message, arrive
/// after the lease ran out: the leader steps down.
#[test]
fn catches_heartbeats_that_wait_for_the_sync() {
    assert_scenario_caught(
        scenarios::slow_disks_keep_the_lease,
        broken(Broken::HeartbeatsWaitForSync),
        Check::Liveness,
    );
}

#[test]
fn figure_8_passes_with_the_correct_protocol() {
    assert_scenario_passes(scenarios::figure_8);
}

#[test]
fn catches_a_new_leader_that_ignores_the_old_lease() {
    assert_scenario_caught(
        scenarios::new_leader_during_old_lease,
        broken(Broken::IgnoreOldLease),
        Check::LeaseSafety,
    );
}

/// The overlap is not only a broken invariant: a client sees it. Without the
/// lease check the run goes on, the old leader answers a read from its lease
/// after the new leader acknowledged a newer write, and the history is not
/// linearizable.
#[test]
fn an_ignored_old_lease_serves_a_stale_read() {
    let opts = Options {
        lease_overlap_check: false,
        ..broken(Broken::IgnoreOldLease)
    };
    assert_scenario_caught(
        scenarios::new_leader_during_old_lease,
        opts,
        Check::Linearizability,
    );
}

#[test]
fn catches_committing_an_old_term_entry_by_counting() {
    assert_scenario_caught(
        scenarios::figure_8,
        broken(Broken::CommitOldTerm),
        Check::LeaderCompleteness,
    );
}

/// A killed leader's peers see their connections reset and elect a new
/// leader long before an election timeout; the new leader still waits out
/// the old lease, and the history stays linearizable.
#[test]
fn a_killed_leader_is_replaced_before_the_election_timeout() {
    assert_scenario_passes(scenarios::leader_killed);
}

/// A reset connection alone never deposes a live leader.
#[test]
fn a_reset_connection_to_a_live_leader_changes_no_term() {
    assert_scenario_passes(scenarios::reset_to_a_live_leader);
}

/// Resets over and over cause no election.
#[test]
fn flapping_resets_cause_no_election() {
    assert_scenario_passes(scenarios::flapping_resets);
}
