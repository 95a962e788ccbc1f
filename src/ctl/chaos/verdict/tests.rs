use super::*;

fn op(key: &str, kind: OpKind, call: u64, ret: Option<u64>) -> Op {
    Op {
        client: 0,
        key: key.into(),
        kind,
        call,
        ret,
        at: None,
    }
}

fn set(v: &str, call: u64, ret: Option<u64>) -> Op {
    op("k", OpKind::Set { value: v.into() }, call, ret)
}

fn finals(v: Option<&str>) -> BTreeMap<String, Option<String>> {
    [("k".to_string(), v.map(str::to_string))].into()
}

#[test]
fn the_last_acknowledged_write_survives() {
    let h = [set("1000", 0, Some(10)), set("2000", 20, Some(30))];
    assert!(lost_writes(&h, &finals(Some("2000"))).is_empty());
}

#[test]
fn an_overwritten_acknowledged_write_is_lost() {
    let h = [set("1000", 0, Some(10)), set("2000", 20, Some(30))];
    let lost = lost_writes(&h, &finals(Some("1000")));
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].contains("2000"), "{lost:?}");
    assert_eq!(lost_writes(&h, &finals(None)).len(), 2);
}

#[test]
fn concurrent_or_unanswered_writes_may_win() {
    // 1000 overlaps 2000: either order is fine.
    let h = [set("1000", 0, Some(30)), set("2000", 20, Some(40))];
    assert!(lost_writes(&h, &finals(Some("1000"))).is_empty());
    // An unanswered write may apply any time after its call.
    let h = [set("2000", 20, Some(30)), set("3000", 25, None)];
    assert!(lost_writes(&h, &finals(Some("3000"))).is_empty());
    // A value nobody wrote.
    assert_eq!(lost_writes(&h, &finals(Some("9"))).len(), 1);
    // An INCR without answer may have produced it.
    let h = [
        set("2000", 20, Some(30)),
        op("k", OpKind::Incr { result: None }, 40, None),
    ];
    assert!(lost_writes(&h, &finals(Some("2001"))).is_empty());
}

#[test]
fn failed_cas_writes_nothing() {
    let h = [
        set("1000", 0, Some(10)),
        op(
            "k",
            OpKind::Cas {
                expected: Some("7".into()),
                new: "2000".into(),
                result: Some(false),
            },
            20,
            Some(30),
        ),
    ];
    assert!(lost_writes(&h, &finals(Some("1000"))).is_empty());
    assert_eq!(lost_writes(&h, &finals(Some("2000"))).len(), 1);
}

fn incr(result: Option<i64>, ret: Option<u64>) -> Op {
    op("c", OpKind::Incr { result }, 0, ret)
}

#[test]
fn incr_counts_fit_between_acknowledged_and_attempted() {
    let h = [
        incr(Some(1), Some(1)),
        incr(Some(2), Some(2)),
        incr(None, None),
    ];
    assert!(incr_check(&h, "c", Some("2")).ok);
    assert!(incr_check(&h, "c", Some("3")).ok);
    let lost = incr_check(&h, "c", Some("1"));
    assert!(!lost.ok);
    assert_eq!((lost.acknowledged, lost.indeterminate), (2, 1));
    assert!(!incr_check(&h, "c", Some("4")).ok, "applied twice");
    let twice = [incr(Some(1), Some(1)), incr(Some(1), Some(2))];
    assert_eq!(incr_check(&twice, "c", Some("2")).duplicate_results, 1);
    assert!(!incr_check(&twice, "c", Some("2")).ok);
    assert!(incr_check(&[], "c", None).ok);
}

#[test]
fn unavailability_is_the_longest_gap_after_each_fault() {
    let successes = [5, 10, 100, 110, 300, 310, 320];
    // Fault at 10: 10 -> 100 (90), then 110 -> the next fault at 200 (90).
    // Fault at 200: 200 -> 300 (100), then short gaps, 320 -> end 400 (80).
    assert_eq!(unavailability(&[10, 200], &successes, 400), vec![90, 100]);
    // No success after the fault: the whole window.
    assert_eq!(unavailability(&[350], &successes, 400), vec![50]);
    // An outage that outlasts its window counts until the first success.
    assert_eq!(unavailability(&[200, 250], &successes, 400), vec![100, 80]);
    assert_eq!(spread(&[3, 1, 2]), Some((1, 2, 3)));
    assert_eq!(spread(&[]), None);
}
