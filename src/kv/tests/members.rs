//! Member addresses: replicated like commands, kept in snapshots, never
//! accepted from a client.

use super::*;
use crate::pb::MemberAddrsCmd;

fn addrs(id: u64, peer: &str) -> Op {
    Op::MemberAddrs(MemberAddrsCmd {
        id,
        peer_addr: peer.into(),
        client_addr: format!("client-of-{peer}"),
    })
}

#[test]
fn applied_addresses_are_kept_replaced_and_snapshotted() {
    let mut h = Harness::new();
    let r = h.apply(1, addrs(3, "n3:7380"));
    assert!(matches!(r.result, Some(Outcome::MemberAddrs(_))), "{r:?}");
    h.apply(2, addrs(4, "n4:7380"));
    h.apply(3, addrs(3, "n3b:7380"));
    let ids: Vec<_> = h.sm.members().keys().copied().collect();
    assert_eq!(ids, [3, 4]);
    assert_eq!(h.sm.members()[&3].peer_addr, "n3b:7380");
    // Not client data: no key appears.
    assert!(h.sm.is_empty());

    let restored = StateMachine::restore(Limits::default(), &h.sm.snapshot()).unwrap();
    assert_eq!(restored, h.sm);
}

#[test]
fn clients_cannot_propose_addresses() {
    let h = Harness::new();
    let cmd = Command {
        op: Some(addrs(3, "evil:7380")),
    };
    let e = h.sm.validate(&cmd).unwrap_err();
    assert_eq!(e.code, Code::Invalid as i32);
}

#[test]
fn oversized_addresses_are_refused_on_every_replica() {
    let mut h = Harness::new();
    let r = h.apply(1, addrs(3, &"x".repeat(400)));
    assert!(matches!(r.result, Some(Outcome::Error(_))), "{r:?}");
    assert!(h.sm.members().is_empty());
}
