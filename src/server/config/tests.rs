use super::*;
use std::io::Write;
use std::sync::Mutex;

/// clap reads the process environment: tests that parse hold this lock so the
/// one test that sets variables cannot race the others.
static ENV: Mutex<()> = Mutex::new(());

const PEERS: &str = "0=127.0.0.1:7380,1=127.0.0.1:7390,2=127.0.0.1:7400";

fn parse(argv: &[&str]) -> Result<Config, String> {
    let args = Args::try_parse_from(std::iter::once("raftkv").chain(argv.iter().copied()))
        .map_err(|e| e.to_string())?;
    Config::from_args(args, &|_| None)
}

fn yaml(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn defaults_and_peer_client_addresses() {
    let _g = ENV.lock().unwrap();
    let c = parse(&["--id", "1", "--peers", PEERS]).unwrap();
    assert_eq!(c.id, 1);
    assert_eq!(c.client_addr.to_string(), "0.0.0.0:7379");
    assert_eq!(c.election_timeout, Duration::from_millis(300));
    assert_eq!(c.heartbeat, Duration::from_millis(50));
    assert_eq!(c.lease, Duration::from_millis(250));
    assert_eq!(c.snapshot_threshold, 10_000);
    assert_eq!(c.snapshot_log_ratio, 0.5);
    assert_eq!(c.peers[2].client_addr, "127.0.0.1:7399");
    assert_eq!(c.advertise_client_addr, "127.0.0.1:7389");
    assert_eq!(c.log_format, LogFormat::Text);
}

#[test]
fn flags_beat_env_beat_file_beat_defaults() {
    let _g = ENV.lock().unwrap();
    let file = yaml(
        "heartbeat_ms: 40\nlease_ms: 200\nelection_timeout_ms: 280\nsnapshot_threshold: 7\nsnapshot_log_ratio: 2\n",
    );
    let path = file.path().to_str().unwrap().to_string();
    // SAFETY: every test that reads the environment holds ENV.
    unsafe {
        std::env::set_var("RAFTKV_LEASE_MS", "220");
        std::env::set_var("RAFTKV_HEARTBEAT_MS", "45");
    }
    let c = parse(&[
        "--id",
        "0",
        "--peers",
        PEERS,
        "--config",
        &path,
        "--heartbeat-ms",
        "30",
    ]);
    unsafe {
        std::env::remove_var("RAFTKV_LEASE_MS");
        std::env::remove_var("RAFTKV_HEARTBEAT_MS");
    }
    let c = c.unwrap();
    assert_eq!(
        c.heartbeat,
        Duration::from_millis(30),
        "flag wins over env and file"
    );
    assert_eq!(c.lease, Duration::from_millis(220), "env wins over file");
    assert_eq!(
        c.election_timeout,
        Duration::from_millis(280),
        "file wins over default"
    );
    assert_eq!(c.snapshot_threshold, 7);
    assert_eq!(c.snapshot_log_ratio, 2.0, "from the file");
    assert_eq!(c.max_clock_drift, 0.01, "default");
}

#[test]
fn join_from_flag_env_or_file() {
    let _g = ENV.lock().unwrap();
    let base = ["--id", "0", "--peers", PEERS];
    assert!(!parse(&base).unwrap().join, "default");
    assert!(parse(&[&base[..], &["--join"]].concat()).unwrap().join);
    assert!(
        !parse(&[&base[..], &["--join=false"]].concat())
            .unwrap()
            .join
    );
    let file = yaml("join: true\n");
    let path = file.path().to_str().unwrap().to_string();
    let with_file = [&base[..], &["--config", &path]].concat();
    assert!(parse(&with_file).unwrap().join, "file");
    // SAFETY: every test that reads the environment holds ENV.
    unsafe { std::env::set_var("RAFTKV_JOIN", "false") };
    let c = parse(&with_file);
    unsafe { std::env::remove_var("RAFTKV_JOIN") };
    assert!(!c.unwrap().join, "env wins over file");
}

#[test]
fn id_from_pod_name_and_statefulset_peers() {
    let _g = ENV.lock().unwrap();
    let args = Args::try_parse_from([
        "raftkv",
        "--statefulset",
        "raftkv",
        "--service",
        "raftkv-peers",
        "--namespace",
        "db",
        "--replicas",
        "3",
    ])
    .unwrap();
    let c =
        Config::from_args(args, &|k| (k == "HOSTNAME").then(|| "raftkv-2".to_string())).unwrap();
    assert_eq!(c.id, 2);
    assert_eq!(c.peers.len(), 3);
    assert_eq!(
        c.peers[0].peer_addr,
        "raftkv-0.raftkv-peers.db.svc.cluster.local:7380"
    );
    assert_eq!(
        c.peers[0].client_addr,
        "raftkv-0.raftkv-peers.db.svc.cluster.local:7379"
    );
    assert_eq!(
        c.advertise_client_addr,
        "raftkv-2.raftkv-peers.db.svc.cluster.local:7379"
    );
}

fn error_of(argv: &[&str]) -> String {
    let _g = ENV.lock().unwrap();
    parse(argv).unwrap_err()
}

#[test]
fn validation_names_the_setting() {
    let base = ["--id", "0", "--peers", PEERS];
    let with =
        |extra: &[&'static str]| -> Vec<&str> { base.iter().chain(extra).copied().collect() };
    assert!(error_of(&with(&["--lease-ms", "300"])).starts_with("lease-ms:"));
    assert!(error_of(&with(&["--heartbeat-ms", "250"])).starts_with("heartbeat-ms:"));
    assert!(error_of(&with(&["--max-clock-drift", "0.7"])).starts_with("max-clock-drift:"));
    assert!(error_of(&with(&["--client-addr", "nowhere"])).starts_with("client-addr:"));
    assert!(error_of(&with(&["--log-format", "xml"])).starts_with("log-format:"));
    assert!(
        error_of(&["--id", "5", "--peers", PEERS]).contains("own id 5 is not in the peer list")
    );
    assert!(error_of(&["--id", "0", "--peers", "0=a:1,0=b:2"]).contains("duplicate node id 0"));
    assert!(error_of(&["--id", "0", "--peers", "0=a"]).starts_with("peers:"));
    assert!(error_of(&["--peers", PEERS]).starts_with("id:"));
    assert!(error_of(&["--id", "0"]).starts_with("peers:"));
}

#[test]
fn file_with_unknown_setting_is_refused() {
    let _g = ENV.lock().unwrap();
    let file = yaml("heartbeat: 40\n");
    let path = file.path().to_str().unwrap().to_string();
    let e = parse(&["--id", "0", "--peers", PEERS, "--config", &path]).unwrap_err();
    assert!(e.starts_with("config:"), "{e}");
}

#[test]
fn ordinals() {
    assert_eq!(ordinal("raftkv-2"), Some(2));
    assert_eq!(ordinal("my-db-raftkv-10"), Some(10));
    assert_eq!(ordinal("laptop"), None);
}

#[test]
fn a_statefulset_ordinal_above_the_founders_is_a_joining_member() {
    let args = |id| Args {
        pod_name: Some(format!("raftkv-{id}")),
        statefulset: Some("raftkv".into()),
        service: Some("raftkv-headless".into()),
        replicas: Some(3),
        ..Args::default()
    };
    let founder = Config::from_args(args(2), &|_| None).unwrap();
    assert!(founder.founder && !founder.auto_join);
    assert_eq!(founder.peers.len(), 3);
    let added = Config::from_args(args(4), &|_| None).unwrap();
    assert!(!added.founder);
    let ids: Vec<u64> = added.peers.iter().map(|p| p.id).collect();
    assert_eq!(ids, [0, 1, 2, 4], "the founders and itself");
    // With a static peer list the own id must still be listed.
    let listed = Args {
        id: Some(3),
        peers: Some("0=a:7380,1=b:7380,2=c:7380".into()),
        ..Args::default()
    };
    assert!(Config::from_args(listed, &|_| None).is_err());
}

#[test]
fn auto_join_comes_from_the_flag_or_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "id: 0\npeers: 0=a:7380\nauto_join: true\n").unwrap();
    let from_file = Args {
        config: Some(file.clone()),
        ..Args::default()
    };
    assert!(Config::from_args(from_file, &|_| None).unwrap().auto_join);
    let overridden = Args {
        config: Some(file),
        auto_join: Some(false),
        ..Args::default()
    };
    assert!(!Config::from_args(overridden, &|_| None).unwrap().auto_join);
}

