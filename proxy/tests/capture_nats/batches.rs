//! Messages that carry runs of records: under load a JetStream message holds several records (JSON lines,
//! cut when they were spooled), consumers split them back into records, and a message sent again by the
//! next process is the same message under the same id, so JetStream stores it once.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use crate::support::capture::{Sidecar, TempDir, BIN};
use crate::support::nats::{assert_message_rules, records_per_message, NatsServer, Stored};
use crate::support::start_app;
use crate::{
    count_by_request, exchanges, metrics_until, nats_metric, sink_args, start_file_and_nats,
    FileAndNats,
};

/// How many times each record uid is in `stored`.
fn count_by_uid(stored: &[Stored]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in stored {
        *counts.entry(record.record.uid.clone()).or_default() += 1;
    }
    counts
}

/// Asserts that records were gathered into messages: several records to a message on average.
fn assert_runs_of_records(stored: &[Stored]) {
    let sizes = records_per_message(stored);
    assert!(
        sizes.len() * 2 <= stored.len() && sizes.iter().any(|&n| n > 1),
        "{} messages for {} records: records were not gathered into messages ({:?}...)",
        sizes.len(),
        stored.len(),
        &sizes[..sizes.len().min(20)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_messages_carry_runs_of_records_and_pull_yields_each_once_in_order() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 250;
    let dir = TempDir::new("nats-batches");
    let FileAndNats {
        server,
        _app,
        file,
        sidecar,
    } = start_file_and_nats(&dir).await;
    let done = exchanges(sidecar.inbound, "load", CLIENTS, PER_CLIENT, Arc::default()).await;
    assert_eq!(done, CLIENTS * PER_CLIENT);
    let exposition = metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= done as f64 && nats_metric(m, "acknowledged") == spooled
    })
    .await;
    // The metrics count records, not messages.
    let spooled = nats_metric(&exposition, "spooled");
    assert_eq!(nats_metric(&exposition, "published"), spooled);

    let stored = server.messages().await;
    assert_eq!(stored.len() as f64, spooled);
    assert_runs_of_records(&stored);
    assert_message_rules(&stored);

    // `capture pull` splits the messages into their records: the file sink's lines, in the same order,
    // each record once.
    let pulled = dir.0.join("pulled.jsonl");
    let output = Command::new(BIN)
        .args(["capture", "pull", "-o"])
        .arg(&pulled)
        .arg(format!("{}/capture.test.>", server.url()))
        .output()
        .expect("run capture pull");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let written = std::fs::read_to_string(&file).unwrap();
    let pulled_text = std::fs::read_to_string(&pulled).unwrap();
    assert!(
        pulled_text == written,
        "the pulled lines differ from the file sink's"
    );
    assert!(
        stderr.contains(&format!("pulled {} records", written.lines().count())),
        "{stderr}"
    );
    let records = crate::support::capture::parse_records(&pulled_text);
    let mut uids: Vec<&str> = records.iter().map(|r| r.uid.as_str()).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), records.len(), "a record pulled twice");
    let by_request = count_by_request(&stored, "load-");
    assert_eq!(by_request.len(), done);
    assert!(by_request.values().all(|&n| n == 1), "{by_request:?}");

    // A message an older sidecar published (one record, no line feed) is pulled as that record's line.
    let first_line = written.lines().next().unwrap();
    server
        .publish("capture.older.pod", first_line.as_bytes().to_vec())
        .await;
    let output = Command::new(BIN)
        .args(["capture", "pull"])
        .arg(format!("{}/capture.older.>", server.url()))
        .output()
        .expect("run capture pull");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{first_line}\n")
    );
}

/// `--capture-sink-records-per-message 1`: every record is a message of its own under load too, whose
/// `Nats-Msg-Id` is that record's uid and whose payload is that record's line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_record_per_message_each_message_is_one_record_under_its_uid() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 100;
    let dir = TempDir::new("nats-one-per-message");
    let server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &dir.0.join("spool"));
    args.extend([
        "--capture".into(),
        "off".into(),
        "--capture-sink-records-per-message".into(),
        "1".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let done = exchanges(
        sidecar.inbound,
        "single",
        CLIENTS,
        PER_CLIENT,
        Arc::default(),
    )
    .await;
    assert_eq!(done, CLIENTS * PER_CLIENT);
    metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= done as f64 && nats_metric(m, "acknowledged") == spooled
    })
    .await;

    let stored = server.messages().await;
    assert_eq!(count_by_request(&stored, "single-").len(), done);
    for record in &stored {
        assert_eq!(
            record.message_id.as_deref(),
            Some(record.record.uid.as_str()),
            "message {}: its id is its record's uid",
            record.sequence
        );
        assert_eq!(record.message_records.as_deref(), Some("1"));
    }
    assert_eq!(records_per_message(&stored), vec![1; stored.len()]);
    assert_message_rules(&stored);

    // Outside 1 to 1024 the sidecar refuses to start, saying what is allowed.
    let refused = Command::new(BIN)
        .args([
            "--proxy-type",
            "forward",
            "--capture-sink-records-per-message",
            "0",
        ])
        .arg("--capture-sink")
        .arg(format!("{}/capture.test", server.url()))
        .output()
        .expect("run the sidecar");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr
            .contains("invalid --capture-sink-records-per-message 0: allowed values are 1 to 1024"),
        "{stderr}"
    );
}

