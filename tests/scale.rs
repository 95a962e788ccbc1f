//! `raftctl scale` for real: a `raftctl local` cluster and a Docker one
//! (made by `raftctl deploy --platform docker` from the image
//! tests/containers.rs builds) scaled 3 → 5 → 3 while the chaos workload
//! (src/ctl/chaos) runs; the history must lose no acknowledged write, stay
//! linearizable and apply every INCR exactly once. Then the refusals: a
//! target below 1, a scale-down that would lose quorum with members down,
//! and a scale-up onto a removed member's retained data (refused, then done
//! with --delete-data).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::ctl::Ctl;
use common::docker::{self, ClusterObjects};
use common::image;
use common::local::{self, Local};
use common::wait::wait_for_async;
use raftkv::client::{Client, ClientOptions};
use raftkv::ctl::chaos::{self, Fault, Report, Workload, WorkloadConfig, workload};
use raftkv::ctl::platform::docker::Docker;
use raftkv::ctl::platform::{self, Platform};

/// One scaled cluster at a time: each measures unavailability, and two
/// clusters on two shared cores would measure each other.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A base port with the ports of five local nodes reserved for this test
/// process (the cluster starts with three and scales to five).
fn free_base_port() -> u16 {
    common::ports::free_base_port(5)
}

/// A `raftctl local` cluster of three nodes in a temporary directory, room
/// for five.
struct LocalSetup {
    local: Local,
    dir: tempfile::TempDir,
    base: u16,
    platform: platform::local::Local,
}

impl LocalSetup {
    fn start() -> LocalSetup {
        let dir = tempfile::tempdir().unwrap();
        let base = free_base_port();
        let local = Local::start(dir.path(), base);
        let platform = platform::local::Local {
            data_dir: dir.path().to_path_buf(),
        };
        LocalSetup {
            local,
            dir,
            base,
            platform,
        }
    }

    /// `--platform local --data-dir DIR`.
    fn args(&self) -> [&str; 4] {
        [
            "--platform",
            "local",
            "--data-dir",
            self.dir.path().to_str().unwrap(),
        ]
    }

    /// The founders' client endpoints.
    fn endpoints(&self) -> Vec<String> {
        Local::endpoints(self.base)
            .split(',')
            .map(String::from)
            .collect()
    }
}

/// `raftctl scale N PLATFORM... -o json`, which must succeed; its report.
async fn scale(target: &str, platform: &[&str]) -> serde_json::Value {
    let args = [&["scale", target, "-o", "json"][..], platform].concat();
    let out = Ctl::new().run_async(&args).await.ok();
    eprint!("{}", out.stderr);
    out.json()
}

/// `raftctl scale ...` that must be refused (exit 3); its stderr.
async fn refused(args: &[&str]) -> String {
    Ctl::new().run_async(args).await.fails(3, "nothing changed")
}

fn client(endpoints: Vec<String>) -> Client {
    let options = ClientOptions::default().with_timeout(Duration::from_secs(5));
    Client::lazy(endpoints, options).unwrap()
}

/// The voters and learners, as the leader lists them.
async fn membership(client: &Client) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let members = client.members().await.unwrap();
    let ids = |voter: bool| {
        members
            .members
            .iter()
            .filter(|m| m.voter == voter)
            .map(|m| m.id)
            .collect()
    };
    (ids(true), ids(false))
}

fn ids(list: &[u64]) -> BTreeSet<u64> {
    list.iter().copied().collect()
}

/// The pods' ids on `platform`.
async fn pods<P: Platform>(platform: &P) -> BTreeSet<u64> {
    platform
        .pods()
        .await
        .unwrap()
        .iter()
        .map(|p| p.id)
        .collect()
}

