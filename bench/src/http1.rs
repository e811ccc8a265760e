//! The smallest HTTP/1.1 client that can prove a path works: one GET, its status and its exact body.
//! Used by the readiness probe and by the idle connections (which stay open after one request). Only
//! what the origin sends is understood: a Content-Length body, or a body up to the close.

use anyhow::{bail, Context as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// What the head says about the body that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<usize>,
    pub chunked: bool,
}

/// The GET request for `target` (origin-form or absolute-form).
pub fn get_request(target: &str, host: &str, keep_alive: bool) -> String {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sidecar-bench\r\nConnection: {connection}\r\n\r\n"
    )
}

/// Sends one GET on `stream` and reads its whole response.
pub async fn get<S>(
    stream: &mut S,
    target: &str,
    host: &str,
    keep_alive: bool,
) -> anyhow::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(get_request(target, host, keep_alive).as_bytes())
        .await
        .context("cannot send the request")?;
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(end) = find_head_end(&buffer) {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            bail!("response head longer than {MAX_HEAD} bytes");
        }
        let mut chunk = [0u8; 4096];
        let read = stream
            .read(&mut chunk)
            .await
            .context("cannot read the response")?;
        if read == 0 {
            bail!(
                "connection closed before a complete response head ({} bytes received)",
                buffer.len()
            );
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = parse_head(&buffer[..head_end])?;
    let mut body = buffer.split_off(head_end);
    if head.chunked {
        bail!("chunked response bodies are not expected from the origin");
    }
    match head.content_length {
        Some(length) => {
            if body.len() > length {
                bail!("{} bytes after a {length}-byte body", body.len() - length);
            }
            let already = body.len();
            body.resize(length, 0);
            stream
                .read_exact(&mut body[already..])
                .await
                .with_context(|| format!("body shorter than its Content-Length {length}"))?;
        }
        None if keep_alive => bail!("a keep-alive response without Content-Length"),
        None => {
            stream.read_to_end(&mut body).await?;
        }
    }
    Ok(Response {
        status: head.status,
        body,
    })
}

/// The offset just past the blank line that ends the head, if it has arrived.
fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The status code of `HTTP/1.x NNN reason`.
pub fn parse_status_line(head: &[u8]) -> anyhow::Result<u16> {
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code
            .parse()
            .with_context(|| format!("bad status code in {line:?}")),
        _ => bail!("not an HTTP/1 status line: {line:?}"),
    }
}

pub fn parse_head(head: &[u8]) -> anyhow::Result<Head> {
    let status = parse_status_line(head)?;
    let text = std::str::from_utf8(head).context("response head is not UTF-8")?;
    let mut content_length = None;
    let mut chunked = false;
    for line in text.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok(Head {
        status,
        content_length,
        chunked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", 200, Some(13), false)]
    #[case(b"HTTP/1.0 502 Bad Gateway\r\n\r\n", 502, None, false)]
    #[case(b"HTTP/1.1 200 OK\r\ncontent-length:0\r\n\r\n", 200, Some(0), false)]
    #[case(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        200,
        None,
        true
    )]
    fn heads_are_parsed(
        #[case] head: &[u8],
        #[case] status: u16,
        #[case] content_length: Option<usize>,
        #[case] chunked: bool,
    ) {
        assert_eq!(
            parse_head(head).unwrap(),
            Head {
                status,
                content_length,
                chunked
            }
        );
    }

    #[rstest]
    #[case(b"SSH-2.0-OpenSSH\r\n\r\n")]
    #[case(b"HTTP/1.1 abc OK\r\n\r\n")]
    #[case(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n")]
    fn garbage_is_refused(#[case] head: &[u8]) {
        assert!(parse_head(head).is_err());
    }

    #[tokio::test]
    async fn a_content_length_body_is_read_exactly() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let serve = tokio::spawn(async move {
            let mut request = vec![0u8; 512];
            let n = server.read(&mut request).await.unwrap();
            assert!(String::from_utf8_lossy(&request[..n]).starts_with("GET / HTTP/1.1\r\n"));
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello, ")
                .await
                .unwrap();
            server.write_all(b"world\n").await.unwrap();
            server
        });
        let response = get(&mut client, "/", "127.0.0.1:1", true).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello, world\n");
        drop(serve.await.unwrap());
    }
}
