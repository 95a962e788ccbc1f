//! `raftctl bench`: concurrent clients, each with its own connection (and,
//! for raftkv, session), latencies in an HDR histogram. Closed loop by
//! default (each client sends its next request when the last is answered);
//! `--rate` makes it open loop (requests planned on a fixed schedule, and
//! each latency counted from its planned start, so a stalled server is not
//! hidden by the clients waiting on it). Lists of client counts and value
//! sizes run one point each (a sweep). Every point reports the servers' CPU
//! per request (`cpu`). `raftctl bench failover` measures something else:
//! see `failover`.

pub mod cpu;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod failover;
pub mod target;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use super::cli::{BenchArgs, Output, Target, Workload};
use super::exit::{CtlError, Exit};
use super::output::{print_structured, table};
use super::signals::Signals;
use crate::client::{Client, ClientOptions};
use cpu::{CpuReport, Probe};
use target::Target as Driven;

/// Latencies are recorded in microseconds, up to a minute.
const MAX_LATENCY_US: u64 = 60_000_000;

/// The most clients one point may have: each is a connection (and a
/// raftkv session), and the sweeps go to 1024.
const MAX_CLIENTS: usize = 4096;

/// The result of one point, as printed.
#[derive(Debug, Serialize)]
pub struct Report {
    pub workload: Workload,
    pub target: Target,
    pub clients: usize,
    pub value_size: usize,
    /// Requests that succeeded.
    pub requests: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub elapsed_seconds: f64,
    /// Successful requests per second (the achieved rate).
    pub throughput: f64,
    /// Closed loop: from each request's send; open loop: from its planned start.
    pub latency_ms: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_loop: Option<OpenLoop>,
    /// The servers' CPU per successful request.
    pub cpu: CpuReport,
    /// Stopped by Ctrl-C before the planned end.
    pub interrupted: bool,
}

/// What an open-loop point offered, beside what it achieved (`throughput`).
#[derive(Debug, Serialize, PartialEq)]
pub struct OpenLoop {
    /// Requests planned per second.
    pub offered_rate: f64,
    /// Requests whose planned start fell inside the run but that were never
    /// sent, the clients being behind: the server did not keep up.
    pub unsent: u64,
}

/// Latency percentiles of successful requests, in milliseconds.
#[derive(Debug, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// What one worker saw.
struct Tally {
    latencies: Histogram<u64>,
    errors: u64,
    first_error: Option<CtlError>,
    /// Open loop: planned requests never sent (see [`OpenLoop::unsent`]).
    unsent: u64,
}

