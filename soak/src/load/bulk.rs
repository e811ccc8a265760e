//! Bulk transfers: [`BULK_LEN`] bytes written through a relay to the origin's echo while they are read
//! back and compared, then the write side shut down (the echo closes after it, so the relay's
//! half-close is exercised on every transfer).

use anyhow::{bail, Context as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

use super::Worker;

/// Several MiB per transfer: long enough to cross many buffers and windows, short enough to leave the
/// CPU to the rest of the load.
pub const BULK_LEN: u64 = 8 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub enum Path {
    /// The dual tcp:http sidecar's inbound tcp relay, which delivers to the echo.
    TcpRelay,
    /// The dual-socks sidecar's outbound listener (its inbound one delivers to the HTTP app whatever
    /// the client asks for).
    Socks5,
}

pub async fn transfers(mut worker: Worker, path: Path) {
    while worker.next().await {
        let routes = &worker.routes;
        let seed = worker.seq as u8;
        worker
            .record(async {
                match path {
                    Path::TcpRelay => {
                        let stream = TcpStream::connect(routes.tcp_relay)
                            .await
                            .with_context(|| format!("cannot connect to {}", routes.tcp_relay))?;
                        echo_checked(stream, BULK_LEN, seed).await
                    }
                    Path::Socks5 => {
                        let proxy = routes.socks_outbound;
                        let stream = Socks5Stream::connect(proxy, routes.origin_echo)
                            .await
                            .with_context(|| {
                                format!("SOCKS5 via {proxy} to {}", routes.origin_echo)
                            })?;
                        echo_checked(stream, BULK_LEN, seed).await
                    }
                }
            })
            .await;
    }
}

/// The byte at `offset` of a transfer: period 251 (a prime), so no chunk or buffer size hides a
/// lost, repeated or moved chunk; `seed` tells transfers apart.
fn pattern(offset: u64, seed: u8) -> u8 {
    (offset % 251) as u8 ^ seed
}

/// Writes `len` pattern bytes and shuts down writing while reading the echo and comparing it; the
/// number of bytes echoed.
pub async fn echo_checked<S>(stream: S, len: u64, seed: u8) -> anyhow::Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let send = async {
        let mut chunk = vec![0u8; CHUNK];
        let mut offset = 0u64;
        while offset < len {
            let n = CHUNK.min((len - offset) as usize);
            for (i, byte) in chunk[..n].iter_mut().enumerate() {
                *byte = pattern(offset + i as u64, seed);
            }
            writer.write_all(&chunk[..n]).await.context("writing")?;
            offset += n as u64;
        }
        writer
            .shutdown()
            .await
            .context("shutting down the write side")?;
        anyhow::Ok(())
    };
    let receive = async {
        let mut chunk = vec![0u8; CHUNK];
        let mut received = 0u64;
        loop {
            let n = reader.read(&mut chunk).await.context("reading the echo")?;
            if n == 0 {
                break;
            }
            for (i, byte) in chunk[..n].iter().enumerate() {
                let offset = received + i as u64;
                if *byte != pattern(offset, seed) {
                    bail!("echo differs at byte {offset} of {len}");
                }
            }
            received += n as u64;
            if received > len {
                bail!("echo longer than the {len} bytes sent");
            }
        }
        if received != len {
            bail!("echo ended after {received} of {len} bytes");
        }
        Ok(received)
    };
    let ((), received) = tokio::try_join!(send, receive)?;
    Ok(received)
}
