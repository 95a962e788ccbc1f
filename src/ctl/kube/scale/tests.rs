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

fn all(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[test]
fn scale_down_removes_highest_first_and_moves_the_leader_off() {
    let m = members(&[0, 1, 2, 3, 4], 4);
    let p = plan(5, 5, 3, &m, &all(&[0, 1, 2, 3, 4])).unwrap();
    assert_eq!(
        p,
        ScalePlan::Down {
            transfer_to: Some(0),
            remove: vec![4, 3]
        }
    );
    let p = plan(
        5,
        5,
        3,
        &members(&[0, 1, 2, 3, 4], 1),
        &all(&[0, 1, 2, 3, 4]),
    )
    .unwrap();
    assert_eq!(
        p,
        ScalePlan::Down {
            transfer_to: None,
            remove: vec![4, 3]
        }
    );
}

#[test]
fn scale_down_that_would_lose_quorum_is_refused() {
    // 5 -> 3 with nodes 1 and 2 down: the remaining {0,1,2} have one voter up.
    let m = members(&[0, 1, 2, 3, 4], 0);
    let e = plan(5, 5, 3, &m, &all(&[0, 3, 4])).unwrap_err();
    assert_eq!(e.exit, Exit::BadInput);
    assert!(e.message.contains("need 2 answering"), "{e}");
    // With one of them down it is fine: 2 of 3.
    assert!(plan(5, 5, 3, &m, &all(&[0, 1, 4])).is_ok());
    assert!(plan(3, 3, 0, &members(&[0, 1, 2], 0), &all(&[0, 1, 2])).is_err());
}

#[test]
fn scale_up_adds_the_missing_members_within_the_founders() {
    let m = members(&[0, 1, 2], 0);
    assert_eq!(
        plan(3, 5, 5, &m, &all(&[0, 1, 2])).unwrap(),
        ScalePlan::Up { add: vec![3, 4] }
    );
    let e = plan(3, 3, 5, &m, &all(&[0, 1, 2])).unwrap_err();
    assert!(e.message.contains("RAFTKV_REPLICAS=3"), "{e}");
    assert!(
        plan(3, 5, 5, &m, &all(&[0])).is_err(),
        "no quorum to add with"
    );
    assert_eq!(plan(3, 3, 3, &m, &all(&[])).unwrap(), ScalePlan::Nothing);
}
