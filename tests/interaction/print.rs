//! The transcripts' text forms of messages, entries, events and times, and
//! the parser of the message form for `inject`. Log ids are `term/index`;
//! durations and instants are in milliseconds, exact to the nanosecond.

use bytes::Bytes;
use std::time::Duration;

use raftkv::raft::{
    Entry, Event, Instant, LogId, LogIndex, Membership, Message, MessageBody, NodeId, Payload,
    Ready, Term,
};

pub fn ms(d: Duration) -> String {
    let (whole, frac) = (d.as_nanos() / 1_000_000, d.as_nanos() % 1_000_000);
    if frac == 0 {
        format!("{whole}ms")
    } else {
        let f = format!("{frac:06}");
        format!("{whole}.{}ms", f.trim_end_matches('0'))
    }
}

pub fn at(t: Instant) -> String {
    ms(t.0)
}

/// Parses what `ms` prints.
pub fn parse_ms(s: &str) -> Result<Duration, String> {
    let v = s
        .strip_suffix("ms")
        .ok_or_else(|| format!("`{s}`: a duration ends in ms"))?;
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    let bad = |_| format!("`{s}`: not a duration");
    let whole: u64 = whole.parse().map_err(bad)?;
    let nanos: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().map_err(bad)?
    };
    Ok(Duration::from_millis(whole) + Duration::from_nanos(nanos))
}

pub fn id(l: LogId) -> String {
    format!("{}/{}", l.term, l.index)
}

fn parse_id(s: &str) -> Result<LogId, String> {
    let (t, i) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: a log id is term/index"))?;
    let n = |x: &str| x.parse::<u64>().map_err(|_| format!("`{s}`: not a log id"));
    Ok(LogId::new(n(t)?, n(i)?))
}

