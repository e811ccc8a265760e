//! File-descriptor exhaustion, on the real binary run under `prlimit` (util-linux) with a low
//! RLIMIT_NOFILE: idle client connections use up the descriptors, accepts start failing, and the sidecar
//! pauses between retries instead of spinning (its CPU time stays low) and warns a few times rather than
//! thousands; once connections close it accepts and serves again. Also: at startup the binary raises its
//! soft limit to the hard one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::capture::{RawHttp, Sidecar, TempDir};
use crate::support::start_app;
use crate::{within, PATIENCE};

/// The descriptor limit the sidecar runs with: about a dozen are in use once it listens.
const NOFILE: u32 = 64;
/// More idle connections than the limit leaves room for; the rest wait in the listen backlog.
const FLOOD: usize = 150;

/// The process's CPU time so far (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = clock_ticks_per_second();
    Duration::from_millis(ticks * 1000 / per_second)
}

fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(100)
}

/// The soft and hard "Max open files" of a process.
fn open_files_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line["Max open files".len()..].split_whitespace();
    (
        numbers.next().unwrap().to_owned(),
        numbers.next().unwrap().to_owned(),
    )
}

fn prlimit_available() -> bool {
    Path::new("/usr/bin/prlimit").exists()
        || Command::new("prlimit").arg("--version").output().is_ok()
}

fn accept_warnings(sidecar: &Sidecar) -> usize {
    sidecar.stderr().matches("accept failed").count()
}

#[tokio::test]
async fn out_of_file_descriptors_the_accept_loop_pauses_and_recovers() {
    assert!(
        prlimit_available(),
        "this test runs the sidecar under prlimit (util-linux)"
    );
    let app = start_app().await;
    let dir = TempDir::new("fd-exhaustion");
    let nofile = format!("--nofile={NOFILE}:{NOFILE}");
    let sidecar = Sidecar::reverse_under(
        &["prlimit", &nofile, "--"],
        "http",
        app.addr,
        // Idle connections must stay open: a long handshake timeout.
        &["--capture", "off", "--handshake-timeout", "120s"],
        &dir.0,
    )
    .await;
    let pid = sidecar.pid();
    assert_eq!(
        open_files_limits(pid),
        (NOFILE.to_string(), NOFILE.to_string())
    );

    // Idle connections until the sidecar runs out of descriptors and says so.
    let mut idle = Vec::new();
    for _ in 0..FLOOD {
        idle.push(TcpStream::connect(sidecar.inbound).await.unwrap());
    }
    within("the first accept warning", async {
        while accept_warnings(&sidecar) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Exhausted for two seconds: a loop retrying at once would burn a core the whole time.
    let cpu_before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu_spent = cpu_time(pid) - cpu_before;
    assert!(
        cpu_spent < Duration::from_millis(500),
        "{cpu_spent:?} of CPU in 2s while out of file descriptors: the accept loop spins"
    );
    let warnings = accept_warnings(&sidecar);
    assert!(
        warnings <= 2,
        "{warnings} accept warnings in about 2s: not rate-limited\n{}",
        sidecar.stderr()
    );

    // Descriptors free up: the sidecar accepts and serves again.
    for mut stream in idle.drain(..) {
        let _ = stream.shutdown().await;
    }
    let answer = within("a request once descriptors are free", async {
        loop {
            let served = async {
                let stream = TcpStream::connect(sidecar.inbound).await.ok()?;
                let mut http = RawHttp::new(stream);
                let request = b"GET /again HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
                tokio::time::timeout(Duration::from_secs(2), http.exchange(request))
                    .await
                    .ok()?
                    .ok()
            };
            if let Some(answer) = served.await {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(PATIENCE > Duration::from_secs(2));
}

#[tokio::test]
async fn the_binary_raises_its_soft_fd_limit_to_the_hard_limit() {
    assert!(
        prlimit_available(),
        "this test runs the sidecar under prlimit (util-linux)"
    );
    let app = start_app().await;
    let dir = TempDir::new("fd-raise");
    let sidecar = Sidecar::reverse_under(
        &["prlimit", "--nofile=256:4096", "--"],
        "tcp",
        app.addr,
        &["--capture", "off"],
        &dir.0,
    )
    .await;
    assert_eq!(
        open_files_limits(sidecar.pid()),
        ("4096".to_owned(), "4096".to_owned())
    );
    // The log line is written before the sidecar listens, but stderr is collected by a task of this test
    // that may not have read it yet.
    let logged = async {
        while !sidecar
            .stderr()
            .contains("raised the file-descriptor limit")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    assert!(
        tokio::time::timeout(PATIENCE, logged).await.is_ok(),
        "{}",
        sidecar.stderr()
    );
}
