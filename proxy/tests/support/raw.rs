//! Bare sockets for what a client library would hide: exact request bytes and exact replies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Sends `request` and reads until the peer closes (or `wait` passes); returns everything received.
pub async fn exchange(addr: SocketAddr, request: &[u8], wait: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut received)).await;
    received
}

/// An upstream that records the raw request head of each connection and answers `200 ok`.
/// Used where the exact bytes on the wire matter (header case, hop-by-hop removal).
pub async fn start_head_recorder() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let heads = heads.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, received)
}

/// An HTTP/1.1 upstream (hyper, keep-alive) that answers every request `200 ok <body length>`, and keeps
/// both every byte it received and the requests it parsed out of them: a request smuggled past the proxy
/// would be one of those requests.
pub struct RecordingUpstream {
    pub addr: SocketAddr,
    bytes: Arc<Mutex<Vec<u8>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RecordingUpstream {
    pub async fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, served) = (bytes.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let io = TokioIo::new(Recorded {
                    stream,
                    log: log.clone(),
                });
                let served = served.clone();
                let answer = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let served = served.clone();
                    async move {
                        let line = format!("{} {}", request.method(), request.uri());
                        let body = request.into_body().collect().await;
                        let length = body.map(|b| b.to_bytes().len()).unwrap_or(0);
                        served
                            .lock()
                            .unwrap()
                            .push(format!("{line} ({length} body bytes)"));
                        let body = Full::new(Bytes::from(format!("ok {length}")));
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, answer)
                        .await;
                });
            }
        });
        RecordingUpstream {
            addr,
            bytes,
            requests,
        }
    }

    /// Every byte received so far, all connections in arrival order.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    /// The requests served so far: `METHOD target (N body bytes)`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// A socket whose reads are appended to a shared log.
struct Recorded {
    stream: TcpStream,
    log: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let fresh = buf.filled()[before..].to_vec();
        self.log.lock().unwrap().extend_from_slice(&fresh);
        polled
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
