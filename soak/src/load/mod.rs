//! The load: generators of every kind, each a few workers at a fixed, moderate rate (the soak looks
//! for growth over time, not for the sidecar's ceiling, and must leave CPU for the sidecars on a
//! 2-core CI machine). Every operation checks every byte it gets back; a failure is counted with its
//! reason, and any failure fails the run.
//!
//! - [`http`]: keep-alive and new-connection HTTP through the reverse proxy, the forward proxy
//!   (absolute-form) and CONNECT tunnels;
//! - [`socks`]: SOCKS5 (IP and domain targets) and SOCKS4a through both SOCKS listeners;
//! - [`bulk`]: several MiB echoed through the tcp relay and through SOCKS5;
//! - [`idle`]: small connections that sit idle, then close.

pub mod bulk;
pub mod http;
pub mod idle;
pub mod socks;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::origin::Origin;
use super::sidecars::{Fleet, REVERSE_HTTP, SOCKS, TCP_HTTP};

/// An operation that takes longer than this counts as failed (a hang must not pass silently).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure messages kept per kind for the report.
const ERRORS_KEPT: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadKind {
    ReverseKeepAlive,
    ForwardKeepAlive,
    ConnectKeepAlive,
    ReverseNewConnection,
    ForwardNewConnection,
    ConnectNewTunnel,
    Socks5,
    Socks4a,
    BulkTcpRelay,
    BulkSocks5,
    IdleThenClosed,
}

impl LoadKind {
    pub fn name(self) -> &'static str {
        match self {
            LoadKind::ReverseKeepAlive => "reverse http, keep-alive",
            LoadKind::ForwardKeepAlive => "forward http absolute-form, keep-alive",
            LoadKind::ConnectKeepAlive => "forward CONNECT tunnel, keep-alive",
            LoadKind::ReverseNewConnection => "reverse http, new connection each",
            LoadKind::ForwardNewConnection => "forward http absolute-form, new connection each",
            LoadKind::ConnectNewTunnel => "forward CONNECT, new tunnel each",
            LoadKind::Socks5 => "SOCKS5 (IP and domain), new connection each",
            LoadKind::Socks4a => "SOCKS4a, new connection each",
            LoadKind::BulkTcpRelay => "bulk echo through the tcp relay",
            LoadKind::BulkSocks5 => "bulk echo through SOCKS5",
            LoadKind::IdleThenClosed => "idle, then closed",
        }
    }
}

/// How many workers of a kind run, and how often each starts an operation.
struct GeneratorPlan {
    kind: LoadKind,
    workers: usize,
    per_worker_per_second: f64,
}

/// The documented load (docs/soak.md lists it): about 600 HTTP exchanges a second in all, 1.6 MiB/s of
/// bulk echo each way and a few idle connections a second.
const PLANS: [GeneratorPlan; 11] = [
    plan(LoadKind::ReverseKeepAlive, 4, 50.0),
    plan(LoadKind::ForwardKeepAlive, 2, 50.0),
    plan(LoadKind::ConnectKeepAlive, 2, 50.0),
    plan(LoadKind::ReverseNewConnection, 2, 25.0),
    plan(LoadKind::ForwardNewConnection, 1, 25.0),
    plan(LoadKind::ConnectNewTunnel, 1, 25.0),
    plan(LoadKind::Socks5, 2, 25.0),
    plan(LoadKind::Socks4a, 1, 25.0),
    plan(LoadKind::BulkTcpRelay, 1, 0.2),
    plan(LoadKind::BulkSocks5, 1, 0.2),
    plan(LoadKind::IdleThenClosed, 8, 0.5),
];

const fn plan(kind: LoadKind, workers: usize, per_worker_per_second: f64) -> GeneratorPlan {
    GeneratorPlan {
        kind,
        workers,
        per_worker_per_second,
    }
}

/// Where each kind of load goes.
#[derive(Clone, Debug)]
pub struct Routes {
    pub origin_http: SocketAddr,
    pub origin_echo: SocketAddr,
    /// The reverse-http sidecar's inbound listener (delivers to the origin's HTTP server).
    pub reverse_http: SocketAddr,
    /// The dual tcp:http sidecar's outbound HTTP proxy.
    pub forward_http: SocketAddr,
    /// The dual tcp:http sidecar's inbound tcp relay (delivers to the origin's echo).
    pub tcp_relay: SocketAddr,
    pub socks_inbound: SocketAddr,
    pub socks_outbound: SocketAddr,
}

impl Routes {
    pub fn new(origin: &Origin, fleet: &Fleet) -> Routes {
        let tcp_http = fleet.get(TCP_HTTP);
        let socks = fleet.get(SOCKS);
        Routes {
            origin_http: origin.http,
            origin_echo: origin.echo,
            reverse_http: fleet.get(REVERSE_HTTP).inbound,
            forward_http: tcp_http.outbound.unwrap_or(tcp_http.inbound),
            tcp_relay: tcp_http.inbound,
            socks_inbound: socks.inbound,
            socks_outbound: socks.outbound.unwrap_or(socks.inbound),
        }
    }
}

