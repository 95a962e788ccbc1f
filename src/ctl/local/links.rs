//! The link proxies of `raftctl local`: one TCP listener per ordered pair
//! of founders (from, to), forwarding to `to`'s peer port; node `from` is
//! told the listener's address for peer `to` (see `nodes::link_addr`).
//! They pass every byte unless `raftctl chaos` asks otherwise
//! (docs/raftctl.md, "Faults on local links").
//!
//! A node dials each peer and streams its Raft messages one way on that
//! connection (`Raft/Send`); the answers come back on the connection the
//! peer dials. So the connection of link (from, to) carries exactly the
//! Raft messages from → to, and what flows back on it is HTTP/2 and TLS
//! bookkeeping. A fault therefore acts on whole links: "the messages
//! from → to are lost" drops both directions of link (from, to)'s
//! connections and leaves link (to, from) alone. Dropping only the way
//! back would not lose a message at once; it would stall the sender's
//! HTTP/2 flow control some kilobytes later.
//!
//! The proxy forwards bytes; it terminates nothing, so mutual TLS between
//! the nodes works through it unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::nodes::{LocalNode, link_addr};

/// What happens to the bytes of one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "kebab-case")]
pub enum Flow {
    Pass,
    /// Read and discarded; the connection stays open and new ones are
    /// accepted, as with packets lost on a partition. A connection that
    /// lost bytes is closed when the link heals: its stream has a hole,
    /// as a TCP connection that gave up retransmitting would.
    Drop,
    /// Each chunk leaves `delay_us` plus up to `jitter_us` after it came,
    /// never before an earlier chunk.
    Delay {
        delay_us: u64,
        jitter_us: u64,
    },
}

/// The flows of link (from, to): `forward` is the bytes from → to (the
/// Raft messages), `back` the bytes to → from on the same connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRule {
    pub from: u64,
    pub to: u64,
    pub forward: Flow,
    pub back: Flow,
}

impl LinkRule {
    /// The Raft messages from → to are lost.
    pub fn cut(from: u64, to: u64) -> LinkRule {
        LinkRule {
            from,
            to,
            forward: Flow::Drop,
            back: Flow::Drop,
        }
    }

    /// The Raft messages from → to arrive `delay` (+ up to `jitter`) late;
    /// the bookkeeping back is not delayed.
    pub fn slow(from: u64, to: u64, delay: Duration, jitter: Duration) -> LinkRule {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        LinkRule {
            from,
            to,
            forward: Flow::Delay {
                delay_us: us(delay),
                jitter_us: us(jitter),
            },
            back: Flow::Pass,
        }
    }
}

struct Link {
    forward: watch::Sender<Flow>,
    back: watch::Sender<Flow>,
}

/// The proxies of every link between founders; dropping this stops them.
pub struct Links {
    links: BTreeMap<(u64, u64), Link>,
    tasks: Vec<JoinHandle<()>>,
    /// When the faults set last heal by themselves, if any are set.
    heal_at: Option<Instant>,
}

impl Drop for Links {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Links {
    /// Every link between `founders` that has a proxy port, as (from, to,
    /// listening address).
    pub fn plan(founders: &[LocalNode]) -> Vec<(u64, u64, String)> {
        let mut planned = Vec::new();
        for from in founders {
            for to in founders {
                if let Some(addr) = link_addr(from.id, to) {
                    planned.push((from.id, to.id, addr));
                }
            }
        }
        planned
    }

    /// Binds the proxy of every link between `founders`; all pass.
    pub async fn bind(founders: &[LocalNode]) -> Result<Links, String> {
        let mut links = Links {
            links: BTreeMap::new(),
            tasks: Vec::new(),
            heal_at: None,
        };
        for (from, to, addr) in Links::plan(founders) {
            let listener = TcpListener::bind(&addr).await.map_err(|e| {
                format!(
                    "port conflict: {addr} (the proxy of link {from}->{to}) is taken ({e}); is \
                     another raftkv cluster running? Stop it or choose --base-port"
                )
            })?;
            let target = founders
                .iter()
                .find(|n| n.id == to)
                .map(|n| n.peer_addr.clone())
                .unwrap_or_default();
            let (forward, _) = watch::channel(Flow::Pass);
            let (back, _) = watch::channel(Flow::Pass);
            let link = Link { forward, back };
            let flows = (link.forward.clone(), link.back.clone());
            links
                .tasks
                .push(tokio::spawn(serve(listener, target, flows)));
            links.links.insert((from, to), link);
        }
        Ok(links)
    }

    /// Sets every link to pass except those of `rules`; they heal by
    /// themselves after `heal_after`, so that a chaos run that dies midway
    /// leaves no partition behind. Refuses (changing nothing) a rule for
    /// a link without a proxy.
    pub fn set(&mut self, rules: &[LinkRule], heal_after: Duration) -> Result<(), String> {
        if let Some(r) = rules
            .iter()
            .find(|r| !self.links.contains_key(&(r.from, r.to)))
        {
            return Err(format!(
                "link {}->{} has no proxy: only the founders (ids below {}) of raftctl local talk \
                 through proxies; nodes added by scale talk directly",
                r.from,
                r.to,
                super::nodes::PROXIED_IDS
            ));
        }
        for (key, link) in &self.links {
            let rule = rules.iter().find(|r| (r.from, r.to) == *key);
            link.forward
                .send_replace(rule.map_or(Flow::Pass, |r| r.forward));
            link.back.send_replace(rule.map_or(Flow::Pass, |r| r.back));
        }
        self.heal_at = (!rules.is_empty()).then(|| Instant::now() + heal_after);
        Ok(())
    }

