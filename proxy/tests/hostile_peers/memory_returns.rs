//! Memory goes back to the system after a flood, on the real binary with its RSS read from /proc: three
//! waves of connections each holding an unfinished 60,000-byte head on the reverse `http` listener, with a
//! budget large enough to hold them all (a pod's: half its 256 MiB limit), so each wave takes about
//! 100 MB. After each wave has closed, RSS comes back within 32 MiB of where it rested before the first,
//! and it does not ratchet up wave after wave.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::floods::{room_for_descriptors, rss};
use crate::support::admin::scrape;
use crate::support::capture::{Sidecar, TempDir};
use crate::within;

const WAVE: usize = 1_500;
const PADDING: usize = 60_000;
const BUDGET: usize = 128 * 1024 * 1024;
/// How far above its resting level RSS may stay once a flood has gone (issue #23).
const RETURNED: usize = 32 * 1024 * 1024;
/// How long the allocator may take to give freed memory back (its decay runs in the background).
const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn memory_goes_back_to_the_system_after_each_of_three_floods() {
    room_for_descriptors(WAVE);
    let app = crate::support::capture::free_port();
    let app = std::net::SocketAddr::from(([127, 0, 0, 1], app));
    let dir = TempDir::new("memory-returns");
    let budget = BUDGET.to_string();
    let sidecar = Sidecar::reverse(
        "http",
        app,
        &[
            "--capture",
            "capture.jsonl",
            "--memory-budget",
            &budget,
            "--handshake-timeout",
            "60s",
        ],
        &dir.0,
    )
    .await;
    let pid = sidecar.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at_rest = rss(pid);
    let head_start = b"GET /unfinished HTTP/1.1\r\nhost: app\r\nx-padding: ";
    let padding = vec![b'a'; PADDING];
    let mut report = format!("at rest {} KiB", at_rest / 1024);
    for wave in 1..=3 {
        let mut flood = Vec::with_capacity(WAVE);
        for _ in 0..WAVE {
            let mut stream = within("a flood connection", TcpStream::connect(sidecar.inbound))
                .await
                .unwrap();
            stream.write_all(head_start).await.unwrap();
            stream.write_all(&padding).await.unwrap();
            flood.push(stream);
        }
        let held = (WAVE * PADDING / 2) as f64;
        within("the wave's heads held", async {
            loop {
                let metrics = scrape(sidecar.admin).await;
                if metrics.value("sidecar_memory_budget_used_bytes", &[]) > Some(held) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let peak = rss(pid);
        drop(flood);
        within("the wave's connections closed", async {
            loop {
                let metrics = scrape(sidecar.admin).await;
                let open = metrics.count(
                    "sidecar_connections_open",
                    &[("direction", "inbound"), ("protocol", "http")],
                );
                if open == 0.0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let closed = Instant::now();
        let mut after = rss(pid);
        while after >= at_rest + RETURNED && closed.elapsed() < SETTLE {
            tokio::time::sleep(Duration::from_millis(250)).await;
            after = rss(pid);
        }
        report.push_str(&format!(
            "; wave {wave}: peak {} KiB, after {} KiB ({:.1} s after close)",
            peak / 1024,
            after / 1024,
            closed.elapsed().as_secs_f64()
        ));
        assert!(
            peak > at_rest + RETURNED,
            "the wave took memory to give back: {report}"
        );
        assert!(
            after < at_rest + RETURNED,
            "RSS stayed {} KiB above its resting level after wave {wave}: {report}",
            (after - at_rest) / 1024
        );
    }
    eprintln!("memory after floods: {report}");
}