pub fn members(m: &Membership) -> String {
    let list = |s: &std::collections::BTreeSet<NodeId>| {
        s.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if m.learners.is_empty() {
        format!("conf({})", list(&m.voters))
    } else {
        format!("conf({}|learners {})", list(&m.voters), list(&m.learners))
    }
}

pub fn entry(e: &Entry) -> String {
    let payload = match &e.payload {
        Payload::Noop => "noop".to_string(),
        Payload::Command(b) => String::from_utf8_lossy(b).into_owned(),
        Payload::Config { membership: m, .. } => members(m),
    };
    format!("{}:{payload}", id(e.id))
}

pub fn entries(es: &[Entry]) -> String {
    es.iter().map(entry).collect::<Vec<_>>().join(" ")
}

pub fn message(m: &Message) -> String {
    use MessageBody::*;
    let body = match &m.body {
        Append {
            prev,
            entries: es,
            commit,
            round,
        } => format!(
            "App term={} prev={} commit={commit} round={round} entries=[{}]",
            m.term,
            id(*prev),
            entries(es)
        ),
        AppendResponse {
            success,
            match_index,
            conflict,
            round,
        } => {
            let outcome = if *success {
                format!("ok match={match_index}")
            } else {
                format!("reject hint={}", id(*conflict))
            };
            format!("AppResp term={} {outcome} round={round}", m.term)
        }
        Heartbeat { commit, round } => {
            format!("Beat term={} commit={commit} round={round}", m.term)
        }
        HeartbeatResponse { round } => format!("BeatResp term={} round={round}", m.term),
        Vote {
            last_log,
            pre_vote,
            transfer,
        } => format!(
            "{} term={} last={}{}",
            if *pre_vote { "PreVote" } else { "Vote" },
            m.term,
            id(*last_log),
            if *transfer { " transfer" } else { "" }
        ),
        VoteResponse {
            granted,
            pre_vote,
            lease_remaining,
            lease_term,
        } => format!(
            "{} term={} {} lease={} lease-term={lease_term}",
            if *pre_vote { "PreVoteResp" } else { "VoteResp" },
            m.term,
            if *granted { "granted" } else { "refused" },
            ms(*lease_remaining)
        ),
        Snapshot {
            meta,
            offset,
            data,
            done,
            round,
        } => format!(
            "Snap term={} last={} {} offset={offset} len={}{} round={round}",
            m.term,
            id(meta.last),
            members(&meta.membership),
            data.len(),
            if *done { " done" } else { "" }
        ),
        SnapshotResponse {
            last_index,
            next_offset,
            done,
            round,
        } => format!(
            "SnapResp term={} last={last_index} next-offset={next_offset}{} round={round}",
            m.term,
            if *done { " done" } else { "" }
        ),
        TimeoutNow { lease_released } => format!(
            "TimeoutNow term={}{}",
            m.term,
            if *lease_released {
                " lease-released"
            } else {
                ""
            }
        ),
    };
    format!("{}->{} {body}", m.from, m.to)
}

pub fn event(e: &Event) -> String {
    match e {
        Event::RoleChanged { role, term, leader } => format!(
            "became {} in term {term}, leader {}",
            role.as_str(),
            leader.map_or("unknown".into(), |l| format!("n{l}"))
        ),
        Event::ElectionStarted { term, pre_vote } => {
            let what = if *pre_vote {
                "a pre-vote"
            } else {
                "an election"
            };
            format!("starts {what} for term {term}")
        }
        Event::LeaderElected {
            term,
            wait_for_old_lease,
        } => format!(
            "elected leader of term {term}; waits {} for an old lease",
            ms(*wait_for_old_lease)
        ),
        Event::LeaseAcquired { term } => format!("lease acquired (term {term})"),
        Event::LeaseLost { term } => format!("lease lost (term {term})"),
        Event::SteppedDown { term, reason } => format!("steps down in term {term}: {reason}"),
        Event::MembershipChanged { index, membership } => {
            format!("membership at index {index}: {}", members(membership))
        }
        Event::SnapshotInstalled { last } => format!("installed a snapshot up to {}", id(*last)),
        Event::LogCompacted { last } => format!("compacted its log up to {}", id(*last)),
        Event::TransferStarted { to } => format!("transfers leadership to n{to}"),
        Event::TransferAborted { to } => format!("gave up the transfer to n{to}"),
        Event::LeaderConnectionLost { leader } => {
            format!("lost its connection to leader n{leader}")
        }
        Event::MessageDropped { from, kind, reason } => {
            format!("DROPPED {kind} from n{from}: {reason}")
        }
    }
}

/// What a node's `Ready` holds, in the order the caller acts on it (events
/// first: they say what happened).
pub fn ready(id: NodeId, r: &Ready) -> Vec<String> {
    let mut out = vec![format!("n{id}:")];
    let mut line = |s: String| out.push(format!("  {s}"));
    for e in &r.events {
        line(event(e));
    }
    if let Some(hs) = r.hard_state {
        let vote = hs.voted_for.map_or("none".into(), |v| format!("n{v}"));
        line(format!(
            "hard state: term={} vote={vote} commit={}",
            hs.term, hs.commit
        ));
    }
    if let Some(s) = &r.snapshot {
        line(format!("persist snapshot: {}", self::id(s.meta.last)));
    }
    if !r.entries.is_empty() {
        line(format!("persist: {}", entries(&r.entries)));
    }
    for m in &r.messages {
        line(format!("send {}", message(m)));
    }
    if !r.committed.is_empty() {
        line(format!("apply: {}", entries(&r.committed)));
    }
    for read in &r.reads {
        line(format!(
            "read {} may be answered at applied {}",
            read.id, read.index
        ));
    }
    for id in &r.failed_reads {
        line(format!("read {id} failed: leadership lost"));
    }
    if r.snapshot_due {
        line("snapshot due".into());
    }
    out
}

/// Parses what `message` prints (snapshots excepted: their data is not shown).
pub fn parse_message(s: &str) -> Result<Message, String> {
    let (entries_text, rest) = match s.split_once("entries=[") {
        Some((head, tail)) => {
            let (list, after) = tail
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: unclosed entries"))?;
            (Some(list), format!("{head}{after}"))
        }
        None => (None, s.to_string()),
    };
    let mut words = rest.split_whitespace();
    let route = words.next().ok_or("empty message")?;
    let (from, to) = route
        .split_once("->")
        .ok_or_else(|| format!("`{route}`: expected from->to"))?;
    let node = |x: &str| {
        x.parse()
            .map(NodeId)
            .map_err(|_| format!("`{x}`: not a node"))
    };
    let (from, to) = (node(from)?, node(to)?);
    let kind = words.next().ok_or("no message kind")?;
    let mut kv = std::collections::BTreeMap::new();
    let mut flags = std::collections::BTreeSet::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) => kv.insert(k, v),
            None => flags.insert(w).then_some(""),
        };
    }
    let get = |k: &str| kv.get(k).copied().ok_or(format!("`{s}`: no {k}="));
    let num = |k: &str| -> Result<u64, String> {
        get(k)?
            .parse()
            .map_err(|_| format!("`{s}`: {k} is not a number"))
    };
    let term = Term(num("term")?);
    let body = match kind {
        "App" => MessageBody::Append {
            prev: parse_id(get("prev")?)?,
            entries: entries_text.map_or(Ok(Vec::new()), parse_entries)?,
            commit: LogIndex(num("commit")?),
            round: num("round")?,
        },
        "AppResp" => MessageBody::AppendResponse {
            success: flags.contains("ok"),
            match_index: LogIndex(kv.get("match").map_or(Ok(0), |_| num("match"))?),
            conflict: kv
                .get("hint")
                .map_or(Ok(LogId::default()), |h| parse_id(h))?,
            round: num("round")?,
        },
        "Beat" => MessageBody::Heartbeat {
            commit: LogIndex(num("commit")?),
            round: num("round")?,
        },
        "BeatResp" => MessageBody::HeartbeatResponse {
            round: num("round")?,
        },
        "PreVote" | "Vote" => MessageBody::Vote {
            last_log: parse_id(get("last")?)?,
            pre_vote: kind == "PreVote",
            transfer: flags.contains("transfer"),
        },
        "PreVoteResp" | "VoteResp" => MessageBody::VoteResponse {
            granted: flags.contains("granted"),
            pre_vote: kind == "PreVoteResp",
            lease_remaining: parse_ms(get("lease")?)?,
            lease_term: Term(num("lease-term")?),
        },
        "TimeoutNow" => MessageBody::TimeoutNow {
            lease_released: flags.contains("lease-released"),
        },
        other => return Err(format!("cannot inject a `{other}` message")),
    };
    Ok(Message {
        from,
        to,
        term,
        body,
    })
}

fn parse_entries(list: &str) -> Result<Vec<Entry>, String> {
    list.split_whitespace()
        .map(|e| {
            let (lid, payload) = e
                .split_once(':')
                .ok_or_else(|| format!("`{e}`: an entry is term/index:payload"))?;
            let payload = match payload {
                "noop" => Payload::Noop,
                p if p.starts_with("conf(") => {
                    return Err(format!("`{e}`: cannot inject a config entry"));
                }
                p => Payload::Command(Bytes::from(p.to_string())),
            };
            Ok(Entry {
                id: parse_id(lid)?,
                payload,
            })
        })
        .collect()
}
