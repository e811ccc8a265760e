//! Slow readers, on the real binary with its RSS read from /proc: clients that ask for a large response and
//! never read a byte of it. Whatever the sidecar has read from the app and not yet handed to such a client
//! is held for it; the memory budget bounds those bytes, and past it the sidecar stops reading from the app
//! (the app's writes block, which is the back-pressure a slow client would put on the app without a
//! sidecar). Shown on reverse `tcp` (the relay), reverse `http` (the HTTP/1 engine) and the forward
//! `http` listener (absolute-form requests), capture on, with a legitimate client answered in the middle of
//! it and the budget all given back once the readers leave.
//!
//! The scale is ten times what fits the budget: before the fix, reverse `http` held about 1.4 MB for each
//! such reader (hyper's 400 KB write queue and read buffer, the body chunk between them, the capture copy),
//! 110 MB for these 80; reverse `tcp` was already within the budget (its relay buffers draw on it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::floods::Front;
use crate::floods::{room_for_descriptors, rss};
use crate::support::admin::scrape;
use crate::support::capture::TempDir;
use crate::within;

/// Readers in the flood: at about 1 MB each (a capture copy and the buffers on the way), ten times the
/// budget.
const READERS: usize = 80;
/// The response each reader asks for: far more than every kernel buffer on its way (the app's send
/// buffer, the sidecar's receive and send buffers, the reader's receive buffer), so the sidecar's own
/// buffers are full too.
const RESPONSE: u64 = 64 * 1024 * 1024;
const BUDGET: usize = 8 * 1024 * 1024;
/// What the process may hold besides the budget: per reader, what is not drawn from the budget (the task,
/// hyper's two connections, the reads of the app's bytes on their way: one chunk waiting between them
/// and one read buffer, up to 64 KiB each; measured at about 200 KiB, and the chunk a reader may take past
/// a spent budget, 64 KiB), and the allocator's slack.
///
/// Measured growth through reverse `http`: +30 MB on a quiet machine, up to +41 MB with the suite's other
/// tests running beside it (more of the allocator's freed pages not yet purged at the peak); without the
/// budget, +110 MB. The allowance (46 MiB with the budget) sits above the first two and far below the last.
const SLACK_PER_READER: usize = 384 * 1024;
const SLACK: usize = 8 * 1024 * 1024 + READERS * SLACK_PER_READER;

/// An app answering `GET /large` with [`RESPONSE`] bytes and anything else with `ok`, over keep-alive
/// HTTP/1.1; counts the bytes of large responses it managed to write.
async fn start_large_response_app() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_app_connection(stream, counter.clone()));
        }
    });
    (addr, written)
}

async fn serve_app_connection(mut stream: TcpStream, written: Arc<AtomicU64>) {
    let chunk = vec![b'x'; 64 * 1024];
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
            continue;
        };
        let large = head.starts_with(b"GET /large ");
        head.drain(..end + 4);
        if !large {
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let response_head = format!("HTTP/1.1 200 OK\r\ncontent-length: {RESPONSE}\r\n\r\n");
        if stream.write_all(response_head.as_bytes()).await.is_err() {
            return;
        }
        let mut left = RESPONSE;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if stream.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            written.fetch_add(n as u64, Ordering::Relaxed);
            left -= n as u64;
        }
    }
}

/// The listeners a slow reader's flood goes through.
#[derive(Clone, Copy, Debug)]
enum Through {
    ReverseTcp,
    ReverseHttp,
    ForwardHttp,
}

