//! The drop path: a blocked writer drops and counts records, and never holds traffic.

use std::sync::Arc;

use sidecar_proxy::capture::{CaptureSink, Destination, SinkOptions};
use sidecar_proxy::metrics::Metrics;
use tokio::net::TcpStream;

use crate::support::capture::{parse_records, start_proxy_with_sink, temp_path, RawHttp};
use crate::support::start_app;
use crate::{http_detail, Sent, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_writer_drops_and_counts_records_and_never_holds_traffic() {
    const REQUESTS: usize = 60;
    // A FIFO nobody reads until every request is done: once the pipe buffer and the writer's buffer are
    // full (each record carries a 64 KiB body, ~87 KiB of base64), the writer thread blocks in write(2).
    let fifo = temp_path("blocked.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
    let (open_gate, gate) = std::sync::mpsc::channel::<()>();
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        // Opening blocks until the sink opens the write end.
        let mut file = std::fs::File::open(&reader_path).unwrap();
        let _ = gate.recv();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        text
    });
    let metrics = Arc::new(Metrics::new());
    let options = SinkOptions {
        destination: Destination::File(fifo.clone()),
        queue_capacity: 1,
        rotation: None,
        nats: None,
    };
    let (sink, writer) = CaptureSink::start(&options, metrics.clone()).unwrap();
    let app = start_app().await;
    let proxy = start_proxy_with_sink(
        "reverse",
        "http",
        Some(app.addr),
        sink,
        metrics.clone(),
        |_| {},
    )
    .await;

    let inbound = proxy.inbound();
    let clients: Vec<_> = (0..REQUESTS)
        .map(|i| {
            tokio::spawn(async move {
                let mut conn = RawHttp::new(TcpStream::connect(inbound).await.unwrap());
                let sent = Sent::new(
                    "GET",
                    "/bytes/65536",
                    &[("Host", "app.test"), ("X-N", &i.to_string())],
                );
                conn.exchange(&sent.bytes()).await.unwrap()
            })
        })
        .collect();
    for client in clients {
        let got = tokio::time::timeout(DEADLINE, client)
            .await
            .expect("traffic is never held by a blocked capture writer")
            .unwrap();
        assert_eq!((got.status, got.body.len()), (200, 65536));
    }
    // Every exchange has been handed over or dropped once the proxy has stopped.
    proxy.stop().await;
    let dropped = metrics.records_dropped.get();
    assert!(
        dropped > 0,
        "the blocked writer must have made the queue overflow"
    );

    open_gate.send(()).unwrap();
    tokio::time::timeout(DEADLINE, writer.unwrap().finish())
        .await
        .expect("the writer flushes");
    let text = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let _ = std::fs::remove_file(&fifo);
    let records = parse_records(&text);
    assert_eq!(
        records.len() as u64 + dropped,
        REQUESTS as u64,
        "written {} + dropped {dropped} must be every exchange",
        records.len()
    );
    let captured = metrics
        .records_captured
        .get_or_create(&sidecar_proxy::metrics::RecordLabels { kind: "http" })
        .get();
    assert_eq!(captured, records.len() as u64);
    for record in &records {
        let response = http_detail(record).response.as_ref().unwrap();
        assert_eq!((response.status, response.body.size), (200, 65536));
    }
}
