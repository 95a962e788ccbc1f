//! The directed scenarios (docs/consensus.md, "Directed scenarios"):
//! interleavings that random faults reach too rarely, each the one a broken
//! variant needs to do harm. With the correct protocol each must pass every
//! check; the tests in tests/sim.rs assert that.

use crate::world::script::{Cond, Scenario, Script, Traffic};
use raftkv::raft::{ConfChange, Config, LogId, NodeId};
use std::time::Duration;

const N0: NodeId = NodeId(0);
const N1: NodeId = NodeId(1);
const N2: NodeId = NodeId(2);
const N3: NodeId = NodeId(3);
const N4: NodeId = NodeId(4);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A new leader is elected while the old leader still holds its lease.
///
/// n0 leads term 2 and holds its lease through n1's acknowledgements; n2 has
/// stopped hearing it. n0 is cut off, n1 restarts — forgetting n0, so it is
/// no longer sticky, and reporting a full lease as it must — and votes for
/// n2, which leads term 3 while n0's lease still runs. The correct n2 waits
/// out n1's report before it serves; one that ignores it holds a lease at the
/// same time as n0, and n0 still answers a read from its lease after n2
/// acknowledged a newer write.
///
/// The clocks sit at the edges of the drift bound the wrong way round: n0's
/// runs slow (its lease lasts longest in real time), n1's and n2's fast (n1
/// reports the least, n2 waits the least real time), so the correct wait is
/// checked where its margin is thinnest.
pub fn new_leader_during_old_lease() -> Scenario {
    let script = old_lease_prefix(&[N2]).set(1, N2, "a", "2");
    let script = read_at_n0_after_the_write(script)
        .get(2, N2, "a")
        .until(Cond::Answered(2), ms(1000));
    old_lease_scenario("new leader during the old lease", 3, script)
}

/// `nodes` nodes, n0 slow and the others fast: the wait is checked where
/// its margin is thinnest.
fn old_lease_scenario(name: &'static str, nodes: usize, script: Script) -> Scenario {
    let rho = Config::new(N0).max_clock_drift;
    let mut clock_rates = vec![1.0 + rho; nodes];
    clock_rates[0] = 1.0 - rho;
    Scenario {
        name,
        clock_rates,
        script,
        settle: ms(1000),
    }
}

/// Client 1's write is answered, then a read at the old leader n0 starts
/// strictly after it (ops that touch in time count as concurrent).
fn read_at_n0_after_the_write(script: Script) -> Script {
    script
        .until(Cond::Answered(1), ms(1000))
        .run(ms(1))
        .get(0, N0, "a")
        .until(Cond::Answered(0), ms(1000))
}

/// Up to the moment n2 leads term 3 while n0 still holds its term-2 lease
/// (see `new_leader_during_old_lease`); n0 holds `a = 1` at index 3.
/// The cluster has 2 × `cut_off.len()` + 1 nodes: `cut_off` (n2 first)
/// stop hearing n0 and vote for n2 with the restarted n1; the other
/// followers keep renewing n0's lease with n1.
fn old_lease_prefix(cut_off: &[NodeId]) -> Script {
    let followers = [N1, N2, N3, N4];
    let others = &followers[..2 * cut_off.len()];
    // Only n0 may campaign: it leads term 2.
    let script = others.iter().fold(Script::new(), |s, n| s.hold_timer(*n));
    script
        .until(Cond::Leads(N0, 2), ms(2000))
        .until(Cond::Lease(N0), ms(1000))
        .set(0, N0, "a", "1")
        .until(Cond::Answered(0), ms(1000))
        // n2 has the write (index 3), so it can win an election later.
        .until(Cond::Durable(N2, LogId::new(2, 3)), ms(1000))
        // n2 stops hearing n0, whose lease n1 keeps renewing; n2's election
        // timeout (under 2T) runs out while its timer is held.
        .cut_all(N0, cut_off)
        .run(ms(700))
        // n0 is cut off with its lease running; n1, which acknowledged its
        // latest round, restarts and forgets it.
        .isolate(N0)
        .crash(N1)
        .run(ms(5))
        .restart(N1)
        .release_timer(N2)
        .until(Cond::Leads(N2, 3), ms(1000))
        // The moment these scenarios are about.
        .expect(Cond::Lease(N0))
}

