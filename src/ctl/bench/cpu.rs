//! Server CPU per operation: every member's CPU time is read right before
//! and right after the measured window, and the difference is divided by
//! the requests that succeeded in it. The load generator's own CPU is not
//! counted, so a figure is what the servers spend, wherever raftctl runs.
//!
//! Two sources. `/proc/PID/stat` of local processes splits user from
//! system time (the pids come from `--cpu-pids` or from the `raftctl local`
//! supervisor). Otherwise each member's `/metrics`: raftkv serves
//! `raftkv_process_cpu_seconds_total{mode}`, user and system apart in
//! microsecond steps. Other servers (etcd) only have the Prometheus process
//! collector's `process_cpu_seconds_total`, user + system in one counter in
//! clock ticks (and whole seconds in the `prometheus` crate's collector,
//! which an older raftkv serves alone). Each figure carries its resolution:
//! one step of the counter per sample, divided by the requests.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ctl::cli::Target;
use crate::ctl::local::control::{self, Answer, Request};

/// How long one member's `/metrics` may take to answer.
const SCRAPE_LIMIT: Duration = Duration::from_secs(3);

/// Where one member's CPU time is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Proc(u32),
    Metrics(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub source: Source,
}

/// A process's CPU time so far, in seconds; user and system when known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTime {
    pub user: Option<f64>,
    pub system: Option<f64>,
    pub total: f64,
    /// The counter's step, in seconds.
    pub step: f64,
}

/// The members whose CPU is sampled, or why none can be.
#[derive(Debug, Clone)]
pub struct Probe {
    pub members: Vec<Member>,
}

/// Microseconds of server CPU per successful request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PerOp {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_us: Option<f64>,
    pub total_us: f64,
    /// How far `total_us` may be off through the counters' steps alone.
    pub resolution_us: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberCpu {
    pub member: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_op: Option<PerOp>,
    /// Why this member's figure is missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// The CPU section of a bench report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuReport {
    /// Where the figures come from, in words.
    pub source: String,
    pub members: Vec<MemberCpu>,
    /// All members together; missing if any member's figure is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<PerOp>,
}

impl Probe {
    /// Chooses the sources: `--cpu-pids`; else, for raftkv, the pids the
    /// `raftctl local` supervisor on `data_dir` gives if its nodes are the
    /// endpoints; else the members' `/metrics` (`metrics`, or addresses
    /// derived from the endpoints).
    pub async fn discover(
        target: Target,
        endpoints: &[String],
        pids: &[u32],
        metrics: &[String],
        data_dir: &Path,
    ) -> Probe {
        if !pids.is_empty() {
            let members = pids
                .iter()
                .map(|&pid| Member {
                    name: format!("pid {pid}"),
                    source: Source::Proc(pid),
                })
                .collect();
            return Probe { members };
        }
        if target == Target::Raftkv
            && let Some(members) = local_members(endpoints, data_dir).await
        {
            return Probe { members };
        }
        let addrs = if metrics.is_empty() {
            endpoints
                .iter()
                .map(|e| default_metrics_addr(target, e))
                .collect()
        } else {
            metrics.to_vec()
        };
        let members = addrs
            .into_iter()
            .map(|addr| Member {
                name: addr.clone(),
                source: Source::Metrics(addr),
            })
            .collect();
        Probe { members }
    }

    /// Every member's CPU time now (read concurrently, so the samples are
    /// a few milliseconds apart at most).
    pub async fn sample(&self) -> Vec<Result<CpuTime, String>> {
        futures::future::join_all(self.members.iter().map(|m| read(&m.source))).await
    }

    /// Words for the report's source line.
    pub fn describe(&self) -> String {
        let proc = self
            .members
            .iter()
            .all(|m| matches!(m.source, Source::Proc(_)));
        if proc {
            "/proc/PID/stat of the member processes (user and system)".into()
        } else {
            "the members' /metrics: raftkv_process_cpu_seconds_total by mode where served, else process_cpu_seconds_total (user and system not split)".into()
        }
    }

