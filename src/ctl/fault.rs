//! The faults `raftctl chaos` injects: one vocabulary that every platform
//! shares. A platform carries out what it can and refuses the rest with a
//! message that says why (see `Platform::refuses`); a fault is never
//! skipped silently. What each fault means is in docs/testing.md
//! ("Faults").

use std::time::Duration;

use super::duration::parse_duration;

pub mod disk;

pub use disk::DiskFault;

/// How long `pause` freezes a pod when no length is given: a few election
/// timeouts at the defaults, so that the followers elect a new leader
/// while the old one, frozen with its lease, cannot tell.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// How long a partition lasts when no length is given: ten election
/// timeouts at the defaults, room for the majority to elect and for the
/// cut-off leader's lease to lapse, short enough for many faults a run.
pub const DEFAULT_CUT: Duration = Duration::from_secs(3);

/// How long a slow link lasts when no length is given.
pub const DEFAULT_SLOW: Duration = Duration::from_secs(5);

/// How long a skewed clock runs when no length is given: room for the
/// isolate-leader cut it holds ([`DEFAULT_CUT`]) and the recovery after it.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(8);

/// The shortest skew: it must hold its cut and a second more.
pub const MIN_SKEW: Duration = Duration::from_secs(4);

/// The clock rates a skew accepts, in parts per million of real time:
/// from a tenth to ten times. Beyond them the node's own timers (its
/// heartbeats, which follow its clock) break the cluster before any lease
/// question arises.
pub const SKEW_RATES_PPM: std::ops::RangeInclusive<u32> = 100_000..=10_000_000;

/// How long a node stays down after its disk failed, when no length is
/// given: room for the others to elect and go on without it.
pub const DEFAULT_DISK: Duration = Duration::from_secs(3);

/// Which node a skew or a disk fault restarts (on another clock, under
/// libfiu, on a small volume).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChoice {
    /// The pod `--kill` chooses (the leader's by default).
    Chosen,
    /// The leader's, made leader again after its restart.
    Leader,
    /// A follower's, chosen at random.
    Follower,
}

impl NodeChoice {
    /// `TEXT[@leader|@follower]`: TEXT and the node; `what` names the
    /// fault in the message for another suffix.
    fn split<'a>(text: &'a str, what: &str) -> Result<(&'a str, NodeChoice), String> {
        match text.split_once('@') {
            None => Ok((text, NodeChoice::Chosen)),
            Some((head, "leader")) => Ok((head, NodeChoice::Leader)),
            Some((head, "follower")) => Ok((head, NodeChoice::Follower)),
            Some((_, other)) => Err(format!(
                "{other:?} is not a node to {what}: use @leader or @follower"
            )),
        }
    }

    /// `@leader`, `@follower`, or nothing for the chosen pod.
    fn suffix(&self) -> &'static str {
        match self {
            NodeChoice::Chosen => "",
            NodeChoice::Leader => "@leader",
            NodeChoice::Follower => "@follower",
        }
    }
}

/// A change of the cluster's members (or of their processes, one after
/// another) while the workload runs. Each leaves the cluster with the
/// voters it found, so the changes can repeat for as long as a run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// A new node (the next ordinal) joins as a learner and is promoted
    /// once caught up; then it is removed again.
    AddLearner,
    /// As `AddLearner`, then the new node is made leader and removed while
    /// it leads.
    RemoveLeader,
    /// As `AddLearner`; the fault is the new node's removal while it
    /// follows.
    RemoveFollower,
    /// A follower is frozen for a second under the workload, so that its
    /// log lags, and leadership is handed to it the moment it runs again.
    TransferLagging,
    /// Every node restarted gracefully in turn, the followers first and
    /// the leader last, each once the cluster is healthy again.
    RollingRestart,
}

impl MemberChange {
    pub const ALL: [MemberChange; 5] = [
        MemberChange::AddLearner,
        MemberChange::RemoveLeader,
        MemberChange::RemoveFollower,
        MemberChange::TransferLagging,
        MemberChange::RollingRestart,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            MemberChange::AddLearner => "add-learner",
            MemberChange::RemoveLeader => "remove-leader",
            MemberChange::RemoveFollower => "remove-follower",
            MemberChange::TransferLagging => "transfer-lagging",
            MemberChange::RollingRestart => "rolling-restart",
        }
    }

    fn parse(text: &str) -> Result<MemberChange, String> {
        MemberChange::ALL
            .into_iter()
            .find(|m| m.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = MemberChange::ALL.iter().map(MemberChange::name).collect();
                format!("{text:?} is not a member change: use {}", names.join(", "))
            })
    }
}

