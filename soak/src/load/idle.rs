//! Small connections that sit idle for a second or three, then close, on every listener in turn: a tcp
//! relay connection that exchanges a few bytes first, and HTTP and SOCKS connections that never send
//! anything (the sidecar must let go of them when the client closes, well inside its handshake timeout).

use std::time::Duration;

use anyhow::{ensure, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::Worker;

const PING: &[u8] = b"sidecar-soak idle";

pub async fn connections(mut worker: Worker) {
    while worker.next().await {
        let routes = &worker.routes;
        let listeners = [
            routes.tcp_relay,
            routes.reverse_http,
            routes.forward_http,
            routes.socks_inbound,
            routes.socks_outbound,
        ];
        let target = listeners[(worker.seq as usize) % listeners.len()];
        let ping = target == routes.tcp_relay;
        let hold = Duration::from_secs(1 + worker.seq % 3);
        worker
            .record(async {
                let mut stream = TcpStream::connect(target)
                    .await
                    .with_context(|| format!("cannot connect to {target}"))?;
                let mut received = 0;
                if ping {
                    stream.write_all(PING).await?;
                    let mut echo = [0u8; PING.len()];
                    stream
                        .read_exact(&mut echo)
                        .await
                        .context("reading the echo")?;
                    ensure!(echo == PING, "the tcp relay echoed {echo:?}");
                    received = PING.len() as u64;
                }
                tokio::time::sleep(hold).await;
                drop(stream);
                Ok(received)
            })
            .await;
    }
}
