//! A flood of connections that never finish their handshake, on the real binary: each is closed at the
//! handshake timeout as before, but the log gets a few lines saying how many, not one line per connection
//! (15,000 lines in one slowloris run before). The counts of those lines add up to every connection,
//! the last interval's told at shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::capture::{Sidecar, TempDir};
use crate::support::start_app;
use crate::PATIENCE;

/// Connections in the flood: far more than the lines the log may show for them.
const FLOOD: usize = 300;
/// How long the whole flood may take to be closed by the sidecar.
const FLOOD_PATIENCE: Duration = Duration::from_secs(60);
/// Lines about a flood that lasted `elapsed`: the first at once, one per 10 s interval it spanned, and the
/// rest at shutdown.
fn max_lines(elapsed: Duration) -> usize {
    2 + (elapsed.as_secs() / 10) as usize + 1
}

/// What each client sends before going quiet.
#[derive(Clone, Copy, Debug)]
enum Opening {
    /// Connects and says nothing (an idle connection).
    Nothing,
    /// Half a request head, never finished.
    Bytes(&'static [u8]),
}

/// Opens a connection, sends `opening`, and waits until the sidecar closes it.
///
/// TCP keepalive finds a connection the kernel completed but never handed to the sidecar: a burst that
/// overflows the listen queue on a loaded machine, answered with SYN cookies, leaves the client
/// "connected" to nothing, and an idle client would wait forever. The server's reset to the first probe
/// ends it; the sidecar never had it, so it is not among what the sidecar counts.
async fn stalled_client(sidecar: SocketAddr, opening: Opening) {
    let mut stream = TcpStream::connect(sidecar).await.unwrap();
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(2))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    socket2::SockRef::from(&stream)
        .set_tcp_keepalive(&keepalive)
        .unwrap();
    if let Opening::Bytes(bytes) = opening {
        stream.write_all(bytes).await.unwrap();
    }
    let mut rest = Vec::new();
    // Closed (or reset) by the sidecar: the read ends either way.
    let _ = stream.read_to_end(&mut rest).await;
}

/// The `count=N` of a log line.
fn count_of(line: &str) -> usize {
    let start = line
        .find(" count=")
        .unwrap_or_else(|| panic!("no count in {line:?}"))
        + " count=".len();
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[rstest]
#[case::http_idle("http", Opening::Nothing)]
#[case::http_unfinished_head("http", Opening::Bytes(b"GET / HTTP/1.1\r\nHost: app\r\nX-Slow: a"))]
#[case::socks_idle("socks", Opening::Nothing)]
#[case::socks_unfinished_greeting("socks", Opening::Bytes(&[0x05, 0x02, 0x00]))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_handshake_timeouts_logs_a_few_lines_whose_counts_add_up(
    #[case] protocol: &str,
    #[case] opening: Opening,
) {
    let app = start_app().await;
    let dir = TempDir::new("warning-flood");
    let mut sidecar = Sidecar::reverse(
        protocol,
        app.addr,
        &[
            "--capture",
            "off",
            "--handshake-timeout",
            "500ms",
            "--shutdown-grace",
            "2s",
        ],
        &dir.0,
    )
    .await;

    let labels = [("direction", "inbound"), ("protocol", protocol)];
    // The start's readiness check was one connection already.
    let accepted_before = crate::support::admin::scrape(sidecar.admin)
        .await
        .count("sidecar_connections_accepted_total", &labels) as usize;
    let started = std::time::Instant::now();
    let mut clients: Vec<_> = (0..FLOOD)
        .map(|_| tokio::spawn(stalled_client(sidecar.inbound, opening)))
        .collect();
    // Liveness only: a generous bound, since the whole suite may be running beside it on two cores.
    let waited = tokio::time::timeout(FLOOD_PATIENCE, async {
        for client in &mut *clients {
            client.await.unwrap();
        }
    })
    .await;
    if waited.is_err() {
        // Which side holds them: the sidecar's own count of open connections, and its log.
        let still_open = clients
            .iter()
            .filter(|client| !client.is_finished())
            .count();
        let metrics = crate::support::admin::scrape(sidecar.admin).await;
        let open = metrics.count("sidecar_connections_open", &labels);
        let accepted = metrics.count("sidecar_connections_accepted_total", &labels);
        panic!(
            "{still_open} of {FLOOD} stalled connections still open after {FLOOD_PATIENCE:?}; the sidecar accepted {accepted} and counts {open} open; its log:\n{}",
            sidecar.stderr()
        );
    }
    let accepted = crate::support::admin::scrape(sidecar.admin)
        .await
        .count("sidecar_connections_accepted_total", &labels) as usize
        - accepted_before;
    // Nearly all of them: what the kernel dropped from an overflowing listen queue never reached the
    // sidecar (see `stalled_client`).
    assert!(
        accepted >= FLOOD * 9 / 10,
        "the sidecar accepted only {accepted} of {FLOOD}"
    );

    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let allowed = max_lines(started.elapsed());
    let stderr = sidecar.stderr();
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains(" WARN ")).collect();
    let timeouts: Vec<&str> = warnings
        .iter()
        .copied()
        .filter(|line| line.contains("within the handshake timeout"))
        .collect();
    assert!(
        !timeouts.is_empty() && warnings.len() <= allowed,
        "{} warning lines for {FLOOD} handshake timeouts (at most {allowed} allowed):\n{stderr}",
        warnings.len()
    );
    let counted: usize = timeouts.iter().map(|line| count_of(line)).sum();
    assert_eq!(
        counted, accepted,
        "the counts of the lines add up to every connection the sidecar accepted (all timed out):\n{stderr}"
    );
}

