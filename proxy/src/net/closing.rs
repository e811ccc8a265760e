//! Closing a connection right after a last answer of the sidecar's own (a 400 to an HTTP client on a SOCKS
//! port, a 503 at the connection limit), so that the answer is read rather than lost to a reset.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long, at most, a closing connection's unread input is drained.
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// How much, at most, is drained.
const DRAIN_BYTES: usize = 64 * 1024;

/// A whole HTTP/1.1 response with a plain-text body, for connections that never reach hyper.
pub fn plain_http_response(status: StatusCode, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Closing with unread request bytes makes the kernel send a reset, which can destroy the answer before the
/// client reads it; so finish writing, then read what the client sent (briefly, boundedly) before closing.
pub async fn drain_and_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n.min(left),
            }
        }
    })
    .await;
}
