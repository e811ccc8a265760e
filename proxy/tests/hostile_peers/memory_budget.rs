//! The memory budget, on the real binary with its RSS read from /proc: a flood of connections each holding
//! an unfinished 60,000-byte request head, relayed with capture on (the tap gathering the heads), keeps the
//! sidecar within its `--memory-budget`; the bytes keep flowing to the app all along, a legitimate client is
//! answered in the middle of it, and the sidecar's memory is back near where it started once the flood
//! has closed. Without the budget the same flood holds about 125 KB per connection (a 64 KiB relay buffer
//! and the gathered head).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::floods::{room_for_descriptors, rss, Front};
use crate::support::admin::scrape;
use crate::support::capture::TempDir;
use crate::within;

/// Connections in the flood.
const FLOOD: usize = 400;
/// The padding each one's unfinished head carries.
const PADDING: usize = 60_000;
const BUDGET: usize = 8 * 1024 * 1024;
/// What the process may hold besides the budget: per-connection state (a task, two sockets' bookkeeping,
/// the relay's 2 KiB buffers) for every connection of the flood, and the allocator's slack.
const SLACK: usize = 14 * 1024 * 1024;

/// An app that reads and discards whatever it is sent (counting it), and answers `GET /legit` at once.
async fn start_sink_app() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let mut first = true;
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                    if first && buf[..n].starts_with(b"GET /legit ") {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                    first = false;
                }
            });
        }
    });
    (addr, received)
}

#[tokio::test]
async fn unfinished_heads_through_the_tap_stay_within_the_memory_budget() {
    room_for_descriptors(FLOOD);
    let (app, received) = start_sink_app().await;
    let dir = TempDir::new("memory-budget");
    let budget = BUDGET.to_string();
    let front = Front::reverse(
        "tcp",
        app,
        &[
            "--capture",
            "capture.jsonl",
            "--memory-budget",
            &budget,
            "--max-connections",
            "2000",
        ],
        &dir.0,
    )
    .await;
    let sidecar = &front.sidecar;
    let pid = sidecar.pid();
    let at_rest = rss(pid);

    let head_start = b"GET /unfinished HTTP/1.1\r\nhost: app\r\nx-padding: ";
    let padding = vec![b'a'; PADDING];
    let mut flood = Vec::with_capacity(FLOOD);
    let mut peak = at_rest;
    for i in 0..FLOOD {
        let mut stream = within("a flood connection", TcpStream::connect(sidecar.inbound))
            .await
            .unwrap();
        stream.write_all(head_start).await.unwrap();
        stream.write_all(&padding).await.unwrap();
        flood.push(stream);
        if i % 50 == 49 {
            peak = peak.max(rss(pid));
        }
    }
    let sent = (FLOOD * (head_start.len() + PADDING)) as u64;
    // Every byte reaches the app: the budget never stops the relay.
    within("the flood's bytes at the app", async {
        while received.load(Ordering::Relaxed) < sent {
            tokio::time::sleep(Duration::from_millis(20)).await;
            peak = peak.max(rss(pid));
        }
    })
    .await;
    peak = peak.max(rss(pid));

    // A legitimate client, in the middle of the flood.
    let mut legit = TcpStream::connect(sidecar.inbound).await.unwrap();
    legit
        .write_all(b"GET /legit HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 40];
    let n = within("the legitimate answer", legit.read(&mut answer))
        .await
        .unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200 OK"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );

    let metrics = scrape(sidecar.admin).await;
    let denied: f64 = ["relay_buffer", "request_head"]
        .iter()
        .map(|purpose| {
            metrics.count(
                "sidecar_memory_budget_denied_total",
                &[("purpose", purpose)],
            )
        })
        .sum();
    assert!(denied > 0.0, "the flood reached the budget: {denied}");
    assert_eq!(
        metrics.value("sidecar_memory_budget_bytes", &[]),
        Some(BUDGET as f64)
    );
    let grew = peak.saturating_sub(at_rest);
    assert!(
        grew < BUDGET + SLACK,
        "RSS grew by {} KiB under the flood (at rest {} KiB); the budget is {} KiB",
        grew / 1024,
        at_rest / 1024,
        BUDGET / 1024
    );

    drop(flood);
    drop(legit);
    let settled = front.until_gone().await;
    assert_eq!(
        settled.value("sidecar_memory_budget_used_bytes", &[]),
        Some(0.0)
    );
    let after = rss(pid);
    assert!(
        after < at_rest + 32 * 1024 * 1024,
        "RSS {} KiB after the flood closed, {} KiB at rest",
        after / 1024,
        at_rest / 1024
    );
}
