//! `capture_tap`: the capture tap ([`sidecar_proxy::tap`]), which reads every byte relayed in a tapped
//! stream (tcp, CONNECT, SOCKS, transparent, tls-out) on the connection's own task. A panic there is a
//! dropped connection; a record it builds wrong is a capture file a reader refuses. Both peers are the
//! input:
//!
//! ```text
//! byte 0        bit 0: HTTP/2 with prior knowledge (else HTTP/1); bit 1: the relay ends in a failure
//! then chunks   a header byte, then its bytes:
//!                 bit 7     who sent them: 0 the client, 1 the upstream
//!                 bits 0-6  how many (0 means 128); a chunk past the input's end is cut short
//! ```
//!
//! The chunks are shown to the tap in input order, as the relay would (each direction in order, the two
//! interleaved as they happened); once the tap halts the stream (a head over the limit) nothing more is
//! read from the client, as the relay stops. The records go through a real capture writer into a file.
//!
//! Checked: every line the writer wrote reads back as a record; an `http` record's bodies never count more
//! bytes than their sender sent, keep at most the body limit, and keep all of it exactly when they are not
//! marked truncated; an HTTP/2 record says `HTTP/2.0`.

use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sidecar_proxy::capture::har::read_records;
use sidecar_proxy::capture::record::Detail;
use sidecar_proxy::capture::{
    Capture, CaptureSettings, CaptureSink, Destination, Route, SinkOptions,
};
use sidecar_proxy::connection::Connection;
use sidecar_proxy::io::Observer;
use sidecar_proxy::metrics::Metrics;
use sidecar_proxy::tap::{HttpTap, Protocol};

/// Small, so that inputs reach the truncation paths.
const BODY_LIMIT: usize = 64;

const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), 40000);

pub fn capture_tap(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let protocol = if flags & 1 == 1 {
        Protocol::H2
    } else {
        Protocol::Http1
    };
    let file = scratch_file();
    // Left behind by an input that panicked: the writer appends.
    let _ = std::fs::remove_file(&file);
    let metrics = Arc::new(Metrics::new());
    let options = SinkOptions {
        destination: Destination::File(file.clone()),
        queue_capacity: 4096,
        rotation: None,
        nats: None,
    };
    let (sink, writer) =
        CaptureSink::start(&options, metrics.clone()).expect("a scratch capture file");
    let settings = CaptureSettings {
        body_limit: BODY_LIMIT,
        ..CaptureSettings::default()
    };
    // Links kept, as in dual and transparent modes, so the tap's traceparent reading is fuzzed too.
    let capture = Capture {
        sink,
        settings: Arc::new(settings),
        causes: Some(Default::default()),
    };
    let context = Connection::new(
        Some(capture.clone()),
        metrics,
        "inbound",
        "reverse",
        "tcp",
        CLIENT,
    );
    let route = Arc::new(Route::new("tcp", "127.0.0.1:8080".to_owned(), None));
    let mut tap = HttpTap::new(&context, &capture, route, protocol);

    let (mut from_client, mut from_upstream) = (0u64, 0u64);
    while let Some((&header, after)) = rest.split_first() {
        let wanted = match usize::from(header & 0x7f) {
            0 => 128,
            n => n,
        };
        let (chunk, after) = after.split_at(wanted.min(after.len()));
        rest = after;
        if header & 0x80 == 0 {
            if tap.halted() {
                continue;
            }
            from_client += chunk.len() as u64;
            tap.read(chunk);
        } else {
            from_upstream += chunk.len() as u64;
            tap.written(chunk);
        }
    }
    let failure = (flags & 2 == 2).then_some("Connection reset by peer (os error 104)");
    tap.finish(failure);
    drop(context);
    drop(capture);
    let writer = writer.expect("a file destination has a writer");
    assert!(
        writer.finish_blocking(Duration::from_secs(10)),
        "the capture writer did not finish"
    );

    let text = std::fs::read(&file).expect("the capture file reads");
    std::fs::remove_file(&file).expect("the scratch file is removed");
    let records =
        read_records(BufReader::new(&text[..]), "capture_tap.jsonl").unwrap_or_else(|e| {
            panic!(
                "the tap's records do not read back: {e}\n{}",
                String::from_utf8_lossy(&text)
            )
        });
    for record in records {
        let Detail::Http(exchange) = record.detail else {
            continue;
        };
        if matches!(protocol, Protocol::H2) {
            assert_eq!(exchange.request.version, "HTTP/2.0");
        }
        check_body("request", &exchange.request.body, from_client);
        if let Some(response) = &exchange.response {
            check_body("response", &response.body, from_upstream);
        }
    }
}

fn check_body(which: &str, body: &sidecar_proxy::capture::record::Body, sent: u64) {
    assert!(
        body.size <= sent,
        "{which} body of {} bytes from a peer that sent {sent}",
        body.size
    );
    assert!(
        body.base64.len() <= BODY_LIMIT,
        "{which} body kept {} bytes, over the limit",
        body.base64.len()
    );
    assert_eq!(
        body.truncated,
        (body.base64.len() as u64) < body.size,
        "{which} body: {} bytes kept of {}, truncated {}",
        body.base64.len(),
        body.size,
        body.truncated
    );
}

/// A capture file of this process and thread's own: libFuzzer may run several jobs side by side.
fn scratch_file() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id())
        .chars()
        .filter(char::is_ascii_digit)
        .collect::<String>();
    std::env::temp_dir().join(format!(
        "sidecar-fuzz-capture-tap-{}-{thread}.jsonl",
        std::process::id()
    ))
}
