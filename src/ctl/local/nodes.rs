//! The plan of a local cluster: ports, directories and the flags each
//! `raftkv` process gets (the server's agreed flag names).

use std::path::{Path, PathBuf};

use super::certs::LocalCerts;

/// Where a local cluster's nodes live: node i's ports from `base_port`, its
/// data and log under `dir` (see [`plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub base_port: u16,
    pub dir: PathBuf,
    /// `raftctl local --tls`: the certificates of every node.
    pub tls: Option<LocalCerts>,
}

impl Placement {
    /// Node `id` of this cluster (a founder; set `joins` for a node added
    /// later), with its certificate when the cluster uses TLS.
    pub fn node(&self, id: u64) -> Result<LocalNode, String> {
        let mut node = node(id, self.base_port, &self.dir)?;
        if let Some(certs) = &self.tls {
            node.tls_args = certs.server_args(id)?;
        }
        Ok(node)
    }

    /// The founding nodes (see [`plan`]), with their certificates.
    pub fn plan(&self, nodes: u64) -> Result<Vec<LocalNode>, String> {
        plan(nodes, self.base_port, &self.dir)?
            .into_iter()
            .map(|n| self.node(n.id))
            .collect()
    }
}

/// One node of a local cluster on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub id: u64,
    pub client_addr: String,
    pub peer_addr: String,
    pub http_addr: String,
    pub data_dir: PathBuf,
    /// Where the process's stdout and stderr go.
    pub log_file: PathBuf,
    /// Not a founder: added by `raftctl scale`, it joins the founders'
    /// cluster by itself (`--auto-join`) and never bootstraps.
    pub joins: bool,
    /// The TLS flags of `raftctl local --tls` (empty: plaintext).
    pub tls_args: Vec<String>,
}

/// Node i listens on client BASE+10i, peer BASE+10i+1, HTTP BASE+10i+2;
/// its data is DIR/node-i and its log DIR/node-i.log.
pub fn plan(nodes: u64, base_port: u16, dir: &Path) -> Result<Vec<LocalNode>, String> {
    let last_port = u64::from(base_port) + 10 * nodes.saturating_sub(1) + 2;
    if nodes == 0 || last_port > u64::from(u16::MAX) {
        return Err(format!(
            "{nodes} nodes from base port {base_port} do not fit below port 65536"
        ));
    }
    (0..nodes).map(|id| node(id, base_port, dir)).collect()
}

/// Node `id` of the local cluster on `base_port` in `dir` (a founder; set
/// `joins` for a node added later).
pub fn node(id: u64, base_port: u16, dir: &Path) -> Result<LocalNode, String> {
    let port = u64::from(base_port) + 10 * id;
    if port + 2 > u64::from(u16::MAX) {
        return Err(format!(
            "node {id} from base port {base_port} does not fit below port 65536"
        ));
    }
    Ok(LocalNode {
        id,
        client_addr: format!("127.0.0.1:{port}"),
        peer_addr: format!("127.0.0.1:{}", port + 1),
        http_addr: format!("127.0.0.1:{}", port + 2),
        data_dir: data_dir(dir, id),
        log_file: dir.join(format!("node-{id}.log")),
        joins: false,
        tls_args: Vec::new(),
    })
}

/// Node `id`'s data directory inside the local cluster's directory `dir`.
pub fn data_dir(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("node-{id}"))
}

/// `--peers 0=HOST:PEER_PORT,1=...` for every node of the plan.
pub fn peers_flag(nodes: &[LocalNode]) -> String {
    nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.peer_addr))
        .collect::<Vec<_>>()
        .join(",")
}

