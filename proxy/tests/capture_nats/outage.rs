//! NATS away: nothing lost while the spool has room, drops counted exactly once it is full, and a sidecar
//! stopped meanwhile hands its spool to the next start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::capture::{Sidecar, TempDir};
use crate::support::nats::NatsServer;
use crate::support::start_app;
use crate::{count_by_request, exchanges, metrics_until, nats_metric, sink_args, DEADLINE};

/// How long the server stays dead in the middle of the traffic.
const OUTAGE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_traffic_loses_no_record_and_fails_no_request() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 250;
    const EXCHANGES: usize = CLIENTS * PER_CLIENT;
    let dir = TempDir::new("nats-outage");
    let mut server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;

    let completed = Arc::new(AtomicUsize::new(0));
    let traffic = tokio::spawn(exchanges(
        sidecar.inbound,
        "outage",
        CLIENTS,
        PER_CLIENT,
        completed.clone(),
    ));
    // A quarter of the way in, the server dies; the traffic goes on meanwhile.
    let deadline = Instant::now() + DEADLINE;
    while completed.load(Ordering::SeqCst) < EXCHANGES / 4 {
        assert!(Instant::now() < deadline, "the traffic never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    let killed_at = completed.load(Ordering::SeqCst);
    tokio::time::sleep(OUTAGE).await;
    let during = completed.load(Ordering::SeqCst) - killed_at;
    server.restart().await;
    let done = tokio::time::timeout(DEADLINE, traffic)
        .await
        .expect("the traffic ends")
        .expect("no request failed");
    assert_eq!(done, EXCHANGES);
    assert!(
        during > 0,
        "no exchange completed while NATS was down: traffic waited on it"
    );

    let exposition = metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= EXCHANGES as f64 && nats_metric(m, "acknowledged") == spooled
    })
    .await;
    assert_eq!(nats_metric(&exposition, "dropped"), 0.0);
    let stored = server.messages().await;
    let counts = count_by_request(&stored, "outage-");
    let missing: Vec<String> = (0..EXCHANGES)
        .map(|n| format!("outage-{n}"))
        .filter(|id| !counts.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} records missing: {missing:?}",
        missing.len()
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "records stored twice: {repeated:?}");
    assert_eq!(counts.len(), EXCHANGES);
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
