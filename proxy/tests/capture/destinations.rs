//! Destinations: stdout, `off` and rotation (the real binary).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::support::capture::{parse_records, RawHttp, Received, Sidecar, TempDir};
use crate::support::start_app;
use crate::{by_url, http_detail, whole, Sent};

async fn one_request(addr: SocketAddr, id: &str) -> Received {
    let mut conn = RawHttp::new(TcpStream::connect(addr).await.unwrap());
    let sent = Sent::new(
        "GET",
        format!("/dest/{id}"),
        &[("Host", "app.test"), ("Connection", "close")],
    );
    let got = conn.exchange(&sent.bytes()).await.unwrap();
    assert_eq!(got.status, 200);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_dash_writes_records_to_stdout() {
    let dir = TempDir::new("stdout");
    let app = start_app().await;
    let mut sidecar = Sidecar::reverse_http(app.addr, &["--capture", "-"], &dir.0).await;
    let first = one_request(sidecar.inbound, "one").await;
    let second = one_request(sidecar.inbound, "two").await;
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let stdout = String::from_utf8(sidecar.stdout()).unwrap();
    let records = parse_records(&stdout);
    assert_eq!(records.len(), 2, "stdout holds only records:\n{stdout}");
    assert_eq!(
        http_detail(by_url(&records, "/dest/one"))
            .response
            .as_ref()
            .unwrap()
            .body,
        whole(&first.body)
    );
    assert_eq!(
        http_detail(by_url(&records, "/dest/two"))
            .response
            .as_ref()
            .unwrap()
            .body,
        whole(&second.body)
    );
    assert!(
        !sidecar.stderr().contains("\"schema\""),
        "records never go to stderr"
    );
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        0,
        "no file written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_off_writes_nothing() {
    let dir = TempDir::new("off");
    let app = start_app().await;
    let mut sidecar = Sidecar::reverse_http(app.addr, &["--capture", "off"], &dir.0).await;
    one_request(sidecar.inbound, "one").await;
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    assert!(
        sidecar.stdout().is_empty(),
        "{:?}",
        String::from_utf8_lossy(&sidecar.stdout())
    );
    let files: Vec<_> = std::fs::read_dir(&dir.0).unwrap().collect();
    assert!(files.is_empty(), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_spreads_every_record_over_the_files_exactly_once() {
    const REQUESTS: usize = 40;
    let dir = TempDir::new("rotate");
    let path = dir.0.join("records.jsonl");
    let app = start_app().await;
    let mut sidecar = Sidecar::reverse_http(
        app.addr,
        &[
            "--capture",
            path.to_str().unwrap(),
            "--capture-rotate-size",
            "4KiB",
            "--capture-rotate-keep",
            "1000",
        ],
        &dir.0,
    )
    .await;
    for i in 0..REQUESTS {
        one_request(sidecar.inbound, &format!("r{i:02}")).await;
    }
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());

    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "a few files at 4 KiB each: {names:?}");
    let rotated = names.len() - 1;
    let mut expected_names: Vec<String> = (1..=rotated)
        .map(|n| format!("records.jsonl.{n}"))
        .collect();
    expected_names.push("records.jsonl".into());
    expected_names.sort();
    assert_eq!(names, expected_names);
    let mut seen = BTreeMap::new();
    for name in &names {
        let text = std::fs::read_to_string(dir.0.join(name)).unwrap();
        if name != "records.jsonl" {
            assert!(
                text.len() >= 4096,
                "{name} rotated before reaching the size: {}",
                text.len()
            );
        }
        for record in parse_records(&text) {
            let url = http_detail(&record).request.url.clone();
            *seen.entry(url).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<String, i32> = (0..REQUESTS)
        .map(|i| (format!("http://app.test/dest/r{i:02}"), 1))
        .collect();
    assert_eq!(seen, expected);
}
