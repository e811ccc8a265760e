//! Capture records streamed to NATS JetStream (`--capture-sink`), against a real `nats-server` started by
//! the test: records arrive whole and in order; a server killed in the middle of the traffic loses none and
//! fails no request; a full spool drops and counts exactly; a sidecar stopped while NATS is down sends its
//! spool at its next start; `capture pull` reads the stream back as JSON lines.

#[path = "../support/mod.rs"]
mod support;

mod batches;
mod credentials;
mod outage;
mod pull;
mod spool_disk;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sidecar_proxy::capture::record::{Detail, Record};
use tokio::net::TcpStream;

use support::admin::{scrape, Exposition};
use support::capture::{RawHttp, Sidecar, TempDir};
use support::nats::{assert_message_rules, NatsServer, Stored};
use support::start_app;

/// Generous bound for anything a test waits on, so a stall fails instead of hanging the run.
const DEADLINE: Duration = Duration::from_secs(60);

/// The subject the tests publish to: the pod is the host name outside Kubernetes.
fn subject_template() -> &'static str {
    "capture.test.{pod}"
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .replace('.', "_")
}

/// A NATS server, an app, and a reverse http sidecar in front of it capturing both to NATS and to the file
/// `capture.jsonl` in `dir`, so a test can hold what NATS got against what the file sink wrote.
struct FileAndNats {
    server: NatsServer,
    // Held so the app outlives the sidecar in front of it.
    _app: support::App,
    file: std::path::PathBuf,
    sidecar: Sidecar,
}

