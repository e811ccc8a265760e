//! Cleartext HTTP found inside a stream (a CONNECT tunnel, a SOCKS stream, a tcp relay, a redirected
//! connection): the sidecar serves it as HTTP on the client side and replays each request over the one
//! upstream connection already open, so every exchange is recorded like any other. HTTP/1 and HTTP/2 with
//! prior knowledge (h2c, as gRPC uses inside clusters) are both served, each in its own version.
//!
//! The client believes it is talking straight to the origin, so nothing is rewritten: headers (hop-by-hop
//! ones included), Host and keep-alive decisions pass through as the client sent them.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::body::{text_response, ProxyBody};
use super::upgrade;
use crate::capture::record::TlsSession;
use crate::capture::{CaptureContext, HttpCapture};

/// Runs the client side (`$served`, a hyper server connection) and the upstream connection (`$upstream`,
/// a hyper client connection) in the calling task, until both are done.
///
/// One task rather than one each: every request crosses from one to the other and back, and a wake-up
/// inside a task is free where one between tasks (often between worker threads) is not. When the origin
/// closes its side, the client's side is wound down gracefully, so the client sees a closed connection
/// (which HTTP clients retry) rather than a sidecar 502 for its next request. When the client's side ends
/// first, dropping it drops the request sender, which lets the upstream connection close.
macro_rules! serve_beside_upstream {
    ($served:expr, $upstream:expr, $context:expr) => {{
        let mut upstream = std::pin::pin!($upstream);
        let upstream_finished = {
            let mut served = std::pin::pin!($served);
            tokio::select! {
                result = served.as_mut() => {
                    client_side_ended($context, result);
                    false
                }
                result = upstream.as_mut() => {
                    upstream_ended(result);
                    served.as_mut().graceful_shutdown();
                    // hyper's graceful shutdown never ends a connection whose first request head is half
                    // read (a client trickling it): bounded, so such a client is closed like the upstream.
                    match tokio::time::timeout(CLIENT_WIND_DOWN, served).await {
                        Ok(result) => client_side_ended($context, result),
                        Err(_) => debug!("client side still busy after the upstream closed; closing it"),
                    }
                    true
                }
            }
        };
        if !upstream_finished {
            upstream_ended(upstream.await);
        }
    }};
}

/// How long the client side may take to wind down once the upstream connection has closed: what it was
/// sending can no longer be answered, and what it was receiving has already left the upstream (hyper hands
/// the last of a response over before the connection ends), so this bounds only a client that keeps a
/// half-read request head open, or one too slow to take the tail of its response within it.
const CLIENT_WIND_DOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the stream's requests go, for the records.
pub struct TunnelledTarget {
    pub transport: &'static str,
    /// The destination the client named (the CONNECT or SOCKS target, or the app for a tcp relay).
    pub target: String,
    pub delivered_to: Option<String>,
    /// The TLS the sidecar terminated around these requests (tls-out), when it did.
    pub tls: Option<TlsSession>,
}

/// Serves HTTP/1 on `client`, forwarding each request over `upstream`, until either side closes.
///
/// No request-head timeout here: the origin, not the sidecar, decides how long an idle keep-alive
/// connection lives (and TCP keepalive finds dead peers). The head size is bounded, as on the HTTP
/// listeners (`--max-request-head`): a larger head is answered 431 and the connection closed.
pub async fn serve<C, U>(
    client: C,
    upstream: U,
    route: TunnelledTarget,
    context: CaptureContext,
    tasks: TaskTracker,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = match hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake::<_, ProxyBody>(TokioIo::new(upstream))
        .await
    {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upstream handshake failed");
            return;
        }
    };
    // hyper serves one request at a time on an HTTP/1 connection, so the lock is never contended; it
    // only lets the per-request futures share the sender.
    let sender = Arc::new(Mutex::new(sender));
    let route = Arc::new(route);
    let max_request_head = context.max_request_head();
    let connection_context = context.clone();
    let service = hyper::service::service_fn(move |request| {
        exchange(
            request,
            sender.clone(),
            route.clone(),
            context.clone(),
            tasks.clone(),
        )
    });
    let served = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .max_header_size(max_request_head)
        .serve_connection(TokioIo::new(client), service)
        .with_upgrades();
    serve_beside_upstream!(served, connection.with_upgrades(), &connection_context);
}

