//! Container tests: the image built from the Dockerfile (scripts/image.sh),
//! run as a StatefulSet stand-in on Docker (tests/containers/sts.rs) with
//! the env, args, mounts and security context of the chart's rendered pod
//! template (tests/containers/pod.rs). Each test asserts the cluster serves
//! and that no acknowledged write is lost, and prints one `RESULT` line.
//! Without Docker each test prints why and passes as skipped.

mod common;

#[path = "containers/cluster.rs"]
mod cluster;
#[path = "containers/load.rs"]
mod load;
#[path = "containers/pod.rs"]
mod pod;
#[path = "containers/sts.rs"]
mod sts;

use cluster::Env;
use common::docker;
use common::wait::wait_for;
use load::Writer;
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(60);
const PROGRESS: Duration = Duration::from_secs(30);

fn report(test: &str, r: &load::Report, extra: &str) {
    println!(
        "RESULT {test}: ok; {} acknowledged writes, none lost; longest write gap {:.2} s (from {:.2} s){extra}; first client errors: {:?}",
        r.acked,
        r.longest_gap.as_secs_f64(),
        r.gap_began.as_secs_f64(),
        r.errors.iter().take(3).collect::<Vec<_>>()
    );
}

/// Three fresh pods started together: the time to the first acknowledged
/// write (the closing note's figure).
#[test]
fn first_boot_time_to_first_write() {
    let Some(env) = Env::new("first-write") else {
        return;
    };
    let start = Instant::now();
    for i in 0..3 {
        env.sts.start(i);
    }
    env.retry(
        "first write",
        |c| async move { c.set(b"first", b"1").await },
    );
    let took = start.elapsed();
    env.wait_voters(&[0, 1, 2], READY);
    env.write_read("k", "v");
    println!(
        "RESULT first_boot_time_to_first_write: ok; {:.2} s from `docker run` of 3 fresh pods to the first acknowledged write",
        took.as_secs_f64()
    );
}

/// First boot in any order, with one pod's DNS name published seconds
/// after the others started (as a slow headless Service can).
#[test]
fn first_boot_any_order_with_late_dns() {
    let Some(env) = Env::new("first-boot") else {
        return;
    };
    let sts = &env.sts;
    sts.start(2);
    sts.start_without_dns(0);
    std::thread::sleep(Duration::from_millis(1500));
    sts.start(1);
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !sts.ready(1) && !sts.ready(2),
        "founders must not serve before every founder answered"
    );
    sts.publish_dns(0);
    for i in 0..3 {
        sts.wait_ready(i, READY);
    }
    env.wait_voters(&[0, 1, 2], READY);
    let ids: std::collections::BTreeSet<String> = (0..3)
        .map(|i| {
            let addr = sts.addr(i, sts.template.client_port).unwrap();
            env.rt
                .block_on(env.client().status(&addr))
                .unwrap()
                .cluster_id
        })
        .collect();
    assert_eq!(ids.len(), 1, "one cluster, not several: {ids:?}");
    env.write_read("late-dns", "ok");
    println!(
        "RESULT first_boot_any_order_with_late_dns: ok; order 2, 0 (no DNS for 5.5 s), 1; one cluster"
    );
}

/// Pods deleted and recreated with their volumes (a follower, then the
/// leader) while a client writes: each comes back as itself.
#[test]
fn delete_and_recreate_pods_while_writing() {
    let Some(env) = Env::new("recreate") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "recreate");
    writer.wait_progress(50, PROGRESS);
    let leader = env.leader();
    for i in [(leader + 1) % 3, leader] {
        assert_eq!(sts.delete(i), 0, "pod {i} exits 0 on SIGTERM");
        sts.start(i);
        sts.wait_ready(i, READY);
        assert!(
            sts.logs(i).contains("\"fresh\":false"),
            "pod {i} restarted from its volume"
        );
        writer.wait_progress(50, PROGRESS);
    }
    env.wait_voters(&[0, 1, 2], READY);
    let r = writer.finish(sts);
    report(
        "delete_and_recreate_pods_while_writing",
        &r,
        &format!("; follower then leader (node {leader}) recreated"),
    );
}

/// A pod whose volume was lost (here the leader's) comes back empty and
/// rejoins by itself; the cluster then relies on it for a quorum.
#[test]
fn lost_volume_rejoins_by_itself() {
    let Some(env) = Env::new("lost-volume") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "lost");
    writer.wait_progress(50, PROGRESS);
    let lost = env.leader();
    sts.kill(lost);
    sts.wipe_volume(lost);
    let start = Instant::now();
    sts.start(lost);
    env.wait_voters(&[0, 1, 2], READY);
    sts.wait_ready(lost, READY);
    let healed = start.elapsed();
    // The node's promotion task logs it once it sees the answer (or, if an
    // answer was lost, the membership).
    sts.wait_log(lost, "auto-join: added as a learner", PROGRESS);
    sts.wait_log(lost, "auto-join: promoted to voter", PROGRESS);
    writer.wait_progress(50, PROGRESS);
    // The new incarnation now counts: with another member down, the quorum
    // needs it.
    let other = (lost + 1) % 3;
    assert_eq!(sts.delete(other), 0);
    writer.wait_progress(50, PROGRESS);
    sts.start(other);
    sts.wait_ready(other, READY);
    let r = writer.finish(sts);
    report(
        "lost_volume_rejoins_by_itself",
        &r,
        &format!(
            "; leader {lost} lost its volume, voter again after {:.1} s, then carried the quorum",
            healed.as_secs_f64()
        ),
    );
}

