//! Readiness: a contender is measured only after its port answers and one real request through it
//! returns the origin's exact body. Anything else is a hard error carrying the server's log tail, so a
//! broken contender can never show up in the report as a slow one. The soak's sidecars wait on
//! [`until_ready`] (their /readyz) the same way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::admin_port;
use crate::clients::tls_handshakes::{self, HttpsTarget};
use crate::http_client::Response;
use crate::process::ServerProcess;
use crate::route::{self, Route};

/// How long a server has to start listening (mitmproxy, a Python program, is the slowest).
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until something listens on 127.0.0.1:`port` (or the wildcard address), failing early if the
/// server exits. The kernel's socket table is read rather than connecting: a bare connection would
/// reach the origin through a relay, and iperf3's server counts such a connection as a failed test.
/// The real request of [`expect_body`] then proves the port is the server's and that it answers.
pub async fn until_listening(
    server: &mut ServerProcess,
    port: u16,
    timeout: Duration,
) -> anyhow::Result<()> {
    let what = format!("listen on 127.0.0.1:{port}");
    until(server, timeout, &what, || async { is_listening(port) }).await
}

/// Polls `done` until it holds, failing early if the server exits, and after `timeout` with the
/// server's log tail and `what` it did not do.
async fn until<F, Done>(
    server: &mut ServerProcess,
    timeout: Duration,
    what: &str,
    mut done: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Done,
    Done: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        server.ensure_running()?;
        if done().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(server
                .failed(format!("did not {what} within {timeout:?}"))
                .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until a sidecar-proxy's admin port answers 200 on /readyz (the soak's sidecars, whose
/// routes its load proves).
pub async fn until_ready(
    server: &mut ServerProcess,
    admin: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    let what = format!("answer 200 on http://{admin}/readyz");
    let ready = || async { matches!(admin_port::get_status(admin, "/readyz").await, Ok(200)) };
    until(server, timeout, &what, ready).await
}

fn is_listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| listening_ports(&text).contains(&port))
    })
}