/// After a burst the count is told once its interval is over, without waiting for another event or the
/// shutdown: a burst of timeouts while the sidecar keeps running shows up in the log within about 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_a_burst_is_reported_while_the_sidecar_runs() {
    let app = start_app().await;
    let dir = TempDir::new("warning-burst");
    let sidecar = Sidecar::reverse(
        "http",
        app.addr,
        &["--capture", "off", "--handshake-timeout", "300ms"],
        &dir.0,
    )
    .await;
    let clients: Vec<_> = (0..20)
        .map(|_| tokio::spawn(stalled_client(sidecar.inbound, Opening::Nothing)))
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    let told = |stderr: &str| -> usize {
        stderr
            .lines()
            .filter(|line| line.contains(" WARN ") && line.contains("handshake timeout"))
            .map(count_of)
            .sum()
    };
    // The interval is 10 s; PATIENCE on top of it for a loaded machine.
    tokio::time::timeout(Duration::from_secs(10) + PATIENCE, async {
        while told(&sidecar.stderr()) < 20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "20 timeouts, {} told while running:\n{}",
            told(&sidecar.stderr()),
            sidecar.stderr()
        )
    });
}

/// A burst of connections past `--max-connections`: each is refused and counted, and by shutdown the lines
/// saying the limit was reached add up to exactly the refusals, the last interval's included (before, its
/// own throttle logged the first refusal and never the rest of a burst shorter than 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_connection_limit_is_logged_with_its_exact_count_by_shutdown() {
    const BURST: usize = 30;
    let app = start_app().await;
    let dir = TempDir::new("limit-burst");
    let mut sidecar = Sidecar::reverse(
        "tcp",
        app.addr,
        &[
            "--capture",
            "off",
            "--max-connections",
            "2",
            "--shutdown-grace",
            "1s",
        ],
        &dir.0,
    )
    .await;
    let labels = [("direction", "inbound"), ("protocol", "tcp")];
    let open = |metrics: &crate::support::admin::Exposition| {
        metrics.count("sidecar_connections_open", &labels) as usize
    };
    // The start's readiness check was a connection too: the limit is filled once it is gone.
    crate::support::admin::scrape_until(sidecar.admin, |metrics| open(metrics) == 0).await;
    let held = [
        TcpStream::connect(sidecar.inbound).await.unwrap(),
        TcpStream::connect(sidecar.inbound).await.unwrap(),
    ];
    crate::support::admin::scrape_until(sidecar.admin, |metrics| open(metrics) == 2).await;
    for _ in 0..BURST {
        let mut refused = TcpStream::connect(sidecar.inbound).await.unwrap();
        let mut rest = Vec::new();
        // A raw TCP client is refused by the close.
        let _ = tokio::time::timeout(PATIENCE, refused.read_to_end(&mut rest)).await;
    }
    let metrics = crate::support::admin::scrape(sidecar.admin).await;
    assert_eq!(
        metrics.count("sidecar_connections_refused_total", &labels) as usize,
        BURST
    );
    drop(held);

    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let stderr = sidecar.stderr();
    let told: usize = stderr
        .lines()
        .filter(|line| line.contains(" WARN ") && line.contains("connection limit reached"))
        .map(count_of)
        .sum();
    assert_eq!(
        told, BURST,
        "the lines' counts add up to every refusal:\n{stderr}"
    );
}
