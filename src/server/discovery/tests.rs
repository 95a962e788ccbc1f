use super::*;

fn member(c: &str) -> PeerStanding {
    PeerStanding::Member(c.into())
}

#[test]
fn founders_bootstrap_once_every_peer_has_answered_deciding() {
    let mut s = Survey::new(vec![0, 2]);
    assert_eq!(s.decide(Mode::Found), Decision::Wait);
    s.record(0, PeerStanding::Deciding);
    assert_eq!(s.decide(Mode::Found), Decision::Wait);
    assert_eq!(s.waiting_for(Mode::Found), vec![2]);
    // Node 2 seen only through its own hello: it may not have our answer,
    // and would refuse us if we bootstrapped now.
    s.saw_deciding(2);
    assert_eq!(s.decide(Mode::Found), Decision::Wait);
    s.record(2, PeerStanding::Deciding);
    assert_eq!(s.decide(Mode::Found), Decision::Bootstrap);
}

#[test]
fn a_single_node_cluster_bootstraps_at_once() {
    assert_eq!(Survey::new(vec![]).decide(Mode::Found), Decision::Bootstrap);
}

#[test]
fn any_member_not_seen_deciding_refuses_the_bootstrap() {
    let mut s = Survey::new(vec![0, 2]);
    s.record(0, PeerStanding::Deciding);
    s.record(2, member("c"));
    assert_eq!(
        s.decide(Mode::Found),
        Decision::Refuse {
            peer: 2,
            cluster_id: "c".into()
        }
    );
}

#[test]
fn a_member_seen_deciding_earlier_bootstrapped_together_with_us() {
    let mut s = Survey::new(vec![0, 2]);
    s.record(0, PeerStanding::Deciding);
    s.saw_deciding(2);
    s.record(2, member("c"));
    assert_eq!(s.decide(Mode::Found), Decision::Bootstrap);
}

#[test]
fn joining_peers_do_not_count_as_founders() {
    let mut s = Survey::new(vec![0]);
    s.record(0, PeerStanding::Joining);
    assert_eq!(s.decide(Mode::Found), Decision::Wait);
}

#[test]
fn join_takes_the_cluster_of_a_member_and_never_bootstraps() {
    let mut s = Survey::new(vec![0, 1]);
    s.record(0, PeerStanding::Deciding);
    s.saw_deciding(1);
    assert_eq!(s.decide(Mode::Join), Decision::Wait);
    s.record(1, member("c"));
    assert_eq!(
        s.decide(Mode::Join),
        Decision::Wait,
        "one answer is no majority of three"
    );
    s.record(0, member("c"));
    assert_eq!(s.decide(Mode::Join), Decision::Join("c".into()));
    s.record(0, member("d"));
    assert_eq!(
        s.decide(Mode::Join),
        Decision::Disagree {
            a: (0, "d".into()),
            b: (1, "c".into())
        }
    );
}

#[test]
fn join_waits_while_a_member_still_lists_us_as_a_voter() {
    let mut s = Survey::new(vec![0, 1]);
    s.record(0, PeerStanding::ListsUsAsVoter("c".into()));
    assert_eq!(s.decide(Mode::Join), Decision::Wait);
    s.record(1, member("c"));
    assert_eq!(s.decide(Mode::Join), Decision::Wait, "node 0 says we vote");
    s.record(0, member("c"));
    assert_eq!(s.decide(Mode::Join), Decision::Join("c".into()));
}

#[test]
fn join_needs_a_majority_of_the_initial_members_to_say_we_are_no_voter() {
    // Five initial members: this node and four peers; three must answer.
    let mut s = Survey::new(vec![0, 1, 2, 3]);
    s.record(0, member("c"));
    s.record(1, member("c"));
    assert_eq!(s.decide(Mode::Join), Decision::Wait);
    s.record(3, member("c"));
    assert_eq!(s.decide(Mode::Join), Decision::Join("c".into()));
}
