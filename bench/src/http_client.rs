//! The harness's one HTTP/1.1 client, on hyper: a GET over a connection the caller opened (directly,
//! through a proxy's tunnel, inside TLS). The readiness probe, the idle connections, the TLS handshake
//! load, the soak's load and its scrapes of the sidecars' admin ports all use it.

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Longest CONNECT response head accepted.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

impl Response {
    /// Whether this is the origin's answer, 200 and exactly `expected`; if not, what came instead.
    pub fn from_origin(&self, expected: &[u8]) -> Result<(), String> {
        if self.status == 200 && self.body == expected {
            Ok(())
        } else {
            Err(format!(
                "answered {} with a {}-byte body instead of the origin's",
                self.status,
                self.body.len()
            ))
        }
    }
}

/// A client connection over `io`, for any number of requests; its driver task ends when the
/// connection closes or the last sender is dropped.
pub async fn handshake<S>(io: S) -> anyhow::Result<SendRequest<Empty<Bytes>>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One GET of `target` (origin-form or absolute-form) on a connection made by [`handshake`], its body
/// read whole.
pub async fn send_get(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &str,
    host: &str,
    keep_alive: bool,
) -> anyhow::Result<Response> {
    sender.ready().await.context("connection not ready")?;
    let mut request = Request::get(target)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "sidecar-bench");
    if !keep_alive {
        request = request.header(hyper::header::CONNECTION, "close");
    }
    let response = sender
        .send_request(request.body(Empty::new())?)
        .await
        .with_context(|| format!("GET {target}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("GET {target}: reading the body"))?
        .to_bytes();
    Ok(Response { status, body })
}

/// One GET on `io`, which is handed back open after the response (a keep-alive holder keeps it; any
/// other caller drops it, which closes it).
pub async fn get<S>(
    io: S,
    target: &str,
    host: &str,
    keep_alive: bool,
) -> anyhow::Result<(Response, S)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1.1 handshake")?;
    let exchange = async move {
        let response = send_get(&mut sender, target, host, keep_alive).await;
        // No request follows: the connection is done, and hands its stream back.
        drop(sender);
        response
    };
    let (response, parts) = tokio::join!(exchange, connection.without_shutdown());
    let response = response?;
    let parts = parts.with_context(|| format!("GET {target}: the connection failed"))?;
    Ok((response, parts.io.into_inner()))
}

/// `CONNECT authority` on a stream to an HTTP proxy; on a 2xx answer the stream is the tunnel.
pub async fn connect_tunnel<S>(stream: &mut S, authority: &str) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream
        .write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await?;
    // Byte by byte up to the blank line: nothing of the tunnel may be read as part of the answer.
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_HEAD {
            bail!("CONNECT answer head longer than {MAX_CONNECT_HEAD} bytes");
        }
        let byte = stream
            .read_u8()
            .await
            .context("the proxy closed the connection before answering CONNECT")?;
        head.push(byte);
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    answer
        .parse(&head)
        .context("the answer to CONNECT is not an HTTP/1 response")?;
    match answer.code {
        Some(code) if (200..300).contains(&code) => Ok(()),
        _ => bail!(
            "CONNECT {authority} refused: {}",
            String::from_utf8_lossy(&head).lines().next().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A server that reads one request head, writes `answer`, and keeps the connection until the
    /// client closes it; what it read.
    fn serve_once(
        mut server: tokio::io::DuplexStream,
        answer: &'static [u8],
    ) -> tokio::task::JoinHandle<String> {
        tokio::spawn(async move {
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                request.push(server.read_u8().await.unwrap());
            }
            server.write_all(answer).await.unwrap();
            let mut rest = Vec::new();
            server.read_to_end(&mut rest).await.unwrap();
            request.extend_from_slice(&rest);
            String::from_utf8(request).unwrap()
        })
    }

    #[tokio::test]
    async fn a_keep_alive_get_hands_the_open_connection_back() {
        let (client, server) = tokio::io::duplex(1024);
        let served = serve_once(
            server,
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello, world\n",
        );
        let (response, mut stream) = get(client, "/", "127.0.0.1:1", true).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, &b"hello, world\n"[..]);
        // Still open: a byte written now reaches the server, which has not seen an end yet.
        stream.write_all(b"x").await.unwrap();
        drop(stream);
        let request = served.await.unwrap();
        assert!(request.starts_with("GET / HTTP/1.1\r\n"), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("host: 127.0.0.1:1\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\nx"), "{request}");
    }

    #[tokio::test]
    async fn a_short_body_is_an_error() {
        let (client, server) = tokio::io::duplex(1024);
        let _served = tokio::spawn(async move {
            let mut server = server;
            let mut request = [0u8; 512];
            let _ = server.read(&mut request).await.unwrap();
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello")
                .await
                .unwrap();
        });
        assert!(get(client, "/", "127.0.0.1:1", false).await.is_err());
    }

    #[rstest]
    #[case(b"HTTP/1.1 200 Connection established\r\n\r\n", true)]
    #[case(b"HTTP/1.0 200 OK\r\nProxy-Agent: x\r\n\r\n", true)]
    #[case(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", false)]
    #[case(b"SSH-2.0-OpenSSH\r\n\r\n", false)]
    #[tokio::test]
    async fn connect_accepts_only_a_2xx_answer(#[case] answer: &'static [u8], #[case] ok: bool) {
        let (mut client, server) = tokio::io::duplex(1024);
        let served = serve_once(server, answer);
        assert_eq!(
            connect_tunnel(&mut client, "127.0.0.1:80").await.is_ok(),
            ok
        );
        drop(client);
        assert!(served
            .await
            .unwrap()
            .starts_with("CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n"));
    }
}