/// Scales `platform`'s cluster (workload against `endpoints`, the three
/// founders) 3 → 5 → 3 through the raftctl binary while the chaos workload
/// runs; checks membership and pods after each step; returns the checked
/// report (the two scales are its "faults").
async fn scale_under_workload<P: Platform>(
    platform: &P,
    args: &[&str],
    endpoints: Vec<String>,
) -> (Report, serde_json::Value) {
    let admin = client(endpoints.clone());
    let config = WorkloadConfig {
        clients: 4,
        registers: 3,
        pause: Duration::from_millis(10),
        prefix: format!("scale-{:08x}", rand::random::<u32>()),
        op_timeout: Duration::from_secs(5),

        tls: None,
    };
    let epoch = tokio::time::Instant::now();
    let running = Workload::start(config, endpoints.clone(), epoch).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let up_at = running.now();
    let up = scale("5", args).await;
    assert_eq!((up["from"].as_u64(), up["to"].as_u64()), (Some(3), Some(5)));
    assert_eq!(membership(&admin).await, (ids(&[0, 1, 2, 3, 4]), ids(&[])));
    assert_eq!(pods(platform).await, ids(&[0, 1, 2, 3, 4]));
    tokio::time::sleep(Duration::from_secs(3)).await;

    let down_at = running.now();
    let down = scale("3", args).await;
    assert_eq!(down["plan"]["remove"], serde_json::json!([4, 3]), "{down}");
    assert_eq!(membership(&admin).await, (ids(&[0, 1, 2]), ids(&[])));
    assert_eq!(pods(platform).await, ids(&[0, 1, 2]));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let stopped = running.now();
    let config = running.config.clone();
    let recording = running.stop().await;
    let finals = workload::final_reads(&config, endpoints, epoch, Duration::from_secs(30))
        .await
        .unwrap();
    let fault = |at: u64, pod: String| {
        (
            at,
            Fault {
                at_seconds: at as f64 / 1e9,
                pod,
                node: 0,
                was_leader: false,
                fault: "scale".into(),
                grace: "-".into(),
                unavailable_seconds: 0.0,
            },
        )
    };
    let faults = vec![
        fault(up_at, "scale 3->5".into()),
        fault(down_at, "scale 5->3".into()),
    ];
    let report = chaos::judge(
        platform.kind(),
        &config,
        recording,
        finals,
        faults,
        stopped,
        false,
    )
    .await;
    print!("{}", report.table());
    let steps = serde_json::json!({ "up": up, "down": down });
    (report, steps)
}

fn assert_passed(report: &Report) {
    assert!(report.passed, "{}", report.table());
    assert_eq!(report.lost_writes, 0);
    assert_eq!(
        report.linearizability.verdict,
        raftkv::ctl::chaos::LinearizabilityVerdict::Linearizable
    );
    assert!(report.incr.ok);
    assert!(
        report.operations.ok > 300,
        "little work: {}",
        report.table()
    );
    assert!(report.incr.acknowledged > 20, "{}", report.table());
}