/// Which links a partition cuts, relative to the leader of the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// The leader hears nothing and reaches nobody.
    IsolateLeader,
    /// The leader and the fewest others that still leave a majority
    /// outside: with 5 nodes, 2 against 3; with 3, the leader alone.
    LeaderMinority,
    /// The leader's messages are lost; it still hears the others.
    OneWayOut,
    /// The others' messages to the leader are lost; it still reaches them.
    OneWayIn,
    /// One follower (the bridge) sees both sides; the leader's side and
    /// the other side do not see each other.
    Bridge,
}

impl Partition {
    pub const ALL: [Partition; 5] = [
        Partition::IsolateLeader,
        Partition::LeaderMinority,
        Partition::OneWayOut,
        Partition::OneWayIn,
        Partition::Bridge,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Partition::IsolateLeader => "isolate-leader",
            Partition::LeaderMinority => "leader-minority",
            Partition::OneWayOut => "one-way-out",
            Partition::OneWayIn => "one-way-in",
            Partition::Bridge => "bridge",
        }
    }

    fn parse(text: &str) -> Result<Partition, String> {
        Partition::ALL
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Partition::ALL.iter().map(Partition::name).collect();
                format!("{text:?} is not a partition: use {}", names.join(", "))
            })
    }

    /// The links whose Raft messages are lost, as (from, to), for a
    /// cluster of `nodes` (ids, any order) led by `leader`.
    pub fn cut(&self, leader: u64, nodes: &[u64]) -> Vec<(u64, u64)> {
        let mut others: Vec<u64> = nodes.iter().copied().filter(|&n| n != leader).collect();
        others.sort_unstable();
        let between = |a: &[u64], b: &[u64]| -> Vec<(u64, u64)> {
            let mut links = Vec::new();
            for &x in a {
                for &y in b {
                    links.push((x, y));
                    links.push((y, x));
                }
            }
            links
        };
        match self {
            Partition::IsolateLeader => between(&[leader], &others),
            Partition::LeaderMinority => {
                // The largest minority that holds the leader.
                let minority = (nodes.len().saturating_sub(1) / 2).max(1);
                let mut side = vec![leader];
                side.extend(&others[..minority - 1]);
                between(&side, &others[minority - 1..])
            }
            Partition::OneWayOut => others.iter().map(|&o| (leader, o)).collect(),
            Partition::OneWayIn => others.iter().map(|&o| (o, leader)).collect(),
            Partition::Bridge => {
                // others[0] bridges; the rest split between the sides.
                let rest = others.get(1..).unwrap_or_default();
                let half = rest.len() / 2;
                let mut near = vec![leader];
                near.extend(&rest[..half]);
                between(&near, &rest[half..])
            }
        }
    }
}

/// What a fault does to the pod (or the links) it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Deletes the pod (forced or graceful, as chaos's `--grace` says); it
    /// comes back with its data.
    Kill,
    /// Freezes the pod's process for this long, then lets it run on: a
    /// stop-the-world pause (a long GC, a stalled VM, SIGSTOP) of a node
    /// that may believe it still leads with a lease.
    Pause(Duration),
    /// Loses the Raft messages on the links the partition names (relative
    /// to the leader) for this long, then heals them.
    Partition(Partition, Duration),
    /// Delays every Raft message to and from the chosen pod by `delay`
    /// plus up to `jitter` (order kept) for `length`.
    SlowLink {
        delay: Duration,
        jitter: Duration,
        length: Duration,
    },
    /// Restarts a pod with its clocks (the monotonic and boot-time clocks
    /// its leases run on, and the wall clock) running at `rate_ppm`
    /// millionths of real time for `length`, isolates the leader of the
    /// moment once meanwhile (an isolate-leader cut of [`DEFAULT_CUT`]),
    /// then restarts it on the real clock. Within the drift bound nothing
    /// may go wrong; beyond it the lease argument no longer holds.
    Skew {
        rate_ppm: u32,
        on: NodeChoice,
        length: Duration,
    },
    /// Changes the members (or restarts them in turn) under the workload.
    Member(MemberChange),
    /// Restarts a pod where its disk can fail (under libfiu, on a small
    /// volume), makes it fail while the pod serves, confirms that the node
    /// stopped, leaves it down for `length`, then restarts it on a sound
    /// disk. Nothing acknowledged may be lost (docs/node.md, "When the
    /// disk fails").
    Disk {
        fault: DiskFault,
        on: NodeChoice,
        length: Duration,
    },
}

