//! HTTP through the sidecars: the reverse proxy, the forward proxy's absolute-form requests and its
//! CONNECT tunnels, each over long-lived keep-alive connections and over a new connection per request.
//! One request in [`LARGE_EVERY`] asks for the large body; the others for a small one naming the
//! request, so an answer delivered to the wrong request is caught.

use std::net::SocketAddr;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1::SendRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::Worker;
use crate::origin::{large_body, small_body};
use sidecar_bench::http_client::{connect_tunnel, handshake, send_get};

/// Every this many requests of a worker, one asks for `/large`.
const LARGE_EVERY: u64 = 16;

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
            let mut tunnel = connect(routes.forward_http).await?;
            connect_tunnel(&mut tunnel, &routes.origin_http.to_string()).await?;
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
    let response = send_get(sender, target, host, true).await?;
    let body = response.body;
    if response.status != 200 {
        bail!(
            "GET {target} answered {}: {:?}",
            response.status,
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