/// A new leader steps down while it waits out the old lease.
///
/// As in `new_leader_during_old_lease`, n2 leads term 3 while the isolated
/// n0 still holds its term-2 lease, and must wait it out. Meanwhile a client
/// writes `a = 2` at n2, which commits it through n1 (index 5) but holds it
/// back from its state machine; then n2 hands leadership to n1, as the node
/// does on SIGTERM, and steps down as soon as n1 campaigns. A core whose
/// serving gate only closes while it leads releases index 5 at once: the
/// write is acknowledged while n0's lease still runs, and n0 then answers
/// a GET from its lease with `a = 1` — the history is not linearizable.
/// The correct core keeps the gate closed until its wait is over, whatever
/// its role.
pub fn leader_steps_down_during_its_wait() -> Scenario {
    let script = old_lease_prefix(&[N2])
        .release_timer(N1)
        .set(1, N2, "a", "2")
        .until(Cond::Commits(N2, 5), ms(1000))
        .transfer(N2, N1);
    let script = read_at_n0_after_the_write(script);
    old_lease_scenario("a new leader steps down during its wait", 3, script)
}

/// A new leader is removed from the membership while it waits out the old
/// lease.
///
/// Five nodes, so that the configuration without n2 still has a majority
/// while n0 is cut off: as in `new_leader_during_old_lease`, n2 leads term 3
/// (with the votes of the restarted n1 and of n4, which stopped hearing n0
/// with n2) while the isolated n0 still holds its term-2 lease, renewed
/// through n1 and n3. A client writes `a = 2` at n2, which commits it
/// (index 5) during its wait; then n2 removes itself. The removal commits
/// through n1, n3 and n4 (index 6); n2 hands over to the most caught-up
/// voter and steps down, its wait not over. A serving gate that only
/// closes while leading releases index 5 at the next `ready()`: the write
/// is acknowledged while n0's lease still runs, and n0 answers a GET from
/// its lease with `a = 1` — not linearizable. The correct core keeps the
/// gate closed; the replica then fails the write as outcome-unknown when
/// leadership is lost.
pub fn leader_removed_during_its_wait() -> Scenario {
    let script = old_lease_prefix(&[N2, N4])
        .set(1, N2, "a", "2")
        .until(Cond::Commits(N2, 5), ms(1000))
        .change(N2, ConfChange::Remove(N2));
    let script = read_at_n0_after_the_write(script);
    old_lease_scenario("a new leader is removed during its wait", 5, script)
}

/// A membership change whose answer is lost is retried at the next leader.
///
/// n0 leads term 2. Client 0 opens a session and asks n0 to remove n0
/// itself, as `raftctl member remove` does through the leader. n2's
/// acknowledgements to n0 are cut, so n0 never learns that its removal
/// commits; n1 and n2 get the entry (in force for them at once), and n0
/// crashes unanswered: the answer is lost, as when a removed leader steps
/// down before its answer leaves. n1 leads term 3 and commits the removal
/// with its first entry. The client sends its request again, with the same
/// sequence number, to n1: the answer must be success, for the removal
/// took effect, once. Evaluated afresh, n1 finds no member n0 and refuses:
/// a failure reported for a change that happened (docs/consensus.md,
/// "Membership changes, exactly once").
pub fn member_change_answer_lost() -> Scenario {
    let script = Script::new()
        .hold_timer(N1)
        .hold_timer(N2)
        .until(Cond::Leads(N0, 2), ms(2000))
        .register(0, N0)
        .until(Cond::Answered(0), ms(1000))
        // Every entry so far acknowledged by both followers.
        .run(ms(200))
        .cut(N2, N0, Traffic::All)
        .change_through(0, N0, ConfChange::Remove(N0))
        .until(Cond::Excludes(N1, N0), ms(1000))
        .until(Cond::Excludes(N2, N0), ms(1000))
        .crash(N0)
        .release_timer(N1)
        .until(Cond::Leads(N1, 3), ms(3000))
        // n1 waits out n0's lease, then applies the removal.
        .run(ms(2000))
        .retry(0, N1)
        .until(Cond::Answered(0), ms(1000))
        .expect_once(Cond::Changed(0));
    Scenario {
        name: "a membership change's answer is lost",
        clock_rates: vec![1.0; 3],
        script,
        settle: ms(1000),
    }
}

