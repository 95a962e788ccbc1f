//! In-process tests of the network paths against fake nodes (see `fake`).

use std::time::Duration;

use super::fake::{FakeLeader, dead_addr, follower, serve};
use super::{Client, ClientError, ClientOptions, Ttl};
use crate::pb;

fn fast(timeout: Duration) -> ClientOptions {
    ClientOptions {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    }
    .with_timeout(timeout)
}

/// Writes with a session, ignoring registrations.
fn session_writes(leader: &FakeLeader) -> Vec<pb::Session> {
    leader
        .state()
        .writes
        .iter()
        .filter_map(|w| w.session)
        .collect()
}

#[tokio::test]
async fn follows_the_redirect_and_remembers_the_leader() {
    let leader = FakeLeader::default();
    let leader_addr = serve(leader.clone());
    let follower = follower(Some(leader_addr.clone()));
    let follower_addr = serve(follower.clone());

    let client = Client::lazy(vec![follower_addr], fast(Duration::from_secs(5))).unwrap();
    client.set(b"k", b"v").await.unwrap();
    assert_eq!(client.leader().as_deref(), Some(leader_addr.as_str()));
    let hits = *follower.hits.lock().unwrap();
    assert!(hits >= 1, "the follower redirected");

    // Later calls go straight to the remembered leader.
    assert_eq!(client.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(client.get(b"nope").await.unwrap(), None);
    assert_eq!(client.ttl(b"k").await.unwrap(), Ttl::NoExpiry);
    assert_eq!(client.members().await.unwrap().leader, Some(1));
    assert_eq!(*follower.hits.lock().unwrap(), hits);
}

#[tokio::test]
async fn connect_learns_the_leader_from_status() {
    let leader_addr = serve(FakeLeader::default());
    let client = Client::connect(
        vec![dead_addr(), leader_addr.clone()],
        fast(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    assert_eq!(client.leader().as_deref(), Some(leader_addr.as_str()));
    let all = client.status_all().await;
    assert!(matches!(all[0].1, Err(ClientError::Unreachable { .. })));
    assert_eq!(all[1].1.as_ref().unwrap().role, "leader");
}

#[tokio::test]
async fn retries_an_unknown_outcome_with_the_same_seq() {
    let leader = FakeLeader::default();
    let leader_addr = serve(leader.clone());
    let follower_addr = serve(follower(Some(leader_addr.clone())));
    let client = Client::lazy(
        vec![leader_addr, follower_addr],
        fast(Duration::from_secs(5)),
    )
    .unwrap();

    assert_eq!(client.incr(b"n").await.unwrap(), 1);
    leader.state().lose_answers = 1;
    // Applied, answer lost, retried: exactly once.
    assert_eq!(client.incr(b"n").await.unwrap(), 2);
    assert_eq!(client.get(b"n").await.unwrap().as_deref(), Some(&b"2"[..]));

    let sessions = session_writes(&leader);
    assert_eq!(
        sessions.len(),
        3,
        "one first incr, the lost attempt, its retry"
    );
    assert_eq!(sessions[1].seq, sessions[2].seq);
    assert_eq!(sessions[1].client_id, sessions[2].client_id);
    assert!(sessions[0].seq < sessions[1].seq);
    assert_eq!(sessions[2].first_incomplete, sessions[2].seq);
}

#[tokio::test]
async fn registers_one_session_for_concurrent_writes() {
    let leader = FakeLeader::default();
    let leader_addr = serve(leader.clone());
    let client = Client::lazy(vec![leader_addr], fast(Duration::from_secs(5))).unwrap();
    assert_eq!(client.session_id().await, None);

    let writes = (0..16).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.set(format!("k{i}").as_bytes(), b"v").await })
    });
    for write in writes {
        write.await.unwrap().unwrap();
    }
    assert_eq!(leader.state().sessions, 1);
    assert_eq!(client.session_id().await, Some(101));

    let mut sessions = session_writes(&leader);
    assert!(sessions.iter().all(|s| s.client_id == 101));
    assert!(sessions.iter().all(|s| s.first_incomplete <= s.seq));
    sessions.sort_by_key(|s| s.seq);
    let seqs: Vec<u64> = sessions.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, (1..=16).collect::<Vec<_>>());

    // All answered: the next write's watermark is its own seq.
    client.del(b"k0").await.unwrap();
    let last = *session_writes(&leader).last().unwrap();
    assert_eq!((last.seq, last.first_incomplete), (17, 17));
}