/// A sidecar killed (no chance to save how far NATS acknowledged) leaves its spool's last segment with
/// messages JetStream already stored; the next start on the same spool sends them again. Cut when they
/// were spooled, they are the same messages under the same ids: JetStream drops every copy, and each
/// record is in the stream once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_again_by_the_next_start_are_stored_once() {
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 150;
    let dir = TempDir::new("nats-resend");
    let spool = dir.0.join("spool");
    let server = NatsServer::start(&dir.0.join("nats")).await;
    let app = start_app().await;
    let mut args = sink_args(&server, &spool);
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let first = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let done = exchanges(first.inbound, "sent", CLIENTS, PER_CLIENT, Arc::default()).await;
    assert_eq!(done, CLIENTS * PER_CLIENT);
    let acknowledged = metrics_until(first.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled >= done as f64 && nats_metric(m, "acknowledged") == spooled
    })
    .await;
    let records = nats_metric(&acknowledged, "acknowledged");
    let messages = server.count().await;
    let before = server.messages().await;
    assert_runs_of_records(&before);
    first.signal("KILL");
    drop(first);

    // The next start sends the spool again: every record of it, in the same messages.
    let second = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    let again = metrics_until(second.admin, |m| {
        let sent = nats_metric(m, "published") + nats_metric(m, "resent");
        sent >= records
            && nats_metric(m, "lag_records") == 0.0
            && nats_metric(m, "acknowledged") >= records
    })
    .await;
    assert_eq!(nats_metric(&again, "dropped"), 0.0);
    // JetStream dropped every copy by its id: the stream holds what it held (the second start's own
    // readiness probe may add a stream record, in a message of its own).
    let after = server.messages().await;
    let counts = count_by_uid(&after);
    let repeated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        repeated.is_empty(),
        "{} records stored twice: {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(10)]
    );
    let sent = count_by_request(&after, "sent-");
    assert_eq!(sent.len(), done);
    assert!(
        server.count().await <= messages + 1,
        "{messages} messages before, {} after",
        server.count().await
    );
    assert_message_rules(&after);
}

/// A spool an older sidecar left (frames of one record each, `UID SP JSON LF`) is sent by the new one after
/// the upgrade: each record once, as a message of one record under the record's uid, as the older sidecar
/// would have sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_left_by_an_older_sidecar_is_sent_after_the_upgrade() {
    const EXCHANGES: usize = 20;
    let dir = TempDir::new("nats-older-spool");
    let app = start_app().await;
    // Records as a file: the lines an older sidecar's spool held, each behind its uid.
    let file = dir.0.join("capture.jsonl");
    let file_arg = file.display().to_string();
    let mut recorder =
        Sidecar::reverse_http(app.addr, &["--capture", file_arg.as_str()], &dir.0).await;
    let done = exchanges(recorder.inbound, "older", 1, EXCHANGES, Arc::default()).await;
    assert_eq!(done, EXCHANGES);
    recorder.signal("TERM");
    assert!(recorder.exit().await.success(), "{}", recorder.stderr());
    let text = std::fs::read_to_string(&file).unwrap();
    let records = crate::support::capture::parse_records(&text);
    let spool = dir.0.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let frames: String = records
        .iter()
        .zip(text.lines())
        .map(|(record, line)| format!("{} {line}\n", record.uid))
        .collect();
    std::fs::write(spool.join(format!("{:020}.spool", 1)), frames).unwrap();

    let server = NatsServer::start(&dir.0.join("nats")).await;
    let mut args = sink_args(&server, &spool);
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;
    metrics_until(sidecar.admin, |m| {
        nats_metric(m, "acknowledged") >= records.len() as f64
            && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    let stored = server.messages().await;
    let older: Vec<&Stored> = stored
        .iter()
        .filter(|s| records.iter().any(|r| r.uid == s.record.uid))
        .collect();
    assert_eq!(
        older.len(),
        records.len(),
        "every record of the older spool"
    );
    for (record, line) in older.iter().zip(text.lines()) {
        assert_eq!(record.payload, line.as_bytes(), "sent as spooled, in order");
        assert_eq!(
            record.message_id.as_deref(),
            Some(record.record.uid.as_str())
        );
        assert_eq!(record.message_records.as_deref(), Some("1"));
    }
    assert_eq!(count_by_request(&stored, "older-").len(), EXCHANGES);
    assert_message_rules(&stored);
}
