//! `raftctl local`: a cluster of `raftkv` processes on 127.0.0.1, started,
//! waited on until a leader holds its lease, and supervised until Ctrl-C.

mod certs;
pub mod clock;
pub mod control;
pub mod disk;
pub mod links;
mod nodes;
mod procs;

pub(crate) use procs::send_signal;

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

pub use certs::LocalCerts;
pub use nodes::{
    LocalNode, PROXIED_IDS, Placement, data_dir, derived_cluster_id, endpoints,
    founders_cluster_id, link_addr, peers_flag, plan, server_args,
};
pub use procs::LocalCluster;

use super::cli::{DEFAULT_ENDPOINTS, LocalArgs};
use super::exit::{CtlError, Exit};
use super::signals::{Request, Signals};
use crate::client::{Client, ClientOptions};
use links::Links;

/// How long nodes get to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);
/// How long to wait for a leader with a lease before giving up.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// How often the supervisor looks at its processes.
const POLL: Duration = Duration::from_millis(250);
/// The file in the data directory that records the supervised nodes once
/// `raftctl scale` changed them, so that a restarted `raftctl local`
/// supervises the same nodes rather than its `--nodes` founders.
const NODES_FILE: &str = "raftctl-local.nodes.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct SavedNodes {
    /// The supervised nodes' ids; those at or above the founder count join.
    nodes: Vec<u64>,
}

/// Records the supervised nodes (after a scale changed them).
fn save_nodes(cluster: &LocalCluster, placement: &Placement) -> Result<(), String> {
    let saved = SavedNodes {
        nodes: cluster.nodes().iter().map(|n| n.id).collect(),
    };
    let path = placement.dir.join(NODES_FILE);
    let text = serde_json::to_string(&saved).map_err(|e| e.to_string())?;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .map_err(|e| format!("cannot record the nodes in {}: {e}", path.display()))
}