/// Running counts of one kind's operations.
pub struct Tally {
    pub kind: LoadKind,
    ok: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

/// A kind's counts when the load is over.
#[derive(Clone, Debug)]
pub struct TallyTotals {
    pub kind: LoadKind,
    pub ok: u64,
    pub errors: u64,
    /// Payload bytes received and checked.
    pub bytes: u64,
    pub first_errors: Vec<String>,
}

impl Tally {
    fn new(kind: LoadKind) -> Tally {
        Tally {
            kind,
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first_errors: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, outcome: anyhow::Result<u64>) {
        match outcome {
            Ok(bytes) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(error) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut kept) = self.first_errors.lock() {
                    if kept.len() < ERRORS_KEPT {
                        kept.push(format!("{error:#}"));
                    }
                }
            }
        }
    }

    pub fn totals(&self) -> TallyTotals {
        TallyTotals {
            kind: self.kind,
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            first_errors: self
                .first_errors
                .lock()
                .map(|kept| kept.clone())
                .unwrap_or_default(),
        }
    }
}

/// The running generators.
pub struct Generators {
    pub tallies: Vec<Arc<Tally>>,
    workers: JoinSet<()>,
}

impl Generators {
    /// Waits for the workers to finish their operation in flight (they were told to stop), at most
    /// `grace`; the ones still running after it are aborted.
    pub async fn finish(mut self, grace: Duration) -> Vec<TallyTotals> {
        let all_done = async { while self.workers.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            eprintln!(
                "sidecar-soak: {} load workers still busy {}s after the stop; aborting them",
                self.workers.len(),
                grace.as_secs()
            );
            self.workers.shutdown().await;
        }
        self.tallies.iter().map(|tally| tally.totals()).collect()
    }
}

/// One worker's identity, pacing and tally.
pub struct Worker {
    /// `<kind index>-<worker index>`: request ids carry it, so answers are matched to their request.
    pub id: String,
    pub routes: Routes,
    tally: Arc<Tally>,
    interval: Interval,
    stop: CancellationToken,
    /// Operations started so far by this worker.
    pub seq: u64,
}

impl Worker {
    /// Waits for the next operation's turn; false once the load is to stop.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => false,
            _ = self.interval.tick() => {
                self.seq += 1;
                true
            }
        }
    }

    /// Runs one operation under [`OPERATION_TIMEOUT`] and counts its outcome.
    pub async fn record<F>(&self, operation: F)
    where
        F: std::future::Future<Output = anyhow::Result<u64>>,
    {
        let outcome = match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!(
                "timed out after {}s",
                OPERATION_TIMEOUT.as_secs()
            )),
        };
        self.tally.record(outcome);
    }

    /// Counts a failure that happened outside [`Worker::record`] (opening a keep-alive connection).
    pub fn record_error(&self, error: anyhow::Error) {
        self.tally.record(Err(error));
    }
}

/// Starts every generator; they run until `stop` is cancelled.
pub fn start(routes: &Routes, rate_scale: f64, stop: &CancellationToken) -> Generators {
    let mut generators = Generators {
        tallies: Vec::new(),
        workers: JoinSet::new(),
    };
    for (kind_index, plan) in PLANS.iter().enumerate() {
        let tally = Arc::new(Tally::new(plan.kind));
        generators.tallies.push(Arc::clone(&tally));
        let period = Duration::from_secs_f64(1.0 / (plan.per_worker_per_second * rate_scale));
        for worker_index in 0..plan.workers {
            // Workers of a kind are spread over the period instead of firing together.
            let offset = period.mul_f64(worker_index as f64 / plan.workers as f64);
            let mut interval = tokio::time::interval_at(Instant::now() + offset, period);
            // A worker that fell behind (a slow bulk transfer) carries on at its rate, no burst.
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let worker = Worker {
                id: format!("{kind_index}-{worker_index}"),
                routes: routes.clone(),
                tally: Arc::clone(&tally),
                interval,
                stop: stop.clone(),
                seq: 0,
            };
            generators.workers.spawn(run_worker(plan.kind, worker));
        }
    }
    generators
}

async fn run_worker(kind: LoadKind, worker: Worker) {
    use http::Via;
    match kind {
        LoadKind::ReverseKeepAlive => http::keep_alive(worker, Via::Reverse).await,
        LoadKind::ForwardKeepAlive => http::keep_alive(worker, Via::ForwardAbsolute).await,
        LoadKind::ConnectKeepAlive => http::keep_alive(worker, Via::Connect).await,
        LoadKind::ReverseNewConnection => http::new_connections(worker, Via::Reverse).await,
        LoadKind::ForwardNewConnection => http::new_connections(worker, Via::ForwardAbsolute).await,
        LoadKind::ConnectNewTunnel => http::new_connections(worker, Via::Connect).await,
        LoadKind::Socks5 => socks::exchanges(worker, socks::Version::Five).await,
        LoadKind::Socks4a => socks::exchanges(worker, socks::Version::FourA).await,
        LoadKind::BulkTcpRelay => bulk::transfers(worker, bulk::Path::TcpRelay).await,
        LoadKind::BulkSocks5 => bulk::transfers(worker, bulk::Path::Socks5).await,
        LoadKind::IdleThenClosed => idle::connections(worker).await,
    }
}