    /// The report from samples taken before and after a window in which
    /// `ops` requests succeeded.
    pub fn report(
        &self,
        before: &[Result<CpuTime, String>],
        after: &[Result<CpuTime, String>],
        ops: u64,
    ) -> CpuReport {
        let mut members = Vec::new();
        let mut sum = Some(PerOp {
            user_us: Some(0.0),
            system_us: Some(0.0),
            total_us: 0.0,
            resolution_us: 0.0,
        });
        for ((member, b), a) in self.members.iter().zip(before).zip(after) {
            let figure = match (b, a) {
                (Ok(b), Ok(a)) => per_op(b, a, ops),
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
            };
            sum = match (&figure, sum) {
                (Ok(f), Some(s)) => Some(PerOp {
                    user_us: s.user_us.zip(f.user_us).map(|(x, y)| x + y),
                    system_us: s.system_us.zip(f.system_us).map(|(x, y)| x + y),
                    total_us: s.total_us + f.total_us,
                    resolution_us: s.resolution_us + f.resolution_us,
                }),
                _ => None,
            };
            members.push(MemberCpu {
                member: member.name.clone(),
                per_op: figure.as_ref().ok().cloned(),
                unavailable: figure.err(),
            });
        }
        CpuReport {
            source: self.describe(),
            total: sum.filter(|_| !members.is_empty()),
            members,
        }
    }
}

/// CPU per operation between two samples of one process.
fn per_op(before: &CpuTime, after: &CpuTime, ops: u64) -> Result<PerOp, String> {
    if ops == 0 {
        return Err("no request succeeded".into());
    }
    if after.total < before.total {
        return Err("the CPU counter went back: the process restarted during the run".into());
    }
    let us = |b: Option<f64>, a: Option<f64>| b.zip(a).map(|(b, a)| (a - b) * 1e6 / ops as f64);
    Ok(PerOp {
        user_us: us(before.user, after.user),
        system_us: us(before.system, after.system),
        total_us: (after.total - before.total) * 1e6 / ops as f64,
        resolution_us: before.step.max(after.step) * 1e6 / ops as f64,
    })
}

/// raftkv serves `/metrics` on its client port + 2 (`raftctl local`'s and
/// the chart's layout); etcd serves it on the client port itself.
fn default_metrics_addr(target: Target, endpoint: &str) -> String {
    match target {
        Target::Etcd => endpoint.to_string(),
        Target::Raftkv => match endpoint.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(p) if p <= u16::MAX - 2 => format!("{host}:{}", p + 2),
                _ => endpoint.to_string(),
            },
            None => endpoint.to_string(),
        },
    }
}

/// The nodes of the `raftctl local` cluster on `data_dir`, if one runs
/// there and serves these endpoints.
async fn local_members(endpoints: &[String], data_dir: &Path) -> Option<Vec<Member>> {
    let Ok(Answer::Pods(pods)) =
        control::ask(data_dir, &Request::Pods, Duration::from_secs(5)).await
    else {
        return None;
    };
    if !pods.iter().any(|p| endpoints.contains(&p.client_addr)) {
        return None;
    }
    Some(
        pods.iter()
            .map(|p| Member {
                name: format!("node {}", p.id),
                // A node that is down has no pid: pid 0 names no process,
                // so its figure reads "unavailable".
                source: Source::Proc(p.pid.unwrap_or(0)),
            })
            .collect(),
    )
}

async fn read(source: &Source) -> Result<CpuTime, String> {
    match source {
        Source::Proc(0) => Err("the node is not running".into()),
        Source::Proc(pid) => {
            let path = format!("/proc/{pid}/stat");
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| format!("cannot read {path}: {e}"))?;
            parse_proc_stat(&text, clock_ticks()?)
        }
        Source::Metrics(addr) => {
            let body = scrape(addr).await?;
            let mode = |m: &str| {
                parse_sample(
                    &body,
                    "raftkv_process_cpu_seconds_total",
                    &format!("mode=\"{m}\""),
                )
            };
            if let (Some(user), Some(system)) = (mode("user"), mode("system")) {
                return Ok(CpuTime {
                    user: Some(user),
                    system: Some(system),
                    total: user + system,
                    step: 1e-6,
                });
            }
            let total = parse_sample(&body, "process_cpu_seconds_total", "")
                .ok_or_else(|| format!("http://{addr}/metrics has no process_cpu_seconds_total"))?;
            Ok(CpuTime {
                user: None,
                system: None,
                total,
                step: counter_step(total)?,
            })
        }
    }
}

/// The step of a scraped CPU counter: whole seconds if it shows no
/// fraction (raftkv's), else the kernel's tick (etcd's, read from /proc as
/// a float). A whole value from a fine counter only overstates the step.
fn counter_step(value: f64) -> Result<f64, String> {
    if value.fract() == 0.0 {
        Ok(1.0)
    } else {
        Ok(1.0 / clock_ticks()?)
    }
}

