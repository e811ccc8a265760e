//! `capture pull`: the stream read back as JSON lines, the same lines the file sink writes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::capture::{parse_records, Sidecar, TempDir, BIN};
use crate::support::nats::NatsServer;
use crate::support::start_app;
use crate::{
    exchanges, metrics_until, nats_metric, request_id, sink_args, start_file_and_nats, FileAndNats,
    DEADLINE,
};

fn pull(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(["capture", "pull"])
        .args(args)
        .env_remove("PROXY_CAPTURE_SINK_CREDENTIALS")
        .env_remove("PROXY_CAPTURE_SINK_CA")
        .output()
        .expect("run capture pull");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_writes_what_the_file_sink_wrote_and_a_durable_pull_goes_on_where_it_stopped() {
    let dir = TempDir::new("nats-pull");
    let FileAndNats {
        server,
        _app,
        file,
        sidecar,
    } = start_file_and_nats(&dir).await;
    let source = format!("{}/capture.>", server.url());

    let first = exchanges(
        sidecar.inbound,
        "first",
        1,
        20,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(first, 20);
    let acknowledged = |at_least: usize| {
        move |m: &crate::support::admin::Exposition| {
            let spooled = nats_metric(m, "spooled");
            spooled >= at_least as f64 && nats_metric(m, "acknowledged") == spooled
        }
    };
    metrics_until(sidecar.admin, acknowledged(20)).await;
    let out1 = dir.0.join("pulled-1.jsonl");
    let (ok, _, stderr) = pull(&[&source, "--durable", "reader", "-o", out1.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let written = lines(&file);
    assert!(
        lines(&out1) == written,
        "the pulled lines differ from the file sink's"
    );
    assert!(
        stderr.contains(&format!("pulled {} records", written.len())),
        "{stderr}"
    );

    let second = exchanges(
        sidecar.inbound,
        "second",
        1,
        10,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(second, 10);
    metrics_until(sidecar.admin, acknowledged(30)).await;
    let out2 = dir.0.join("pulled-2.jsonl");
    let (ok, _, stderr) = pull(&[&source, "--durable", "reader", "-o", out2.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let ids: Vec<String> = parse_records(&std::fs::read_to_string(&out2).unwrap())
        .iter()
        .map(request_id)
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("second-{n}")).collect();
    assert_eq!(
        ids, expected,
        "the durable consumer went on from the first pull"
    );
    assert!(
        lines(&out2) == lines(&file)[written.len()..],
        "the second pull differs from the file"
    );

    // Records stored since a time still to come: none.
    let (ok, stdout, stderr) = pull(&[&source, "--since", "2099-01-01T00:00:00Z"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("pulled 0 records"), "{stderr}");
    // Without a durable name, everything, to stdout.
    let (ok, stdout, stderr) = pull(&[&source, "--since", "1h"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), lines(&file).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_follow_streams_records_as_they_are_published() {
    let dir = TempDir::new("nats-follow");
    let server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;

    let mut follower = Command::new(BIN)
        .args(["capture", "pull", "--follow"])
        .arg(format!("{}/capture.>", server.url()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run capture pull --follow");
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    exchanges(
        sidecar.inbound,
        "followed",
        1,
        5,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    let deadline = Instant::now() + DEADLINE;
    let mut followed = Vec::new();
    while followed.len() < 5 {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left.max(Duration::from_millis(1)))
            .unwrap_or_else(|_| panic!("only {followed:?} arrived"));
        let record = &parse_records(&format!("{line}\n"))[0];
        if let sidecar_proxy::capture::record::Detail::Http(_) = record.detail {
            followed.push(request_id(record));
        }
    }
    let expected: Vec<String> = (0..5).map(|n| format!("followed-{n}")).collect();
    assert_eq!(followed, expected);
    assert!(
        follower.try_wait().unwrap().is_none(),
        "--follow keeps running"
    );
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn a_bad_address_is_refused_with_what_is_allowed() {
    let (ok, _, stderr) = pull(&["http://nats:4222/capture.>"]);
    assert!(!ok);
    assert!(
        stderr.contains("allowed: nats://HOST:PORT/SUBJECT"),
        "{stderr}"
    );
    let (ok, _, stderr) = pull(&["nats://127.0.0.1:4222/capture.>", "--since", "soon"]);
    assert!(!ok);
    assert!(stderr.contains("invalid --since \"soon\""), "{stderr}");
}