#[tokio::test]
async fn fails_over_past_a_dead_endpoint() {
    let leader_addr = serve(FakeLeader::default());
    let client = Client::lazy(
        vec![dead_addr(), leader_addr.clone()],
        fast(Duration::from_secs(5)),
    )
    .unwrap();
    client.set(b"k", b"v").await.unwrap();
    assert_eq!(client.leader().as_deref(), Some(leader_addr.as_str()));
}

#[tokio::test]
async fn all_dead_is_unreachable() {
    let options = fast(Duration::from_millis(400));
    let client = Client::lazy(vec![dead_addr(), dead_addr()], options.clone()).unwrap();
    let err = client.get(b"k").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    let err = Client::connect(vec![dead_addr()], options)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn followers_without_a_leader_give_no_leader() {
    let a = serve(follower(None));
    let b = serve(follower(None));
    let client = Client::lazy(vec![a, b], fast(Duration::from_millis(300))).unwrap();
    let err = client.get(b"k").await.unwrap_err();
    assert!(
        matches!(err, ClientError::NoLeader(ref m) if m.contains("no leader known")),
        "{err}"
    );
}

#[tokio::test]
async fn refusals_and_bad_input_are_not_retried() {
    let leader = FakeLeader::default();
    let client = Client::lazy(vec![serve(leader.clone())], fast(Duration::from_secs(5))).unwrap();
    client.set(b"t", b"text").await.unwrap();
    let err = client.incr(b"t").await.unwrap_err();
    assert_eq!(err.rejection_code(), Some(pb::kv_error::Code::NotAnInteger));
    assert_eq!(err.to_string(), "rejected: value is not an integer");

    let before = leader.state().writes.len();
    assert!(client.set(b"", b"v").await.unwrap_err().is_bad_input());
    let big_key = vec![b'k'; 4097];
    assert!(client.get(&big_key).await.unwrap_err().is_bad_input());
    let big_value = vec![b'v'; 1024 * 1024 + 1];
    assert!(
        client
            .set(b"k", &big_value)
            .await
            .unwrap_err()
            .is_bad_input()
    );
    assert_eq!(leader.state().writes.len(), before, "nothing was sent");
}

#[tokio::test]
async fn cas_and_cluster_changes_reach_the_leader() {
    let leader_addr = serve(FakeLeader::default());
    let follower_addr = serve(follower(Some(leader_addr.clone())));
    let client = Client::lazy(vec![follower_addr], fast(Duration::from_secs(5))).unwrap();

    let first = client.cas(b"c", None, b"one").await.unwrap();
    assert!(first.swapped);
    let stale = client.cas(b"c", None, b"two").await.unwrap();
    assert!(!stale.swapped);
    assert_eq!(stale.current.as_deref(), Some(&b"one"[..]));
    assert!(client.expire(b"c", 5).await.unwrap());
    assert!(client.del(b"c").await.unwrap());
    assert!(!client.del(b"c").await.unwrap());

    assert_eq!(
        client
            .add_member(3, "h:7410", "h:7409", true)
            .await
            .unwrap(),
        7
    );
    assert_eq!(client.remove_member(3).await.unwrap(), 8);
    assert_eq!(client.transfer_leader(2).await.unwrap(), 9);
    assert_eq!(client.leader(), None, "a transfer forgets the old leader");
}

#[tokio::test]
async fn a_write_during_a_leadership_transfer_is_retried_not_failed() {
    let leader = FakeLeader::default();
    let client = Client::lazy(vec![serve(leader.clone())], fast(Duration::from_secs(5))).unwrap();
    client.set(b"k", b"1").await.unwrap();
    // The node's own status for a write refused while it hands off leadership.
    leader.state().busy_answers = 2;
    client.set(b"k", b"2").await.unwrap();
    assert_eq!(client.get(b"k").await.unwrap().as_deref(), Some(&b"2"[..]));
    let sessions = session_writes(&leader);
    assert_eq!(sessions.len(), 4, "the first set, two refusals, the retry");
    assert_eq!(
        sessions[1].seq, sessions[3].seq,
        "retried with the same seq"
    );
}

#[tokio::test]
async fn a_learner_behind_is_told_at_once_not_retried_until_the_deadline() {
    let leader = FakeLeader::default();
    let client = Client::lazy(vec![serve(leader.clone())], fast(Duration::from_secs(5))).unwrap();
    leader.state().learner_behind = 1;
    let started = std::time::Instant::now();
    let err = client
        .add_member(3, "h:7380", "h:7379", true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::LearnerBehind { id: 3, detail } if detail.contains("has not caught up")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    // Asking again once it caught up promotes it.
    assert_eq!(
        client
            .add_member(3, "h:7380", "h:7379", true)
            .await
            .unwrap(),
        7
    );
}

#[tokio::test]
async fn session_expired_on_a_retry_is_outcome_unknown() {
    let leader = FakeLeader::default();
    let client = Client::lazy(vec![serve(leader.clone())], fast(Duration::from_secs(5))).unwrap();
    assert_eq!(client.incr(b"n").await.unwrap(), 1);
    {
        let mut state = leader.state();
        state.lose_answers = 1;
        state.expire_lost_sessions = true;
    }
    // Applied, answer lost, session forgotten before the retry: the refusal
    // of the retry must not read as "not applied".
    let err = client.incr(b"n").await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown(_)), "{err}");
    assert_eq!(err.rejection_code(), None);
    assert_eq!(client.get(b"n").await.unwrap().as_deref(), Some(&b"2"[..]));
    // The next write registers a new session and succeeds.
    assert_eq!(client.incr(b"n").await.unwrap(), 3);
    assert_eq!(leader.state().sessions, 2);
}