/// `DURATION` that must not be zero, for `what`.
fn positive(text: &str, what: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("{what} must last longer than 0")),
        d => Ok(d),
    }
}

/// A clock rate such as `0.991` or `1.05` (real time is 1), in millionths.
fn parse_rate(text: &str) -> Result<u32, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a clock rate: use a number such as 0.995 or 1.01"))?;
    let ppm = (rate * 1e6).round();
    if !rate.is_finite()
        || !(f64::from(*SKEW_RATES_PPM.start())..=f64::from(*SKEW_RATES_PPM.end())).contains(&ppm)
    {
        return Err(format!(
            "a clock rate must be within [0.1, 10] times real time, not {text}"
        ));
    }
    Ok(ppm as u32)
}

/// Splits `TEXT:LENGTH` into TEXT and LENGTH (`default` without one).
fn with_length(text: &str, default: Duration) -> Result<(&str, Duration), String> {
    match text.split_once(':') {
        Some((head, length)) => Ok((head, positive(length, "a fault")?)),
        None => Ok((text, default)),
    }
}

impl FaultKind {
    /// `kill`, `pause[=DURATION]`, `partition=KIND[:LENGTH]` or
    /// `slow=DELAY[~JITTER][:LENGTH]` (e.g. `pause=900ms`,
    /// `partition=isolate-leader:5s`, `slow=50ms~10ms`).
    pub fn parse(text: &str) -> Result<FaultKind, String> {
        match text.split_once('=') {
            None if text == "kill" => Ok(FaultKind::Kill),
            None if text == "pause" => Ok(FaultKind::Pause(DEFAULT_PAUSE)),
            Some(("pause", length)) => Ok(FaultKind::Pause(positive(length, "a pause")?)),
            Some(("partition", rest)) => {
                let (kind, length) = with_length(rest, DEFAULT_CUT)?;
                Ok(FaultKind::Partition(Partition::parse(kind)?, length))
            }
            Some(("slow", rest)) => {
                let (delays, length) = with_length(rest, DEFAULT_SLOW)?;
                let (delay, jitter) = match delays.split_once('~') {
                    Some((delay, jitter)) => (positive(delay, "a delay")?, parse_duration(jitter)?),
                    // A fifth of the delay: links do not keep time exactly.
                    None => {
                        let delay = positive(delays, "a delay")?;
                        (delay, delay / 5)
                    }
                };
                Ok(FaultKind::SlowLink {
                    delay,
                    jitter,
                    length,
                })
            }
            Some(("member", change)) => Ok(FaultKind::Member(MemberChange::parse(change)?)),
            Some(("skew", rest)) => {
                let (rate, length) = with_length(rest, DEFAULT_SKEW)?;
                if length < MIN_SKEW {
                    return Err(format!(
                        "a skew must last at least {MIN_SKEW:?}: it holds a {DEFAULT_CUT:?} \
                         isolate-leader cut"
                    ));
                }
                let (rate, on) = NodeChoice::split(rate, "skew")?;
                Ok(FaultKind::Skew {
                    rate_ppm: parse_rate(rate)?,
                    on,
                    length,
                })
            }
            Some(("disk", rest)) => {
                let (fault, length) = with_length(rest, DEFAULT_DISK)?;
                let (fault, on) = NodeChoice::split(fault, "fail the disk of")?;
                Ok(FaultKind::Disk {
                    fault: DiskFault::parse(fault)?,
                    on,
                    length,
                })
            }
            _ => Err(format!(
                "{text:?} is not a fault: use kill, pause[=DURATION], partition=KIND[:LENGTH], \
                 slow=DELAY[~JITTER][:LENGTH], skew=RATE[@leader|@follower][:LENGTH], \
                 member=CHANGE or disk=KIND[@leader|@follower][:LENGTH]"
            )),
        }
    }

