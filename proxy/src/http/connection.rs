//! Serving one client connection as HTTP/1 or HTTP/2 (prior knowledge), with a handshake deadline and
//! graceful shutdown.
//!
//! The version is chosen by sniffing for the HTTP/2 connection preface and replaying what was read, rather
//! than by hyper's auto-detection, so that a client that connects and sends nothing is closed after the
//! handshake timeout instead of holding a task forever. The same first bytes find a SOCKS or TLS client on
//! the HTTP port ([`WrongProtocol`]), refused in its own protocol.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::body::ProxyBody;
use super::paced_body::PacedBody;
use super::wrong_protocol::WrongProtocol;
use crate::budget::{ConnectionBudget, QUEUE_CHUNK};
use crate::connection::Connection;
use crate::detect::H2_PREFACE;
use crate::io::{BudgetedIo, PrefixedIo};
use crate::peer_warnings::{HANDSHAKE_TIMEOUT, HEAD_TOO_LARGE, MALFORMED_REQUEST};

/// The smallest buffer hyper's HTTP/1 connection accepts (it panics below it).
const MIN_HYPER_BUFFER: usize = 8 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// How long a client may take to send its first request head.
    pub handshake_timeout: Duration,
    /// Whether HTTP/2 with prior knowledge is served (reverse proxy) or only HTTP/1 (forward proxy).
    pub accept_h2: bool,
    /// Largest request head accepted (HTTP/1 request line and headers, HTTP/2 header list); hyper and h2
    /// answer a larger one 431.
    pub max_request_head: usize,
}

/// Serves HTTP on `stream` until the client is done, the connection fails, or shutdown completes it.
pub async fn serve<S, F, Fut>(
    stream: S,
    options: ServeOptions,
    shutdown: CancellationToken,
    context: &Connection,
    handler: F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    if let Some(opened) = open(stream, options, context).await {
        serve_opened(opened, options, shutdown, context, handler).await;
    }
}

/// A client connection whose first bytes were read: what they were, and whether they were HTTP/2's
/// preface on a listener that serves HTTP/2.
pub struct Opened<S> {
    pub prefix: Vec<u8>,
    pub stream: S,
    pub is_h2: bool,
}

/// Reads a client's first bytes within the handshake timeout: `None` when the client sent nothing, or
/// spoke SOCKS or TLS (then it was refused in its own protocol).
pub async fn open<S>(stream: S, options: ServeOptions, context: &Connection) -> Option<Opened<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The first bytes tell HTTP/2's preface (when served) and a client that speaks something else.
    let (prefix, mut stream, saw_h2) =
        match tokio::time::timeout(options.handshake_timeout, sniff_h2(stream)).await {
            Ok(Ok(sniffed)) => sniffed,
            Ok(Err(e)) => {
                debug!(error = %e, "connection closed before a request");
                return None;
            }
            Err(_) => {
                context.count_handshake_error("timeout");
                HANDSHAKE_TIMEOUT.occurred();
                return None;
            }
        };
    if let Some(wrong) = WrongProtocol::of(&prefix) {
        context.count_handshake_error(wrong.reason());
        let forward_proxy = context.direction == "outbound";
        wrong
            .warning(forward_proxy)
            .occurred_because(&format_args!("client {}", context.client));
        // Best effort: the client may already be gone, and the connection closes either way.
        let _ = tokio::time::timeout(options.handshake_timeout, async {
            stream.write_all(wrong.refusal()).await?;
            stream.shutdown().await
        })
        .await;
        return None;
    }
    // A forward proxy serves HTTP/1 only: a preface there is refused, by hyper's HTTP/1 parser (mock mode)
    // or as hyper refused it (`outbound/http.rs`, in front of the engine).
    let is_h2 = saw_h2 && options.accept_h2;
    Some(Opened {
        prefix,
        stream,
        is_h2,
    })
}

/// Serves an opened connection with hyper.
pub async fn serve_opened<S, F, Fut>(
    opened: Opened<S>,
    options: ServeOptions,
    shutdown: CancellationToken,
    context: &Connection,
    handler: F,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let Opened {
        prefix,
        stream,
        is_h2,
    } = opened;
    // What the connection holds for its client (the head being read, the response waiting to be read)
    // is counted in the memory budget, and reading pauses while the budget is spent.
    let account = Arc::new(ConnectionBudget::new(!is_h2));
    let io = TokioIo::new(BudgetedIo::new(
        PrefixedIo::new(prefix, stream),
        account.clone(),
    ));
    // Whether a request was ever served: a timeout after one is an idle keep-alive connection closing,
    // not a stalled handshake.
    let served = Arc::new(AtomicBool::new(false));
    let seen = served.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        account.head_complete();
        let tunnel = request.method() == Method::CONNECT;
        let account = account.clone();
        let response = handler(request);
        async move {
            let response = response.await?;
            let status = response.status();
            if status == StatusCode::SWITCHING_PROTOCOLS || (tunnel && status.is_success()) {
                account.upgraded();
            }
            Ok::<_, Infallible>(response.map(|body| PacedBody::new(body, account).boxed_unsync()))
        }
    });

    let result = if is_h2 {
        // Pings find HTTP/2 clients that stopped answering (there is no per-request head timeout to do it).
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // What a stream may have waiting for a client that does not read (hyper's default, 400 KB,
            // times its hundreds of streams): the rest waits in the upstream, paced by the budget.
            .max_send_buf_size(QUEUE_CHUNK)
            .keep_alive_interval(options.handshake_timeout)
            .keep_alive_timeout(options.handshake_timeout)
            .max_header_list_size(u32::try_from(options.max_request_head).unwrap_or(u32::MAX))
            .serve_connection(io, service);
        until_done_or_shutdown!(conn, shutdown)
    } else {
        // hyper applies the head timeout to every request, so it also ends idle keep-alive connections.
        let conn = hyper::server::conn::http1::Builder::new()
            .preserve_header_case(true)
            .timer(TokioTimer::new())
            .header_read_timeout(options.handshake_timeout)
            .max_header_size(options.max_request_head)
            // Bounds both the read buffer (no larger than the largest head accepted) and the write
            // queue: hyper's default, 400 KB, held for each client that does not read.
            .max_buf_size(options.max_request_head.max(MIN_HYPER_BUFFER))
            .serve_connection(io, service)
            .with_upgrades();
        until_done_or_shutdown!(conn, shutdown)
    };
    if let Err(e) = result {
        let served = served.load(Ordering::Relaxed);
        if e.is_timeout() && served {
            debug!("idle keep-alive connection closed");
        } else if e.is_timeout() {
            context.count_handshake_error("timeout");
            HANDSHAKE_TIMEOUT.occurred();
        } else if e.is_parse_too_large() {
            context.count_handshake_error("too_large");
            HEAD_TOO_LARGE.occurred_because(&e);
        } else if e.is_parse() {
            context.count_handshake_error("malformed");
            MALFORMED_REQUEST.occurred_because(&e);
        } else {
            debug!(error = %e, "HTTP connection ended with an error");
        }
    }
}

/// Reads just enough to tell whether the client opened with the HTTP/2 preface.
async fn sniff_h2<S: AsyncRead + Unpin>(mut stream: S) -> std::io::Result<(Vec<u8>, S, bool)> {
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    loop {
        let mut chunk = [0u8; 24];
        let wanted = H2_PREFACE.len() - buf.len();
        let n = stream.read(&mut chunk[..wanted]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if !H2_PREFACE.starts_with(&buf) {
            return Ok((buf, stream, false));
        }
        if buf.len() == H2_PREFACE.len() {
            return Ok((buf, stream, true));
        }
    }
}