/// The command-line arguments of `raftkv` for `node`; `peers` is the
/// founders' list. A node that `joins` is listed after the founders and gets
/// `--auto-join`: finding the founders already in a cluster, it asks their
/// leader to add it as a learner and to promote it once caught up.
pub fn server_args(node: &LocalNode, peers: &str) -> Vec<String> {
    let listed = peers.split(',').any(|p| {
        p.split_once('=')
            .is_some_and(|(id, _)| id == node.id.to_string())
    });
    let peers = if node.joins && !listed {
        format!("{peers},{}={}", node.id, node.peer_addr)
    } else {
        peers.to_string()
    };
    let mut args = vec![
        "--id".into(),
        node.id.to_string(),
        "--data-dir".into(),
        node.data_dir.display().to_string(),
        "--client-addr".into(),
        node.client_addr.clone(),
        "--peer-addr".into(),
        node.peer_addr.clone(),
        "--http-addr".into(),
        node.http_addr.clone(),
        "--peers".into(),
        peers,
    ];
    if node.joins {
        args.push("--auto-join".into());
    }
    args.extend(node.tls_args.iter().cloned());
    args
}

/// Founders with ids below this talk to each other through the link
/// proxies of `raftctl local` (docs/raftctl.md, "Faults on local links"):
/// node `to` has the seven spare ports BASE+10·to+3..=9, one per sender.
pub const PROXIED_IDS: u64 = 7;

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// The address node `from` dials to reach peer `to` through its link
/// proxy: `to`'s peer port + 2 + `from`. None for a link without one.
pub fn link_addr(from: u64, to: &LocalNode) -> Option<String> {
    if from >= PROXIED_IDS || to.id >= PROXIED_IDS || from == to.id {
        return None;
    }
    let port = u64::from(port_of(&to.peer_addr)?) + 2 + from;
    u16::try_from(port)
        .ok()
        .map(|port| format!("127.0.0.1:{port}"))
}

/// The cluster id the founders of `founders` derive from their peer list
/// when they are given none: behind proxies every node sees another peer
/// list, so the supervisor passes this one, and data directories made
/// before the proxies keep it.
pub fn derived_cluster_id(founders: &[LocalNode]) -> String {
    let mut sorted: Vec<&LocalNode> = founders.iter().collect();
    sorted.sort_by_key(|n| n.id);
    crate::server::derived_cluster_id(sorted.iter().map(|n| (n.id, n.peer_addr.as_str())))
}

/// The cluster id the founders run under behind the link proxies: the one
/// their data directories already hold (a cluster made before the proxies,
/// or restored from a backup under a new id), else the derived one.
pub fn founders_cluster_id(founders: &[LocalNode]) -> Result<String, String> {
    for node in founders {
        let held = crate::storage::read_identity(&node.data_dir)
            .map_err(|e| format!("data directory {}: {e}", node.data_dir.display()))?;
        if let Some(identity) = held {
            return Ok(identity.cluster_id);
        }
    }
    Ok(derived_cluster_id(founders))
}

/// The arguments of founder `node` whose peers are reached through the
/// link proxies: `--peers` with each proxy's address, the peers' real
/// client addresses (the server would derive them from the proxy's port)
/// and the cluster id the unproxied list gives.
pub fn proxied_server_args(
    node: &LocalNode,
    founders: &[LocalNode],
    cluster_id: &str,
) -> Vec<String> {
    let peers = founders
        .iter()
        .map(|f| {
            let addr = link_addr(node.id, f).unwrap_or_else(|| f.peer_addr.clone());
            format!("{}={addr}", f.id)
        })
        .collect::<Vec<_>>()
        .join(",");
    let clients = founders
        .iter()
        .map(|f| format!("{}={}", f.id, f.client_addr))
        .collect::<Vec<_>>()
        .join(",");
    let mut args = server_args(node, &peers);
    args.extend([
        "--peer-client-addrs".into(),
        clients,
        "--cluster-id".into(),
        cluster_id.into(),
    ]);
    args
}

