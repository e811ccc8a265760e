//! A capture sink on a full disk: the real binary writes its records to /dev/full, where every write fails
//! with ENOSPC. Traffic is never held by the capture writer, so every request succeeds, and the records
//! that cannot be written are counted in `sidecar_capture_records_dropped_total`.

use tokio::net::TcpStream;

use crate::support::admin::scrape_until;
use crate::support::capture::{RawHttp, Sidecar, TempDir};
use crate::support::start_app;
use crate::support::tiny_disk::TinyDisk;
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

/// Sends `count` requests, each with a long query so each record is about a kilobyte, and checks each
/// is answered: the capture never holds traffic up.
async fn send_requests(clients: &mut [RawHttp<TcpStream>], from: usize, count: usize) {
    for i in from..from + count {
        let client = &mut clients[i % CONNECTIONS];
        let request = format!(
            "GET /record/{i}?pad={} HTTP/1.1\r\nHost: a\r\n\r\n",
            "x".repeat(600)
        );
        let answer = within("an answer", client.exchange(request.as_bytes()))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "request {i}: {answer:?}");
    }
}

/// The disk fills while records are being written, then space comes back: the capture file holds only
/// whole records (a batch that failed half-way is cut back off the file, so the next record never lands
/// on half a line), the records the file holds are exactly those counted written, every other one is
/// counted dropped, and the drops of the last interval are told at shutdown.
#[tokio::test]
async fn a_disk_that_fills_and_frees_leaves_only_whole_records_counted_exactly() {
    let app = start_app().await;
    let dir = TempDir::new("tiny-disk");
    let disk = TinyDisk::mount(dir.0.join("disk"), "256k");
    // Leaves about 40 KB: some records fit, then a batch fails part-way.
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 216 * 1024]).unwrap();
    let capture = disk.0.join("capture.jsonl");
    let capture_arg = capture.to_str().unwrap().to_owned();
    let mut sidecar = Sidecar::reverse_http(app.addr, &["--capture", &capture_arg], &dir.0).await;
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(RawHttp::new(
            TcpStream::connect(sidecar.inbound).await.unwrap(),
        ));
    }

    const FIRST: usize = 150;
    send_requests(&mut clients, 0, FIRST).await;
    let full = scrape_until(sidecar.admin, |m| {
        m.count("sidecar_capture_records_dropped_total", &[])
            + m.count("sidecar_capture_records_total", &[("kind", "http")])
            == FIRST as f64
    })
    .await;
    assert!(
        full.count("sidecar_capture_records_dropped_total", &[]) > 0.0,
        "the disk filled: records were dropped"
    );

    // Space comes back.
    std::fs::remove_file(&filler).unwrap();
    const SECOND: usize = 30;
    send_requests(&mut clients, FIRST, SECOND).await;
    let settled = scrape_until(sidecar.admin, |m| {
        m.count("sidecar_capture_records_dropped_total", &[])
            + m.count("sidecar_capture_records_total", &[("kind", "http")])
            == (FIRST + SECOND) as f64
    })
    .await;
    let written = settled.count("sidecar_capture_records_total", &[("kind", "http")]);
    let dropped = settled.count("sidecar_capture_records_dropped_total", &[]);

    drop(clients);
    sidecar.signal("TERM");
    sidecar.exit().await;
    let text = std::fs::read_to_string(&capture).unwrap();
    // Every line a whole record (parse_records fails on any other).
    let records = crate::support::capture::parse_records(&text);
    assert_eq!(
        records.len() as f64,
        written,
        "the file holds exactly the records counted written ({dropped} dropped)"
    );
    let paths: Vec<&str> = records
        .iter()
        .filter_map(|r| match &r.detail {
            sidecar_proxy::capture::record::Detail::Http(x) => Some(x.request.url.as_str()),
            _ => None,
        })
        .collect();
    for i in FIRST..FIRST + SECOND {
        assert!(
            paths
                .iter()
                .any(|url| url.contains(&format!("/record/{i}?"))),
            "request {i}, after space came back, is in the file"
        );
    }
    let told: u64 = sidecar
        .stderr()
        .lines()
        .filter(|line| line.contains("dropped"))
        .filter_map(|line| {
            let at = line.find("dropped=")? + "dropped=".len();
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(
        told as f64,
        dropped,
        "the warnings tell every drop:\n{}",
        sidecar.stderr()
    );
}