fn result_line(what: &str, report: &Report, steps: &serde_json::Value, wall: Duration) {
    let gaps: Vec<String> = report
        .faults
        .iter()
        .map(|f| format!("{} {:.2}s", f.pod, f.unavailable_seconds))
        .collect();
    println!(
        "RESULT {what}: {} operations ok, {} failed, longest gap without a successful operation: {}; \
         scale up {:.1}s, scale down {:.1}s; test {:.1}s",
        report.operations.ok,
        report.operations.failed,
        gaps.join(", "),
        steps["up"]["seconds"].as_f64().unwrap(),
        steps["down"]["seconds"].as_f64().unwrap(),
        wall.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_3_to_5_to_3_under_the_chaos_workload() {
    let _one = one_at_a_time().await;
    let wall = Instant::now();
    let setup = LocalSetup::start();
    let (dir, args) = (setup.dir.path(), setup.args());
    let (report, steps) = scale_under_workload(&setup.platform, &args, setup.endpoints()).await;
    assert_passed(&report);
    // Without --delete-data the removed members' directories stay, and the
    // output says so.
    let kept = steps["down"]["retained"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{steps}");
    assert!(dir.join("node-3").is_dir() && dir.join("node-4").is_dir());
    result_line("local scale 3->5->3", &report, &steps, wall.elapsed());
    setup.local.stop();
}

/// Refusals change nothing: a target below 1; a scale-down while members
/// are down such that a configuration on the way would lose its quorum;
/// a scale-up onto a removed member's directory (then done with
/// --delete-data, the node joining empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_refusals_change_nothing() {
    let _one = one_at_a_time().await;
    let wall = Instant::now();
    let LocalSetup {
        local,
        dir,
        base,
        platform,
    } = LocalSetup::start();
    let d = dir.path().to_str().unwrap();
    let args = ["--platform", "local", "--data-dir", d];
    let admin = client(
        Local::endpoints(base)
            .split(',')
            .map(String::from)
            .collect(),
    );
    let unchanged = |voters: &[u64]| (ids(voters), ids(&[]));

    for target in ["0", "-1"] {
        let stderr = refused(&[&["scale", target][..], &args].concat()).await;
        assert!(stderr.contains("at least one member"), "{stderr}");
    }
    assert_eq!(membership(&admin).await, unchanged(&[0, 1, 2]));

    scale("5", &args).await;
    // Nodes 1 and 2 die (the supervisor leaves them down): 3 of 5 voters
    // answer, so the cluster works, but going to 3 would first leave
    // {0,1,2,3} with 2 of 4 answering, then {0,1,2} with 1 of 3.
    let live = platform.pods().await.unwrap();
    for pod in live.iter().filter(|p| p.id == 1 || p.id == 2) {
        let pid = local_pid(&platform, pod.id).await;
        local::signal("-KILL", pid);
    }
    wait_until_down(&admin, &[1, 2]).await;
    let stderr = refused(&[&["scale", "3"][..], &args].concat()).await;
    assert!(
        stderr.contains("removing [4] would leave the voters {0, 1, 2, 3}, which need 3 answering"),
        "{stderr}"
    );
    assert_eq!(membership(&admin).await, unchanged(&[0, 1, 2, 3, 4]));
    assert_eq!(pods(&platform).await, ids(&[0, 1, 2, 3, 4]));

    // SIGHUP: the supervisor restarts the dead nodes; now 5 -> 3 works.
    local::signal("-HUP", local.child.id());
    wait_until_up(&admin, &[0, 1, 2]).await;
    // Node 4 leads: the scale-down must move leadership off it first.
    admin.transfer_leader(4).await.unwrap();
    wait_for_async("node 4 to take over", Duration::from_secs(10), || async {
        let members = admin.members().await;
        members.is_ok_and(|m| m.leader == Some(4)).then_some(())
    })
    .await;
    let down = scale("3", &args).await;
    assert_eq!(down["plan"]["transfer_to"], 0, "{down}");
    let first = &down["steps"][0];
    assert_eq!(first["node"], 0, "{down}");
    assert!(
        first["action"]
            .as_str()
            .unwrap()
            .starts_with("leadership moved here")
    );
    assert_eq!(down["retained"].as_array().unwrap().len(), 2, "{down}");
    assert_eq!(membership(&admin).await, unchanged(&[0, 1, 2]));

    // Node 3's old directory: refused, then deleted with --delete-data.
    let stderr = refused(&[&["scale", "4"][..], &args].concat()).await;
    assert!(stderr.contains("node 3: directory"), "{stderr}");
    assert!(stderr.contains("--delete-data"), "{stderr}");
    assert_eq!(pods(&platform).await, ids(&[0, 1, 2]));
    assert_eq!(membership(&admin).await, unchanged(&[0, 1, 2]));
    let up = scale("4", &[&["--delete-data"][..], &args].concat()).await;
    let actions: Vec<&str> = up["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert!(actions[0].starts_with("deleted the old data"), "{up}");
    assert_eq!(membership(&admin).await, unchanged(&[0, 1, 2, 3]));
    // Node 4's directory is still there (it was not asked for).
    assert!(dir.path().join("node-4").is_dir());

    // A restarted supervisor runs the nodes the scales left, not --nodes.
    local.stop();
    let local = Local::start(dir.path(), base);
    assert!(
        local.banner.iter().any(|l| l.starts_with("  node 3: pid ")),
        "{:?}",
        local.banner
    );
    assert!(!local.banner.iter().any(|l| l.starts_with("  node 4: ")));
    wait_until_up(&admin, &[0, 1, 2]).await;
    assert_eq!(membership(&admin).await, unchanged(&[0, 1, 2, 3]));
    println!(
        "RESULT local refusals: test {:.1}s",
        wall.elapsed().as_secs_f64()
    );
    local.stop();
}

/// How many times `local_removing_the_leader_through_itself_answers_success`
/// removes the leader: the answer was lost in about half the removals of
/// a chaos run under its workload.
const LEADER_REMOVALS: usize = 5;

/// Removing the leader through itself answers success (docs/consensus.md,
/// "Membership changes, exactly once"). The removed leader steps down as
/// its removal commits, and its answer can be lost on the way; the client
/// then retries at the next leader, which, evaluating the request afresh,
/// found no such member and refused: `raftctl member remove` failed for a
/// removal that happened. Each round adds node 3 (`raftctl scale 4`), hands
/// it leadership, and removes it with `raftctl member remove 3`, which must
/// succeed, node 3 gone and a founder leading. A write workload keeps the
/// leader's disk busy, as in chaos runs: the founders' acknowledgements of
/// the removal then tend to arrive while the leader waits on an fsync, so
/// that it steps down before the removal is applied, and the answer goes
/// out as outcome-unknown. A node that never was a member is still refused
/// with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_removing_the_leader_through_itself_answers_success() {
    let _one = one_at_a_time().await;
    let wall = Instant::now();
    let setup = LocalSetup::start();
    let admin = client(setup.endpoints());
    let node_3 = format!("127.0.0.1:{}", setup.base + 30);
    // The founders and node 3: the request goes to the leader, node 3,
    // and a retry to whichever node answers.
    let endpoints = [setup.endpoints(), vec![node_3.clone()]].concat().join(",");
    let ctl = Ctl::new().endpoints(&endpoints);
    let config = WorkloadConfig {
        clients: 8,
        registers: 3,
        pause: Duration::ZERO,
        prefix: format!("leader-removal-{:08x}", rand::random::<u32>()),
        op_timeout: Duration::from_secs(5),
        tls: None,
    };
    let epoch = tokio::time::Instant::now();
    let workload = Workload::start(config, setup.endpoints(), epoch).unwrap();
    for round in 1..=LEADER_REMOVALS {
        scale("4", &[&["--delete-data"][..], &setup.args()].concat()).await;
        wait_for_async(
            "node 3 to lead with a lease",
            Duration::from_secs(30),
            || async {
                let status = admin.status(&node_3).await.ok()?;
                if status.role == "leader" && status.lease_remaining_seconds > 0.0 {
                    return Some(());
                }
                // Refused while it catches up, or timed out: asked again.
                let _ = admin.transfer_leader(3).await;
                None
            },
        )
        .await;
        let removed = ctl.run_async(&["member", "remove", "3"]).await;
        println!("round {round}: {}", removed.stdout.trim());
        removed.ok();
        wait_for_async("a founder to lead", Duration::from_secs(10), || async {
            let members = admin.members().await.ok()?;
            members.leader.filter(|l| *l < 3).map(drop)
        })
        .await;
        assert_eq!(membership(&admin).await, (ids(&[0, 1, 2]), ids(&[])));
        setup.platform.stop_pod(3).await.unwrap();
        setup.platform.delete_data(3).await.unwrap();
    }
    drop(workload.stop().await);
    let never = ctl.run_async(&["member", "remove", "7"]).await;
    never.fails(3, "node 7 is not a member");
    println!(
        "RESULT local leader removals: {LEADER_REMOVALS} rounds, test {:.1}s",
        wall.elapsed().as_secs_f64()
    );
    setup.local.stop();
}

/// Node `id`'s process id, from the supervisor's pod list.
async fn local_pid(platform: &platform::local::Local, id: u64) -> u32 {
    use raftkv::ctl::local::control::{self, Answer, Request};
    let answer = control::ask(&platform.data_dir, &Request::Pods, Duration::from_secs(5))
        .await
        .unwrap();
    let Answer::Pods(list) = answer else {
        panic!("{answer:?}")
    };
    list.iter().find(|p| p.id == id).unwrap().pid.unwrap()
}

/// Waits until none of `down` answers a status request.
async fn wait_until_down(admin: &Client, down: &[u64]) {
    let what = format!("nodes {down:?} to stop answering");
    wait_for_async(what, Duration::from_secs(10), || async {
        let answering: Vec<u64> = admin
            .status_all()
            .await
            .into_iter()
            .filter_map(|(_, a)| a.ok().map(|s| s.id))
            .collect();
        (!down.iter().any(|id| answering.contains(id))).then_some(())
    })
    .await;
}

/// Waits until every node of `up` answers and knows a leader.
async fn wait_until_up(admin: &Client, up: &[u64]) {
    let what = format!("nodes {up:?} all up with a leader");
    wait_for_async(what, Duration::from_secs(30), || async {
        let answers: Vec<_> = admin
            .status_all()
            .await
            .into_iter()
            .filter_map(|(_, a)| a.ok())
            .collect();
        let all = up.iter().all(|id| answers.iter().any(|s| s.id == *id));
        // The leader may be a node outside `admin`'s endpoints: every
        // answer naming one will do.
        (all && answers.iter().all(|s| s.leader.is_some())).then_some(())
    })
    .await;
}

/// Whether Docker volume `name` exists.
fn volume_exists(name: &str) -> bool {
    docker::docker(&["volume", "inspect", name]).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_3_to_5_to_3_under_the_chaos_workload() {
    let Some(image) = image::image() else {
        return;
    };
    let _one = one_at_a_time().await;
    let wall = Instant::now();
    let objects = ClusterObjects::unique("rks");
    let name = objects.name.clone();
    let args = ["--platform", "docker", "--name", &name];
    let deploy = [
        &["deploy", "--image", &image, "--wait-timeout", "120s"][..],
        &args,
    ]
    .concat();
    Ctl::new().run_async(&deploy).await.ok();
    let platform = Docker { name: name.clone() };
    let endpoints = platform::endpoints(&platform.pods().await.unwrap());
    assert_eq!(endpoints.len(), 3);
    let (report, steps) = scale_under_workload(&platform, &args, endpoints.clone()).await;
    assert_passed(&report);
    // The removed members' volumes stay (and the output names them); their
    // containers are gone.
    let kept = steps["down"]["retained"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{steps}");
    assert!(volume_exists(&format!("{name}-data-3")));
    assert!(docker::docker(&["container", "inspect", &format!("{name}-3")]).is_err());
    result_line("docker scale 3->5->3", &report, &steps, wall.elapsed());

    // A scale-up onto that volume is refused; --delete-data on the way
    // down deletes it.
    let stderr = refused(&[&["scale", "5"][..], &args].concat()).await;
    assert!(
        stderr.contains(&format!("volume {name}-data-3")),
        "{stderr}"
    );
    let admin = client(endpoints);
    assert_eq!(membership(&admin).await, (ids(&[0, 1, 2]), ids(&[])));
    assert_eq!(pods(&platform).await, ids(&[0, 1, 2]));
    scale("4", &[&["--delete-data"][..], &args].concat()).await;
    assert_eq!(membership(&admin).await, (ids(&[0, 1, 2, 3]), ids(&[])));
    // deploy after a scale keeps the scaled size and the founders' template.
    let out = Ctl::new().run_async(&deploy).await.ok();
    assert!(
        out.stdout
            .contains(&format!("container/{name}-3 unchanged")),
        "{out}"
    );
    let down = scale("3", &[&["--delete-data"][..], &args].concat()).await;
    assert!(down["retained"].as_array().unwrap().is_empty(), "{down}");
    assert!(!volume_exists(&format!("{name}-data-3")));
    assert!(volume_exists(&format!("{name}-data-4")), "not asked for");
    println!(
        "RESULT docker scale test: {:.1}s in all",
        wall.elapsed().as_secs_f64()
    );
}