/// The nodes to supervise: those a scale recorded, else `founders` of them.
fn nodes_to_run(founders: u64, placement: &Placement) -> Result<Vec<LocalNode>, CtlError> {
    let founding = placement
        .plan(founders)
        .map_err(|e| CtlError::new(Exit::BadInput, e))?;
    let path = placement.dir.join(NODES_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(founding),
        Err(e) => {
            return Err(CtlError::error(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let saved: SavedNodes = serde_json::from_str(&text).map_err(|e| {
        CtlError::error(format!(
            "{} is damaged ({e}); it lists the nodes `raftctl scale` left running: fix or remove it",
            path.display()
        ))
    })?;
    let mut nodes = Vec::new();
    for id in saved.nodes {
        let mut node = placement
            .node(id)
            .map_err(|e| CtlError::new(Exit::BadInput, e))?;
        node.joins = id >= founders;
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(CtlError::error(format!(
            "{} lists no node; remove it to start the {founders} founders",
            path.display()
        )));
    }
    eprintln!(
        "resuming the nodes a scale left running ({}): {:?}",
        path.display(),
        nodes.iter().map(|n| n.id).collect::<Vec<_>>()
    );
    Ok(nodes)
}

/// The `raftkv` binary beside this executable (both come from one build).
pub fn server_binary() -> Result<PathBuf, CtlError> {
    let exe = std::env::current_exe()
        .map_err(|e| CtlError::error(format!("cannot locate raftctl itself: {e}")))?;
    let binary = exe.with_file_name("raftkv");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(CtlError::error(format!(
            "no raftkv binary at {}; build it with `cargo build --release` (raftctl local runs \
             the raftkv next to raftctl)",
            binary.display()
        )))
    }
}

pub async fn run(args: &LocalArgs) -> Result<(), CtlError> {
    if args.data_dir.exists() && !args.data_dir.is_dir() {
        return Err(CtlError::new(
            Exit::BadInput,
            format!("--data-dir {} is not a directory", args.data_dir.display()),
        ));
    }
    // Absolute, so the nodes' flags and the printed exports work from
    // any directory.
    let data_dir = std::path::absolute(&args.data_dir)
        .map_err(|e| CtlError::error(format!("--data-dir {}: {e}", args.data_dir.display())))?;
    let tls = match args.tls {
        false => None,
        true => Some(LocalCerts::open(&data_dir).map_err(CtlError::error)?),
    };
    let placement = Placement {
        base_port: args.base_port,
        dir: args.data_dir.clone(),
        tls,
    };
    let nodes = nodes_to_run(args.nodes.into(), &placement)?;
    let binary = server_binary()?;
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|e| CtlError::error(format!("cannot create {}: {e}", args.data_dir.display())))?;
    let mut signals = Signals::install()?;
    let control = control::bind(&args.data_dir).await?;
    ports_free(&nodes)?;
    let founders: Vec<LocalNode> = nodes.iter().filter(|n| !n.joins).cloned().collect();
    // The founders talk through the link proxies, which pass every byte
    // until `raftctl chaos` asks otherwise (docs/raftctl.md).
    let mut links = match founders.len() > 1 {
        true => Some(Links::bind(&founders).await.map_err(CtlError::error)?),
        false => None,
    };
    let mut cluster = match &links {
        Some(_) => {
            let founding = placement
                .plan(args.nodes.into())
                .map_err(|e| CtlError::new(Exit::BadInput, e))?;
            let cluster_id = founders_cluster_id(&founding).map_err(CtlError::error)?;
            LocalCluster::start_proxied(&binary, nodes, cluster_id)?
        }
        None => LocalCluster::start(&binary, nodes)?,
    };

    let started = tokio::select! {
        waited = wait_for_leader(&mut cluster, placement.tls.as_ref()) => Some(waited),
        _ = signals.stop() => None,
    };
    eprintln!();
    let leader = match started {
        Some(Ok(leader)) => leader,
        Some(Err(e)) => {
            stop(&mut cluster).await;
            return Err(e);
        }
        // Interrupted while waiting: a clean stop, not an error.
        None => {
            stop(&mut cluster).await;
            return Ok(());
        }
    };
    print_ready(&cluster, leader, args, placement.tls.as_ref());
    let supervised = supervise(
        &mut cluster,
        &mut signals,
        &control,
        &placement,
        args.restart,
        links.as_mut(),
    )
    .await;
    drop(control);
    let _ = std::fs::remove_file(control::socket_path(&args.data_dir));
    stop(&mut cluster).await;
    supervised
}

/// Fails fast, naming the port, if any port of the plan is taken (another
/// local cluster, or any other process): the nodes would exit with
/// "address in use", and whatever listens there would answer in their place.
fn ports_free(nodes: &[LocalNode]) -> Result<(), CtlError> {
    for node in nodes {
        let ports = [
            ("client", &node.client_addr),
            ("peer", &node.peer_addr),
            ("HTTP", &node.http_addr),
        ];
        for (what, addr) in ports {
            if let Err(e) = std::net::TcpListener::bind(addr.as_str()) {
                return Err(CtlError::error(format!(
                    "port conflict: {addr} (node {} {what} port) is taken ({e}); is another \
                     raftkv cluster running? Stop it or choose --base-port",
                    node.id
                )));
            }
        }
    }
    // The link proxies' ports are checked as they are bound (`Links::bind`).
    Ok(())
}

/// Checks that the process answering at node `index`'s client address is
/// the one this supervisor started (a pid in its status), not another
/// process that holds the port.
fn check_identity(
    cluster: &LocalCluster,
    index: usize,
    status: &crate::pb::StatusResponse,
) -> Result<(), CtlError> {
    let node = &cluster.nodes()[index];
    let ours = cluster.pid(index);
    if status.pid != 0 && Some(status.pid) == ours && status.id == node.id {
        return Ok(());
    }
    Err(CtlError::error(format!(
        "port conflict: {} is answered by another process (node {}, pid {}, cluster {}), not by \
         node {} that raftctl local started (pid {}); stop the other cluster or choose --base-port",
        node.client_addr,
        status.id,
        status.pid,
        status.cluster_id,
        node.id,
        ours.map_or("-".into(), |p| p.to_string())
    )))
}

/// Polls every node's status until one is leader with a lease; its id.
/// A node that exits meanwhile aborts the start (its log says why).
async fn wait_for_leader(
    cluster: &mut LocalCluster,
    tls: Option<&LocalCerts>,
) -> Result<u64, CtlError> {
    let endpoints = cluster
        .nodes()
        .iter()
        .map(|n| n.client_addr.clone())
        .collect();
    let options = ClientOptions {
        attempt_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        tls: tls
            .map(LocalCerts::client_tls)
            .transpose()
            .map_err(CtlError::error)?,
        ..ClientOptions::default()
    };
    let client = Client::lazy(endpoints, options)?;
    let start = Instant::now();
    loop {
        if let Some((index, status)) = cluster.reap().into_iter().next() {
            let node = &cluster.nodes()[index];
            return Err(CtlError::error(format!(
                "node {} exited during startup ({status}); see {}",
                node.id,
                node.log_file.display()
            )));
        }
        let answers = client.status_all().await;
        for (index, (_, answer)) in answers.iter().enumerate() {
            if let Ok(status) = answer {
                check_identity(cluster, index, status)?;
            }
        }
        let up = answers.iter().filter(|(_, a)| a.is_ok()).count();
        let leader = answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok())
            .find(|s| s.leads_with_lease());
        if let Some(leader) = leader {
            return Ok(leader.id);
        }
        let elapsed = start.elapsed();
        if elapsed > STARTUP_LIMIT {
            return Err(CtlError::new(
                Exit::Unhealthy,
                format!(
                    "no leader after {}s; see the logs in {}",
                    STARTUP_LIMIT.as_secs(),
                    log_dir(cluster)
                ),
            ));
        }
        eprint!(
            "\rwaiting for a leader with a lease: {up}/{} nodes answering ({:.0}s)  ",
            answers.len(),
            elapsed.as_secs_f64()
        );
        tokio::time::sleep(POLL).await;
    }
}

fn log_dir(cluster: &LocalCluster) -> String {
    cluster
        .nodes()
        .first()
        .and_then(|n| n.log_file.parent())
        .map_or_else(|| ".".into(), |d| d.display().to_string())
}

fn print_ready(cluster: &LocalCluster, leader: u64, args: &LocalArgs, tls: Option<&LocalCerts>) {
    let nodes = cluster.nodes();
    let endpoints = endpoints(nodes);
    println!(
        "raftkv local cluster: {} nodes, leader is node {leader}",
        nodes.len()
    );
    println!("  endpoints: {endpoints}");
    for (i, node) in nodes.iter().enumerate() {
        let pid = cluster.pid(i).map_or("-".into(), |p| p.to_string());
        println!(
            "  node {}: pid {pid}, data {}, log {}",
            node.id,
            node.data_dir.display(),
            node.log_file.display()
        );
    }
    if endpoints != DEFAULT_ENDPOINTS {
        println!("  these are not raftctl's default endpoints; first run:");
        println!("    export RAFTKV_ENDPOINTS={endpoints}");
    }
    if let Some(certs) = tls {
        let (cert, key) = certs.client();
        println!("  TLS with client certificates (user root); first run:");
        println!(
            "    export RAFTKV_CACERT={} RAFTKV_CERT={} RAFTKV_KEY={}",
            certs.ca().display(),
            cert.display(),
            key.display()
        );
    }
    let ctl = command_name();
    println!("Try:");
    println!("  {ctl} set greeting hello");
    println!("  {ctl} get greeting");
    println!("  {ctl} status");
    let mut rerun = format!("{ctl} local --data-dir {}", args.data_dir.display());
    if args.nodes != 3 {
        rerun.push_str(&format!(" --nodes {}", args.nodes));
    }
    if args.base_port != 7379 {
        rerun.push_str(&format!(" --base-port {}", args.base_port));
    }
    if args.tls {
        rerun.push_str(" --tls");
    }
    println!("Ctrl-C stops the cluster; `{rerun}` resumes it.");
    if args.restart {
        println!("A node that exits is restarted after 1 s.");
    } else {
        println!(
            "A node that exits stays down; `kill -HUP {}` restarts dead nodes.",
            std::process::id()
        );
    }
}

/// How to type this raftctl: `raftctl` if that is the one on PATH, else its
/// path relative to the working directory (`target/release/raftctl` in the
/// repository), else its full path.
fn command_name() -> String {
    let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize()) else {
        return "raftctl".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| dir.join("raftctl").canonicalize().is_ok_and(|p| p == exe))
    });
    if on_path {
        return "raftctl".into();
    }
    let cwd = std::env::current_dir().and_then(|d| d.canonicalize());
    match cwd.as_ref().ok().and_then(|d| exe.strip_prefix(d).ok()) {
        Some(relative) => relative.display().to_string(),
        None => exe.display().to_string(),
    }
}

