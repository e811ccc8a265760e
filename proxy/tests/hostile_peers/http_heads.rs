//! Unfinished request heads on the `http` listeners, reverse and forward, where hyper parses them, on the real binary with
//! its RSS read from /proc: a flood of connections each sending 60,000 bytes of a head (under
//! `--max-request-head`, so no 431 ends them) and never its end. Past each connection's first 8 KiB, head
//! bytes are drawn from the memory budget, and once it is spent the sidecar stops reading from the flood's
//! connections, and sheds those that wait on it for two seconds (a 503, then the close); a legitimate
//! client with an ordinary head is answered in the middle of it, and the budget is all given back once the
//! flood leaves.
//!
//! The scale is ten times what fits the budget: before the fix, each such connection held about 83 KB
//! (hyper's read buffer, grown past the head it gathers), 116 MB for these 1,400.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::floods::Front;
use crate::floods::{room_for_descriptors, rss};
use crate::support::admin::scrape;
use crate::support::capture::TempDir;

/// Connections in the flood: ten times the heads that fit the budget.
const FLOOD: usize = 1_400;
const PADDING: usize = 60_000;
const BUDGET: usize = 8 * 1024 * 1024;
/// What the process may hold besides the budget: per connection, what is not drawn from the budget (the
/// task, the socket's state, hyper's connection and its first 8 KiB of head; measured at 20 to 28 KiB), and
/// the allocator's slack.
const SLACK_PER_CONNECTION: usize = 32 * 1024;
const SLACK: usize = 6 * 1024 * 1024 + FLOOD * SLACK_PER_CONNECTION;

/// An app answering every request `ok`, over keep-alive HTTP/1.1.
pub async fn start_ok_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// The listener the flood goes through.
#[derive(Clone, Copy, Debug)]
enum Through {
    ReverseHttp,
    ForwardHttp,
}

async fn unfinished_heads_stay_within_the_memory_budget(through: Through) {
    room_for_descriptors(FLOOD);
    let app = start_ok_app().await;
    let dir = TempDir::new("http-heads");
    let budget = BUDGET.to_string();
    let args = [
        "--capture",
        "capture.jsonl",
        "--memory-budget",
        &budget,
        // Long enough that no head is closed for lateness while the test measures.
        "--handshake-timeout",
        "60s",
    ];
    let front = match through {
        Through::ReverseHttp => Front::reverse("http", app, &args, &dir.0).await,
        Through::ForwardHttp => Front::forward_http(app, &args, &dir.0).await,
    };
    let pid = front.pid();
    front.legit_exchange().await;
    let at_rest = rss(pid);

    let head_start = format!(
        "GET {} HTTP/1.1\r\nhost: app\r\nx-padding: ",
        front.target("/unfinished")
    );
    let mut peak = at_rest;
    let addr = front.addr;
    // All at once, each on its own: a connection the sidecar has stopped reading from blocks its writer,
    // one it shed fails it, and the callers past the listen backlog retry their handshakes side by side
    // (one after the other, their retries would add up to many seconds).
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let head_start = head_start.clone();
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await?;
                stream.write_all(head_start.as_bytes()).await?;
                stream.write_all(&vec![b'a'; PADDING]).await?;
                std::future::pending::<std::io::Result<()>>().await
            })
        })
        .collect();
    // The sidecar has read what it will of the flood once it reads no more.
    front
        .until_still(async || front.read_from_clients().await, &mut peak)
        .await;

    front.legit_exchange().await;
    peak = peak.max(rss(pid));
    // The heads paused on the spent budget are shed, each answered 503.
    front.until_shed("request_head").await;
    let metrics = scrape(front.sidecar.admin).await;
    let used = metrics
        .value("sidecar_memory_budget_used_bytes", &[])
        .unwrap();
    let grew = peak.saturating_sub(at_rest);
    eprintln!(
        "unfinished heads through {through:?}: RSS at rest {} KiB, peak {} KiB (+{} KiB); budget used {} KiB",
        at_rest / 1024,
        peak / 1024,
        grew / 1024,
        used as usize / 1024
    );
    assert!(
        used > (BUDGET / 2) as f64,
        "the heads are held in the budget: {used}"
    );
    assert!(
        grew < BUDGET + SLACK,
        "RSS grew by {} KiB under {FLOOD} unfinished heads through {through:?} (at rest {} KiB); the budget is {} KiB, the allowance besides it {} KiB",
        grew / 1024,
        at_rest / 1024,
        BUDGET / 1024,
        SLACK / 1024
    );

    for writer in &flood {
        writer.abort();
    }
    front.until_gone().await;
    front.legit_exchange().await;
}

#[tokio::test]
async fn unfinished_heads_on_the_reverse_http_listener_stay_within_the_memory_budget() {
    unfinished_heads_stay_within_the_memory_budget(Through::ReverseHttp).await;
}

/// The forward listener (absolute-form requests) reads heads the same way.
#[tokio::test]
async fn unfinished_heads_on_the_forward_http_listener_stay_within_the_memory_budget() {
    unfinished_heads_stay_within_the_memory_budget(Through::ForwardHttp).await;
}