async fn slow_readers_stay_within_the_memory_budget(through: Through) {
    room_for_descriptors(READERS);
    let (app, written) = start_large_response_app().await;
    let dir = TempDir::new("slow-readers");
    let budget = BUDGET.to_string();
    let args = ["--capture", "capture.jsonl", "--memory-budget", &budget];
    let front = match through {
        Through::ReverseTcp => Front::reverse("tcp", app, &args, &dir.0).await,
        Through::ReverseHttp => Front::reverse("http", app, &args, &dir.0).await,
        Through::ForwardHttp => Front::forward_http(app, &args, &dir.0).await,
    };
    let pid = front.pid();
    front.legit_exchange().await;
    let at_rest = rss(pid);

    let mut readers = Vec::with_capacity(READERS);
    for _ in 0..READERS {
        let mut reader = within("a slow reader's connection", TcpStream::connect(front.addr))
            .await
            .unwrap();
        reader.write_all(&front.get("/large")).await.unwrap();
        readers.push(reader);
    }
    // The flood has filled every buffer on its way once the app cannot write any more.
    let mut peak = at_rest;
    front
        .until_still(async || written.load(Ordering::Relaxed), &mut peak)
        .await;
    let flooded = written.load(Ordering::Relaxed);

    front.legit_exchange().await;
    peak = peak.max(rss(pid));
    // No reader is shed here: each holds one read of the app's bytes (at most 64 KiB, 48 KiB of it in the
    // budget), through reverse `tcp` (the relay) and reverse `http` (the HTTP/1 engine) alike, so 80 of them
    // stay within the 8 MiB budget. (While hyper served reverse `http`, each held its write queue and a
    // chunk besides, over 100 KiB, the budget was spent and the stalled readers were shed.)
    let metrics = scrape(front.sidecar.admin).await;
    let used = metrics
        .value("sidecar_memory_budget_used_bytes", &[])
        .unwrap();
    assert!(used > 0.0, "the readers' bytes are held in the budget");
    let grew = peak.saturating_sub(at_rest);
    eprintln!(
        "slow readers through {through:?}: RSS at rest {} KiB, peak {} KiB (+{} KiB); budget used {} KiB; the app wrote {} KiB",
        at_rest / 1024,
        peak / 1024,
        grew / 1024,
        used as usize / 1024,
        flooded / 1024
    );
    assert!(
        grew < BUDGET + SLACK,
        "RSS grew by {} KiB under {READERS} slow readers through {through:?} (at rest {} KiB); the budget is {} KiB, the allowance besides it {} KiB",
        grew / 1024,
        at_rest / 1024,
        BUDGET / 1024,
        SLACK / 1024
    );

    drop(readers);
    front.until_gone().await;
    front.legit_exchange().await;
}

#[tokio::test]
async fn slow_readers_through_reverse_tcp_stay_within_the_memory_budget() {
    slow_readers_stay_within_the_memory_budget(Through::ReverseTcp).await;
}

#[tokio::test]
async fn slow_readers_through_reverse_http_stay_within_the_memory_budget() {
    slow_readers_stay_within_the_memory_budget(Through::ReverseHttp).await;
}

/// The forward listener (absolute-form requests): the same flood, through the forward proxy's own
/// connections to the upstream.
#[tokio::test]
async fn slow_readers_through_forward_http_stay_within_the_memory_budget() {
    slow_readers_stay_within_the_memory_budget(Through::ForwardHttp).await;
}

/// The shedding itself, through reverse `http`: with a budget that the readers' waiting bytes spend (1 MiB
/// for 40 readers holding up to 48 KiB each in it), readers that take nothing for two seconds are cut off,
/// and a legitimate client is still answered.
#[tokio::test]
async fn stalled_readers_through_reverse_http_are_shed_once_they_spend_the_budget() {
    const FEW: usize = 40;
    room_for_descriptors(FEW);
    let (app, _) = start_large_response_app().await;
    let dir = TempDir::new("stalled-readers");
    let budget = (1024 * 1024).to_string();
    let front = Front::reverse("http", app, &["--memory-budget", &budget], &dir.0).await;
    let mut readers = Vec::with_capacity(FEW);
    for _ in 0..FEW {
        let mut reader = within("a reader's connection", TcpStream::connect(front.addr))
            .await
            .unwrap();
        reader.write_all(&front.get("/large")).await.unwrap();
        readers.push(reader);
    }
    front.until_shed("queued_for_peer").await;
    drop(readers);
    front.legit_exchange().await;
}