/// Scale 3 → 5 (new ordinals join and are promoted, same pod template),
/// then 5 → 3 (members removed before their pods go).
#[test]
fn scale_3_to_5_to_3() {
    let Some(env) = Env::new("scale") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "scale");
    writer.wait_progress(50, PROGRESS);
    sts.start(3);
    sts.start(4);
    env.wait_voters(&[0, 1, 2, 3, 4], READY);
    sts.wait_ready(3, READY);
    sts.wait_ready(4, READY);
    writer.wait_progress(50, PROGRESS);
    let mut events = Vec::new();
    for i in [4, 3] {
        let leader = env.leader();
        let at = writer.elapsed().as_secs_f64();
        events.push(format!("{at:.2} s remove {i} (leader {leader})"));
        env.retry("member remove", |c| async move { c.remove_member(i).await });
        assert_eq!(sts.delete(i), 0);
        let at = writer.elapsed().as_secs_f64();
        events.push(format!("{at:.2} s pod {i} gone"));
    }
    env.wait_voters(&[0, 1, 2], READY);
    writer.wait_progress(50, PROGRESS);
    let r = writer.finish(sts);
    report("scale_3_to_5_to_3", &r, &format!("; {}", events.join(", ")));
}

/// `kubectl rollout restart`: one pod at a time, highest ordinal first,
/// each waited for until ready. Reports the longest write gap.
#[test]
fn rolling_restart() {
    let Some(env) = Env::new("rolling") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "rolling");
    writer.wait_progress(50, PROGRESS);
    let start = Instant::now();
    let mut events = Vec::new();
    for i in [2, 1, 0] {
        let leader = env.leader();
        events.push(format!(
            "{:.2} s delete {i} (leader {leader})",
            writer.elapsed().as_secs_f64()
        ));
        assert_eq!(sts.delete(i), 0, "pod {i} exits 0 on SIGTERM");
        sts.start(i);
        events.push(format!(
            "{:.2} s started {i}",
            writer.elapsed().as_secs_f64()
        ));
        sts.wait_ready(i, READY);
        events.push(format!("{:.2} s ready {i}", writer.elapsed().as_secs_f64()));
    }
    let took = start.elapsed();
    writer.wait_progress(50, PROGRESS);
    env.wait_voters(&[0, 1, 2], READY);
    let r = writer.finish(sts);
    assert!(
        r.longest_gap < Duration::from_secs(10),
        "a rolling restart stopped writes for {:?}",
        r.longest_gap
    );
    report(
        "rolling_restart",
        &r,
        &format!(
            "; 3 pods restarted in {:.1} s: {}",
            took.as_secs_f64(),
            events.join(", ")
        ),
    );
}

/// The leader cut from the network: the others elect a leader and keep
/// serving; reconnected, the old leader follows and catches up.
#[test]
fn leader_network_disconnect_and_reconnect() {
    let Some(env) = Env::new("partition") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "partition");
    writer.wait_progress(50, PROGRESS);
    let old = env.leader();
    let cut = Instant::now();
    sts.disconnect(old);
    let new = wait_for("a new leader", PROGRESS, || {
        Some(env.leader()).filter(|l| *l != old)
    });
    let failover = cut.elapsed();
    writer.wait_progress(50, PROGRESS);
    sts.connect(old);
    sts.wait_ready(old, READY);
    let addr = sts.addr(old, sts.template.client_port).unwrap();
    wait_for("the old leader to follow", PROGRESS, || {
        let s = env.rt.block_on(env.client().status(&addr)).ok()?;
        (s.role == "follower" && s.leader.is_some()).then_some(())
    });
    writer.wait_progress(50, PROGRESS);
    let r = writer.finish(sts);
    report(
        "leader_network_disconnect_and_reconnect",
        &r,
        &format!(
            "; node {new} led {:.2} s after node {old} was cut",
            failover.as_secs_f64()
        ),
    );
}

/// SIGTERM to the leader's container: the node is PID 1, hands leadership
/// over, and exits 0 well within the grace period.
#[test]
fn sigterm_to_leader_hands_over_and_exits_0() {
    let Some(env) = Env::new("sigterm") else {
        return;
    };
    let sts = &env.sts;
    env.start_ready(3);
    let writer = Writer::start(sts.clone(), "sigterm");
    writer.wait_progress(50, PROGRESS);
    let leader = env.leader();
    let c = sts.container(leader);
    // The container's PID 1, seen from the host (the image has no shell).
    let pid = docker::must(&["inspect", "-f", "{{.State.Pid}}", &c]);
    let pid1 = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        pid1.starts_with("/usr/local/bin/raftkv"),
        "PID 1 is the node, not a shell: {pid1:?}"
    );
    let start = Instant::now();
    let code = sts.stop(leader);
    let exited = start.elapsed();
    let log = sts.logs(leader);
    sts.kill(leader);
    assert!(
        log.contains("transferring leadership before shutdown"),
        "the leader hands over: {log}"
    );
    assert_eq!(code, 0, "the leader exits 0 on SIGTERM");
    let grace = Duration::from_secs(sts.template.grace_seconds);
    assert!(exited < grace, "exit took {exited:?}, grace is {grace:?}");
    let successor = wait_for("a new leader", PROGRESS, || {
        Some(env.leader()).filter(|l| *l != leader)
    });
    writer.wait_progress(50, PROGRESS);
    sts.start(leader);
    sts.wait_ready(leader, READY);
    let r = writer.finish(sts);
    report(
        "sigterm_to_leader_hands_over_and_exits_0",
        &r,
        &format!(
            "; leader {leader} exited 0 in {:.2} s (grace {} s), node {successor} leads",
            exited.as_secs_f64(),
            grace.as_secs()
        ),
    );
}