/// Serves HTTP/2 with prior knowledge on `client` (its preface not yet consumed), multiplexing every stream
/// over one HTTP/2 connection to `upstream`.
pub async fn serve_h2<C, U>(client: C, upstream: U, route: TunnelledTarget, context: CaptureContext)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = match hyper::client::conn::http2::handshake::<_, _, ProxyBody>(
        TokioExecutor::new(),
        TokioIo::new(upstream),
    )
    .await
    {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "upstream HTTP/2 handshake failed");
            return;
        }
    };
    let route = Arc::new(route);
    let max_header_list = u32::try_from(context.max_request_head()).unwrap_or(u32::MAX);
    let connection_context = context.clone();
    let service = hyper::service::service_fn(move |request| {
        exchange_h2(request, sender.clone(), route.clone(), context.clone())
    });
    let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(max_header_list)
        .serve_connection(TokioIo::new(client), service);
    serve_beside_upstream!(served, connection, &connection_context);
}

async fn exchange_h2(
    request: Request<Incoming>,
    mut sender: hyper::client::conn::http2::SendRequest<ProxyBody>,
    route: Arc<TunnelledTarget>,
    context: CaptureContext,
) -> Result<Response<ProxyBody>, Infallible> {
    let (capture, request) = begin(request, &route, &context);
    let sent = match sender.ready().await {
        Ok(()) => sender.send_request(request).await,
        Err(e) => Err(e),
    };
    Ok(respond(&capture, sent))
}

async fn exchange(
    mut request: Request<Incoming>,
    sender: Arc<Mutex<SendRequest<ProxyBody>>>,
    route: Arc<TunnelledTarget>,
    context: CaptureContext,
    tasks: TaskTracker,
) -> Result<Response<ProxyBody>, Infallible> {
    let client_upgrade =
        upgrade::requested(request.headers()).map(|_| hyper::upgrade::on(&mut request));
    let (capture, request) = begin(request, &route, &context);
    let sent = {
        let mut sender = sender.lock().await;
        match sender.ready().await {
            Ok(()) => sender.send_request(request).await,
            Err(e) => Err(e),
        }
    };
    let sent = sent.map(|mut response| {
        if let Some(client) = client_upgrade {
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                let upstream = hyper::upgrade::on(&mut response);
                let connection = capture.context();
                tasks.spawn(async move {
                    upgrade::relay(client, upstream).await;
                    drop(connection);
                });
            }
        }
        response
    });
    Ok(respond(&capture, sent))
}

/// Starts the record of one request and wraps its body for the trip upstream.
fn begin(
    request: Request<Incoming>,
    route: &TunnelledTarget,
    context: &CaptureContext,
) -> (HttpCapture, Request<ProxyBody>) {
    let (parts, body) = request.into_parts();
    let capture = HttpCapture::begin(context, route.transport, &parts, || {
        (route.target.clone(), route.delivered_to.clone())
    });
    if let Some(session) = &route.tls {
        capture.mark_tls(session);
    }
    let request = Request::from_parts(parts, capture.request_body(body).boxed_unsync());
    (capture, request)
}

/// The upstream's response, as recorded, or the sidecar's 502 when the upstream connection failed.
fn respond(
    capture: &HttpCapture,
    sent: Result<Response<Incoming>, hyper::Error>,
) -> Response<ProxyBody> {
    match sent {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = capture.response_body(&parts, body).boxed_unsync();
            Response::from_parts(parts, body)
        }
        Err(e) => {
            let reason = format!("upstream connection failed: {e}");
            let response = text_response(StatusCode::BAD_GATEWAY, format!("sidecar: {reason}"));
            capture.sidecar_response(response, reason)
        }
    }
}

fn client_side_ended(context: &CaptureContext, result: Result<(), hyper::Error>) {
    match result {
        Ok(()) => {}
        Err(e) if e.is_parse_too_large() => {
            context.count_handshake_error("too_large");
            warn!(error = %e, limit = context.max_request_head(), "request head inside a stream too large (answered 431)");
        }
        Err(e) => {
            debug!(error = %e, side = "client", "tunnelled HTTP connection ended with an error")
        }
    }
}

fn upstream_ended(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        debug!(error = %e, side = "upstream", "tunnelled HTTP connection ended with an error");
    }
}