/// Raft's Figure 8 (§5.4.2), n0..n4 for S1..S5.
///
/// (a) n0 leads term 2; its NO-OP (index 2) and a client's write (index 3)
/// reach n1 only. n0 is cut off rather than crashed, so the write stays
/// pending at n0 and n0 can acknowledge it; cut off, n0 stays in term 2
/// (pre-votes change no term). (b) n4 leads term 3 with n2's and n3's votes;
/// its NO-OP (index 2, term 3) reaches nobody; n4 crashes. (c) n0 returns and
/// leads term 4 with n1's and n2's votes; it replicates its term-2 entries
/// to n2 — a majority now holds them — but nothing of term 4 beyond n1.
/// Counting replicas would commit them here. (d) n0 crashes; n4 restarts and
/// leads term 5 with n2's and n3's votes (its last entry, term 3, is newer
/// than their term-2 ones) and overwrites indexes 2 and 3.
pub fn figure_8() -> Scenario {
    let script = Script::new()
        .hold_timer(N1)
        .hold_timer(N2)
        .hold_timer(N3)
        .hold_timer(N4)
        // (a)
        .cut(N0, N2, Traffic::Appends)
        .cut(N0, N3, Traffic::Appends)
        .cut(N0, N4, Traffic::Appends)
        .until(Cond::Leads(N0, 2), ms(2000))
        .set(0, N0, "a", "1")
        .until(Cond::Durable(N1, LogId::new(2, 3)), ms(1000))
        .heal()
        .isolate(N0)
        // (b)
        .cut(N4, N1, Traffic::Appends)
        .cut(N4, N2, Traffic::Appends)
        .cut(N4, N3, Traffic::Appends)
        .release_timer(N4)
        .until(Cond::Leads(N4, 3), ms(2000))
        .until(Cond::Durable(N4, LogId::new(3, 2)), ms(1000))
        .crash(N4)
        // (c) n3 never hears n0 in term 4; n2 gets indexes 2 and 3 (its
        // first probe, carrying index 4, is rejected: n2 lacks index 3), and
        // is cut from term-4 entries as soon as index 3 is on its disk.
        .heal()
        .cut(N0, N3, Traffic::All)
        .until(Cond::Leads(N0, 4), ms(3000))
        .until(Cond::Durable(N2, LogId::new(2, 3)), ms(1000))
        .cut(N0, N2, Traffic::EntriesOfTerm(4))
        .run(ms(100))
        .crash(N0)
        // (d)
        .heal()
        .restart(N4)
        .until(Cond::Leads(N4, 5), ms(3000))
        .get(1, N4, "a")
        .until(Cond::Answered(1), ms(1000))
        .restart(N0);
    Scenario {
        name: "Figure 8",
        clock_rates: vec![1.0; 5],
        script,
        settle: ms(1000),
    }
}

