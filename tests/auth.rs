//! Users, roles and permissions on real processes (docs/security.md,
//! "Users and roles"): raftctl sets them up and enables auth, then each
//! refusal changes nothing and each permitted request works — by password
//! token (which survives a leader change) and by client certificate.

mod common;

use common::cluster::Cluster;
use common::ctl::Ctl;
use common::wait::wait_for;
use raftkv::client::{Client, ClientOptions, Credentials};
use raftkv::tls::generate::{Authority, Leaf};
use std::time::Duration;

/// Waits until the cluster takes a write from `ctl`.
fn wait_serving(ctl: &Ctl) {
    wait_for("the cluster takes a write", Duration::from_secs(30), || {
        ctl.run(&["set", "ready", "yes"]).success().then_some(())
    });
}

/// raftctl as `user:password`.
fn as_user(c: &Cluster, user: &str) -> Ctl {
    c.ctl().tail(["--user", user])
}

/// Root with the root role, and "alice" with role "ro" (READ on "app/").
fn add_root_and_reader(ctl: &Ctl) {
    for args in [
        &["user", "add", "root", "--password", "rootpw"][..],
        &["user", "grant", "root", "root"],
        &["user", "add", "alice", "--password", "alicepw"],
        &["role", "add", "ro"],
        &["role", "grant", "ro", "app/", "read"],
        &["user", "grant", "alice", "ro"],
    ] {
        ctl.run(args).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_users_do_and_tokens_survive_a_leader_change() {
    let c = Cluster::start("auth-roles", 3);
    let open = c.ctl();
    wait_serving(&open);

    // Bad input changes nothing: enable without root, unknown role, twice.
    open.run(&["auth", "enable"])
        .fails(3, "auth enable needs a user root holding the root role");
    open.run(&["user", "add", "alice"])
        .fails(3, "give --password or set RAFTKV_NEW_PASSWORD");
    add_root_and_reader(&open);
    open.run(&["user", "add", "alice", "--password", "x"])
        .fails(3, "user \"alice\" already exists");
    open.run(&["user", "grant", "alice", "nosuch"])
        .fails(3, "role \"nosuch\" does not exist");
    open.run(&["set", "app/k", "v"]).ok();
    open.run(&["auth", "enable"]).ok();

    // Unauthenticated, and a wrong password: refused.
    open.run(&["get", "app/k"]).fails(1, "authenticate first");
    as_user(&c, "alice:nope")
        .run(&["get", "app/k"])
        .fails(1, "wrong user name or password");

    // The password from RAFTKV_PASSWORD; READ allows reads under app/ only.
    let alice = c
        .ctl()
        .tail(["--user", "alice"])
        .env("RAFTKV_PASSWORD", "alicepw");
    assert_eq!(alice.run(&["get", "app/k"]).ok().stdout.trim(), "v");
    alice.run(&["get", "ready"]).fails(1, "no READ permission");
    alice
        .run(&["set", "app/k", "w"])
        .fails(1, "no WRITE permission");
    alice
        .run(&["incr", "app/n"])
        .fails(1, "no READWRITE permission");
    let root = as_user(&c, "root:rootpw");
    assert_eq!(
        root.run(&["get", "app/k"]).ok().stdout.trim(),
        "v",
        "unchanged"
    );
    root.run(&["get", "app/n"]).expect(1);

    // Admin and membership need root.
    alice
        .run(&["user", "add", "eve", "--password", "x"])
        .fails(1, "does not have the root role");
    // To a node that does not lead: raftctl answers a transfer to the
    // leader itself without asking the cluster.
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let other = ((leader + 1) % 3).to_string();
    alice
        .run(&["transfer-leader", &other])
        .fails(1, "does not have the root role");
    let users = root.run(&["user", "list", "-o", "json"]).ok().json();
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "root"]);
    let status = alice.run(&["auth", "status", "-o", "json"]).ok().json();
    assert_eq!(status["enabled"], true);
    assert_eq!(status["user"], "alice");

    // A grant takes effect: alice writes; her token outlives a leader change.
    root.run(&["role", "grant", "ro", "app/", "readwrite"]).ok();
    let options = ClientOptions {
        credentials: Some(Credentials {
            user: "alice".into(),
            password: "alicepw".into(),
        }),
        ..ClientOptions::default()
    }
    .with_timeout(Duration::from_secs(15));
    let client = Client::connect(c.endpoints(), options).await.unwrap();
    client.set(b"app/k", b"1").await.unwrap();
    let leader = c.leader(&[0, 1, 2], Duration::from_secs(10)).await;
    let next = (leader + 1) % 3;
    let root_options = ClientOptions {
        credentials: Some(Credentials {
            user: "root".into(),
            password: "rootpw".into(),
        }),
        ..ClientOptions::default()
    };
    let root_client = Client::connect(c.endpoints(), root_options).await.unwrap();
    c.transfer_to(&root_client, next).await;
    client.set(b"app/k", b"2").await.unwrap();
    assert_eq!(
        client.get(b"app/k").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );

    // A revoked role takes effect for the session and token in use.
    root.run(&["user", "revoke", "alice", "ro"]).ok();
    let e = client.set(b"app/k", b"3").await.unwrap_err();
    assert!(e.to_string().contains("no WRITE permission"), "{e}");

    // Disabled again, everything is open as before.
    alice.run(&["auth", "disable"]).fails(1, "root role");
    root.run(&["auth", "disable"]).ok();
    assert_eq!(open.run(&["get", "app/k"]).ok().stdout.trim(), "2");
}