/// Watches the processes until Ctrl-C or SIGTERM. A node that exits is
/// reported and left down (fault tests kill nodes on purpose), unless
/// `restart`; SIGHUP restarts every dead node at once. Requests on the
/// control socket (`raftctl delete-pod`, `chaos`, `scale --platform local`)
/// are served in turn. Fails (exit 1) once every node has exited and none is
/// due to restart.
async fn supervise(
    cluster: &mut LocalCluster,
    signals: &mut Signals,
    control: &tokio::net::UnixListener,
    placement: &Placement,
    restart: bool,
    mut links: Option<&mut Links>,
) -> Result<(), CtlError> {
    let pid = std::process::id();
    // Nodes due to restart, by id: a scale may add or remove nodes meanwhile.
    let mut due: Vec<(u64, Instant)> = Vec::new();
    loop {
        let request = tokio::select! {
            request = signals.next() => Some(request),
            accepted = control.accept() => {
                if let Ok((stream, _)) = accepted {
                    control::serve(stream, cluster, placement, links.as_deref_mut()).await;
                }
                None
            }
            _ = tokio::time::sleep(POLL) => None,
        };
        if let Some(links) = links.as_deref_mut()
            && links.heal_at().is_some_and(|at| at <= Instant::now())
        {
            links.heal();
            eprintln!("links healed: their fault's length is over");
        }
        if request == Some(Request::Stop) {
            return Ok(());
        }
        for id in cluster.skews_due(Instant::now()) {
            eprintln!("node {id}: its skew's length is over");
            if let control::Answer::Error(e) = control::reclock(cluster, id, None, GRACE).await {
                eprintln!("node {id} could not be put back on the real clock: {e}");
            }
        }
        for id in disk::due(cluster, Instant::now()) {
            eprintln!("node {id}: its disk fault's length is over");
            let index = cluster.index_of(id).expect("a supervised node");
            if let Err(e) = disk::restore(cluster, index, GRACE).await {
                eprintln!("node {id} could not be put back on a sound disk: {e}");
            }
        }
        for (index, status) in cluster.reap() {
            let node = &cluster.nodes()[index];
            eprintln!(
                "node {} exited ({status}); log: {}",
                node.id,
                node.log_file.display()
            );
            if restart {
                due.push((node.id, Instant::now() + Duration::from_secs(1)));
            } else {
                eprintln!("  it stays down; `kill -HUP {pid}` restarts dead nodes");
            }
        }
        if request == Some(Request::Restart) {
            due = (0..cluster.nodes().len())
                .filter(|&index| !cluster.is_running(index))
                .map(|index| (cluster.nodes()[index].id, Instant::now()))
                .collect();
        }
        let now = Instant::now();
        let (ready, later): (Vec<_>, Vec<_>) = due.into_iter().partition(|(_, at)| *at <= now);
        due = later;
        for (id, _) in ready {
            // Stopped for good by a scale since it exited: not restarted.
            let Some(index) = cluster.index_of(id) else {
                continue;
            };
            if cluster.is_running(index) {
                continue;
            }
            match cluster.spawn(index) {
                Ok(()) => {
                    let pid = cluster.pid(index).map_or("-".into(), |p| p.to_string());
                    eprintln!("node {id} restarted: pid {pid}");
                }
                Err(e) => eprintln!("node {id} could not be restarted: {e}"),
            }
        }
        let running = (0..cluster.nodes().len()).any(|i| cluster.is_running(i));
        if !running && due.is_empty() {
            return Err(CtlError::error(format!(
                "every node of the local cluster has exited; see the logs in {}",
                log_dir(cluster)
            )));
        }
    }
}

