//! NATS away: nothing lost while the spool has room, drops counted exactly once it is full, and a sidecar
//! stopped meanwhile hands its spool to the next start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::capture::{Sidecar, TempDir};
use crate::support::nats::NatsServer;
use crate::support::start_app;
use crate::{count_by_request, exchanges, metrics_until, nats_metric, sink_args, DEADLINE};

/// The outage: the server is killed in the middle of the traffic for this long, then restarted on
/// the same port and store.
const OUTAGE: Duration = Duration::from_secs(10);
/// Exchanges through the sidecar, by this many keep-alive clients.
const EXCHANGES: usize = 20_000;
const CLIENTS: usize = 8;
/// The traffic's pace (all clients together): slow enough that the 10 s outage falls inside it with
/// traffic before and after, fast enough that the test takes little more than the outage.
const PACE_PER_SECOND: u64 = 1_500;
/// The server dies once this many exchanges are done (under 3 s in); 15,000 go by while it is down and
/// the last 1,000 while the publisher re-sends the backlog.
const KILL_AFTER: usize = 4_000;
/// The latency SLO (docs/capture.md, "The spool, and what happens while NATS is away"): from the kill to
/// the end of the traffic, the 99th percentile of request latency stays within this many times the 99th
/// percentile before the kill, or [`SLO_FLOOR`], whichever is larger; and no request takes over
/// [`SLO_MAX`]. A data path that waited on NATS would take seconds (the reconnect, a publish timeout).
const SLO_P99_FACTOR: u32 = 10;
const SLO_FLOOR: Duration = Duration::from_millis(100);
const SLO_MAX: Duration = Duration::from_secs(1);

/// One exchange as a client saw it.
struct Timed {
    started: Instant,
    took: Duration,
}

/// `CLIENTS` keep-alive clients sending `GET /outage/outage-<n>` (`X-Request-Id: outage-<n>`), together
/// at [`PACE_PER_SECOND`], each exchange timed. Panics on a failed exchange or a status other than 200.
async fn paced_exchanges(inbound: std::net::SocketAddr, completed: Arc<AtomicUsize>) -> Vec<Timed> {
    use crate::support::capture::RawHttp;
    use tokio::net::TcpStream;
    const PER_CLIENT: usize = EXCHANGES / CLIENTS;
    let period = Duration::from_nanos(1_000_000_000 * CLIENTS as u64 / PACE_PER_SECOND);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let completed = completed.clone();
            tokio::spawn(async move {
                let mut conn = RawHttp::new(TcpStream::connect(inbound).await.expect("connect"));
                let mut ticks = tokio::time::interval(period);
                // A client that fell behind catches up at once rather than losing exchanges.
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut timed = Vec::with_capacity(PER_CLIENT);
                for i in 0..PER_CLIENT {
                    ticks.tick().await;
                    let id = format!("outage-{}", c * PER_CLIENT + i);
                    let request = format!(
                        "GET /outage/{id} HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: {id}\r\n\r\n"
                    );
                    let started = Instant::now();
                    let got = tokio::time::timeout(DEADLINE, conn.exchange(request.as_bytes()))
                        .await
                        .unwrap_or_else(|_| panic!("{id} took over {DEADLINE:?}"))
                        .unwrap_or_else(|e| panic!("{id} failed: {e}"));
                    let took = started.elapsed();
                    assert_eq!(got.status, 200, "{id}");
                    timed.push(Timed { started, took });
                    completed.fetch_add(1, Ordering::SeqCst);
                }
                timed
            })
        })
        .collect();
    let mut all = Vec::with_capacity(EXCHANGES);
    for client in clients {
        all.extend(client.await.expect("no request failed"));
    }
    all
}