    /// A comma-separated list of faults, used in turn; `all` is one of
    /// each kind at its defaults.
    pub fn parse_list(text: &str) -> Result<Faults, String> {
        if text.trim() == "all" {
            let mut all = vec![FaultKind::Kill, FaultKind::Pause(DEFAULT_PAUSE)];
            all.extend(
                Partition::ALL
                    .into_iter()
                    .map(|p| FaultKind::Partition(p, DEFAULT_CUT)),
            );
            all.push(FaultKind::parse("slow=50ms").expect("a valid fault"));
            // The leader's clock slow, within the default drift bound (1%).
            all.push(FaultKind::parse("skew=0.995@leader").expect("a valid fault"));
            all.extend(MemberChange::ALL.into_iter().map(FaultKind::Member));
            // The leader's fsync (it must not acknowledge what it could not
            // sync) and a follower's volume.
            all.push(FaultKind::parse("disk=fsync@leader").expect("a valid fault"));
            all.push(FaultKind::parse("disk=full@follower").expect("a valid fault"));
            return Ok(Faults {
                kinds: all,
                every_kind: true,
            });
        }
        let faults = text
            .split(',')
            .map(str::trim)
            .map(FaultKind::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Faults {
            kinds: faults,
            every_kind: false,
        })
    }

    /// How the report names it.
    pub fn label(&self) -> String {
        match self {
            FaultKind::Kill => "kill".into(),
            FaultKind::Pause(d) => format!("pause {d:?}"),
            FaultKind::Partition(p, d) => format!("partition {} {d:?}", p.name()),
            FaultKind::SlowLink {
                delay,
                jitter,
                length,
            } => format!("slow {delay:?}~{jitter:?} {length:?}"),
            FaultKind::Skew {
                rate_ppm,
                on,
                length,
            } => format!(
                "skew x{}{} {length:?}",
                f64::from(*rate_ppm) / 1e6,
                on.suffix()
            ),
            FaultKind::Member(change) => format!("member {}", change.name()),
            FaultKind::Disk { fault, on, length } => {
                format!("disk {}{} {length:?}", fault.name(), on.suffix())
            }
        }
    }

    /// Whether it acts on the links between nodes rather than a process.
    pub fn on_links(&self) -> bool {
        matches!(self, FaultKind::Partition(..) | FaultKind::SlowLink { .. })
    }

    /// Whether it changes the members (or restarts them in turn).
    pub fn changes_members(&self) -> bool {
        matches!(self, FaultKind::Member(_))
    }

    /// Whether it restarts a pod on another clock (and cuts links meanwhile).
    pub fn skews(&self) -> bool {
        matches!(self, FaultKind::Skew { .. })
    }

    /// Whether it makes a pod's disk fail.
    pub fn fails_disk(&self) -> bool {
        matches!(self, FaultKind::Disk { .. })
    }
}

/// What a link fault does to the Raft messages on link (from, to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEffect {
    Lost,
    Slow { delay: Duration, jitter: Duration },
}

/// One link's fault, as every platform that can act on links receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkFault {
    pub from: u64,
    pub to: u64,
    pub effect: LinkEffect,
}

/// The faults of a chaos run, injected in turn (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Faults {
    pub kinds: Vec<FaultKind>,
    /// Asked for as `all`: what the platform or this machine cannot inject
    /// is left out, by name, rather than refusing the run (see
    /// [`Faults::on_platform`]).
    pub every_kind: bool,
}

impl Faults {
    /// The `n`th fault of the run (0-based).
    pub fn nth(&self, n: usize) -> FaultKind {
        self.kinds[n % self.kinds.len()]
    }

    /// The faults a platform that `refuses` some can inject. A list the
    /// user named is refused whole at its first refused fault (it says
    /// why); `all` leaves those kinds out and returns, beside what is
    /// left, a line per kind left out saying why — so that `--faults all`
    /// runs wherever the cluster runs (partitions without Docker's
    /// network, a full volume without root), and says what it did not
    /// test.
    pub fn on_platform(
        &self,
        refuses: impl Fn(FaultKind) -> Option<String>,
    ) -> Result<(Faults, Vec<String>), String> {
        if !self.every_kind {
            return match self.kinds.iter().find_map(|f| refuses(*f)) {
                Some(why) => Err(why),
                None => Ok((self.clone(), Vec::new())),
            };
        }
        let mut kinds = Vec::new();
        let mut left_out = Vec::new();
        for kind in &self.kinds {
            match refuses(*kind) {
                Some(why) => left_out.push(format!("{} left out: {why}", kind.label())),
                None => kinds.push(*kind),
            }
        }
        if kinds.is_empty() {
            return Err(format!(
                "no fault of `all` can run here: {}",
                left_out.join("; ")
            ));
        }
        let faults = Faults {
            kinds,
            every_kind: true,
        };
        Ok((faults, left_out))
    }
}