async fn stop(cluster: &mut LocalCluster) {
    eprintln!(
        "stopping the cluster (SIGTERM, up to {}s)...",
        GRACE.as_secs()
    );
    let killed = cluster.shutdown(GRACE).await;
    for id in &killed {
        eprintln!("node {id} did not stop in time and was killed");
    }
    // A node left on a small volume gets its data back in its directory.
    for index in 0..cluster.nodes().len() {
        if let Err(e) = disk::release(cluster, index) {
            eprintln!("node {}: {e}", cluster.nodes()[index].id);
        }
    }
    eprintln!(
        "all {} nodes have stopped{}",
        cluster.nodes().len(),
        if killed.is_empty() {
            ""
        } else {
            " (some killed)"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[tokio::test]
    async fn a_node_answering_with_another_pid_is_a_port_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("raftkv");
        std::fs::write(&binary, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        let nodes = plan(1, 17579, &dir.path().join("data")).unwrap();
        let mut cluster = LocalCluster::start(&binary, nodes).unwrap();
        let ours = cluster.pid(0).unwrap();
        let answer = |id, pid| crate::pb::StatusResponse {
            id,
            pid,
            cluster_id: "other".into(),
            ..Default::default()
        };
        assert_eq!(check_identity(&cluster, 0, &answer(0, ours)), Ok(()));
        let err = check_identity(&cluster, 0, &answer(0, 1)).unwrap_err();
        assert!(
            err.message.starts_with("port conflict: 127.0.0.1:17579 is answered by another process (node 0, pid 1, cluster other)"),
            "{err}"
        );
        assert!(check_identity(&cluster, 0, &answer(2, ours)).is_err());
        cluster.shutdown(Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn a_scaled_cluster_resumes_with_the_recorded_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let placement = Placement {
            base_port: 17679,
            dir: dir.path().to_path_buf(),
            tls: None,
        };
        let ids = |nodes: Vec<LocalNode>| -> Vec<(u64, bool)> {
            nodes.into_iter().map(|n| (n.id, n.joins)).collect()
        };
        // Nothing recorded: the founders.
        let founders = nodes_to_run(3, &placement).unwrap();
        assert_eq!(
            ids(founders.clone()),
            vec![(0, false), (1, false), (2, false)]
        );
        // A scale recorded 0, 1, 3: node 3 joins, node 2 is gone.
        let mut cluster = LocalCluster::start(Path::new("/bin/true"), Vec::new()).unwrap();
        for mut node in founders.into_iter().filter(|n| n.id != 2) {
            node.joins = false;
            cluster.add(node).unwrap();
        }
        let mut extra = nodes::node(3, 17679, dir.path()).unwrap();
        extra.joins = true;
        cluster.add(extra).unwrap();
        save_nodes(&cluster, &placement).unwrap();
        assert_eq!(
            ids(nodes_to_run(3, &placement).unwrap()),
            vec![(0, false), (1, false), (3, true)]
        );
        std::fs::write(dir.path().join(NODES_FILE), "{").unwrap();
        let err = nodes_to_run(3, &placement).unwrap_err();
        assert!(err.message.contains("is damaged"), "{err}");
        cluster.shutdown(Duration::from_secs(1)).await;
    }

    #[test]
    fn taken_ports_are_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        // Node 0's HTTP port is BASE + 2.
        let nodes = plan(1, port - 2, dir.path()).unwrap();
        let err = ports_free(&nodes).unwrap_err();
        // Our port, unless another process holds BASE or BASE + 1 too.
        assert!(
            err.message.starts_with("port conflict: 127.0.0.1:"),
            "{err}"
        );
        assert!(err.message.contains(") is taken ("), "{err}");
        drop(taken);
    }
}