/// The 99th percentile of `latencies` (nearest rank).
fn p99(mut latencies: Vec<Duration>) -> Duration {
    assert!(!latencies.is_empty());
    latencies.sort_unstable();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_for_10s_amid_20000_exchanges_loses_no_record_and_slows_no_request() {
    let dir = TempDir::new("nats-outage");
    let mut server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;

    let completed = Arc::new(AtomicUsize::new(0));
    let traffic = tokio::spawn(paced_exchanges(sidecar.inbound, completed.clone()));
    let deadline = Instant::now() + DEADLINE;
    while completed.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "the traffic never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let killed_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let done_at_restart = completed.load(Ordering::SeqCst);
    server.restart().await;
    let timed = tokio::time::timeout(DEADLINE, traffic)
        .await
        .expect("the traffic ends")
        .expect("no request failed");
    assert_eq!(timed.len(), EXCHANGES);
    assert!(
        done_at_restart < EXCHANGES,
        "the traffic ended before NATS came back: the outage was not in the middle of it"
    );

    // The SLO: requests after the kill (the outage, then the publisher re-sending the backlog) are not
    // slowed past it.
    let (before, after): (Vec<&Timed>, Vec<&Timed>) =
        timed.iter().partition(|t| t.started + t.took < killed_at);
    let before_p99 = p99(before.iter().map(|t| t.took).collect());
    let after: Vec<&Timed> = after
        .into_iter()
        .filter(|t| t.started >= killed_at)
        .collect();
    let after_p99 = p99(after.iter().map(|t| t.took).collect());
    let after_max = after.iter().map(|t| t.took).max().unwrap();
    let bound = (before_p99 * SLO_P99_FACTOR).max(SLO_FLOOR);
    assert!(
        before.len() >= KILL_AFTER && after.len() >= EXCHANGES / 2,
        "{} exchanges before the kill, {} after",
        before.len(),
        after.len()
    );
    assert!(
        after_p99 <= bound,
        "p99 latency from the kill on {after_p99:?}, over {bound:?} (p99 before the kill {before_p99:?})"
    );
    assert!(
        after_max <= SLO_MAX,
        "a request from the kill on took {after_max:?}, over {SLO_MAX:?}"
    );
    eprintln!(
        "{} exchanges before the kill: p99 {before_p99:?}; {} after: p99 {after_p99:?}, max {after_max:?}",
        before.len(),
        after.len()
    );

    let exposition = metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= EXCHANGES as f64
            && nats_metric(m, "acknowledged") == spooled
            && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    assert_eq!(nats_metric(&exposition, "dropped"), 0.0);
    assert!(
        nats_metric(&exposition, "resent") + nats_metric(&exposition, "published")
            >= EXCHANGES as f64
    );
    // Counted by id at a JetStream consumer: every exchange exactly once.
    let stored = server.consumed().await;
    let counts = count_by_request(&stored, "outage-");
    let missing: Vec<String> = (0..EXCHANGES)
        .map(|n| format!("outage-{n}"))
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records missing: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{} records stored twice: {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(20)]
    );
    assert_eq!(counts.len(), EXCHANGES);
    // And the stream holds nothing else but the readiness probe's connection records.
    let others = stored.len() - EXCHANGES;
    assert!(
        stored
            .iter()
            .filter(|m| !matches!(
                m.record.detail,
                sidecar_proxy::capture::record::Detail::Http(_)
            ))
            .count()
            == others,
        "the stream holds {} records for {EXCHANGES} exchanges",
        stored.len()
    );
    // The consumer saw every message of the stream; messages carry runs of records (at 1,500 requests/s
    // a round of the capture writer holds several), each under its first record's uid.
    let sizes = crate::support::nats::records_per_message(&stored);
    assert_eq!(server.count().await, sizes.len() as u64);
    assert!(
        sizes.len() < stored.len() / 2,
        "{} messages for {} records: records were not gathered into messages",
        sizes.len(),
        stored.len()
    );
    crate::support::nats::assert_message_rules(&stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_drops_and_counts_exactly_and_never_holds_traffic() {
    const EXCHANGES: usize = 200;
    let dir = TempDir::new("nats-spool-full");
    // NATS is down from the start; it comes up once the traffic is over.
    let mut server = NatsServer::not_started(&dir.0.join("nats"));
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend([
        "--capture".into(),
        "off".into(),
        "--capture-spool-size".into(),
        "64KiB".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let done = exchanges(
        sidecar.inbound,
        "full",
        2,
        EXCHANGES / 2,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(done, EXCHANGES);
    // Every record is either in the spool or dropped (the readiness probe may add a stream record).
    // (The publisher's lag gauge follows within its poll interval.)
    let before = metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled + nats_metric(m, "dropped") >= EXCHANGES as f64
            && nats_metric(m, "lag_records") == spooled
    })
    .await;
    let dropped = nats_metric(&before, "dropped");
    let spooled = nats_metric(&before, "spooled");
    assert!(dropped > 0.0, "64KiB held every record: {before:?}");
    assert!(spooled > 0.0);
    assert_eq!(nats_metric(&before, "lag_records"), spooled);

    server.restart().await;
    metrics_until(sidecar.admin, |m| nats_metric(m, "acknowledged") == spooled).await;
    let stored = server.messages().await;
    assert_eq!(
        stored.len() as f64,
        spooled,
        "the stream holds exactly what was spooled"
    );
    let counts = count_by_request(&stored, "full-");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    // The records are dropped as they come once the spool is full, after the readiness probe's: exactly
    // the exchanges missing from the stream are counted.
    assert_eq!(
        (EXCHANGES - counts.len()) as f64,
        dropped,
        "every exchange is either in the stream or counted as dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_stopped_while_nats_is_down_sends_its_spool_at_the_next_start() {
    const EXCHANGES: usize = 100;
    let dir = TempDir::new("nats-sigterm");
    let spool = dir.0.join("spool");
    let mut server = NatsServer::not_started(&dir.0.join("nats"));
    let app = start_app().await;
    let mut args = sink_args(&server, &spool);
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut first = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let done = exchanges(
        first.inbound,
        "kept",
        1,
        EXCHANGES,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(done, EXCHANGES);
    metrics_until(first.admin, |m| {
        nats_metric(m, "spooled") >= EXCHANGES as f64
    })
    .await;
    first.signal("TERM");
    let status = first.exit().await;
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        first.stderr()
    );
    assert!(
        first.stderr().contains("stay in the spool"),
        "{}",
        first.stderr()
    );

    server.restart().await;
    let second = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let exposition = metrics_until(second.admin, |m| {
        let acknowledged = nats_metric(m, "acknowledged");
        acknowledged >= EXCHANGES as f64 && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    assert_eq!(nats_metric(&exposition, "dropped"), 0.0);
    let stored = server.messages().await;
    let counts = count_by_request(&stored, "kept-");
    assert_eq!(counts.len(), EXCHANGES, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_for_nats_is_dropped_and_counted_and_the_rest_go_on() {
    use crate::support::capture::RawHttp;
    use tokio::net::TcpStream;
    let dir = TempDir::new("nats-too-large");
    let server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;

    let before = exchanges(
        sidecar.inbound,
        "before",
        1,
        3,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(before, 3);
    // Echoed back, this body makes a record of a few MB: past nats-server's default max_payload (1 MB).
    let body = vec![b'x'; 600 * 1024];
    let mut conn = RawHttp::new(TcpStream::connect(sidecar.inbound).await.unwrap());
    let mut request = format!(
        "POST /echo HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: large\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    let got = conn.exchange(&request).await.unwrap();
    assert_eq!((got.status, got.body.len()), (200, body.len()));
    let after = exchanges(
        sidecar.inbound,
        "after",
        1,
        3,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(after, 3);

    let exposition = metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= 7.0
            && nats_metric(m, "acknowledged") + nats_metric(m, "dropped") == spooled
            && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    assert_eq!(nats_metric(&exposition, "dropped"), 1.0);
    let stored = server.messages().await;
    assert_eq!(
        stored.len() as f64,
        nats_metric(&exposition, "acknowledged")
    );
    let ids: Vec<String> = count_by_request(&stored, "").into_keys().collect();
    assert_eq!(
        ids,
        ["after-0", "after-1", "after-2", "before-0", "before-1", "before-2"]
    );
}

/// The usual case of an outage: the publisher had caught up (nothing in flight), NATS goes away, records
/// keep coming into the spool, and the sidecar is stopped before NATS is back. Those records stay in the
/// spool and the next start sends them: the publisher, having caught up earlier, must not take "nothing
/// left to read when I last looked" for "everything delivered" and delete them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spooled_after_the_publisher_caught_up_survive_a_stop_during_an_outage() {
    const EXCHANGES: usize = 50;
    let dir = TempDir::new("nats-caught-up");
    let spool = dir.0.join("spool");
    let mut server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &spool);
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let mut first = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let before = exchanges(first.inbound, "before", 1, EXCHANGES, Arc::default()).await;
    assert_eq!(before, EXCHANGES);
    metrics_until(first.admin, |m| {
        nats_metric(m, "acknowledged") >= EXCHANGES as f64 && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    server.kill();
    let during = exchanges(first.inbound, "during", 1, EXCHANGES, Arc::default()).await;
    assert_eq!(during, EXCHANGES);
    metrics_until(first.admin, |m| {
        nats_metric(m, "spooled") >= 2.0 * EXCHANGES as f64
    })
    .await;
    first.signal("TERM");
    assert!(first.exit().await.success(), "{}", first.stderr());

    server.restart().await;
    let second = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    metrics_until(second.admin, |m| {
        nats_metric(m, "acknowledged") >= EXCHANGES as f64 && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    let stored = server.messages().await;
    let during = count_by_request(&stored, "during-");
    assert_eq!(
        during.len(),
        EXCHANGES,
        "records spooled during the outage: {during:?}"
    );
    assert!(during.values().all(|&n| n == 1), "{during:?}");
    assert_eq!(count_by_request(&stored, "before-").len(), EXCHANGES);
}