fn clock_ticks() -> Result<f64, String> {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return Err("cannot read the clock tick rate (sysconf)".into());
    }
    Ok(ticks as f64)
}

/// User and system time from a `/proc/PID/stat` line: fields 14 and 15,
/// counted after the command name, which is in parentheses and may hold
/// spaces and parentheses itself.
fn parse_proc_stat(text: &str, ticks_per_second: f64) -> Result<CpuTime, String> {
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or("no command name in /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (the state).
    let field = |n: usize| -> Result<f64, String> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / ticks_per_second)
            .ok_or_else(|| format!("field {n} of /proc/PID/stat is not a tick count"))
    };
    let (user, system) = (field(14)?, field(15)?);
    Ok(CpuTime {
        user: Some(user),
        system: Some(system),
        total: user + system,
        step: 1.0 / ticks_per_second,
    })
}

/// The value of the first series named `name` whose labels contain
/// `label` (`""`: any labels) in a Prometheus text page.
fn parse_sample(page: &str, name: &str, label: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let (series, value) = line.trim().split_once(char::is_whitespace)?;
        let (bare, labels) = series.split_once('{').unwrap_or((series, ""));
        (bare == name && labels.contains(label))
            .then(|| value.split_whitespace().next()?.parse().ok())
            .flatten()
    })
}