#[tokio::test]
async fn session_expired_on_a_first_attempt_is_a_refusal() {
    let leader = FakeLeader::default();
    let client = Client::lazy(vec![serve(leader.clone())], fast(Duration::from_secs(5))).unwrap();
    client.set(b"k", b"v").await.unwrap();
    let id = client.session_id().await.unwrap();
    leader.state().expired.push(id);
    // Nothing ran before: the write was refused, not applied.
    let err = client.incr(b"n").await.unwrap_err();
    assert_eq!(
        err.rejection_code(),
        Some(pb::kv_error::Code::SessionExpired)
    );
    assert_eq!(client.get(b"n").await.unwrap(), None);
}

#[tokio::test]
async fn dial_timeout_fails_fast_when_every_endpoint_refuses() {
    let options = fast(Duration::from_secs(10)).with_dial_timeout(Duration::from_millis(300));
    let client = Client::lazy(vec![dead_addr(), dead_addr()], options).unwrap();
    let started = std::time::Instant::now();
    let err = client.get(b"k").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err}");
    assert!(
        took < Duration::from_secs(2),
        "gave up after {took:?}, not ~300 ms"
    );
}

#[tokio::test]
async fn dial_timeout_keeps_retrying_while_a_node_answers() {
    // Followers that know no leader answer: that is not "unreachable", so
    // the client retries until the overall deadline, past the dial timeout.
    let a = serve(follower(None));
    let options = fast(Duration::from_millis(900)).with_dial_timeout(Duration::from_millis(100));
    let client = Client::lazy(vec![a, dead_addr()], options).unwrap();
    let started = std::time::Instant::now();
    let err = client.get(b"k").await.unwrap_err();
    assert!(matches!(err, ClientError::NoLeader(_)), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn range_reads_every_page_and_the_count() {
    let leader = FakeLeader::default();
    let client = Client::lazy(vec![serve(leader.clone())], fast(Duration::from_secs(5))).unwrap();
    for k in ["p/c", "p/a", "q", "p/b", "p/d", "p/e"] {
        client.set(k.as_bytes(), b"v").await.unwrap();
    }
    let (items, count) = client.range(b"p/", 0, false).await.unwrap();
    let keys: Vec<_> = items.iter().map(|kv| kv.key.as_ref()).collect();
    assert_eq!(keys, [&b"p/a"[..], b"p/b", b"p/c", b"p/d", b"p/e"]);
    assert_eq!(count, 5);
    let (items, count) = client.range(b"p/", 3, false).await.unwrap();
    assert_eq!((items.len(), count), (3, 5));
}

#[tokio::test]
async fn a_backup_follows_the_redirect_and_streams_to_the_trailer() {
    use super::SnapshotPiece;
    use sha2::Digest;
    let leader_addr = serve(FakeLeader::default());
    let follower = follower(Some(leader_addr.clone()));
    let follower_addr = serve(follower.clone());
    let client = Client::lazy(vec![follower_addr], fast(Duration::from_secs(5))).unwrap();
    let mut download = client.snapshot(Duration::from_secs(5)).await.unwrap();
    assert_eq!((download.header.index, download.header.term), (7, 2));
    assert!(
        *follower.hits.lock().unwrap() >= 1,
        "the follower redirected"
    );
    let mut data = Vec::new();
    let trailer = loop {
        match download.next().await.unwrap() {
            SnapshotPiece::Data(d) => data.extend_from_slice(&d),
            SnapshotPiece::Trailer(t) => break t,
        }
    };
    assert_eq!(data, super::fake::FAKE_SNAPSHOT);
    assert_eq!(trailer.data_bytes, data.len() as u64);
    assert_eq!(&trailer.data_sha256[..], &sha2::Sha256::digest(&data)[..]);
    assert!(download.next().await.is_err(), "nothing after the trailer");
}
