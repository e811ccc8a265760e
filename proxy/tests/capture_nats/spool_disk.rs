//! The spool's disk fills while NATS is down, then space comes back, then NATS does. A batch of frames that
//! fails part-way is cut back off its segment, so the spool never holds half a frame for the next one to
//! be appended to: every record is spooled or counted dropped exactly once, and every record spooled
//! reaches the stream exactly once, whole and under its own id.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::support::capture::{Sidecar, TempDir};
use crate::support::nats::NatsServer;
use crate::support::start_app;
use crate::support::tiny_disk::TinyDisk;
use crate::{count_by_request, exchanges, metrics_until, nats_metric, sink_args};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_disk_that_fills_and_frees_keeps_whole_frames_and_counts_each_record_once() {
    // Records here are about 700 bytes: the first exchanges fill the 40 KB left on the disk many times over.
    const FIRST: usize = 300;
    const SECOND: usize = 50;
    let dir = TempDir::new("nats-spool-disk");
    let disk = TinyDisk::mount(dir.0.join("disk"), "256k");
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![0u8; 216 * 1024]).unwrap();
    let mut server = NatsServer::not_started(&dir.0.join("nats"));
    let app = start_app().await;
    let mut args = sink_args(&server, &disk.0.join("spool"));
    args.extend(["--capture".into(), "off".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::reverse_http(app.addr, &args, &dir.0).await;

    let first = exchanges(
        sidecar.inbound,
        "first",
        1,
        FIRST,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(first, FIRST);
    // Every record is either in the spool or dropped (the readiness probe may add a stream record).
    let full = metrics_until(sidecar.admin, |m| {
        nats_metric(m, "spooled") + nats_metric(m, "dropped") >= FIRST as f64
    })
    .await;
    assert!(
        nats_metric(&full, "dropped") > 0.0,
        "the disk filled: records were dropped"
    );

    // Space comes back, then more traffic: its records are spooled whole after whatever failed before.
    std::fs::remove_file(&filler).unwrap();
    let second = exchanges(
        sidecar.inbound,
        "second",
        1,
        SECOND,
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(second, SECOND);
    // The publisher's lag gauge follows within its poll interval: every record spooled waits there.
    let settled = metrics_until(sidecar.admin, |m| {
        let spooled = nats_metric(m, "spooled");
        spooled + nats_metric(m, "dropped") >= (FIRST + SECOND) as f64
            && nats_metric(m, "lag_records") == spooled
    })
    .await;
    let spooled = nats_metric(&settled, "spooled");
    let dropped = nats_metric(&settled, "dropped");

    server.restart().await;
    let delivered = metrics_until(sidecar.admin, |m| {
        nats_metric(m, "acknowledged") >= spooled && nats_metric(m, "lag_records") == 0.0
    })
    .await;
    assert_eq!(nats_metric(&delivered, "acknowledged"), spooled);
    assert_eq!(
        nats_metric(&delivered, "dropped"),
        dropped,
        "dropped once, not again"
    );
    // Every line of every message parses as a record (messages() says which does not), and every
    // message carries its own id (its first record's uid).
    let stored = server.messages().await;
    assert_eq!(
        stored.len() as f64,
        spooled,
        "the stream holds what was spooled"
    );
    crate::support::nats::assert_message_rules(&stored);
    let firsts = count_by_request(&stored, "first-");
    let seconds = count_by_request(&stored, "second-");
    assert!(
        firsts.values().chain(seconds.values()).all(|&n| n == 1),
        "each record once: {firsts:?} {seconds:?}"
    );
    assert_eq!(
        seconds.len(),
        SECOND,
        "after space came back, nothing is lost"
    );
    assert_eq!(
        (FIRST + SECOND - firsts.len() - seconds.len()) as f64,
        dropped,
        "every exchange is either in the stream or counted dropped"
    );
}