/// The client endpoints of the plan, comma separated.
pub fn endpoints(nodes: &[LocalNode]) -> String {
    nodes
        .iter()
        .map(|n| n.client_addr.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_matches_the_default_endpoints() {
        let nodes = plan(3, 7379, Path::new("d")).unwrap();
        assert_eq!(endpoints(&nodes), crate::ctl::cli::DEFAULT_ENDPOINTS);
        assert_eq!(nodes[2].peer_addr, "127.0.0.1:7400");
        assert_eq!(nodes[2].http_addr, "127.0.0.1:7401");
        assert_eq!(nodes[1].data_dir, Path::new("d/node-1"));
        assert_eq!(nodes[1].log_file, Path::new("d/node-1.log"));
        assert_eq!(
            peers_flag(&nodes),
            "0=127.0.0.1:7380,1=127.0.0.1:7390,2=127.0.0.1:7400"
        );
    }

    #[test]
    fn server_args_use_the_agreed_flags() {
        let nodes = plan(3, 7379, Path::new("d")).unwrap();
        let args = server_args(&nodes[1], &peers_flag(&nodes));
        assert_eq!(
            args.join(" "),
            "--id 1 --data-dir d/node-1 --client-addr 127.0.0.1:7389 \
             --peer-addr 127.0.0.1:7390 --http-addr 127.0.0.1:7391 \
             --peers 0=127.0.0.1:7380,1=127.0.0.1:7390,2=127.0.0.1:7400"
        );
    }

    #[test]
    fn a_joining_node_lists_itself_after_the_founders_and_auto_joins() {
        let nodes = plan(3, 7379, Path::new("d")).unwrap();
        let mut extra = node(3, 7379, Path::new("d")).unwrap();
        extra.joins = true;
        let args = server_args(&extra, &peers_flag(&nodes)).join(" ");
        assert!(
            args.ends_with(
                "--peers 0=127.0.0.1:7380,1=127.0.0.1:7390,2=127.0.0.1:7400,3=127.0.0.1:7410 --auto-join"
            ),
            "{args}"
        );
        assert_eq!(extra.data_dir, data_dir(Path::new("d"), 3));
        assert!(node(7000, 7379, Path::new("d")).is_err());
    }

    #[test]
    fn ports_must_fit() {
        assert!(plan(5, 65500, Path::new("d")).is_err());
        assert!(plan(0, 7379, Path::new("d")).is_err());
        assert_eq!(plan(5, 65493, Path::new("d")).unwrap().len(), 5);
    }

    #[test]
    fn links_have_fixed_ports_and_keep_the_cluster_id() {
        let nodes = plan(3, 7379, Path::new("d")).unwrap();
        // Node 1 reaches node 2 (peer port 7400) at 7400 + 2 + 1.
        assert_eq!(link_addr(1, &nodes[2]).as_deref(), Some("127.0.0.1:7403"));
        assert_eq!(link_addr(0, &nodes[0]), None);
        assert_eq!(link_addr(7, &nodes[0]), None);
        // What the server derives from `--peers 0=..7380,1=..7390,2=..7400`.
        assert_eq!(derived_cluster_id(&nodes), "raftkv-a3cf9648a63c49e6");
        let args = proxied_server_args(&nodes[1], &nodes, "c").join(" ");
        assert!(
            args.contains(
                "--peers 0=127.0.0.1:7383,1=127.0.0.1:7390,2=127.0.0.1:7403 \
                 --peer-client-addrs 0=127.0.0.1:7379,1=127.0.0.1:7389,2=127.0.0.1:7399 \
                 --cluster-id c"
            ),
            "{args}"
        );
    }

    #[test]
    fn founders_keep_the_cluster_id_their_data_holds() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = plan(3, 7379, dir.path()).unwrap();
        assert_eq!(
            founders_cluster_id(&nodes).unwrap(),
            derived_cluster_id(&nodes)
        );
        // A restored cluster's id, which no peer list derives.
        let restored = crate::storage::Identity {
            cluster_id: "raftkv-restored".into(),
            node_id: 1,
            incarnation: 0,
        };
        std::fs::create_dir_all(&nodes[1].data_dir).unwrap();
        crate::storage::identity::write(&nodes[1].data_dir, &restored).unwrap();
        assert_eq!(founders_cluster_id(&nodes).unwrap(), "raftkv-restored");
    }
}
