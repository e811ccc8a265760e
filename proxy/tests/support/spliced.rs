//! Checking that a relay moves bulk data with splice(2): the pipes it takes show in the sidecar's
//! `/proc/PID/fd` while data flows, and are gone once the stream is idle again.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::capture::{parse_records, Sidecar};
use sidecar_proxy::capture::record::{Detail, StreamSummary};

const STEP: Duration = Duration::from_secs(30);

/// A binary protocol's greeting the capture tap does not follow: the stream is recorded as `opaque`.
pub const HELLO: &[u8] = b"\x00\x01binary-protocol-hello\r\n";

/// The pipes a process holds open now (its stdout and stderr are pipes too, when captured).
pub fn open_pipes(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the sidecar's /proc entry")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {STEP:?}"))
}

async fn until_pipes(pid: u32, what: &str, done: impl Fn(usize) -> bool) -> usize {
    within(what, async {
        loop {
            let pipes = open_pipes(pid);
            if done(pipes) {
                return pipes;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A payload that is not all one byte, so a misplaced chunk shows.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Through `stream`, a connection the sidecar `pid` relays to an echo server: [`HELLO`], then 1 MiB not
/// read back at once (the echoed bytes wait in the sidecar, in its pipes: checked), then a small message
/// (after which the pipes must go back: checked), then a half-close answered by EOF. Every byte must come
/// back in order. Returns the bytes sent (each way).
pub async fn bulk_data_goes_through_pipes(pid: u32, mut stream: TcpStream) -> u64 {
    let resting = open_pipes(pid);
    stream.write_all(HELLO).await.unwrap();
    let mut echoed = vec![0; HELLO.len()];
    within("the hello echoed", stream.read_exact(&mut echoed))
        .await
        .unwrap();
    assert_eq!(echoed, HELLO);

    let bulk = payload(1024 * 1024);
    stream.write_all(&bulk).await.unwrap();
    let during = until_pipes(pid, "pipes while bulk data flows", |n| n >= resting + 2).await;
    assert!(
        during >= resting + 2,
        "{during} pipe ends, {resting} at rest"
    );
    let mut back = vec![0; bulk.len()];
    within("the bulk data echoed", stream.read_exact(&mut back))
        .await
        .unwrap();
    assert!(back == bulk, "every byte back, in order");

    stream.write_all(b"ping").await.unwrap();
    let mut ping = [0; 4];
    within("a small message echoed", stream.read_exact(&mut ping))
        .await
        .unwrap();
    assert_eq!(&ping, b"ping");
    until_pipes(pid, "the pipes given back once idle", |n| n == resting).await;

    stream.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within("EOF after the half-close", stream.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    (HELLO.len() + bulk.len() + 4) as u64
}

/// Stops the sidecar and returns the one stream record of `capture_file` that carried bytes (the start-up
/// wait's probe connection is a record too, without any).
pub async fn the_stream_with_bytes(
    mut sidecar: Sidecar,
    capture_file: &std::path::Path,
) -> StreamSummary {
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let records = parse_records(&std::fs::read_to_string(capture_file).unwrap());
    let ours: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.detail {
            Detail::Stream(summary) if summary.bytes_client_to_target > 0 => Some(summary),
            _ => None,
        })
        .collect();
    let [summary] = ours[..] else {
        panic!("one stream record with bytes: {records:#?}");
    };
    summary.clone()
}