/// `GET /metrics` over plain HTTP/1.0 (never chunked, so the body is the
/// rest of the stream); the body, or why not.
async fn scrape(addr: &str) -> Result<String, String> {
    let fetch = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(SCRAPE_LIMIT, fetch)
        .await
        .map_err(|_| format!("http://{addr}/metrics did not answer within 3 s"))?
        .map_err(|e| format!("http://{addr}/metrics: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("http://{addr}/metrics: not an HTTP answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("http://{addr}/metrics answered {status:?}"));
    }
    Ok(body.to_string())
}

/// The human form: one line per member and one for all of them.
pub fn render(cpu: &CpuReport) -> String {
    let num = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    let mut rows = Vec::new();
    let mut row = |name: &str, per_op: Option<&PerOp>, why: Option<&str>| {
        let mut cells = vec![
            name.to_string(),
            num(per_op.and_then(|p| p.user_us)),
            num(per_op.and_then(|p| p.system_us)),
            num(per_op.map(|p| p.total_us)),
            per_op.map_or("-".into(), |p| format!("±{:.1}", p.resolution_us)),
        ];
        if let Some(why) = why {
            cells.push(format!("unavailable: {why}"));
        }
        rows.push(cells);
    };
    for m in &cpu.members {
        row(&m.member, m.per_op.as_ref(), m.unavailable.as_deref());
    }
    row("all members", cpu.total.as_ref(), None);
    let table =
        crate::ctl::output::table(&["member", "user", "system", "total", "resolution"], &rows);
    let indented: String = table.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "server CPU  µs per request, from {}\n{indented}",
        cpu.source
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_count_after_the_command_name() {
        // A command name with a space and a parenthesis, as a thread may have.
        let line =
            "4242 (raft kv) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        let t = parse_proc_stat(line, 100.0).unwrap();
        assert_eq!(t.user, Some(2.5));
        assert_eq!(t.system, Some(0.75));
        assert_eq!(t.total, 3.25);
        assert!(parse_proc_stat("4242 raftkv S 1", 100.0).is_err());
        assert!(parse_proc_stat("4242 (raftkv) S 1 2", 100.0).is_err());
    }

    #[test]
    fn the_cpu_counter_is_found_in_a_metrics_page() {
        let page = "# HELP process_cpu_seconds_total Total user and system CPU time.\n\
                    # TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total_other 9\n\
                    process_cpu_seconds_total 12.5\n\
                    process_open_fds 20\n";
        let total = |page: &str| parse_sample(page, "process_cpu_seconds_total", "");
        assert_eq!(total(page), Some(12.5));
        assert_eq!(
            total("process_cpu_seconds_total{pod=\"a\"} 3e-1\n"),
            Some(0.3)
        );
        assert_eq!(total("process_open_fds 20\n"), None);
        // raftkv's own counters, by mode.
        let page = "raftkv_process_cpu_seconds_total{mode=\"system\"} 0.25\n\
                    raftkv_process_cpu_seconds_total{mode=\"user\"} 1.5\n";
        let mode = |m: &str| {
            parse_sample(
                page,
                "raftkv_process_cpu_seconds_total",
                &format!("mode=\"{m}\""),
            )
        };
        assert_eq!((mode("user"), mode("system")), (Some(1.5), Some(0.25)));
        assert_eq!(mode("idle"), None);
    }

    #[test]
    fn metrics_addresses_follow_each_target_layout() {
        assert_eq!(
            default_metrics_addr(Target::Raftkv, "127.0.0.1:7389"),
            "127.0.0.1:7391"
        );
        assert_eq!(
            default_metrics_addr(Target::Etcd, "127.0.0.1:2379"),
            "127.0.0.1:2379"
        );
    }

    fn probe(n: usize) -> Probe {
        Probe {
            members: (0..n)
                .map(|i| Member {
                    name: format!("node {i}"),
                    source: Source::Proc(100 + i as u32),
                })
                .collect(),
        }
    }

    fn split(user: f64, system: f64) -> Result<CpuTime, String> {
        Ok(CpuTime {
            user: Some(user),
            system: Some(system),
            total: user + system,
            step: 0.01,
        })
    }

    #[test]
    fn cpu_per_op_divides_each_member_and_sums_them() {
        let p = probe(2);
        let before = [split(1.0, 0.5), split(2.0, 1.0)];
        let after = [split(1.5, 0.75), split(2.25, 1.0)];
        let r = p.report(&before, &after, 1000);
        assert_eq!(
            r.members[0].per_op,
            Some(PerOp {
                user_us: Some(500.0),
                system_us: Some(250.0),
                total_us: 750.0,
                resolution_us: 10.0,
            })
        );
        assert_eq!(
            r.total,
            Some(PerOp {
                user_us: Some(750.0),
                system_us: Some(250.0),
                total_us: 1000.0,
                resolution_us: 20.0,
            })
        );
        let text = render(&r);
        assert!(
            text.contains("  node 0       500.0  250.0   750.0   ±10.0"),
            "{text}"
        );
        assert!(
            text.contains("all members  750.0  250.0   1000.0  ±20.0"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_member_leaves_no_total_and_says_why() {
        let p = probe(2);
        // A scraped counter in whole seconds: its step over 500 requests.
        let total_only = Ok(CpuTime {
            user: None,
            system: None,
            total: 1.0,
            step: 1.0,
        });
        let later = Ok(CpuTime {
            user: None,
            system: None,
            total: 2.0,
            step: 1.0,
        });
        let r = p.report(
            &[total_only.clone(), Err("refused".into())],
            &[later, split(0.0, 0.0)],
            500,
        );
        let scraped = r.members[0].per_op.as_ref().unwrap();
        assert_eq!((scraped.total_us, scraped.resolution_us), (2000.0, 2000.0));
        assert_eq!(r.members[0].per_op.as_ref().unwrap().user_us, None);
        assert_eq!(r.members[1].unavailable.as_deref(), Some("refused"));
        assert_eq!(r.total, None);
        assert!(render(&r).contains("unavailable: refused"));
        // No request: nothing to divide by; a counter going back: a restart.
        let none = p.report(&[split(1.0, 0.0)], &[split(2.0, 0.0)], 0);
        assert!(none.members[0].unavailable.is_some());
        let back = p.report(&[split(2.0, 0.0)], &[split(1.0, 0.0)], 10);
        assert!(
            back.members[0]
                .unavailable
                .as_ref()
                .unwrap()
                .contains("restarted")
        );
    }

    #[tokio::test]
    async fn this_process_can_be_read_from_proc() {
        let p = Probe {
            members: vec![Member {
                name: "me".into(),
                source: Source::Proc(std::process::id()),
            }],
        };
        let t = p.sample().await.remove(0).unwrap();
        assert!(t.user.is_some() && t.total >= 0.0);
        let gone = Probe {
            members: vec![Member {
                name: "down".into(),
                source: Source::Proc(0),
            }],
        };
        assert!(gone.sample().await[0].is_err());
    }

    #[tokio::test]
    async fn a_metrics_page_is_scraped_over_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"GET /metrics HTTP/1.0\r\n"));
            s.write_all(b"HTTP/1.0 200 OK\r\n\r\nprocess_cpu_seconds_total 4.25\n")
                .await
                .unwrap();
        });
        let t = read(&Source::Metrics(addr.clone())).await.unwrap();
        assert_eq!((t.user, t.total), (None, 4.25));
        assert!(t.step < 0.1, "a counter with a fraction steps by a tick");
        assert_eq!(counter_step(12.0), Ok(1.0));
        // Nothing listens there any more.
        assert!(read(&Source::Metrics(addr)).await.is_err());
    }
}