    /// Every link passes again.
    pub fn heal(&mut self) {
        let _ = self.set(&[], Duration::ZERO);
    }

    /// When the faults set heal by themselves, if any are set.
    pub fn heal_at(&self) -> Option<Instant> {
        self.heal_at
    }

    /// The proxied links, (from, to).
    pub fn proxied(&self) -> Vec<(u64, u64)> {
        self.links.keys().copied().collect()
    }
}

/// Accepts the connections of one link and forwards each to `target`.
async fn serve(
    listener: TcpListener,
    target: String,
    flows: (watch::Sender<Flow>, watch::Sender<Flow>),
) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of descriptors, most likely: try again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let target = target.clone();
        let forward = flows.0.subscribe();
        let back = flows.1.subscribe();
        tokio::spawn(async move {
            // The node is down: closing the accepted connection tells the
            // dialer as a refused connection would.
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let damaged = Arc::new(AtomicBool::new(false));
            // Either way ending ends both: dropping the halves closes the
            // two connections.
            tokio::select! {
                () = pump(in_read, out_write, forward, damaged.clone()) => {}
                () = pump(out_read, in_write, back, damaged) => {}
            }
        });
    }
}

/// Copies one direction of a connection under its link's `flow`. Returns
/// when either end closes, or when the link heals after this connection
/// lost bytes (`damaged`, shared by both directions).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut flow: watch::Receiver<Flow>,
    damaged: Arc<AtomicBool>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    let reader = async move {
        let mut buf = vec![0u8; 64 << 10];
        let mut last_due = Instant::now();
        loop {
            tokio::select! {
                read = from.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let now = Instant::now();
                    let due = match *flow.borrow() {
                        Flow::Pass => now,
                        Flow::Drop => {
                            damaged.store(true, Ordering::Relaxed);
                            continue;
                        }
                        Flow::Delay { delay_us, jitter_us } => {
                            let extra = rand::random_range(0..=jitter_us);
                            now + Duration::from_micros(delay_us.saturating_add(extra))
                        }
                    };
                    // Order is kept: no chunk overtakes an earlier one.
                    last_due = due.max(last_due);
                    if tx.send((last_due, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
                changed = flow.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let healed = *flow.borrow_and_update() != Flow::Drop;
                    if healed && damaged.load(Ordering::Relaxed) {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// One link 0->1 to an echo server standing in for node 1's peer port.
    async fn echo_link() -> (Links, String) {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        // A base port whose link 0->1 lands on a free port.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let free = probe.local_addr().unwrap().port();
        drop(probe);
        let base = free - 10 - 3;
        let mut nodes = super::super::nodes::plan(2, base, Path::new("d")).unwrap();
        nodes[1].peer_addr = echo_addr.to_string();
        // The proxy port comes from the planned peer port, not the echo's.
        let planned = Links::plan(&nodes);
        let addr = planned
            .iter()
            .find(|(f, t, _)| (*f, *t) == (0, 1))
            .map(|(_, _, a)| a.clone())
            .unwrap();
        let nodes_for_bind: Vec<LocalNode> = nodes
            .into_iter()
            .filter(|n| n.id == 1 || n.id == 0)
            .collect();
        (Links::bind(&nodes_for_bind).await.unwrap(), addr)
    }

    async fn round_trip(s: &mut TcpStream, text: &[u8], limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        s.write_all(text).await.unwrap();
        let mut got = vec![0u8; text.len()];
        match tokio::time::timeout(limit, s.read_exact(&mut got)).await {
            Ok(Ok(_)) => {
                assert_eq!(got, text);
                Some(start.elapsed())
            }
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_link_passes_drops_delays_and_heals() {
        let (mut links, addr) = echo_link().await;
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let second = Duration::from_secs(1);
        assert!(round_trip(&mut s, b"hello", second).await.is_some());

        // Dropped: nothing comes back, the connection stays open, and a
        // new connection is accepted but carries nothing either.
        links
            .set(&[LinkRule::cut(0, 1)], Duration::from_secs(60))
            .unwrap();
        assert!(links.heal_at().is_some());
        let lost = Duration::from_millis(300);
        assert_eq!(round_trip(&mut s, b"lost", lost).await, None);
        let mut fresh = TcpStream::connect(&addr).await.unwrap();
        assert_eq!(round_trip(&mut fresh, b"lost too", lost).await, None);

        // Healed: the connections that lost bytes are closed; new ones pass.
        links.heal();
        assert_eq!(links.heal_at(), None);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(second, s.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        let mut s = TcpStream::connect(&addr).await.unwrap();
        assert!(round_trip(&mut s, b"again", second).await.is_some());

        // Delayed one way: a round trip takes the delay, order is kept.
        let delay = Duration::from_millis(80);
        let jitter = Duration::from_millis(20);
        links
            .set(&[LinkRule::slow(0, 1, delay, jitter)], second)
            .unwrap();
        let took = round_trip(&mut s, b"slow", second).await.unwrap();
        assert!(
            took >= delay && took < delay + jitter + Duration::from_millis(150),
            "{took:?}"
        );
        for i in 0..20u8 {
            s.write_all(&[i]).await.unwrap();
        }
        let mut got = [0u8; 20];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(got.to_vec(), (0..20).collect::<Vec<u8>>());

        // A rule for a link without a proxy is refused, changing nothing.
        let err = links.set(&[LinkRule::cut(3, 0)], second).unwrap_err();
        assert!(err.contains("link 3->0 has no proxy"), "{err}");
    }
}