#[test]
fn a_client_certificate_names_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();
    let ca = Authority::new(&format!("auth test CA {}", dir.path().display())).unwrap();
    std::fs::write(path("ca.crt"), &ca.cert_pem).unwrap();
    let issue = |name: &str, leaf: Leaf| {
        let pair = ca.issue(&leaf).unwrap();
        std::fs::write(path(&format!("{name}.crt")), &pair.cert_pem).unwrap();
        std::fs::write(path(&format!("{name}.key")), &pair.key_pem).unwrap();
        (path(&format!("{name}.crt")), path(&format!("{name}.key")))
    };
    let mut c = Cluster::plan("auth-certs", 3, &[]);
    for i in 0..3 {
        let (cert, key) = issue(
            &format!("node-{i}"),
            Leaf::member(i as u64, &["127.0.0.1".into()]),
        );
        let ca = path("ca.crt");
        let flags = [
            "--cert-file",
            &cert,
            "--key-file",
            &key,
            "--trusted-ca-file",
            &ca,
            "--client-cert-auth",
            "--peer-cert-file",
            &cert,
            "--peer-key-file",
            &key,
            "--peer-trusted-ca-file",
            &ca,
        ];
        c.spawn_with(i, &flags);
    }
    let as_cert = |name: &str| {
        let (cert, key) = issue(name, Leaf::user(name));
        c.ctl()
            .tail(["--cacert", &path("ca.crt"), "--cert", &cert, "--key", &key])
    };
    let root = as_cert("root");
    wait_serving(&root);
    // Root's password is never used: its certificate authenticates it.
    for args in [
        &["user", "add", "root", "--password", "unused"][..],
        &["user", "grant", "root", "root"],
        &["user", "add", "bob", "--password", "bobpw"],
        &["auth", "enable"],
    ] {
        root.run(args).ok();
    }
    root.run(&["set", "k", "v"]).ok();
    let status = root.run(&["auth", "status", "-o", "json"]).ok().json();
    assert_eq!(status["user"], "root");

    // A user without a role, and a name that is no user.
    as_cert("bob")
        .run(&["set", "k", "w"])
        .fails(1, "no WRITE permission");
    as_cert("carol")
        .run(&["get", "k"])
        .fails(1, "names user \"carol\", which does not exist");
    assert_eq!(root.run(&["get", "k"]).ok().stdout.trim(), "v");
}

/// Without a terminal (the tests' raftctl reads a closed stdin), a missing
/// password is an error at once, before any node is asked: `--user NAME`
/// without RAFTKV_PASSWORD, and `user add` without a new password.
#[test]
fn without_a_terminal_a_missing_password_is_an_error_not_a_prompt() {
    // Endpoints nobody listens on: the refusal must come before a dial.
    let ctl = Ctl::new().tail(["--endpoints", "127.0.0.1:1", "--timeout", "1s"]);
    ctl.run(&["--user", "alice", "get", "k"])
        .fails(3, "--user alice: no password, and no terminal to ask on");
    ctl.run(&["user", "add", "bob"])
        .fails(3, "user bob: no password, and no terminal to ask on");
    ctl.clone()
        .env("RAFTKV_USER", "alice")
        .run(&["get", "k"])
        .fails(3, "give --user alice:PASSWORD or set RAFTKV_PASSWORD");
}