impl std::str::FromStr for Faults {
    type Err = String;
    fn from_str(text: &str) -> Result<Faults, String> {
        FaultKind::parse_list(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(FaultKind::parse("kill"), Ok(FaultKind::Kill));
        assert_eq!(
            FaultKind::parse("pause"),
            Ok(FaultKind::Pause(DEFAULT_PAUSE))
        );
        assert_eq!(
            FaultKind::parse("pause=900ms"),
            Ok(FaultKind::Pause(Duration::from_millis(900)))
        );
        assert_eq!(
            FaultKind::Pause(Duration::from_millis(900)).label(),
            "pause 900ms"
        );
        assert_eq!(
            FaultKind::parse("partition=bridge:5s"),
            Ok(FaultKind::Partition(
                Partition::Bridge,
                Duration::from_secs(5)
            ))
        );
        assert_eq!(
            FaultKind::parse("partition=one-way-in"),
            Ok(FaultKind::Partition(Partition::OneWayIn, DEFAULT_CUT))
        );
        let ms = Duration::from_millis;
        assert_eq!(
            FaultKind::parse("slow=50ms"),
            Ok(FaultKind::SlowLink {
                delay: ms(50),
                jitter: ms(10),
                length: DEFAULT_SLOW
            })
        );
        assert_eq!(
            FaultKind::parse("slow=20ms~0:2s").unwrap().label(),
            "slow 20ms~0ns 2s"
        );
        assert_eq!(
            FaultKind::parse("skew=0.991@leader"),
            Ok(FaultKind::Skew {
                rate_ppm: 991_000,
                on: NodeChoice::Leader,
                length: DEFAULT_SKEW
            })
        );
        assert_eq!(
            FaultKind::parse("skew=1.5:6s").unwrap().label(),
            "skew x1.5 6s"
        );
        assert_eq!(
            FaultKind::parse("skew=0.5@follower").unwrap().label(),
            "skew x0.5@follower 8s"
        );
        assert_eq!(
            FaultKind::parse("member=transfer-lagging"),
            Ok(FaultKind::Member(MemberChange::TransferLagging))
        );
        assert_eq!(
            FaultKind::parse("member=remove-leader").unwrap().label(),
            "member remove-leader"
        );
        assert_eq!(
            FaultKind::parse("disk=fsync@leader"),
            Ok(FaultKind::Disk {
                fault: DiskFault::Fsync,
                on: NodeChoice::Leader,
                length: DEFAULT_DISK
            })
        );
        assert_eq!(
            FaultKind::parse("disk=full:5s"),
            Ok(FaultKind::Disk {
                fault: DiskFault::Full,
                on: NodeChoice::Chosen,
                length: Duration::from_secs(5)
            })
        );
        assert_eq!(
            FaultKind::parse("disk=full@follower:1500ms")
                .unwrap()
                .label(),
            "disk full@follower 1.5s"
        );
        assert_eq!(
            FaultKind::parse("disk=fsync").unwrap().label(),
            "disk fsync 3s"
        );
        for (bad, says) in [
            ("disk=slow", "use fsync or full"),
            ("disk", "not a fault"),
            ("disk=fsync@nobody", "@leader or @follower"),
            ("disk=full:0s", "longer than 0"),
            ("disk=full:soon", ""),
            ("disk=full@leader@follower", "@leader or @follower"),
            ("member=shuffle", "add-learner, remove-leader"),
            ("member", "not a fault"),
            ("skew=fast", "not a clock rate"),
            ("skew=0", "within [0.1, 10]"),
            ("skew=-1", "within [0.1, 10]"),
            ("skew=11", "within [0.1, 10]"),
            ("skew=NaN", "within [0.1, 10]"),
            ("skew=0.5@nobody", "@leader or @follower"),
            ("skew=0.5:2s", "at least 4s"),
        ] {
            let e = FaultKind::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        for bad in [
            "partition",
            "partition=everyone",
            "partition=bridge:0s",
            "slow=0s",
            "kill=1s",
            "pause=0s",
            "pause=soon",
            "",
        ] {
            assert!(FaultKind::parse(bad).is_err(), "{bad:?} accepted");
        }
        let unknown = FaultKind::parse("nap").unwrap_err();
        assert!(unknown.contains("kill, pause"), "{unknown}");
        assert!(unknown.contains("disk=KIND"), "{unknown}");
        assert!(
            FaultKind::parse("partition=x")
                .unwrap_err()
                .contains("isolate-leader, leader-minority")
        );
    }

    #[test]
    fn a_list_is_used_in_turn_and_all_names_every_kind() {
        let faults: Faults = "kill, partition=bridge".parse().unwrap();
        assert_eq!(faults.nth(0), FaultKind::Kill);
        assert_eq!(
            faults.nth(3),
            FaultKind::Partition(Partition::Bridge, DEFAULT_CUT)
        );
        let all = FaultKind::parse_list("all").unwrap().kinds;
        assert_eq!(all.len(), 16);
        let disks: Vec<String> = all
            .iter()
            .filter(|f| f.fails_disk())
            .map(FaultKind::label)
            .collect();
        assert_eq!(disks, ["disk fsync@leader 3s", "disk full@follower 3s"]);
        assert!(all.iter().filter(|f| f.on_links()).count() == 6);
        assert_eq!(all.iter().filter(|f| f.skews()).count(), 1);
        assert_eq!(all.iter().filter(|f| f.changes_members()).count(), 5);
        assert!("kill,nap".parse::<Faults>().is_err());
    }

    /// `all` runs what the platform can inject and names the rest; a
    /// named list is refused whole, before anything is injected.
    #[test]
    fn all_leaves_out_what_the_platform_refuses_and_says_so() {
        let no_disk = |f: FaultKind| f.fails_disk().then(|| "no root".to_string());
        let all: Faults = "all".parse().unwrap();
        let (left, why) = all.on_platform(no_disk).unwrap();
        assert_eq!(left.kinds.len(), all.kinds.len() - 2);
        assert!(left.kinds.iter().all(|f| !f.fails_disk()));
        assert_eq!(
            why,
            [
                "disk fsync@leader 3s left out: no root",
                "disk full@follower 3s left out: no root"
            ]
        );
        let (same, none) = all.on_platform(|_| None).unwrap();
        assert_eq!((same, none.len()), (all.clone(), 0));
        assert!(all.on_platform(|_| Some("no".into())).is_err());
        let named: Faults = "kill,disk=full".parse().unwrap();
        assert_eq!(named.on_platform(no_disk).unwrap_err(), "no root");
        assert_eq!(named.on_platform(|_| None).unwrap().0, named);
    }

    #[test]
    fn partitions_cut_the_links_their_names_say() {
        let sorted = |mut v: Vec<(u64, u64)>| {
            v.sort_unstable();
            v
        };
        let three = [0, 1, 2];
        let isolate = vec![(0, 1), (0, 2), (1, 0), (2, 0)];
        assert_eq!(sorted(Partition::IsolateLeader.cut(0, &three)), isolate);
        // With 3 nodes the largest minority is the leader alone.
        assert_eq!(sorted(Partition::LeaderMinority.cut(0, &three)), isolate);
        assert_eq!(Partition::OneWayOut.cut(1, &three), vec![(1, 0), (1, 2)]);
        assert_eq!(Partition::OneWayIn.cut(1, &three), vec![(0, 1), (2, 1)]);
        // Node 0 bridges leader 1 and node 2.
        assert_eq!(
            sorted(Partition::Bridge.cut(1, &three)),
            vec![(1, 2), (2, 1)]
        );
        // Five: the leader and one follower against three.
        let five = [0, 1, 2, 3, 4];
        let minority = sorted(Partition::LeaderMinority.cut(2, &five));
        assert_eq!(minority.len(), 2 * 2 * 3);
        assert!(minority.contains(&(2, 1)) && minority.contains(&(0, 3)));
        assert!(!minority.contains(&(2, 0)), "2 and 0 are on one side");
        // Bridge 0; sides {leader 2, 1} and {3, 4}.
        let bridge = sorted(Partition::Bridge.cut(2, &five));
        assert_eq!(bridge.len(), 2 * 2 * 2);
        assert!(bridge.iter().all(|&(a, b)| a != 0 && b != 0));
        assert!(!bridge.contains(&(2, 1)));
    }
}
