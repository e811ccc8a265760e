//! The NATS JetStream server the NATS sink rows publish to (issue #21): Debian's nats-server with
//! JetStream, on loopback, storing in the work directory, and the stream those rows' subjects go to,
//! created by the harness over NATS's own text protocol (a JetStream API request is a plain publish with a
//! reply subject), so the harness needs no NATS client library.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Context;
use crate::probe;
use crate::process::ServerProcess;
use crate::route;

/// The stream, and the subjects it takes: each sidecar publishes to `bench.<its slug and port>`.
pub const STREAM: &str = "BENCH";
pub const SUBJECT_PREFIX: &str = "bench";
/// The stream keeps at most this much, the oldest going first: a long run publishes millions of records,
/// and what is measured is the publishing, not how much the server keeps.
const STREAM_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// JetStream's de-duplication window (the sidecar's message ids make re-sends harmless within it).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Starts nats-server with JetStream on `ctx.origin.nats_port` and creates the stream.
pub async fn start(ctx: &Context) -> anyhow::Result<ServerProcess> {
    let store = ctx.workdir.subdir("nats-store", 0o700)?;
    let mut command = Command::new(&ctx.tools.nats_server);
    command
        .args(["-js", "-a", "127.0.0.1", "-p"])
        .arg(ctx.origin.nats_port.to_string())
        .arg("-sd")
        .arg(&store);
    let mut server = ServerProcess::spawn(
        "nats-server (JetStream)",
        command,
        &ctx.workdir.file("nats-server.log"),
    )?;
    probe::until_listening(&mut server, ctx.origin.nats_port, probe::LISTEN_TIMEOUT).await?;
    route::answered_in_time(create_stream(ctx.origin.nats_port))
        .await
        .map_err(|error| server.failed(format!("did not create the stream {STREAM}: {error:#}")))?;
    Ok(server)
}

/// The stream's configuration as JetStream's API takes it.
fn stream_config() -> String {
    serde_json::json!({
        "name": STREAM,
        "subjects": [format!("{SUBJECT_PREFIX}.>")],
        "storage": "file",
        "retention": "limits",
        "discard": "old",
        "max_bytes": STREAM_MAX_BYTES,
        "duplicate_window": DUPLICATE_WINDOW.as_nanos() as u64,
    })
    .to_string()
}

/// `$JS.API.STREAM.CREATE.<name>` over a bare connection: CONNECT, a subscription for the answer, the
/// request, then the answer (which names an error if there is one).
async fn create_stream(port: u16) -> anyhow::Result<()> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await?;
    if !line.starts_with("INFO ") {
        bail!("the server did not greet with INFO: {line:?}");
    }
    let config = stream_config();
    let request = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"name\":\"sidecar-bench\",\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}}\r\n\
         SUB _INBOX.sidecar-bench 1\r\n\
         PUB $JS.API.STREAM.CREATE.{STREAM} _INBOX.sidecar-bench {}\r\n{config}\r\n",
        config.len()
    );
    write.write_all(request.as_bytes()).await?;
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection");
        }
        let word = line.split_whitespace().next().unwrap_or_default();
        match word {
            "PING" => write.write_all(b"PONG\r\n").await?,
            "-ERR" => bail!("{}", line.trim()),
            "MSG" => {
                let size: usize = line
                    .split_whitespace()
                    .last()
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("a MSG line without a size: {line:?}"))?;
                let mut payload = vec![0; size + 2];
                read.read_exact(&mut payload).await?;
                let answer = String::from_utf8_lossy(&payload[..size]).into_owned();
                if answer.contains("\"error\"") {
                    bail!("{answer}");
                }
                return Ok(());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_takes_every_bench_subject_and_keeps_a_bounded_amount() {
        let config: serde_json::Value = serde_json::from_str(&stream_config()).unwrap();
        assert_eq!(config["subjects"][0], "bench.>");
        assert_eq!(config["max_bytes"], STREAM_MAX_BYTES);
        assert_eq!(config["discard"], "old");
        assert_eq!(config["duplicate_window"], 120_000_000_000u64);
    }
}
