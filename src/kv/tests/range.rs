//! Range reads: prefix, order, pages, expiry at the applied cluster time,
//! and the limits checked before proposing.

use super::*;
use crate::pb::RangeRequest;

fn range(h: &Harness, prefix: &str, after: &str, limit: u32) -> (Vec<String>, bool, u64) {
    let r = h.sm.range(&RangeRequest {
        prefix: b(prefix),
        after: b(after),
        limit,
        keys_only: false,
    });
    let keys = r
        .items
        .iter()
        .map(|kv| {
            format!(
                "{}={}",
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(&kv.value)
            )
        })
        .collect();
    (keys, r.more, r.count)
}

#[test]
fn a_prefix_is_read_in_key_order_page_by_page() {
    let mut h = Harness::new();
    for k in ["user/b", "user/a", "users", "user/c", "other", "user/"] {
        h.apply(1, set(k, "v"));
    }
    let (all, more, count) = range(&h, "user/", "", 0);
    assert_eq!(all, ["user/=v", "user/a=v", "user/b=v", "user/c=v"]);
    assert_eq!((more, count), (false, 4));
    let (page, more, count) = range(&h, "user/", "", 2);
    assert_eq!(
        (page, more, count),
        (vec!["user/=v".into(), "user/a=v".into()], true, 4)
    );
    // The next page starts after the last key returned; no count there.
    let (page, more, count) = range(&h, "user/", "user/a", 2);
    assert_eq!(
        (page, more, count),
        (vec!["user/b=v".into(), "user/c=v".into()], false, 0)
    );
    // An empty prefix is every key.
    assert_eq!(range(&h, "", "", 0).2, 6);
    // A continuation before the prefix starts at the prefix.
    assert_eq!(range(&h, "user/", "a", 1).0, ["user/=v"]);
}

#[test]
fn expired_keys_are_absent_at_the_applied_cluster_time() {
    let mut h = Harness::new();
    h.apply(1_000, set("k/1", "a"));
    h.apply(1_000, set("k/2", "b"));
    h.apply(1_000, expire("k/1", 1));
    assert_eq!(range(&h, "k/", "", 0).2, 2);
    h.advance(2_000);
    assert_eq!(range(&h, "k/", "", 0), (vec!["k/2=b".into()], false, 1));
}

#[test]
fn a_page_stops_before_it_outgrows_one_message() {
    let mut h = Harness::new();
    let big = "x".repeat(600 * 1024);
    for k in ["a", "b", "c"] {
        h.apply(1, set(k, &big));
    }
    let r = h.sm.range(&RangeRequest::default());
    assert_eq!((r.items.len(), r.more, r.count), (1, true, 3));
    let keys_only = h.sm.range(&RangeRequest {
        keys_only: true,
        ..RangeRequest::default()
    });
    assert_eq!(keys_only.items.len(), 3);
    assert!(keys_only.items.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn an_expire_beyond_the_limit_is_refused_before_proposing() {
    let h = Harness::new();
    let command = |seconds| Command {
        op: Some(expire("k", seconds)),
    };
    assert!(h.sm.validate(&command(crate::kv::MAX_TTL_SECONDS)).is_ok());
    let e = h.sm.validate(&command(i64::MAX as u64)).unwrap_err();
    assert_eq!(e.code(), Code::Invalid);
    assert!(e.message.contains("9000000000"), "{}", e.message);
}

#[test]
fn incr_reads_canonical_decimals_only() {
    let mut h = Harness::new();
    for bad in ["007", "+5", "-0", " 1"] {
        h.apply(1, set("n", bad));
        assert_eq!(
            error_code(&h.apply(1, incr("n"))),
            Code::NotAnInteger,
            "{bad}"
        );
        assert_eq!(h.get("n", 1).as_deref(), Some(bad), "unchanged");
    }
    h.apply(1, set("n", "-5"));
    assert_eq!(incr_value(&h.apply(1, incr("n"))), -4);
}