/// What all workers share: the stop flag, the request budget and progress.
struct Shared {
    stop: AtomicBool,
    /// Requests not yet started; `None`: run until stopped.
    budget: Option<AtomicU64>,
    done: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    /// Takes the right to send one more request.
    fn ticket(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match &self.budget {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// One client's planned send times in an open-loop run: `clients` clients
/// offering `rate` requests per second together, each every `clients/rate`
/// seconds, client i shifted by i/rate so that the sends are evenly spread.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Schedule {
    first: Instant,
    interval: Duration,
}

impl Schedule {
    fn new(start: Instant, rate: u32, clients: usize, client: usize) -> Schedule {
        let rate = f64::from(rate);
        Schedule {
            first: start + Duration::from_secs_f64(client as f64 / rate),
            interval: Duration::from_secs_f64(clients as f64 / rate),
        }
    }

    /// The planned start of this client's request `k` (from 0).
    fn at(&self, k: u64) -> Instant {
        let nanos = self.interval.as_nanos().saturating_mul(u128::from(k));
        self.first + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many of requests k, k+1, … are planned before `end`.
    fn due_before(&self, k: u64, end: Instant) -> u64 {
        let from = self.at(k);
        if end <= from {
            return 0;
        }
        let step = self.interval.as_nanos().max(1);
        let span = (end - from).as_nanos();
        u64::try_from(span.div_ceil(step)).unwrap_or(u64::MAX)
    }
}

/// One point of a run: its client count and value size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    clients: usize,
    value_size: usize,
}

/// The points of a sweep, value sizes outermost, in the order given.
fn points(clients: &[usize], value_sizes: &[usize]) -> Vec<Point> {
    value_sizes
        .iter()
        .flat_map(|&value_size| {
            clients.iter().map(move |&clients| Point {
                clients,
                value_size,
            })
        })
        .collect()
}

/// Bad flag values, in words; `max_value` is the client's value limit.
fn check_args(args: &BenchArgs, max_value: usize) -> Result<(), CtlError> {
    let bad = |why: String| Err(CtlError::new(Exit::BadInput, why));
    if args.clients.is_empty() || args.value_size.is_empty() {
        return bad("--clients and --value-size need at least one value".into());
    }
    if let Some(&n) = args.clients.iter().find(|&&n| n == 0 || n > MAX_CLIENTS) {
        return bad(format!(
            "--clients {n}: each count must be 1 to {MAX_CLIENTS}"
        ));
    }
    if args.key_space == 0 {
        return bad("--key-space must be at least 1".into());
    }
    if let Some(&size) = args.value_size.iter().find(|&&s| s > max_value) {
        return bad(format!(
            "--value-size {size} exceeds the limit of {max_value} bytes"
        ));
    }
    if args.rate == Some(0) {
        return bad("--rate must be at least 1 request per second".into());
    }
    if args.target == Target::Etcd && args.workload == Workload::Failover {
        return bad("bench failover drives a `raftctl local` cluster only, not etcd".into());
    }
    Ok(())
}

pub async fn run(
    args: &BenchArgs,
    endpoints: Vec<String>,
    options: ClientOptions,
    output: Output,
) -> Result<(), CtlError> {
    if args.workload == Workload::Failover {
        let rate = args.rate.unwrap_or(failover::DEFAULT_RATE);
        return failover::run(&args.failover, rate, endpoints, options, output).await;
    }
    check_args(args, options.max_value_bytes)?;
    if args.target == Target::Etcd && !cfg!(feature = "etcd") {
        return Err(no_etcd());
    }
    let mut signals = Signals::install()?;
    let probe = Probe::discover(
        args.target,
        &endpoints,
        &args.cpu_pids,
        &args.metrics,
        &args.failover.data_dir,
    )
    .await;
    let mut reports = Vec::new();
    let mut first_error = None;
    for point in points(&args.clients, &args.value_size) {
        eprintln!(
            "connecting {} clients ({} B values)...",
            point.clients, point.value_size
        );
        let outcome = match args.target {
            Target::Raftkv => {
                let connects = (0..point.clients).map(|_| async {
                    Client::connect(endpoints.clone(), options.clone())
                        .await
                        .map_err(CtlError::from)
                });
                connect_and_measure(connects, args, point, &probe, &mut signals).await?
            }
            #[cfg(feature = "etcd")]
            Target::Etcd => {
                let connects = (0..point.clients).map(|_| etcd::Etcd::connect(&endpoints));
                connect_and_measure(connects, args, point, &probe, &mut signals).await?
            }
            #[cfg(not(feature = "etcd"))]
            Target::Etcd => return Err(no_etcd()),
        };
        // Ctrl-C while connecting: nothing was measured.
        let Some((report, error)) = outcome else {
            break;
        };
        if output == Output::Table {
            print!("{}", render(&report));
            if reports.len() + 1 < args.clients.len() * args.value_size.len() {
                println!();
            }
        }
        let stop = report.interrupted;
        if report.requests == 0 {
            first_error = first_error.or(error);
        }
        reports.push(report);
        if stop {
            break;
        }
    }
    match output {
        Output::Table if reports.len() > 1 => print!("\n{}", render_sweep(&reports)),
        Output::Table => {}
        // One point: one object, as before sweeps existed; a sweep: a list.
        _ if reports.len() == 1 => print_structured(output, &reports[0])?,
        _ => print_structured(output, &reports)?,
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn no_etcd() -> CtlError {
    CtlError::new(
        Exit::BadInput,
        "this raftctl was built without etcd support: build it with \
         `cargo build --release --features etcd` (needs protoc)",
    )
}

/// Connects a point's clients, then measures it; `None` if Ctrl-C came
/// while connecting.
async fn connect_and_measure<T: Driven>(
    connects: impl Iterator<Item = impl Future<Output = Result<T, CtlError>>>,
    args: &BenchArgs,
    point: Point,
    probe: &Probe,
    signals: &mut Signals,
) -> Result<Option<(Report, Option<CtlError>)>, CtlError> {
    let clients = tokio::select! {
        c = futures::future::try_join_all(connects) => c?,
        _ = signals.stop() => return Ok(None),
    };
    measure(clients, args, point, probe, signals)
        .await
        .map(Some)
}

/// Runs one point on connected `clients`; its report, and the first error
/// if no request succeeded.
async fn measure<T: Driven>(
    clients: Vec<T>,
    args: &BenchArgs,
    point: Point,
    probe: &Probe,
    signals: &mut Signals,
) -> Result<(Report, Option<CtlError>), CtlError> {
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        budget: args.requests.map(AtomicU64::new),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let value = Bytes::from(vec![b'x'; point.value_size]);
    let n = clients.len();
    // The servers' CPU counters right before the window opens.
    let cpu_before = probe.sample().await;
    let start = Instant::now();
    let deadline = args.requests.is_none().then(|| start + args.duration);
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let plan = Plan {
                workload: args.workload,
                key_space: args.key_space,
                read_percent: args.read_percent,
                value: value.clone(),
                schedule: args.rate.map(|rate| Schedule::new(start, rate, n, i)),
                deadline,
            };
            tokio::spawn(worker(client, plan, Arc::clone(&shared), i as u64))
        })
        .collect();

    let mut interrupted = false;
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    progress.tick().await;
    let all = futures::future::join_all(workers);
    tokio::pin!(all);
    let joined = loop {
        tokio::select! {
            joined = &mut all => break joined,
            _ = signals.stop(), if !interrupted => {
                interrupted = true;
                shared.stop.store(true, Ordering::Relaxed);
                eprintln!("\ninterrupted; waiting for requests in flight...");
            }
            _ = sleep_until(deadline) => shared.stop.store(true, Ordering::Relaxed),
            _ = progress.tick() => {
                let done = shared.done.load(Ordering::Relaxed);
                let rate = done as f64 / start.elapsed().as_secs_f64();
                let failed = shared.failed.load(Ordering::Relaxed);
                eprint!("\r{done} requests, {rate:.0} req/s, {failed} errors   ");
            }
        }
    };
    let elapsed = start.elapsed();
    // ... and right after the last request of the window was answered.
    let cpu_after = probe.sample().await;
    eprintln!();

    let mut latencies = new_histogram();
    let (mut errors, mut unsent, mut first_error) = (0, 0, None);
    for tally in joined {
        let tally = tally.map_err(|e| CtlError::error(format!("a bench worker failed: {e}")))?;
        latencies
            .add(&tally.latencies)
            .map_err(|e| CtlError::error(format!("cannot merge latencies: {e}")))?;
        errors += tally.errors;
        unsent += tally.unsent;
        first_error = first_error.or(tally.first_error);
    }
    let requests = latencies.len();
    let report = Report {
        workload: args.workload,
        target: args.target,
        clients: point.clients,
        value_size: point.value_size,
        requests,
        errors,
        first_error: first_error.as_ref().map(ToString::to_string),
        elapsed_seconds: elapsed.as_secs_f64(),
        throughput: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_ms: Latency::of(&latencies),
        open_loop: args.rate.map(|rate| OpenLoop {
            offered_rate: f64::from(rate),
            unsent,
        }),
        cpu: probe.report(&cpu_before, &cpu_after, requests),
        interrupted,
    };
    let error = first_error.filter(|_| requests == 0);
    Ok((report, error))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn new_histogram() -> Histogram<u64> {
    // Bounds and precision are constants known to be valid.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// What a worker sends, and when.
struct Plan {
    workload: Workload,
    key_space: u64,
    read_percent: u8,
    value: Bytes,
    /// Open loop: this client's planned send times.
    schedule: Option<Schedule>,
    deadline: Option<Instant>,
}

async fn worker<T: Driven>(mut client: T, plan: Plan, shared: Arc<Shared>, seed: u64) -> Tally {
    let mut rng = SmallRng::seed_from_u64(seed ^ u64::from(std::process::id()) << 32);
    let mut tally = Tally {
        latencies: new_histogram(),
        errors: 0,
        first_error: None,
        unsent: 0,
    };
    let mut k = 0;
    loop {
        let planned = plan.schedule.map(|s| s.at(k));
        if let Some(at) = planned {
            if plan.deadline.is_some_and(|end| at >= end) {
                break;
            }
            tokio::time::sleep_until(at).await;
        }
        if !shared.ticket() {
            // Stopped (the deadline, or Ctrl-C) while behind the schedule:
            // what was planned up to then was never sent.
            if let Some(s) = plan
                .schedule
                .filter(|_| shared.stop.load(Ordering::Relaxed))
            {
                let now = Instant::now();
                let end = plan.deadline.map_or(now, |d| d.min(now));
                tally.unsent = s.due_before(k, end);
            }
            break;
        }
        k += 1;
        let key = format!("bench-{}", rng.random_range(0..plan.key_space));
        let read = match plan.workload {
            Workload::Get => true,
            // (Failover runs no workers: see `run`.)
            Workload::Set | Workload::Failover => false,
            Workload::Mixed => rng.random_range(0..100u8) < plan.read_percent,
        };
        // Open loop: from the planned start, so time spent behind the
        // schedule (waiting on the previous answer) counts.
        let began = planned.unwrap_or_else(Instant::now);
        let result = if read {
            client.get(key.as_bytes()).await
        } else {
            client.set(key.as_bytes(), &plan.value).await
        };
        match result {
            Ok(()) => {
                let micros = began.elapsed().as_micros();
                tally
                    .latencies
                    .saturating_record(u64::try_from(micros).unwrap_or(MAX_LATENCY_US));
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(e);
                shared.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tally
}

/// The human form of one point.
pub fn render(report: &Report) -> String {
    let l = &report.latency_ms;
    let mut text = format!(
        "workload    {} ({})\nclients     {}\nvalue size  {} B\nrequests    {} ok, {} errors{}\n\
         elapsed     {:.2}s\nthroughput  {:.1} req/s\n",
        workload_name(report.workload),
        target_name(report.target),
        report.clients,
        report.value_size,
        report.requests,
        report.errors,
        if report.interrupted {
            " (interrupted)"
        } else {
            ""
        },
        report.elapsed_seconds,
        report.throughput,
    );
    if let Some(o) = &report.open_loop {
        text.push_str(&format!(
            "open loop   offered {:.1} req/s, achieved {:.1} req/s, {} planned but not sent\n",
            o.offered_rate, report.throughput, o.unsent
        ));
    }
    text.push_str(&format!(
        "latency     p50 {:.3}ms  p90 {:.3}ms  p99 {:.3}ms  max {:.3}ms{}\n",
        l.p50,
        l.p90,
        l.p99,
        l.max,
        if report.open_loop.is_some() {
            "  (from the planned starts)"
        } else {
            ""
        }
    ));
    text.push_str(&cpu::render(&report.cpu));
    if let Some(e) = &report.first_error {
        text.push_str(&format!("first error {e}\n"));
    }
    text
}

/// One line per point of a sweep.
fn render_sweep(reports: &[Report]) -> String {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            vec![
                r.clients.to_string(),
                r.value_size.to_string(),
                format!("{:.0}", r.throughput),
                format!("{:.3}", r.latency_ms.p50),
                format!("{:.3}", r.latency_ms.p99),
                r.cpu
                    .total
                    .as_ref()
                    .map_or("-".into(), |c| format!("{:.1}", c.total_us)),
                r.errors.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "clients",
            "value B",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "errors",
        ],
        &rows,
    )
}

fn workload_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Set => "set",
        Workload::Get => "get",
        Workload::Mixed => "mixed",
        Workload::Failover => "failover",
    }
}

fn target_name(target: Target) -> &'static str {
    match target {
        Target::Raftkv => "raftkv",
        Target::Etcd => "etcd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn budget_hands_out_exactly_n_tickets() {
        let shared = Shared {
            stop: AtomicBool::new(false),
            budget: Some(AtomicU64::new(3)),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        };
        assert_eq!((0..5).filter(|_| shared.ticket()).count(), 3);
        let unbounded = Shared {
            budget: None,
            ..shared
        };
        assert!(unbounded.ticket());
        unbounded.stop.store(true, Ordering::Relaxed);
        assert!(!unbounded.ticket());
    }

    #[test]
    fn the_schedule_spreads_the_rate_over_the_clients() {
        let t0 = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        // 4 clients at 1000/s: each every 4 ms, client 1 one ms after client 0.
        let s = Schedule::new(t0, 1000, 4, 1);
        assert_eq!(s.at(0), t0 + ms(1));
        assert_eq!(s.at(3), t0 + ms(13));
        // Together the four plan exactly 1000 starts in a second.
        let planned: u64 = (0..4)
            .map(|i| Schedule::new(t0, 1000, 4, i).due_before(0, t0 + ms(1000)))
            .sum();
        assert_eq!(planned, 1000);
        // Behind at request 10 (planned at 41 ms), stopped at 50 ms: 10
        // (41 ms) and 11 (45 ms) were due, 12 (49 ms) too; 13 (53 ms) not.
        assert_eq!(s.due_before(10, t0 + ms(50)), 3);
        assert_eq!(s.due_before(10, t0 + ms(41)), 0);
    }

    #[test]
    fn a_sweep_runs_every_pair_value_sizes_outermost() {
        let p = points(&[1, 64], &[100, 1024]);
        let pairs: Vec<(usize, usize)> = p.iter().map(|p| (p.clients, p.value_size)).collect();
        assert_eq!(pairs, vec![(1, 100), (64, 100), (1, 1024), (64, 1024)]);
    }

    fn bench_args(line: &[&str]) -> BenchArgs {
        let cli = crate::ctl::cli::Cli::try_parse_from(line).unwrap();
        match cli.command {
            crate::ctl::cli::Command::Bench(b) => b,
            _ => panic!("not bench"),
        }
    }

    #[test]
    fn bad_sweeps_and_rates_are_refused_with_the_reason() {
        let ok = bench_args(&[
            "raftctl",
            "bench",
            "--clients",
            "1,16,1024",
            "--rate",
            "500",
        ]);
        assert_eq!(ok.clients, vec![1, 16, 1024]);
        assert!(check_args(&ok, 1 << 20).is_ok());
        let refused = |line: &[&str], why: &str| {
            let e = check_args(&bench_args(line), 1 << 20).unwrap_err();
            assert_eq!(e.exit, Exit::BadInput);
            assert!(e.message.contains(why), "{}", e.message);
        };
        refused(&["raftctl", "bench", "--clients", "1,0"], "--clients 0");
        refused(&["raftctl", "bench", "--clients", "5000"], "1 to 4096");
        refused(
            &["raftctl", "bench", "--value-size", "64,2000000"],
            "--value-size 2000000 exceeds",
        );
        refused(&["raftctl", "bench", "--rate", "0"], "--rate");
        refused(&["raftctl", "bench", "--key-space", "0"], "--key-space");
        refused(
            &["raftctl", "bench", "failover", "--target", "etcd"],
            "not etcd",
        );
        let cli = crate::ctl::cli::Cli::try_parse_from(["raftctl", "bench", "--clients", "x"]);
        assert!(cli.is_err());
    }

    fn report(open_loop: Option<OpenLoop>) -> Report {
        let mut h = new_histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let latency = Latency::of(&h);
        assert_eq!(latency.p50, 0.5);
        assert_eq!(latency.max, 1.0);
        Report {
            workload: Workload::Mixed,
            target: Target::Raftkv,
            clients: 2,
            value_size: 100,
            requests: 1000,
            errors: 1,
            first_error: Some("no leader: x".into()),
            elapsed_seconds: 2.0,
            throughput: 500.0,
            latency_ms: latency,
            open_loop,
            cpu: CpuReport {
                source: "test".into(),
                members: vec![],
                total: None,
            },
            interrupted: true,
        }
    }

    #[test]
    fn report_shows_percentiles() {
        let text = render(&report(None));
        assert!(
            text.starts_with(
                "workload    mixed (raftkv)
"
            ),
            "{text}"
        );
        assert!(text.contains("value size  100 B"), "{text}");
        assert!(text.contains("1000 ok, 1 errors (interrupted)"), "{text}");
        assert!(text.contains("throughput  500.0 req/s"), "{text}");
        assert!(text.contains("p50 0.500ms"), "{text}");
        assert!(!text.contains("open loop"), "{text}");
        assert!(
            text.contains("server CPU  µs per request, from test"),
            "{text}"
        );
        assert!(text.ends_with("first error no leader: x\n"), "{text}");
    }

    #[test]
    fn an_open_loop_report_sets_offered_beside_achieved() {
        let r = report(Some(OpenLoop {
            offered_rate: 800.0,
            unsent: 12,
        }));
        let text = render(&r);
        assert!(
            text.contains("offered 800.0 req/s, achieved 500.0 req/s, 12 planned but not sent"),
            "{text}"
        );
        assert!(text.contains("(from the planned starts)"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["open_loop"]["offered_rate"], 800.0);
        assert_eq!(json["value_size"], 100);
        let sweep = render_sweep(&[r, report(None)]);
        assert_eq!(sweep.lines().count(), 3, "{sweep}");
        assert!(
            sweep
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("2        100      500"),
            "{sweep}"
        );
    }
}
