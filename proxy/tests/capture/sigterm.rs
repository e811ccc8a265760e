//! SIGTERM flushes a record for every completed exchange (the real binary).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::support::capture::{parse_records, RawHttp, Sidecar, TempDir};
use crate::support::start_app;
use crate::{assert_unique_ids, http_detail, whole, Sent, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_flushes_a_record_for_every_completed_exchange() {
    const CLIENTS: usize = 6;
    let dir = TempDir::new("sigterm");
    let path = dir.0.join("records.jsonl");
    let app = start_app().await;
    let mut sidecar =
        Sidecar::reverse_http(app.addr, &["--capture", path.to_str().unwrap()], &dir.0).await;

    // request id → body the client read in full.
    let completed: Arc<Mutex<BTreeMap<String, Vec<u8>>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let completed = completed.clone();
            let inbound = sidecar.inbound;
            tokio::spawn(async move {
                let Ok(stream) = TcpStream::connect(inbound).await else {
                    return;
                };
                let mut conn = RawHttp::new(stream);
                for i in 0.. {
                    let id = format!("c{c}-r{i}");
                    let path = format!("/load/{id}");
                    let sent =
                        Sent::new("GET", path, &[("Host", "app.test"), ("X-Request-Id", &id)]);
                    match conn.exchange(&sent.bytes()).await {
                        Ok(got) if got.status == 200 => {
                            completed.lock().unwrap().insert(id, got.body);
                        }
                        // The connection was closed by the shutdown: this client is done.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Mid-run: once every client has completed a few exchanges.
    let deadline = std::time::Instant::now() + DEADLINE;
    while completed.lock().unwrap().len() < CLIENTS * 20 {
        assert!(std::time::Instant::now() < deadline, "load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sidecar.signal("TERM");
    for client in clients {
        tokio::time::timeout(DEADLINE, client)
            .await
            .expect("clients end")
            .unwrap();
    }
    let status = sidecar.exit().await;
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        sidecar.stderr()
    );

    let completed = completed.lock().unwrap().clone();
    let records = parse_records(&std::fs::read_to_string(&path).unwrap());
    assert_unique_ids(&records);
    let mut recorded = BTreeMap::new();
    for record in &records {
        let exchange = http_detail(record);
        let id = exchange
            .request
            .headers
            .iter()
            .find(|(n, _)| n == "x-request-id")
            .map(|(_, v)| v.clone())
            .expect("every request has an id");
        assert!(
            recorded.insert(id.clone(), exchange.clone()).is_none(),
            "two records for {id}"
        );
    }
    for (id, body) in &completed {
        let exchange = recorded.get(id).unwrap_or_else(|| {
            panic!(
                "exchange {id} completed but has no record ({} records, {} completed)",
                records.len(),
                completed.len()
            )
        });
        let response = exchange.response.as_ref().expect("a response");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, whole(body), "{id}");
    }
    for (id, exchange) in &recorded {
        if completed.contains_key(id) {
            continue;
        }
        // Cut off by the shutdown: no record may claim a response the client did not get.
        let claims_delivery = exchange
            .response
            .as_ref()
            .is_some_and(|r| r.body.complete && exchange.error.is_none());
        assert!(
            !claims_delivery,
            "{id} was never completed by its client but its record says it was: {exchange:#?}"
        );
    }
    assert!(completed.len() >= CLIENTS * 20);
}

/// Two runs of the sidecar appending to one capture file: `id` starts again at 1 in the second run, `uid`
/// names every record once across both, and each run's records share their run's prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_two_runs_in_one_file_have_distinct_uids() {
    let dir = TempDir::new("uid-runs");
    let path = dir.0.join("records.jsonl");
    let app = start_app().await;
    for run in 0..2 {
        let mut sidecar =
            Sidecar::reverse_http(app.addr, &["--capture", path.to_str().unwrap()], &dir.0).await;
        let mut conn = RawHttp::new(TcpStream::connect(sidecar.inbound).await.unwrap());
        for i in 0..3 {
            let sent = Sent::new("GET", format!("/run{run}/{i}"), &[("Host", "app.test")]);
            assert_eq!(conn.exchange(&sent.bytes()).await.unwrap().status, 200);
        }
        drop(conn);
        sidecar.signal("TERM");
        assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    }
    let records = parse_records(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(records.len(), 6);
    let runs: Vec<&str> = records
        .iter()
        .map(|r| r.uid.split_once('-').expect("uid is run-id").0)
        .collect();
    assert_eq!(runs[0], runs[2]);
    assert_eq!(runs[3], runs[5]);
    assert_ne!(runs[0], runs[3], "each run draws its own prefix");
    let ids: Vec<u64> = records.iter().map(|r| r.id).collect();
    assert_eq!(ids[0], ids[3], "ids restart with the process: {ids:?}");
    let uids: std::collections::BTreeSet<&str> = records.iter().map(|r| r.uid.as_str()).collect();
    assert_eq!(uids.len(), 6, "{uids:?}");
}