async fn start_file_and_nats(dir: &TempDir) -> FileAndNats {
    let server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let file = dir.0.join("capture.jsonl");
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend(["--capture".into(), file.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    FileAndNats {
        server,
        _app: app,
        file,
        sidecar,
    }
}

/// The sidecar flags for a NATS sink at `server` spooling in `spool`.
fn sink_args(server: &NatsServer, spool: &std::path::Path) -> Vec<String> {
    vec![
        "--capture-sink".into(),
        format!("{}/{}", server.url(), subject_template()),
        "--capture-spool-dir".into(),
        spool.display().to_string(),
    ]
}

/// `GET /<prefix>/<n>` with `X-Request-Id: <prefix>-<n>`, `count` times on one keep-alive connection per
/// client, `clients` at once. Returns how many got a 200; panics on any other answer or a failed exchange.
async fn exchanges(
    inbound: SocketAddr,
    prefix: &str,
    clients: usize,
    per_client: usize,
    completed: Arc<AtomicUsize>,
) -> usize {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let prefix = prefix.to_owned();
            let completed = completed.clone();
            tokio::spawn(async move {
                let stream = TcpStream::connect(inbound).await.expect("connect");
                let mut conn = RawHttp::new(stream);
                for i in 0..per_client {
                    let id = format!("{prefix}-{}", c * per_client + i);
                    let request = format!(
                        "GET /{prefix}/{id} HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: {id}\r\n\r\n"
                    );
                    let got = tokio::time::timeout(DEADLINE, conn.exchange(request.as_bytes()))
                        .await
                        .unwrap_or_else(|_| panic!("{id} took over {DEADLINE:?}"))
                        .unwrap_or_else(|e| panic!("{id} failed: {e}"));
                    assert_eq!(got.status, 200, "{id}");
                    completed.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a client panicked");
    }
    completed.load(Ordering::SeqCst)
}

/// The `x-request-id` a record's request carried.
fn request_id(record: &Record) -> String {
    match &record.detail {
        Detail::Http(exchange) => exchange
            .request
            .headers
            .iter()
            .find(|(name, _)| name == "x-request-id")
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| panic!("no request id: {record:#?}")),
        Detail::Stream(_) => panic!("a stream record: {record:#?}"),
    }
}

/// How many stored messages carry each request id (only ids starting with `prefix`).
fn count_by_request(stored: &[Stored], prefix: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in stored {
        let id = request_id(&message.record);
        if id.starts_with(prefix) {
            *counts.entry(id).or_default() += 1;
        }
    }
    counts
}

/// A NATS sink metric (`sidecar_capture_nats_<name>`).
fn nats_metric(exposition: &Exposition, name: &str) -> f64 {
    let counter = format!("sidecar_capture_nats_{name}_total");
    exposition
        .value(&counter, &[])
        .or_else(|| exposition.value(&format!("sidecar_capture_nats_{name}"), &[]))
        .unwrap_or(0.0)
}

/// Scrapes until `done` holds (a bound far above the expected time).
async fn metrics_until(admin: SocketAddr, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let exposition = scrape(admin).await;
        if done(&exposition) {
            return exposition;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never got there: {:?}",
            exposition
                .samples
                .iter()
                .filter(|s| s.name.contains("capture"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arrive_whole_and_in_order_with_their_ids_beside_the_file() {
    const EXCHANGES: usize = 300;
    let dir = TempDir::new("nats-order");
    let FileAndNats {
        server,
        _app,
        file,
        sidecar,
    } = start_file_and_nats(&dir).await;
    let done = exchanges(
        sidecar.inbound,
        "order",
        1,
        EXCHANGES,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(done, EXCHANGES);
    // Every record spooled is acknowledged (the readiness probe's connection may add a stream record).
    let exposition = metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= EXCHANGES as f64 && nats_metric(m, "acknowledged") == spooled
    })
    .await;
    let spooled = nats_metric(&exposition, "spooled");
    assert_eq!(nats_metric(&exposition, "published"), spooled);
    assert_eq!(nats_metric(&exposition, "resent"), 0.0);
    assert_eq!(nats_metric(&exposition, "dropped"), 0.0);
    assert_eq!(nats_metric(&exposition, "lag_records"), 0.0);

    // Records are counted one by one, whatever the messages carrying them.
    let stored = server.messages().await;
    assert_eq!(stored.len(), spooled as usize);
    let subject = format!("capture.test.{}", host_name());
    // The start-up line says where records go and how to read them.
    let told = format!("sidecar-proxy capture pull {}/{subject}", server.url());
    assert!(sidecar.stderr().contains(&told), "{}", sidecar.stderr());
    for message in &stored {
        assert_eq!(message.subject, subject);
    }
    // In the order the client sent them, each exactly once.
    let ids: Vec<String> = stored
        .iter()
        .filter(|m| matches!(m.record.detail, Detail::Http(_)))
        .map(|m| request_id(&m.record))
        .collect();
    let sent: Vec<String> = (0..EXCHANGES).map(|n| format!("order-{n}")).collect();
    assert_eq!(ids, sent);
    // Each record is exactly as the file sink wrote it, in the same order.
    let lines: Vec<Vec<u8>> = std::fs::read(&file)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let payloads: Vec<Vec<u8>> = stored.iter().map(|m| m.payload.clone()).collect();
    assert_eq!(payloads.len(), lines.len());
    assert!(payloads == lines, "the stream and the file differ");
    // Message ids: each message's first record's uid, so distinct across runs and pods; and the count.
    assert_message_rules(&stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_token_file_reach_a_server_that_requires_both() {
    use support::nats::Access;
    use support::tls::TestCa;
    let dir = TempDir::new("nats-tls");
    let ca = TestCa::new("nats test CA");
    let (cert, key) = ca.leaf_pem(&["127.0.0.1"]);
    let paths = ["ca.pem", "server.pem", "server.key", "token"].map(|name| dir.0.join(name));
    std::fs::write(&paths[0], &ca.cert_pem).unwrap();
    std::fs::write(&paths[1], cert).unwrap();
    std::fs::write(&paths[2], key).unwrap();
    std::fs::write(&paths[3], "s3cret-token\n").unwrap();
    let access = Access {
        tls: Some((paths[1].clone(), paths[2].clone(), paths[0].clone())),
        token: Some("s3cret-token".to_owned()),
        ..Access::default()
    };
    let server = NatsServer::start_with(&dir.0.join("nats"), access).await;
    assert!(server.url().starts_with("tls://"));
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend([
        "--capture".into(),
        "off".into(),
        "--capture-sink-ca".into(),
        paths[0].display().to_string(),
        "--capture-sink-credentials".into(),
        paths[3].display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let done = exchanges(sidecar.inbound, "tls", 1, 10, Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(done, 10);
    metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= 10.0 && nats_metric(m, "acknowledged") == spooled
    })
    .await;
    let counts = count_by_request(&server.messages().await, "tls-");
    assert_eq!(counts.len(), 10, "{counts:?}");
    assert!(!sidecar.stderr().contains("s3cret-token"));
}
