//! The drain after SIGTERM (the real binary): the sidecar turns not-ready at once but keeps serving, so a
//! client that goes on sending while the pod leaves its Services' endpoints loses nothing, and every one of
//! its exchanges is in the capture file once the process has exited.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rstest::rstest;
use sidecar_proxy::capture::record::Detail;
use tokio::net::TcpStream;

use crate::support::admin::get;
use crate::support::capture::{parse_records, RawHttp, Sidecar, TempDir};
use crate::support::start_app;
use crate::{http_detail, Sent, DEADLINE};

/// How long the client keeps sending after SIGTERM, as a client in a terminating pod would while its
/// callers' endpoint lists catch up.
const SENDING_AFTER_SIGTERM: Duration = Duration::from_secs(3);

/// What the clients saw: request id → status, and the failures (a refused connection, a cut exchange).
#[derive(Default)]
struct Outcomes {
    completed: BTreeMap<String, u16>,
    failures: Vec<String>,
}

/// One client: a keep-alive connection (`keep_alive`) or a new connection per request, sending until
/// `stop`. Every request carries a unique `x-request-id`.
async fn client(
    name: &'static str,
    inbound: SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
) {
    let mut connection: Option<RawHttp<TcpStream>> = None;
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = format!("{name}-{i}");
        let mut headers = vec![("Host", "app.test"), ("X-Request-Id", id.as_str())];
        if !keep_alive {
            headers.push(("Connection", "close"));
        }
        let sent = Sent::new("GET", format!("/drain/{id}"), &headers);
        if connection.is_none() {
            match TcpStream::connect(inbound).await {
                Ok(stream) => connection = Some(RawHttp::new(stream)),
                Err(e) => {
                    outcomes
                        .lock()
                        .unwrap()
                        .failures
                        .push(format!("{id}: connect: {e}"));
                    return;
                }
            }
        }
        let conn = connection.as_mut().unwrap();
        match tokio::time::timeout(DEADLINE, conn.exchange(&sent.bytes())).await {
            Ok(Ok(got)) => {
                outcomes.lock().unwrap().completed.insert(id, got.status);
            }
            Ok(Err(e)) => {
                outcomes.lock().unwrap().failures.push(format!("{id}: {e}"));
                return;
            }
            Err(_) => {
                outcomes
                    .lock()
                    .unwrap()
                    .failures
                    .push(format!("{id}: no answer"));
                return;
            }
        }
        if !keep_alive {
            connection = None;
        }
        // A steady trickle, not a flood: the point is time, not load.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[rstest]
#[case::reverse_http("http")]
#[case::reverse_tcp("tcp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_on_after_sigterm_loses_nothing_and_every_exchange_is_recorded(
    #[case] protocol: &str,
) {
    let dir = TempDir::new(&format!("drain-{protocol}"));
    let path = dir.0.join("records.jsonl");
    let app = start_app().await;
    // Longer than the client sends: the drain must end because the client is done, not by the clock.
    let mut sidecar = Sidecar::reverse(
        protocol,
        app.addr,
        &[
            "--capture",
            path.to_str().unwrap(),
            "--drain-duration",
            "60s",
        ],
        &dir.0,
    )
    .await;
    let deadline = Instant::now() + DEADLINE;
    while get(sidecar.admin, "/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let clients = [("keepalive", true), ("perrequest", false)].map(|(name, keep_alive)| {
        tokio::spawn(client(
            name,
            sidecar.inbound,
            keep_alive,
            stop.clone(),
            outcomes.clone(),
        ))
    });
    while outcomes.lock().unwrap().completed.len() < 10 {
        assert!(Instant::now() < deadline, "the clients never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    sidecar.signal("TERM");
    let signalled = Instant::now();
    // Not ready as soon as the signal is handled, while alive and still serving.
    loop {
        let readyz = get(sidecar.admin, "/readyz").await;
        if readyz.status == 503 {
            assert_eq!(readyz.body, "not ready");
            break;
        }
        assert_eq!(readyz.status, 200);
        assert!(Instant::now() < deadline, "still ready after SIGTERM");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let healthz = get(sidecar.admin, "/healthz").await;
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok"));
    let before = outcomes.lock().unwrap().completed.len();

    tokio::time::sleep(SENDING_AFTER_SIGTERM.saturating_sub(signalled.elapsed())).await;
    let during = outcomes.lock().unwrap().completed.len() - before;
    assert_eq!(
        get(sidecar.admin, "/readyz").await.status,
        503,
        "not ready all along the drain"
    );
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let status = sidecar.exit().await;
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        sidecar.stderr()
    );
    let stderr = sidecar.stderr();
    assert!(
        stderr.contains("drain over: closing the listeners") && stderr.contains("why=Quiet"),
        "the drain ends because the client is done, long before 60s:\n{stderr}"
    );

    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.failures, Vec::<String>::new(), "stderr:\n{stderr}");
    assert!(
        during >= 10,
        "the clients kept sending after SIGTERM ({during} exchanges)"
    );
    for (id, status) in &outcomes.completed {
        assert_eq!(*status, 200, "{id}");
    }
    let recorded: BTreeSet<String> = parse_records(&std::fs::read_to_string(&path).unwrap())
        .iter()
        // The start-up probe's empty connection is a stream record in tcp mode; the clients' are HTTP.
        .filter(|record| matches!(record.detail, Detail::Http(_)))
        .filter_map(|record| {
            let exchange = http_detail(record);
            assert!(exchange.error.is_none(), "{exchange:#?}");
            assert_eq!(exchange.response.as_ref().map(|r| r.status), Some(200));
            exchange
                .request
                .headers
                .iter()
                .find(|(name, _)| name == "x-request-id")
                .map(|(_, value)| value.clone())
        })
        .collect();
    let missing: Vec<&String> = outcomes
        .completed
        .keys()
        .filter(|id| !recorded.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} exchanges have no record: {missing:?}",
        missing.len(),
        outcomes.completed.len()
    );
}
