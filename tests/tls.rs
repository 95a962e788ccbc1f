//! TLS on real processes (docs/security.md): each refusal a client, a peer
//! or a node's own configuration can meet says what was wrong, and each
//! acceptance works — a secure cluster serving raftctl, a member admitted
//! with its own certificate, certificates replaced without a restart.
//! Certificates are made here with the same generator `raftctl local
//! --tls` uses.

mod common;

use common::cluster::{Cluster, http_get};
use common::ctl::{Ctl, RAFTKV};
use common::ports::free_port;
use common::wait::{wait_for, wait_for_async};
use raftkv::pb;
use raftkv::tls::generate::{Authority, Leaf};
use raftkv::tls::{ClientFiles, ClientTls};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tonic::transport::Endpoint;

/// A CA and certificates written as files under one directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: Authority,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        // Each its own name: webpki finds an issuer by name.
        let ca = Authority::new(&format!("test CA {}", dir.path().display())).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.cert_pem).unwrap();
        Pki { dir, ca }
    }

    fn ca(&self) -> String {
        self.path("ca.crt")
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// Issues `leaf` as NAME.crt and NAME.key; their paths.
    fn issue(&self, name: &str, leaf: &Leaf) -> (String, String) {
        let pair = self.ca.issue(leaf).unwrap();
        let (cert, key) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        write_atomically(Path::new(&cert), &pair.cert_pem);
        write_atomically(Path::new(&key), &pair.key_pem);
        (cert, key)
    }

    /// Member `id`'s certificate, valid for 127.0.0.1 only.
    fn member(&self, id: u64) -> (String, String) {
        self.issue(
            &format!("node-{id}"),
            &Leaf::member(id, &["127.0.0.1".into()]),
        )
    }

    /// A node's TLS flags: its certificate on both ports, client
    /// certificates required on the client port.
    fn node_flags(&self, cert: &str, key: &str) -> Vec<String> {
        let ca = self.ca();
        [
            "--cert-file",
            cert,
            "--key-file",
            key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
            "--peer-cert-file",
            cert,
            "--peer-key-file",
            key,
            "--peer-trusted-ca-file",
            &ca,
        ]
        .map(String::from)
        .to_vec()
    }

    /// raftctl as user root.
    fn root(&self) -> Vec<String> {
        let (cert, key) = self.issue("root", &Leaf::user("root"));
        ["--cacert", &self.ca(), "--cert", &cert, "--key", &key]
            .map(String::from)
            .to_vec()
    }
}

fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(temporary, path).unwrap();
}

/// A cluster of `n` members, each with its own member certificate.
fn secure_cluster(name: &str, n: usize, pki: &Pki) -> Cluster {
    let mut c = Cluster::plan(name, n, &[]);
    for i in 0..n {
        spawn_with_certificate(&mut c, i, pki, &pki.member(i as u64));
    }
    c
}

/// Starts node `i` with `(cert, key)` on both ports.
fn spawn_with_certificate(c: &mut Cluster, i: usize, pki: &Pki, (cert, key): &(String, String)) {
    let flags = pki.node_flags(cert, key);
    c.spawn_with(i, &flags.iter().map(String::as_str).collect::<Vec<_>>());
}

/// Waits until the log of one of `nodes` contains `text`.
fn wait_logged(c: &Cluster, nodes: std::ops::Range<usize>, text: &str, limit: Duration) {
    wait_for(format!("a node's log says {text:?}"), limit, || {
        nodes
            .clone()
            .any(|i| log(c, i).contains(text))
            .then_some(())
    });
}

fn ctl_with(c: &Cluster, flags: &[String]) -> Ctl {
    c.ctl().tail(flags)
}

fn log(c: &Cluster, i: usize) -> String {
    std::fs::read_to_string(c.log_path(i)).unwrap_or_default()
}

