//! A capture sink on a full disk: the real binary writes its records to /dev/full, where every write fails
//! with ENOSPC. Traffic is never held by the capture writer, so every request succeeds, and the records
//! that cannot be written are counted in `sidecar_capture_records_dropped_total`.

use tokio::net::TcpStream;

use crate::support::admin::scrape_until;
use crate::support::capture::{RawHttp, Sidecar, TempDir};
use crate::support::start_app;
use crate::within;

/// Enough records to fill the writer's 64 KiB buffer several times over, so writes reach the disk.
const REQUESTS: usize = 300;
const CONNECTIONS: usize = 3;

#[tokio::test]
async fn on_a_full_disk_traffic_flows_and_records_are_counted_dropped() {
    let app = start_app().await;
    let dir = TempDir::new("full-disk");
    let sidecar = Sidecar::reverse_http(app.addr, &["--capture", "/dev/full"], &dir.0).await;

    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(RawHttp::new(
            TcpStream::connect(sidecar.inbound).await.unwrap(),
        ));
    }
    for i in 0..REQUESTS {
        let client = &mut clients[i % CONNECTIONS];
        let request = format!(
            "GET /record/{i}?pad={} HTTP/1.1\r\nHost: a\r\n\r\n",
            "x".repeat(200)
        );
        let answer = within(
            "an answer with the disk full",
            client.exchange(request.as_bytes()),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
    }

    // Every record is accounted for, as written or dropped, once the writer has seen them all; and with
    // nothing reaching the disk, records are dropped.
    let metrics = scrape_until(sidecar.admin, |m| {
        let dropped = m.count("sidecar_capture_records_dropped_total", &[]);
        let written = m.count("sidecar_capture_records_total", &[("kind", "http")]);
        dropped + written == REQUESTS as f64
    })
    .await;
    let dropped = metrics.count("sidecar_capture_records_dropped_total", &[]);
    assert_eq!(
        dropped, REQUESTS as f64,
        "every record dropped: none reached the disk"
    );
    let errors = sidecar
        .stderr()
        .matches("cannot write capture records")
        .count();
    assert!(
        errors <= 2,
        "{errors} write errors logged: not rate-limited"
    );
    assert!(sidecar.stderr().contains("No space left on device"));
}
