use super::*;

fn members(ids: &[u64], leader: u64) -> pb::MembersResponse {
    pb::MembersResponse {
        members: ids
            .iter()
            .map(|&id| pb::MemberInfo {
                id,
                voter: true,
                ..pb::MemberInfo::default()
            })
            .collect(),
        leader: Some(leader),
    }
}

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[test]
fn scale_down_removes_highest_first_and_moves_the_leader_off() {
    let all = set(&[0, 1, 2, 3, 4]);
    let p = plan(&all, 3, &members(&[0, 1, 2, 3, 4], 4), &all).unwrap();
    assert_eq!(
        p,
        ScalePlan::Down {
            transfer_to: Some(0),
            remove: vec![4, 3],
            stop: vec![4, 3],
        }
    );
    let p = plan(&all, 3, &members(&[0, 1, 2, 3, 4], 1), &all).unwrap();
    assert_eq!(
        p,
        ScalePlan::Down {
            transfer_to: None,
            remove: vec![4, 3],
            stop: vec![4, 3],
        }
    );
}

#[test]
fn scale_down_that_would_lose_quorum_is_refused() {
    let all = set(&[0, 1, 2, 3, 4]);
    let m = members(&[0, 1, 2, 3, 4], 0);
    // 5 -> 3 with nodes 1 and 2 down: the remaining {0,1,2} have one up
    // (and already {0,1,2,3} after the first removal has two of four).
    let e = plan(&all, 3, &m, &set(&[0, 3, 4])).unwrap_err();
    assert_eq!(e.exit, Exit::BadInput);
    assert!(
        e.message.contains(
            "removing [4] would leave the voters {0, 1, 2, 3}, which need 3 answering for a quorum, and 2 do ([0, 3])"
        ),
        "{e}"
    );
    assert!(e.message.ends_with("nothing changed"), "{e}");
    // With one of them down it is fine: 2 of 3, and 4 of 5 on the way.
    assert!(plan(&all, 3, &m, &set(&[0, 1, 3, 4])).is_ok());
    // The remaining voters would be fine, but the first removal must
    // commit among 5 voters of which only 2 answer.
    let e = plan(&all, 3, &m, &set(&[0, 1])).unwrap_err();
    assert!(e.message.contains("need 3 answering"), "{e}");
    // 3 -> 2 with node 1 down: {0, 1} would need both.
    let three = set(&[0, 1, 2]);
    let m3 = members(&[0, 1, 2], 0);
    assert!(plan(&three, 2, &m3, &set(&[0, 2])).is_err());
    // ... but removing the node that is down is fine.
    assert!(plan(&three, 2, &m3, &set(&[0, 1])).is_ok());
}

#[test]
fn a_target_below_one_is_refused() {
    let three = set(&[0, 1, 2]);
    let m3 = members(&[0, 1, 2], 0);
    for target in [0, -1] {
        let e = plan(&three, target, &m3, &three).unwrap_err();
        assert_eq!(e.exit, Exit::BadInput);
        assert!(e.message.contains("at least one member"), "{e}");
    }
    // Down to one member is allowed.
    assert!(plan(&three, 1, &m3, &three).is_ok());
}

#[test]
fn scale_up_starts_the_new_ordinals_with_a_quorum_only() {
    let three = set(&[0, 1, 2]);
    let m = members(&[0, 1, 2], 0);
    assert_eq!(
        plan(&three, 5, &m, &three).unwrap(),
        ScalePlan::Up { start: vec![3, 4] }
    );
    let e = plan(&three, 5, &m, &set(&[0])).unwrap_err();
    assert!(e.message.contains("working quorum"), "{e}");
    assert_eq!(plan(&three, 3, &m, &set(&[])).unwrap(), ScalePlan::Nothing);
}

#[test]
fn pods_that_are_not_members_are_stopped_too() {
    // Pod 3 runs but never joined (its member is gone).
    let pods = set(&[0, 1, 2, 3]);
    let m = members(&[0, 1, 2], 2);
    assert_eq!(
        plan(&pods, 3, &m, &pods).unwrap(),
        ScalePlan::Down {
            transfer_to: None,
            remove: vec![],
            stop: vec![3],
        }
    );
}

#[test]
fn retained_data_refusal_names_each_volume() {
    assert!(retained_refusal(5, &[]).is_none());
    let e = retained_refusal(5, &[(3, "volume kv-data-3".into())]).unwrap();
    assert_eq!(e.exit, Exit::BadInput);
    assert!(e.message.contains("node 3: volume kv-data-3"), "{e}");
    assert!(e.message.contains("--delete-data"), "{e}");
}