fn metric(addr: &str, name: &str) -> Option<f64> {
    let (_, text) = http_get(addr, "/metrics").ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until a write through TLS as root succeeds.
fn wait_serving(c: &Cluster, root: &[String]) {
    wait_for(
        "the secure cluster takes a write",
        Duration::from_secs(30),
        || {
            ctl_with(c, root)
                .run(&["set", "ready", "yes"])
                .success()
                .then_some(())
        },
    );
}

#[test]
fn clients_are_served_over_tls_and_each_refusal_says_why() {
    let pki = Pki::new();
    let c = secure_cluster("tls-clients", 3, &pki);
    let root = pki.root();
    wait_serving(&c, &root);
    assert_eq!(
        ctl_with(&c, &root)
            .run(&["get", "ready"])
            .ok()
            .stdout
            .trim(),
        "yes"
    );

    // Plaintext to a TLS port: unreachable, with a hint; the node says why.
    c.ctl()
        .run(&["get", "ready"])
        .fails(2, "hint: if the cluster uses TLS, give --cacert");
    wait_logged(
        &c,
        0..3,
        "sent plaintext to a TLS port",
        Duration::from_secs(5),
    );

    // The nodes' certificates from an unknown CA.
    let other = Pki::new();
    let mut unknown_ca = root.clone();
    unknown_ca[1] = other.ca();
    ctl_with(&c, &unknown_ca)
        .run(&["get", "ready"])
        .fails(1, "is not signed by a trusted CA");

    // No client certificate where one is required.
    let ca_only = ["--cacert".to_string(), pki.ca()];
    ctl_with(&c, &ca_only).run(&["get", "ready"]).fails(
        1,
        "the node requires a client certificate (raftctl: --cert and --key)",
    );

    // A name the node's certificate does not carry.
    let port = c.nodes[0].client.rsplit_once(':').unwrap().1;
    Ctl::new()
        .endpoints(&format!("localhost:{port}"))
        .tail(&root)
        .run(&["get", "ready"])
        .fails(1, "is not valid for localhost");

    // A client certificate from another CA: the node refuses it and logs why.
    let (cert, key) = other.issue("mallory", &Leaf::user("mallory"));
    let foreign = ["--cacert", &pki.ca(), "--cert", &cert, "--key", &key].map(String::from);
    let out = ctl_with(&c, &foreign).run(&["get", "ready"]);
    assert!(!out.success(), "{out}");
    let foreign_refused = "the client's certificate is not signed by a trusted CA";
    wait_logged(&c, 0..3, foreign_refused, Duration::from_secs(5));
    let refused = (0..3)
        .filter_map(|i| {
            metric(
                &c.nodes[i].http,
                "raftkv_tls_handshake_failures_total{port=\"client\"}",
            )
        })
        .sum::<f64>();
    assert!(refused >= 2.0, "refused handshakes counted: {refused}");

    // An expired client certificate is refused before dialing.
    let mut expired = Leaf::user("old");
    (expired.from_days, expired.until_days) = (-30, -1);
    let (cert, key) = pki.issue("old", &expired);
    let stale = ["--cacert", &pki.ca(), "--cert", &cert, "--key", &key].map(String::from);
    ctl_with(&c, &stale)
        .run(&["get", "ready"])
        .fails(3, "the certificate expired at");

    // Half a setting is refused, not ignored.
    ctl_with(&c, &["--cert".into(), cert.clone()])
        .run(&["get", "ready"])
        .fails(3, "--cert and --key go together");
    ctl_with(&c, &["--cert".into(), cert, "--key".into(), key])
        .run(&["get", "ready"])
        .fails(3, "--cert and --key need --cacert");

    // One node with a certificate that does not fit: the others serve,
    // even when it is the first endpoint; alone, it is refused by name.
    let mut c = c;
    c.kill(0);
    let wrong_name = pki.issue("wrong-name", &Leaf::member(0, &["localhost".into()]));
    spawn_with_certificate(&mut c, 0, &pki, &wrong_name);
    let first = c.nodes[0].client.clone();
    wait_for(
        "node 0 serves its new certificate",
        Duration::from_secs(10),
        || {
            let out = Ctl::new()
                .endpoints(&first)
                .tail(&root)
                .run(&["get", "ready"]);
            out.stderr
                .contains("is not valid for 127.0.0.1")
                .then_some(out)
        },
    )
    .fails(1, "TLS with 127.0.0.1");
    let all = c.endpoints().join(",");
    let out = Ctl::new()
        .endpoints(&all)
        .tail(&root)
        .run(&["get", "ready"])
        .ok();
    assert_eq!(out.stdout.trim(), "yes");
}

/// `Hello` to node `i`'s peer port as `from`, over TLS with `identity`.
async fn hello(
    c: &Cluster,
    i: usize,
    pki: &Pki,
    identity: (String, String),
    from: u64,
) -> Result<pb::HelloResponse, tonic::Status> {
    let tls = ClientTls::new(ClientFiles {
        ca: PathBuf::from(pki.ca()),
        identity: Some((identity.0.into(), identity.1.into())),
    })
    .unwrap();
    let endpoint = Endpoint::from_shared(format!("http://{}", c.nodes[i].peer)).unwrap();
    let channel = raftkv::tls::channel(endpoint, Some(&tls)).await.unwrap();
    pb::raft_client::RaftClient::new(channel)
        .hello(pb::HelloRequest {
            from,
            joining: false,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_must_present_the_certificate_of_the_member_they_claim_to_be() {
    let pki = Pki::new();
    let mut c = secure_cluster("tls-peers", 3, &pki);
    let root = pki.root();
    wait_serving(&c, &root);

    // Without TLS the peer port answers nothing.
    let plain = pb::raft_client::RaftClient::connect(format!("http://{}", c.nodes[0].peer)).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut client) => client
            .hello(pb::HelloRequest {
                from: 1,
                joining: false,
            })
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext Hello was answered");

    // A certificate from the cluster's CA that names no member.
    let user = pki.issue("user", &Leaf::user("someone"));
    let e = hello(&c, 0, &pki, user, 1).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("urn:raftkv:member:1"), "{e:?}");

    // Member 1's valid certificate, claiming to be member 2.
    let one = pki.member(1);
    let e = hello(&c, 0, &pki, one.clone(), 2).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("member 1's, not member 2's"), "{e:?}");
    // The same certificate as itself is admitted.
    let answer = hello(&c, 0, &pki, one.clone(), 1).await.unwrap();
    assert_eq!(answer.id, 0);

    // A process that runs as member 2 with member 1's certificate: its
    // messages are refused, and the others say so.
    c.kill(2);
    spawn_with_certificate(&mut c, 2, &pki, &one);
    let impostor = "claims to be member 2, but the certificate is member 1's";
    wait_logged(&c, 0..2, impostor, Duration::from_secs(20));
    wait_logged(&c, 2..3, "refused our messages", Duration::from_secs(20));

    // With its own certificate it is a member again: every replica's state
    // hash agrees.
    c.kill(2);
    spawn_with_certificate(&mut c, 2, &pki, &pki.member(2));
    ctl_with(&c, &root).run(&["set", "after", "rejoin"]).ok();
    wait_for_async(
        "all three replicas agree",
        Duration::from_secs(30),
        || async {
            ctl_with(&c, &root)
                .run_async(&["check"])
                .await
                .success()
                .then_some(())
        },
    )
    .await;
}

/// `raftkv` with `flags` on fresh ports: its exit status and stderr, once
/// it stopped by itself (a configuration error) within 10 s.
fn run_node(flags: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let peer = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(RAFTKV)
        .args(["--id", "0", "--data-dir", dir.path().to_str().unwrap()])
        .args(["--client-addr", &format!("127.0.0.1:{}", free_port())])
        .args([
            "--peer-addr",
            &peer,
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(["--peers", &format!("0={peer}")])
        .args(flags)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = common::wait::wait_exit(
        &mut child,
        "the misconfigured node",
        Duration::from_secs(10),
    );
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stderr)
}

#[test]
fn a_node_refuses_to_start_with_tls_files_that_cannot_work() {
    let pki = Pki::new();
    let ca = pki.ca();
    let (cert, key) = pki.member(0);
    let mut old = Leaf::member(0, &["127.0.0.1".into()]);
    (old.from_days, old.until_days) = (-30, -1);
    let (expired, expired_key) = pki.issue("expired", &old);
    let (_, other_key) = pki.member(1);

    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--cert-file",
                &expired,
                "--key-file",
                &expired_key,
                "--trusted-ca-file",
                &ca,
            ],
            "the certificate expired at",
        ),
        (
            vec![
                "--cert-file",
                &cert,
                "--key-file",
                &other_key,
                "--trusted-ca-file",
                &ca,
            ],
            "do not go together",
        ),
        (
            vec![
                "--peer-cert-file",
                &cert,
                "--peer-key-file",
                &key,
                "--peer-trusted-ca-file",
                "/nonexistent/ca.crt",
            ],
            "cannot read /nonexistent/ca.crt",
        ),
        (
            vec!["--cert-file", &cert],
            "missing: key-file, trusted-ca-file",
        ),
        (
            vec!["--client-cert-auth"],
            "client-cert-auth: needs TLS on the client port",
        ),
        (
            vec![
                "--cert-file",
                &key,
                "--key-file",
                &key,
                "--trusted-ca-file",
                &ca,
            ],
            "no CERTIFICATE block",
        ),
    ];
    for (flags, expected) in cases {
        let (ok, stderr) = run_node(&flags);
        assert!(!ok, "started with {flags:?}");
        assert!(
            stderr.contains(expected),
            "{flags:?}: stderr lacks {expected:?}:\n{stderr}"
        );
    }
}

