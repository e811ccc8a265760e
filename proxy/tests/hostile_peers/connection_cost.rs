//! The figures behind `ListenerKind::fixed_cost`: what one idle connection adds to the sidecar's RSS, per
//! listener, on the real binary with capture on and no budget. Run by hand when the per-connection state
//! changes (`cargo test --workspace --locked --test hostile_peers -- --ignored connection_cost
//! --nocapture`); it prints, and asserts nothing about the figures.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::floods::Front;
use crate::floods::{room_for_descriptors, rss};
use crate::http_heads::start_ok_app;
use crate::support::admin::scrape;
use crate::support::capture::TempDir;
use crate::within;

const CONNECTIONS: usize = 500;

/// Opens one idle connection: nothing sent, or a SOCKS5 greeting whose answer is read.
async fn idle_connection(sidecar: SocketAddr, socks: bool) -> TcpStream {
    let mut stream = TcpStream::connect(sidecar).await.unwrap();
    if socks {
        stream.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await.unwrap();
    }
    stream
}

async fn measure(name: &str, front: Front, socks: bool) {
    // Settled: the start's own connection and the first request are behind it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = front.pid();
    let before = rss(pid);
    let mut held = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        held.push(idle_connection(front.addr, socks).await);
    }
    within("all accepted", async {
        loop {
            let open = scrape(front.sidecar.admin).await.count(
                "sidecar_connections_open",
                &[("direction", front.direction), ("protocol", front.protocol)],
            );
            if open as usize >= CONNECTIONS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss(pid);
    eprintln!(
        "{name}: {CONNECTIONS} idle connections took RSS from {} to {} KiB: {} bytes each",
        before / 1024,
        after / 1024,
        after.saturating_sub(before) / CONNECTIONS
    );
    drop(held);
}

#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn connection_cost() {
    room_for_descriptors(CONNECTIONS * 2);
    let app = start_ok_app().await;
    let args = ["--capture", "capture.jsonl", "--handshake-timeout", "60s"];
    for (name, protocol, socks) in [
        ("reverse tcp", "tcp", false),
        ("reverse http", "http", false),
        ("reverse socks, mid-handshake", "socks", true),
    ] {
        let dir = TempDir::new("connection-cost");
        measure(
            name,
            Front::reverse(protocol, app, &args, &dir.0).await,
            socks,
        )
        .await;
    }
    let dir = TempDir::new("connection-cost");
    measure(
        "forward http",
        Front::forward_http(app, &args, &dir.0).await,
        false,
    )
    .await;
    let dir = TempDir::new("connection-cost");
    let sidecar = crate::support::capture::Sidecar::forward("socks", &args, &dir.0).await;
    let front = Front {
        addr: sidecar.outbound,
        sidecar,
        target_prefix: String::new(),
        direction: "outbound",
        protocol: "socks",
    };
    measure("forward socks, mid-handshake", front, true).await;
}
