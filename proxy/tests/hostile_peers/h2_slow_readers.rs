//! Slow readers over HTTP/2, on the real binary with its RSS read from /proc: clients that open many streams
//! on one connection, each asking the app (an h2c server) for a large response, grant the sidecar huge
//! flow-control windows so nothing stops it sending, and then never read a byte from the socket.
//!
//! HTTP/1's slow readers (slow_readers.rs) hold one response each; one HTTP/2 connection holds a response
//! per stream, so the bound must come from the memory budget pacing every stream's body and from what the
//! sidecar's h2 connections may buffer, not from the number of connections. Once the budget is spent the
//! sidecar stops pulling from the app; once the readers leave, the budget comes back whole and a
//! legitimate HTTP/1 client is answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::floods::Front;
use crate::floods::{room_for_descriptors, rss};
use crate::support::capture::TempDir;
use crate::within;

/// Connections of the flood, and streams on each: 80 large responses in all, as in the HTTP/1 test.
const CONNECTIONS: usize = 8;
const STREAMS: usize = 10;
/// Each response: far more than the budget and every buffer on the way.
const RESPONSE: u64 = 64 * 1024 * 1024;
const BUDGET: usize = 8 * 1024 * 1024;
/// Besides the budget: the sidecar's one h2c connection to the app may hold its receive window (hyper's
/// client default, 5 MiB for the connection), each of the flood's streams a send buffer and a chunk on its
/// way (64 KiB each), the tasks, and the allocator's slack.
const SLACK: usize = 8 * 1024 * 1024 + CONNECTIONS * STREAMS * 256 * 1024;

/// An h2c app (HTTP/2 prior knowledge, as the sidecar speaks to the app for HTTP/2 callers; HTTP/1 too) answering
/// `/large` with [`RESPONSE`] bytes and anything else with `ok`; counts the large bytes it got to send.
async fn start_h2c_app() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            let large = request.uri().path() == "/large";
                            let chunks = if large { RESPONSE / (64 * 1024) } else { 0 };
                            let body = futures_util::stream::iter(0..chunks).map(move |_| {
                                counter.fetch_add(64 * 1024, Ordering::Relaxed);
                                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 64 * 1024])))
                            });
                            let body = if large {
                                http_body_util::Either::Left(StreamBody::new(body))
                            } else {
                                http_body_util::Either::Right(http_body_util::Full::new(
                                    Bytes::from_static(b"ok"),
                                ))
                            };
                            Ok::<_, Infallible>(hyper::Response::new(body))
                        }
                    },
                );
                // HTTP/1 too, for the legitimate client (an HTTP/1 caller reaches the app over HTTP/1).
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, sent)
}

/// An HTTP/2 frame: 9-byte header, then the payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut bytes = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// Everything a client that never reads sends: the preface, SETTINGS with the largest stream window, the
/// largest connection window, then `GET /large` on [`STREAMS`] streams.
fn flood_bytes() -> Vec<u8> {
    const MAX_WINDOW: u32 = 0x7fff_ffff;
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = vec![0x00, 0x04];
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    bytes.extend(frame(0x4, 0, 0, &settings));
    bytes.extend(frame(0x8, 0, 0, &(MAX_WINDOW - 65_535).to_be_bytes()));
    // HPACK: :method GET (static 2), :scheme http (static 6), :path and :authority as literals without
    // indexing on their static names (4 and 1).
    let mut block = vec![0x82, 0x86, 0x04, 6];
    block.extend_from_slice(b"/large");
    block.extend_from_slice(&[0x01, 3]);
    block.extend_from_slice(b"app");
    for stream in 0..STREAMS as u32 {
        // END_STREAM | END_HEADERS
        bytes.extend(frame(0x1, 0x5, 2 * stream + 1, &block));
    }
    bytes
}

#[tokio::test]
async fn h2_slow_readers_stay_within_the_memory_budget() {
    room_for_descriptors(CONNECTIONS * 4);
    let (app, sent) = start_h2c_app().await;
    let dir = TempDir::new("h2-slow-readers");
    let budget = BUDGET.to_string();
    let front = Front::reverse(
        "http",
        app,
        &["--capture", "capture.jsonl", "--memory-budget", &budget],
        &dir.0,
    )
    .await;
    let pid = front.pid();
    let at_rest = rss(pid);

    let flood = flood_bytes();
    let mut readers = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut reader = within("a slow reader's connection", TcpStream::connect(front.addr))
            .await
            .unwrap();
        reader.write_all(&flood).await.unwrap();
        readers.push(reader);
    }
    // The flood has filled everything on its way once the app cannot send any more.
    let mut peak = at_rest;
    front
        .until_still(async || sent.load(Ordering::Relaxed), &mut peak)
        .await;
    let flooded = sent.load(Ordering::Relaxed);
    assert!(
        flooded < (CONNECTIONS * STREAMS) as u64 * RESPONSE,
        "the app sent every response whole: nothing held it back"
    );
    let grew = peak.saturating_sub(at_rest);
    eprintln!(
        "HTTP/2 slow readers through reverse http: RSS at rest {} KiB, peak {} KiB (+{} KiB); the app sent {} KiB",
        at_rest / 1024,
        peak / 1024,
        grew / 1024,
        flooded / 1024
    );
    assert!(
        grew < BUDGET + SLACK,
        "RSS grew by {} KiB under {CONNECTIONS}x{STREAMS} HTTP/2 slow readers (at rest {} KiB); the budget is {} KiB, the allowance besides it {} KiB",
        grew / 1024,
        at_rest / 1024,
        BUDGET / 1024,
        SLACK / 1024
    );

    drop(readers);
    // The connections close first; each stream's response runs in a task of its own, which lets its share
    // of the budget go a moment later. All of it must come back.
    front.until_gone().await;
    front.legit_exchange().await;
}
