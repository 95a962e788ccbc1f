//! `raftctl bench`: concurrent clients, each with its own session, sending
//! sequential requests; latencies in an HDR histogram. `raftctl bench
//! failover` measures something else: see `failover`.

pub mod failover;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use super::cli::{BenchArgs, Output, Workload};
use super::exit::{CtlError, Exit};
use super::output::print_structured;
use super::signals::Signals;
use crate::client::{Client, ClientError, ClientOptions};

/// Latencies are recorded in microseconds, up to a minute.
const MAX_LATENCY_US: u64 = 60_000_000;

/// The result of a run, as printed.
#[derive(Debug, Serialize)]
pub struct Report {
    pub workload: Workload,
    pub clients: usize,
    /// Requests that succeeded.
    pub requests: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub elapsed_seconds: f64,
    /// Successful requests per second.
    pub throughput: f64,
    pub latency_ms: Latency,
    /// Stopped by Ctrl-C before the planned end.
    pub interrupted: bool,
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
    first_error: Option<ClientError>,
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

pub async fn run(
    args: &BenchArgs,
    endpoints: Vec<String>,
    options: ClientOptions,
    output: Output,
) -> Result<(), CtlError> {
    if args.workload == Workload::Failover {
        return failover::run(&args.failover, endpoints, options, output).await;
    }
    if args.clients == 0 || args.key_space == 0 {
        return Err(CtlError::new(
            Exit::BadInput,
            "--clients and --key-space must be at least 1",
        ));
    }
    if args.value_size > options.max_value_bytes {
        return Err(CtlError::new(
            Exit::BadInput,
            format!("--value-size exceeds {} bytes", options.max_value_bytes),
        ));
    }
    let mut signals = Signals::install()?;
    eprintln!("connecting {} clients...", args.clients);
    let connects = (0..args.clients).map(|_| Client::connect(endpoints.clone(), options.clone()));
    let clients = tokio::select! {
        clients = futures::future::try_join_all(connects) => clients?,
        _ = signals.stop() => return Ok(()),
    };

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        budget: args.requests.map(AtomicU64::new),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let value = Bytes::from(vec![b'x'; args.value_size]);
    let start = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let plan = Plan {
                workload: args.workload,
                key_space: args.key_space,
                read_percent: args.read_percent,
                value: value.clone(),
            };
            tokio::spawn(worker(client, plan, Arc::clone(&shared), i as u64))
        })
        .collect();
    let deadline = args.requests.is_none().then(|| start + args.duration);

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
    eprintln!();

    let mut latencies = new_histogram();
    let (mut errors, mut first_error) = (0, None);
    for tally in joined {
        let tally = tally.map_err(|e| CtlError::error(format!("a bench worker failed: {e}")))?;
        latencies
            .add(&tally.latencies)
            .map_err(|e| CtlError::error(format!("cannot merge latencies: {e}")))?;
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let requests = latencies.len();
    let report = Report {
        workload: args.workload,
        clients: args.clients,
        requests,
        errors,
        first_error: first_error.as_ref().map(ToString::to_string),
        elapsed_seconds: elapsed.as_secs_f64(),
        throughput: requests as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_ms: Latency::of(&latencies),
        interrupted,
    };
    match output {
        Output::Table => print!("{}", render(&report)),
        _ => print_structured(output, &report)?,
    }
    match first_error {
        Some(e) if requests == 0 => Err(e.into()),
        _ => Ok(()),
    }
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

/// What a worker sends.
struct Plan {
    workload: Workload,
    key_space: u64,
    read_percent: u8,
    value: Bytes,
}

async fn worker(client: Client, plan: Plan, shared: Arc<Shared>, seed: u64) -> Tally {
    let mut rng = SmallRng::seed_from_u64(seed ^ u64::from(std::process::id()) << 32);
    let mut tally = Tally {
        latencies: new_histogram(),
        errors: 0,
        first_error: None,
    };
    while shared.ticket() {
        let key = format!("bench-{}", rng.random_range(0..plan.key_space));
        let read = match plan.workload {
            Workload::Get => true,
            // (Failover runs no workers: see `run`.)
            Workload::Set | Workload::Failover => false,
            Workload::Mixed => rng.random_range(0..100u8) < plan.read_percent,
        };
        let began = Instant::now();
        let result = if read {
            client.get(key.as_bytes()).await.map(drop)
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

/// The human form of a report.
pub fn render(report: &Report) -> String {
    let l = &report.latency_ms;
    let mut text = format!(
        "workload    {}\nclients     {}\nrequests    {} ok, {} errors{}\nelapsed     {:.2}s\n\
         throughput  {:.1} req/s\nlatency     p50 {:.3}ms  p90 {:.3}ms  p99 {:.3}ms  max {:.3}ms\n",
        workload_name(report.workload),
        report.clients,
        report.requests,
        report.errors,
        if report.interrupted {
            " (interrupted)"
        } else {
            ""
        },
        report.elapsed_seconds,
        report.throughput,
        l.p50,
        l.p90,
        l.p99,
        l.max,
    );
    if let Some(e) = &report.first_error {
        text.push_str(&format!("first error {e}\n"));
    }
    text
}

fn workload_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Set => "set",
        Workload::Get => "get",
        Workload::Mixed => "mixed",
        Workload::Failover => "failover",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn report_shows_percentiles() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let latency = Latency::of(&h);
        assert_eq!(latency.p50, 0.5);
        assert_eq!(latency.max, 1.0);
        let report = Report {
            workload: Workload::Mixed,
            clients: 2,
            requests: 1000,
            errors: 1,
            first_error: Some("no leader: x".into()),
            elapsed_seconds: 2.0,
            throughput: 500.0,
            latency_ms: latency,
            interrupted: true,
        };
        let text = render(&report);
        assert!(
            text.starts_with(
                "workload    mixed
"
            ),
            "{text}"
        );
        assert!(text.contains("1000 ok, 1 errors (interrupted)"), "{text}");
        assert!(text.contains("throughput  500.0 req/s"), "{text}");
        assert!(text.contains("p50 0.500ms"), "{text}");
        assert!(text.ends_with("first error no leader: x\n"), "{text}");
    }
}