/// A slow follower's acknowledgements cross a snapshot.
///
/// n0 leads term 2 with n1 and n2. n2 receives indexes 3 and 4 at once, but
/// its acknowledgements are held on the way back; n1 receives index 3 only
/// (its acknowledgement is held just long enough for index 4 to leave with
/// commit index 2). n0 commits 3 through n1, compacts its log at 3 and, n2's
/// window being full, backs n2 up into the compacted prefix: it sends n2 the
/// snapshot at 3. n2's log matches the snapshot's last entry, but its commit
/// index (2) is below it, so it installs. Then n2's held acknowledgements
/// (up to 4) reach n0, and n0's next write commits index 4 on n0 and n2.
///
/// A follower that drops its log on every install now holds only the
/// snapshot at 3: index 4 was committed (and acknowledged to a client) on a
/// single real copy, and when n0 crashes n2 wins term 3 without it — leader
/// completeness fails. The correct follower keeps a log that matches the
/// snapshot's last entry and only moves its commit index forward (as
/// etcd-io/raft's `restore` does); the leader leaves snapshot mode on an
/// acknowledgement that reaches its log.
///
/// Lease and election timeout are long (1 s): this scenario is about
/// replication, and n0 must not step down while its followers are slow.
pub fn snapshot_while_replicating() -> Scenario {
    let script = Script::new()
        .tune(|c| {
            c.max_inflight = 2;
            c.lease_duration = ms(1000);
            c.election_timeout = ms(1100);
        })
        .hold_timer(N1)
        .hold_timer(N2)
        .until(Cond::Leads(N0, 2), ms(3000))
        .until(Cond::Durable(N1, LogId::new(2, 2)), ms(1000))
        .until(Cond::Durable(N2, LogId::new(2, 2)), ms(1000))
        .run(ms(10))
        // n1 gets index 3 only; both followers' answers wait.
        .cut(N0, N1, Traffic::EntriesAfter(3))
        .hold(N1, N0)
        .hold(N2, N0)
        .set(0, N0, "a", "1")
        .until(Cond::Durable(N1, LogId::new(2, 3)), ms(1000))
        .until(Cond::Durable(N2, LogId::new(2, 3)), ms(1000))
        .set(1, N0, "b", "1")
        .until(Cond::Durable(N2, LogId::new(2, 4)), ms(1000))
        // n2 hears no more appends: only the snapshot can tell it about
        // commit index 3.
        .cut(N0, N2, Traffic::Appends)
        .lift(N1, N0)
        .until(Cond::Answered(0), ms(1000))
        .compact(N0)
        .until(Cond::Commits(N2, 3), ms(1000))
        // n2's acknowledgements of 3 and 4 and of the snapshot arrive.
        .lift(N2, N0)
        .run(ms(20))
        // A write makes n0 count replicas again: index 4 commits.
        .set(2, N0, "c", "1")
        .until(Cond::Answered(1), ms(1000))
        .crash(N0)
        .heal()
        .release_timer(N2)
        .until(Cond::Leads(N2, 3), ms(5000))
        .get(0, N2, "b")
        .until(Cond::Answered(0), ms(3000))
        .restart(N0);
    Scenario {
        name: "snapshot while replicating",
        clock_rates: vec![1.0; 3],
        script,
        settle: ms(1000),
    }
}

/// Every node's fsync stalls for longer than the lease
/// (400 ms against L = 250 ms), as a WAL sync does behind the writeback of a
/// large snapshot, while writes keep all three disks busy. Heartbeats and
/// their answers name nothing being written, so they leave during the
/// syncs: n0 keeps its term and its lease throughout. Held back behind the
/// syncs like every other message, they arrive too late and n0 steps down.
pub fn slow_disks_keep_the_lease() -> Scenario {
    let stall = ms(400);
    let script = Script::new()
        .hold_timer(N1)
        .hold_timer(N2)
        .until(Cond::Leads(N0, 2), ms(2000))
        .until(Cond::Lease(N0), ms(1000))
        .slow_disk(N0, stall)
        .slow_disk(N1, stall)
        .slow_disk(N2, stall);
    let script = (0..3).fold(script, |s, i| {
        let value = i.to_string();
        s.set(0, N0, "a", &value)
            .until(Cond::Answered(0), ms(3000))
            .expect_live(Cond::Leads(N0, 2))
            .expect_live(Cond::Lease(N0))
    });
    Scenario {
        name: "slow disks keep the lease",
        clock_rates: vec![1.0; 3],
        script,
        settle: ms(1000),
    }
}

