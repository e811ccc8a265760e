//! Connections that hold nothing but themselves, on the real binary with its RSS read from /proc: a flood of
//! connections that never send a byte (the `http` listener) or stop in the middle of their SOCKS5 handshake
//! (greeting sent, method chosen, no request), ten times as many as fit a small `--memory-budget`.
//!
//! Each connection reserves its fixed cost in the budget at accept. Once the budget has no room for another,
//! the accept loop waits (the callers wait in the kernel's listen backlog), and after two seconds of that
//! the connections idle the longest are shed (a `503` on the `http` listener, a close mid-SOCKS), so the
//! flood is cycled through within the budget and a legitimate client behind it is served. Without the
//! reservation, the same flood takes the sidecar's RSS up by the connections' whole fixed cost, about
//! 10 MB for these 640 (`connection_cost` measures it per listener).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::floods::Front;
use crate::floods::{room_for_descriptors, rss};
use crate::http_heads::start_ok_app;
use crate::support::capture::TempDir;
use crate::within;

const BUDGET: usize = 1536 * 1024;
/// Ten times the 96 connections that fit [`BUDGET`] at 16 KiB each (the fixed cost reserved for a
/// connection of either listener, `ListenerKind::fixed_cost`), and fewer than the listen backlog holds
/// (1,024), so no caller's handshake is dropped by the kernel.
const FLOOD: usize = 960;
/// What the process may hold besides the budget: the allocator's slack (pages of shed connections not yet
/// reused), the tasks answering the shed, and the connections accepted past a spent budget (at most one
/// per look).
const SLACK: usize = 5 * 1024 * 1024 / 2;

/// What each client of the flood does before going quiet.
#[derive(Clone, Copy, Debug)]
enum Idle {
    /// Connects to the `http` listener and sends nothing.
    Http,
    /// Sends a SOCKS5 greeting, reads the method chosen, and never sends its request.
    Socks5MidHandshake,
}

impl Idle {
    fn protocol(self) -> &'static str {
        match self {
            Idle::Http => "http",
            Idle::Socks5MidHandshake => "socks",
        }
    }

    /// Opens one connection of the flood and goes quiet; returns what the sidecar sent before it closed
    /// the connection.
    async fn client(self, sidecar: SocketAddr, connected: Arc<AtomicUsize>) -> Vec<u8> {
        let Ok(mut stream) = TcpStream::connect(sidecar).await else {
            return Vec::new();
        };
        connected.fetch_add(1, Ordering::Relaxed);
        let mut heard = Vec::new();
        if let Idle::Socks5MidHandshake = self {
            if stream.write_all(&[0x05, 0x01, 0x00]).await.is_err() {
                return heard;
            }
        }
        // Closed (or reset) by the sidecar: the read ends either way.
        let _ = stream.read_to_end(&mut heard).await;
        heard
    }

    /// A legitimate client's exchange with the app, in this listener's protocol.
    async fn legit_exchange(self, front: &Front, app: SocketAddr) {
        match self {
            Idle::Http => front.legit_exchange().await,
            Idle::Socks5MidHandshake => socks5_legit_exchange(front.addr, app).await,
        }
    }
}

/// A SOCKS5 CONNECT to the app (the reverse proxy delivers it there whatever it names), then `GET /legit`.
async fn socks5_legit_exchange(sidecar: SocketAddr, app: SocketAddr) {
    within("the legitimate SOCKS5 client", async {
        let mut stream = TcpStream::connect(sidecar).await.unwrap();
        stream.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await.unwrap();
        assert_eq!(choice, [0x05, 0x00]);
        let SocketAddr::V4(app) = app else {
            unreachable!("the app listens on 127.0.0.1")
        };
        let mut request = vec![0x05, 0x01, 0x00, 0x01];
        request.extend_from_slice(&app.ip().octets());
        request.extend_from_slice(&app.port().to_be_bytes());
        stream.write_all(&request).await.unwrap();
        let mut reply = [0u8; 10];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply[..2], [0x05, 0x00], "the CONNECT succeeded");
        stream
            .write_all(b"GET /legit HTTP/1.1\r\nhost: app\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.ends_with(b"\r\n\r\nok") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200 OK"));
    })
    .await;
}

/// The highest RSS of `pid` until `stop`, read every 20 ms on a thread of its own (the test's runtime is
/// busy with the flood).
fn sample_peak(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.max(rss(pid))
    })
}

#[rstest]
#[case::http_idle(Idle::Http)]
#[case::socks5_mid_handshake(Idle::Socks5MidHandshake)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_bounded_by_the_memory_budget(#[case] idle: Idle) {
    room_for_descriptors(FLOOD);
    let app = start_ok_app().await;
    let dir = TempDir::new("idle-floods");
    let budget = BUDGET.to_string();
    let front = Front::reverse(
        idle.protocol(),
        app,
        &[
            "--capture",
            "capture.jsonl",
            "--memory-budget",
            &budget,
            // Long enough that no connection is closed for lateness: only the budget ends them.
            "--handshake-timeout",
            "60s",
        ],
        &dir.0,
    )
    .await;
    let pid = front.pid();
    idle.legit_exchange(&front, app).await;
    let at_rest = rss(pid);

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak(pid, stop.clone());
    let connected = Arc::new(AtomicUsize::new(0));
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| tokio::spawn(idle.client(front.addr, connected.clone())))
        .collect();
    within("the flood connected", async {
        while connected.load(Ordering::Relaxed) < FLOOD {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Behind the whole flood in the listen backlog, served once the flood is cycled through.
    idle.legit_exchange(&front, app).await;
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let grew = peak.saturating_sub(at_rest);
    eprintln!(
        "{FLOOD} idle connections ({idle:?}) with a {} KiB budget: RSS at rest {} KiB, peak {} KiB (+{} KiB)",
        BUDGET / 1024,
        at_rest / 1024,
        peak / 1024,
        grew / 1024
    );
    assert!(
        grew < BUDGET + SLACK,
        "RSS grew by {} KiB under {FLOOD} idle connections ({idle:?}; at rest {} KiB); the budget is {} KiB, the allowance besides it {} KiB",
        grew / 1024,
        at_rest / 1024,
        BUDGET / 1024,
        SLACK / 1024
    );
    let metrics = front.until_shed("connection").await;
    assert!(
        metrics.count(
            "sidecar_memory_budget_denied_total",
            &[("purpose", "connection")]
        ) > 0.0,
        "the accept loop paused for lack of room"
    );

    for client in &flood {
        client.abort();
    }
    let shed: Vec<Vec<u8>> = {
        let mut shed = Vec::new();
        for client in flood {
            if let Ok(heard) = client.await {
                shed.push(heard);
            }
        }
        shed
    };
    // The protocol's own close: a 503 for an HTTP client that had sent nothing, the close after the
    // method choice for SOCKS.
    let told = match idle {
        Idle::Http => b"HTTP/1.1 503 Service Unavailable\r\n".as_slice(),
        Idle::Socks5MidHandshake => [0x05, 0x00].as_slice(),
    };
    assert!(
        !shed.is_empty() && shed.iter().all(|heard| heard.starts_with(told)),
        "{} shed clients; each was told {:?}",
        shed.len(),
        String::from_utf8_lossy(told)
    );
    front.until_gone().await;
    let after = rss(pid);
    assert!(
        after < at_rest + 32 * 1024 * 1024,
        "RSS {} KiB after the flood closed, {} KiB at rest",
        after / 1024,
        at_rest / 1024
    );
    idle.legit_exchange(&front, app).await;
}
