//! HTTP through the sidecars: the reverse proxy, the forward proxy's absolute-form requests and its
//! CONNECT tunnels, each over long-lived keep-alive connections and over a new connection per request.
//! One request in [`LARGE_EVERY`] asks for the large body; the others for a small one naming the
//! request, so an answer delivered to the wrong request is caught.

use std::net::SocketAddr;

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::Worker;
use crate::soak::origin::{large_body, small_body};

/// Every this many requests of a worker, one asks for `/large`.
const LARGE_EVERY: u64 = 16;
/// A CONNECT response head longer than this is not one.
const MAX_CONNECT_RESPONSE: usize = 8 * 1024;

/// Which listener, and which request form, the requests go through.
#[derive(Clone, Copy, Debug)]
pub enum Via {
    /// Origin-form requests to the reverse-http sidecar.
    Reverse,
    /// Absolute-form requests to the forward HTTP proxy.
    ForwardAbsolute,
    /// A CONNECT tunnel through the forward HTTP proxy, origin-form requests inside it.
    Connect,
}

/// What the answer to a request must be.
enum Expected {
    Small(String),
    Large,
}

/// One long-lived connection, reopened only after a failure.
pub async fn keep_alive(mut worker: Worker, via: Via) {
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    while worker.next().await {
        let mut sender = match connection.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => match open(&worker.routes, via).await {
                Ok(sender) => sender,
                Err(error) => {
                    worker.record_error(error.context("opening the keep-alive connection"));
                    continue;
                }
            },
        };
        let mut failed = false;
        worker
            .record(async {
                let outcome =
                    exchange(&mut sender, &worker.routes, via, &worker.id, worker.seq).await;
                failed = outcome.is_err();
                outcome
            })
            .await;
        // After a failure the connection's state is unknown: start afresh.
        if !failed {
            connection = Some(sender);
        }
    }
}

/// A new connection (and for CONNECT a new tunnel) for every request, closed after its answer.
pub async fn new_connections(mut worker: Worker, via: Via) {
    while worker.next().await {
        worker
            .record(async {
                let mut sender = open(&worker.routes, via).await?;
                exchange(&mut sender, &worker.routes, via, &worker.id, worker.seq).await
            })
            .await;
    }
}

/// An HTTP/1.1 client connection to the listener `via` uses.
async fn open(routes: &super::Routes, via: Via) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    match via {
        Via::Reverse => handshake(connect(routes.reverse_http).await?).await,
        Via::ForwardAbsolute => handshake(connect(routes.forward_http).await?).await,
        Via::Connect => {
            let tunnel = open_tunnel(routes.forward_http, routes.origin_http).await?;
            handshake(tunnel).await
        }
    }
}

async fn connect(address: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A hyper client connection over `io`; its driver task ends when the connection closes.
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

/// `CONNECT target` through `proxy`; the stream after a 200 head.
pub async fn open_tunnel(proxy: SocketAddr, target: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut stream = connect(proxy).await?;
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await?;
    // Read byte-wise up to the blank line: nothing of the tunnelled stream may be consumed here.
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        ensure!(
            head.len() < MAX_CONNECT_RESPONSE,
            "CONNECT response head longer than {MAX_CONNECT_RESPONSE} bytes"
        );
        let byte = stream
            .read_u8()
            .await
            .context("the proxy closed before answering CONNECT")?;
        head.push(byte);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    if !(status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200")) {
        bail!("CONNECT {target} answered {status_line:?}");
    }
    Ok(stream)
}

/// One request and its answer, checked; the body's length.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    routes: &super::Routes,
    via: Via,
    worker_id: &str,
    seq: u64,
) -> anyhow::Result<u64> {
    let (path, expected) = if seq.is_multiple_of(LARGE_EVERY) {
        ("/large".to_owned(), Expected::Large)
    } else {
        let id = format!("{worker_id}-{seq}");
        (format!("/small/{id}"), Expected::Small(id))
    };
    let origin = routes.origin_http;
    let target = match via {
        Via::ForwardAbsolute => format!("http://{origin}{path}"),
        Via::Reverse | Via::Connect => path.clone(),
    };
    get_checked(sender, &target, &origin.to_string(), &expected).await
}

async fn get_checked(
    sender: &mut SendRequest<Empty<Bytes>>,
    target: &str,
    host: &str,
    expected: &Expected,
) -> anyhow::Result<u64> {
    sender.ready().await.context("connection not ready")?;
    let request = Request::get(target)
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {target}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("GET {target}: reading the body"))?
        .to_bytes();
    if status != StatusCode::OK {
        bail!(
            "GET {target} answered {status}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
    }
    check_body(target, &body, expected)?;
    Ok(body.len() as u64)
}

/// Shared with SOCKS, which sends the same requests through its tunnels.
pub async fn get_small_through<S>(io: S, host: SocketAddr, id: &str) -> anyhow::Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut sender = handshake(io).await?;
    let expected = Expected::Small(id.to_owned());
    get_checked(
        &mut sender,
        &format!("/small/{id}"),
        &host.to_string(),
        &expected,
    )
    .await
}

fn check_body(target: &str, body: &Bytes, expected: &Expected) -> anyhow::Result<()> {
    match expected {
        Expected::Small(id) => {
            let want = small_body(id);
            if body.as_ref() != want.as_bytes() {
                bail!(
                    "GET {target}: body {:?}, expected {want:?}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                );
            }
        }
        Expected::Large => {
            let want = large_body();
            if body.len() != want.len() {
                bail!(
                    "GET {target}: {} body bytes, expected {}",
                    body.len(),
                    want.len()
                );
            }
            if let Some(at) = body
                .iter()
                .zip(want.iter())
                .position(|(got, want)| got != want)
            {
                bail!("GET {target}: body differs from the origin's at byte {at}");
            }
        }
    }
    Ok(())
}
