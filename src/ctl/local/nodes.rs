//! The plan of a local cluster: ports, directories and the flags each
//! `raftkv` process gets (the server's agreed flag names).

use std::path::{Path, PathBuf};

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
    Ok((0..nodes)
        .map(|id| {
            let port = u64::from(base_port) + 10 * id;
            LocalNode {
                id,
                client_addr: format!("127.0.0.1:{port}"),
                peer_addr: format!("127.0.0.1:{}", port + 1),
                http_addr: format!("127.0.0.1:{}", port + 2),
                data_dir: dir.join(format!("node-{id}")),
                log_file: dir.join(format!("node-{id}.log")),
            }
        })
        .collect())
}

/// `--peers 0=HOST:PEER_PORT,1=...` for every node of the plan.
pub fn peers_flag(nodes: &[LocalNode]) -> String {
    nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.peer_addr))
        .collect::<Vec<_>>()
        .join(",")
}

/// The command-line arguments of `raftkv` for `node`.
pub fn server_args(node: &LocalNode, peers: &str) -> Vec<String> {
    vec![
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
        peers.to_string(),
    ]
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
    fn ports_must_fit() {
        assert!(plan(5, 65500, Path::new("d")).is_err());
        assert!(plan(0, 7379, Path::new("d")).is_err());
        assert_eq!(plan(5, 65493, Path::new("d")).unwrap().len(), 5);
    }
}