#[test]
fn certificates_are_replaced_without_a_restart_and_bad_ones_keep_the_old() {
    let pki = Pki::new();
    let member = pki.member(0);
    let mut c = Cluster::plan("tls-rotate", 1, &[]);
    spawn_with_certificate(&mut c, 0, &pki, &member);
    let cert = &member.0;
    let root = pki.root();
    wait_serving(&c, &root);
    let http = c.nodes[0].http.clone();
    let expiry = "raftkv_tls_certificate_expiry_timestamp_seconds{files=\"client-port\"}";
    let first = wait_for("the expiry metric", Duration::from_secs(10), || {
        metric(&http, expiry)
    });

    // The certificate names 127.0.0.1 only: `localhost` is refused ...
    let port = c.nodes[0].client.rsplit_once(':').unwrap().1;
    let by_name = Ctl::new()
        .endpoints(&format!("localhost:{port}"))
        .tail(&root);
    by_name
        .run(&["get", "ready"])
        .fails(1, "is not valid for localhost");

    // ... until the files are replaced by a certificate that names it.
    let mut renewed = Leaf::member(0, &["127.0.0.1".into(), "localhost".into()]);
    renewed.until_days = 30;
    pki.issue("node-0", &renewed);
    wait_for(
        "the renewed certificate is served",
        Duration::from_secs(20),
        || by_name.run(&["get", "ready"]).success().then_some(()),
    );
    let second = metric(&http, expiry).unwrap();
    assert!(
        second < first,
        "expiry {first} -> {second}: the 30-day certificate is in force"
    );
    assert!(log(&c, 0).contains("reloaded TLS certificate"));

    // Garbage in place of the certificate: the previous one stays in force.
    write_atomically(Path::new(&cert), "not a certificate\n");
    let failing = "raftkv_tls_reload_failing{files=\"client-port\"}";
    wait_for(
        "the failing reload is reported",
        Duration::from_secs(20),
        || (metric(&http, failing) == Some(1.0)).then_some(()),
    );
    assert!(log(&c, 0).contains("the previous certificate stays in force"));
    by_name.run(&["get", "ready"]).ok();
    assert_eq!(metric(&http, expiry), Some(second));
}
