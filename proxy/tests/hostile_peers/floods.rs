//! What the memory-budget floods share: the sidecar binary in front of an app on one of its listeners, the
//! legitimate client served in the middle of a flood, and waiting for a flood to settle and to leave.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::admin::{scrape, Exposition};
use crate::support::capture::Sidecar;
use crate::within;

/// The sidecar binary, and the listener of it a flood goes through.
pub struct Front {
    pub sidecar: Sidecar,
    /// The listener's address.
    pub addr: SocketAddr,
    /// What a request target starts with: `http://app` through the forward proxy, nothing through the
    /// reverse one.
    pub target_prefix: String,
    pub direction: &'static str,
    pub protocol: &'static str,
}

impl Front {
    /// `--proxy-type reverse --proxy-protocol <protocol>` in front of `app`.
    pub async fn reverse(
        protocol: &'static str,
        app: SocketAddr,
        args: &[&str],
        dir: &Path,
    ) -> Front {
        let sidecar = Sidecar::reverse(protocol, app, args, dir).await;
        Front {
            addr: sidecar.inbound,
            sidecar,
            target_prefix: String::new(),
            direction: "inbound",
            protocol,
        }
    }

    /// `--proxy-type forward --proxy-protocol http`, its clients asking for `app` in absolute form.
    pub async fn forward_http(app: SocketAddr, args: &[&str], dir: &Path) -> Front {
        let sidecar = Sidecar::forward("http", args, dir).await;
        Front {
            addr: sidecar.outbound,
            sidecar,
            target_prefix: format!("http://{app}"),
            direction: "outbound",
            protocol: "http",
        }
    }

    /// The request line's target for `path` on the app.
    pub fn target(&self, path: &str) -> String {
        format!("{}{path}", self.target_prefix)
    }

    /// A request head for `path`, opening a request for it through this listener.
    pub fn get(&self, path: &str) -> Vec<u8> {
        format!("GET {} HTTP/1.1\r\nhost: app\r\n\r\n", self.target(path)).into_bytes()
    }

    pub fn pid(&self) -> u32 {
        self.sidecar.pid()
    }

    /// One request for `/legit` on a new connection, answered `ok`: a legitimate client, served in the
    /// middle of a flood.
    pub async fn legit_exchange(&self) {
        let mut legit = within(
            "the legitimate client's connect",
            TcpStream::connect(self.addr),
        )
        .await
        .unwrap();
        legit.write_all(&self.get("/legit")).await.unwrap();
        // Read up to the whole answer: through reverse tcp the app's connection, and so the client's, stays
        // open after it.
        let mut answer = Vec::new();
        within("the legitimate answer", async {
            let mut buf = [0u8; 1024];
            while !answer.ends_with(b"\r\n\r\nok") {
                let n = legit.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
                answer.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 200 OK") && answer.ends_with("\r\n\r\nok"),
            "{answer:?}"
        );
    }

    /// Waits until `progress` (what an app got to send, what the sidecar read) has not moved for a second:
    /// the flood has filled every buffer on its way. Keeps `peak` the highest RSS seen meanwhile.
    pub async fn until_still(&self, mut progress: impl AsyncFnMut() -> u64, peak: &mut usize) {
        let pid = self.pid();
        let mut last = (u64::MAX, 0);
        within("the flood come to a standstill", async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                *peak = (*peak).max(rss(pid));
                let now = progress().await;
                last = if now == last.0 {
                    (now, last.1 + 1)
                } else {
                    (now, 0)
                };
                if last.1 == 4 {
                    return;
                }
            }
        })
        .await;
    }

    /// Bytes the sidecar has read from this listener's clients.
    pub async fn read_from_clients(&self) -> u64 {
        scrape(self.sidecar.admin).await.count(
            "sidecar_relayed_bytes_total",
            &[("direction", self.direction), ("flow", "client_to_target")],
        ) as u64
    }

    /// Waits until `purpose`'s shed count is above zero.
    pub async fn until_shed(&self, purpose: &str) -> Exposition {
        within(&format!("connections shed ({purpose})"), async {
            loop {
                let metrics = scrape(self.sidecar.admin).await;
                let shed =
                    metrics.count("sidecar_memory_budget_shed_total", &[("purpose", purpose)]);
                if shed > 0.0 {
                    return metrics;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
    }

    /// Waits until the flood's connections are all closed and the budget is all given back. (A stream's
    /// response runs in a task of its own, which may let its share go a moment after its connection.)
    pub async fn until_gone(&self) -> Exposition {
        within(
            "the flood's connections closed and the budget given back",
            async {
                loop {
                    let metrics = scrape(self.sidecar.admin).await;
                    let open = metrics.count(
                        "sidecar_connections_open",
                        &[("direction", self.direction), ("protocol", self.protocol)],
                    );
                    let used = metrics.value("sidecar_memory_budget_used_bytes", &[]);
                    if open == 0.0 && used == Some(0.0) {
                        return metrics;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        )
        .await
    }
}

/// The resident set of a process, in bytes.
pub fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

/// The test process holds both ends of a flood of `connections` (and the other floods' that run beside
/// it): raise its descriptor limit for them, to the hard limit.
pub fn room_for_descriptors(connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 4 * connections as u64 + 256,
        "a flood of {connections} connections needs more descriptors than the hard limit, {hard}"
    );
    let wanted = hard;
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).unwrap();
    }
}