/// Ports in state LISTEN (0A) on loopback or the wildcard address, from /proc/net/tcp{,6}, whose
/// addresses are hex `ADDRESS:PORT` with the address in the kernel's byte order.
pub fn listening_ports(table: &str) -> Vec<u16> {
    const LOOPBACK_OR_ANY: [&str; 4] = [
        "0100007F",
        "00000000",
        "00000000000000000000000001000000",
        "00000000000000000000000000000000",
    ];
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            let (address, port) = local.split_once(':')?;
            (state == "0A" && LOOPBACK_OR_ANY.contains(&address))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

/// Waits until the server's log contains `needle` (for servers that must not be poked by a bare
/// connection, such as iperf3's, whose control protocol would count it as a failed test).
pub async fn until_logged(
    server: &mut ServerProcess,
    log: &std::path::Path,
    needle: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let logged = || async { std::fs::read_to_string(log).is_ok_and(|text| text.contains(needle)) };
    until(server, timeout, &format!("log {needle:?}"), logged).await
}

/// One GET of `path` on the origin through `route` must return 200 and exactly `expected`.
pub async fn expect_body(
    server: &mut ServerProcess,
    route: Route,
    origin_port: u16,
    path: &str,
    expected: &[u8],
) -> anyhow::Result<()> {
    let answer = route::get(route, origin_port, path, false).await;
    let request = format!("GET {path} through {route:?}");
    let wrong = |(response, _closed_on_drop): (Response, _)| not_the_body(&response, expected);
    verdict(server, request, answer.map(wrong))
}

/// One GET over TLS through `target`'s route (with its trust) must return 200 and exactly its body.
pub async fn expect_https_body(
    server: &mut ServerProcess,
    target: &HttpsTarget,
) -> anyhow::Result<()> {
    let request = format!("GET {} over TLS through {:?}", target.path, target.route);
    let answer = tls_handshakes::fetch(target).await;
    let wrong = |response: Response| not_the_body(&response, target.expected_body);
    verdict(server, request, answer.map(wrong))
}

/// What is wrong with `response` if it is not 200 and exactly `expected`.
fn not_the_body(response: &Response, expected: &[u8]) -> Option<String> {
    (response.status != 200 || response.body != expected).then(|| {
        format!(
            "{} and a {}-byte body {:?}, not 200 and {:?}",
            response.status,
            response.body.len(),
            String::from_utf8_lossy(&response.body[..response.body.len().min(200)]),
            String::from_utf8_lossy(expected),
        )
    })
}

/// One GET of `path` over HTTP/2 cleartext (prior knowledge) on 127.0.0.1:`port`, the origin's h2c
/// server or a relay in front of it, must be answered over HTTP/2 with 200 and exactly `expected`.
pub async fn expect_h2c_body(
    server: &mut ServerProcess,
    tools: &crate::install::Tools,
    port: u16,
    path: &str,
    expected: &[u8],
) -> anyhow::Result<()> {
    let wrong = |(version, status, body): (String, u16, Vec<u8>)| {
        (version != "2" || status != 200 || body != expected).then(|| {
            format!(
                "HTTP/{version} {status} and a {}-byte body, not HTTP/2 200 and {:?}",
                body.len(),
                String::from_utf8_lossy(expected),
            )
        })
    };
    let answer = crate::clients::h2load::curl_get(tools, port, path).await;
    let request = format!("GET {path} over h2c on port {port}");
    verdict(server, request, answer.map(wrong))
}

/// A hard error carrying the server's log unless `request` was answered as expected: `answer` is what
/// was wrong with the answer, if anything, or why there was none.
fn verdict(
    server: &ServerProcess,
    request: String,
    answer: anyhow::Result<Option<String>>,
) -> anyhow::Result<()> {
    let problem = match answer {
        Ok(None) => return Ok(()),
        Ok(Some(wrong)) => format!("answered {request} with {wrong}"),
        Err(error) => format!("failed {request}: {error:#}"),
    };
    Err(server.failed(problem).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:471E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2732003 1 0 100 0 0 10 0
   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2718568 1 0 100 0 0 10 0
   2: 0100007F:0050 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2718569 1 0 100 0 0 10 0
   3: 0A00020F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2718570 1 0 100 0 0 10 0
";

    #[test]
    fn only_listening_sockets_on_loopback_or_any_count() {
        // 0x471E = 18206 on 127.0.0.1, 0x1F90 = 8080 on 0.0.0.0; port 80 is an established
        // connection and port 22 listens on another address.
        assert_eq!(listening_ports(TCP), vec![18206, 8080]);
    }

    #[test]
    fn a_listener_of_our_own_is_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(is_listening(listener.local_addr().unwrap().port()));
    }

    /// A server whose admin port never answers 200 fails readiness after the timeout, named with the
    /// address it polled and its log; one that exits fails at once.
    #[tokio::test]
    async fn readiness_fails_with_the_address_polled_and_early_when_the_server_exits() {
        let dir = tempfile::tempdir().unwrap();
        // A bound, non-listening port: every poll is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = closed.local_addr().unwrap();
        drop(closed);
        let mut sleeper = std::process::Command::new("sleep");
        sleeper.arg("30");
        let mut server = ServerProcess::spawn("sleeper", sleeper, &dir.path().join("log")).unwrap();
        let error = until_ready(&mut server, admin, Duration::from_millis(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!(
                "did not answer 200 on http://{admin}/readyz within 300ms"
            )),
            "{error}"
        );

        let mut exits = ServerProcess::spawn(
            "exits",
            std::process::Command::new("true"),
            &dir.path().join("log2"),
        )
        .unwrap();
        let started = Instant::now();
        let error = until_ready(&mut exits, admin, Duration::from_secs(20)).await;
        assert!(error.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