/// The leader's process is killed (docs/consensus.md, "Failover on a
/// broken connection").
///
/// n0 leads term 2 and holds its lease; n1 holds its last write. n0 is
/// killed: n1 and n2 see their connections to it reset. n2's timer is held
/// (it never campaigns), so only n1 can; n2, which lost its connection to
/// n0 too, no longer counts n0 as live and grants n1's pre-vote. n1 leads
/// term 3 within 200 ms of the kill, where its election timeout alone
/// (at least 300 ms after it last heard n0, at most 50 ms before the
/// kill) would not have run out; like
/// every new leader it waits out n0's lease before it serves, and the
/// write it takes then and the read after it are linearizable with n0's
/// last write.
pub fn leader_killed() -> Scenario {
    let script = Script::new()
        .hold_timer(N1)
        .hold_timer(N2)
        .until(Cond::Leads(N0, 2), ms(2000))
        .until(Cond::Lease(N0), ms(1000))
        .release_timer(N1)
        .set(0, N0, "a", "1")
        .until(Cond::Answered(0), ms(1000))
        .until(Cond::Durable(N1, LogId::new(2, 3)), ms(1000))
        .kill(N0)
        .until(Cond::Leads(N1, 3), ms(200))
        .set(1, N1, "a", "2")
        .until(Cond::Answered(1), ms(400))
        .get(2, N1, "a")
        .until(Cond::Answered(2), ms(400))
        .restart(N0);
    three_nodes("the leader is killed", script)
}

/// n0 leads term 2; the prefix of the reset scenarios.
fn n0_leads_with_a_write() -> Script {
    Script::new()
        .hold_timer(N1)
        .hold_timer(N2)
        .until(Cond::Leads(N0, 2), ms(2000))
        .until(Cond::Lease(N0), ms(1000))
        .release_timer(N1)
        .release_timer(N2)
        .set(0, N0, "a", "1")
        .until(Cond::Answered(0), ms(1000))
}

/// The connections between a live leader and one follower reset (a
/// proxy's reset), once while the link keeps carrying messages and once
/// while it then stays down for 200 ms, twice the grace. n1 stops counting
/// n0 as live: in the first case it hears n0 again within the grace and
/// nothing happens; in the second it asks for pre-votes, which n2 (still
/// hearing n0) and n0 refuse. No term changes: n0 leads term 2 and holds
/// its lease throughout, and takes the next write.
pub fn reset_to_a_live_leader() -> Scenario {
    let script = n0_leads_with_a_write()
        .reset(N0, N1)
        .run(ms(500))
        .expect_live(Cond::Leads(N0, 2))
        .expect_live(Cond::Lease(N0))
        .reset(N0, N1)
        .cut(N0, N1, Traffic::All)
        .run(ms(200))
        .heal()
        .run(ms(500))
        .expect_live(Cond::Leads(N0, 2))
        .expect_live(Cond::Lease(N0))
        .set(1, N0, "a", "2")
        .until(Cond::Answered(1), ms(1000));
    three_nodes("a reset connection to a live leader", script)
}

/// The leader's connections to both followers reset every 100 ms for two
/// seconds, and its link to n1 then loses everything for 50 ms each time
/// (a flapping proxy). Both followers stop counting n0 as live at each
/// reset, but hear it again within the grace, or campaign in vain while
/// the other one hears it: no election, no term change, n0 keeps its
/// lease. A follower that campaigned at once on a reset would, with the
/// other one also reset, depose n0 every time.
pub fn flapping_resets() -> Scenario {
    let script = (0..20).fold(n0_leads_with_a_write(), |s, _| {
        s.reset(N0, N1)
            .reset(N0, N2)
            .cut(N0, N1, Traffic::All)
            .run(ms(50))
            .heal()
            .run(ms(50))
            .expect_live(Cond::Leads(N0, 2))
            .expect_live(Cond::Lease(N0))
    });
    let script = script
        .set(1, N0, "a", "2")
        .until(Cond::Answered(1), ms(1000));
    three_nodes("flapping resets", script)
}

/// Three nodes with exact clocks, settling for a second after `script`.
fn three_nodes(name: &'static str, script: Script) -> Scenario {
    Scenario {
        name,
        clock_rates: vec![1.0; 3],
        script,
        settle: ms(1000),
    }
}