#[test]
fn snapshot_log_ratio_from_a_flag_and_refused_out_of_range() {
    let _g = ENV.lock().unwrap();
    let base = ["--id", "0", "--peers", PEERS];
    let with = |v: &str| {
        let flag = format!("--snapshot-log-ratio={v}");
        let mut argv = base.to_vec();
        argv.push(&flag);
        parse(&argv)
    };
    assert_eq!(with("0").unwrap().snapshot_log_ratio, 0.0);
    assert_eq!(with("1.5").unwrap().snapshot_log_ratio, 1.5);
    for bad in ["-0.1", "11", "NaN", "inf"] {
        let e = with(bad).unwrap_err();
        assert!(
            e.starts_with("snapshot-log-ratio: ") && e.contains("not in [0, 10]"),
            "{bad}: {e}"
        );
    }
    assert!(with("half").unwrap_err().contains("snapshot-log-ratio"));
}

#[test]
fn limits_whose_largest_command_cannot_be_logged_are_refused() {
    let _g = ENV.lock().unwrap();
    let base = ["--id", "0", "--peers", PEERS];
    for value in ["2000000000", "600000000", "18446744073709551615"] {
        let err = parse(&[&base[..], &["--max-value-bytes", value]].concat()).unwrap_err();
        assert!(
            err.contains("would not fit one log record"),
            "{value}: {err}"
        );
    }
    let err =
        parse(&[&base[..], &["--max-key-bytes", "18446744073709551615"]].concat()).unwrap_err();
    assert!(err.contains("would not fit one log record"), "{err}");
    // 256 MiB values: a CAS carries two and still fits a 1 GiB record.
    let c = parse(&[&base[..], &["--max-value-bytes", "268435456"]].concat()).unwrap();
    assert_eq!(c.max_value_bytes, 256 << 20);
}
