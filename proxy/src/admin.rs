//! The admin listener: the probes and metrics a Kubernetes sidecar is expected to serve.
//!
//! - `GET /healthz`: `200 ok` while the process is serving (liveness).
//! - `GET /readyz`: `200 ready` once [`Readiness`] is set (every proxy listener bound), `503 not ready`
//!   before that and again once shutdown starts (readiness).
//! - `GET /metrics`: the [`Metrics`] in OpenMetrics text format.
//!
//! `HEAD` answers like `GET` without the body; other methods get `405` with `Allow`, other paths `404`.
//! HTTP/1.1 only, with a header read timeout so a probe client that stalls cannot hold a task forever.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// How long a client may take to send a request head (also how long an idle keep-alive connection lasts).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long open admin connections get to finish their request once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const ALLOWED: &str = "GET, HEAD";

/// Whether the sidecar is ready for traffic; cheap to clone, every clone shares the flag. Starts not ready.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn new() -> Self {
        Readiness::default()
    }

    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {address} (admin): {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
}

/// The admin listener, bound and ready to serve.
pub struct AdminServer {
    socket: TcpListener,
    local_addr: SocketAddr,
    state: Arc<State>,
    header_read_timeout: Duration,
}

struct State {
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl AdminServer {
    pub async fn bind(
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        readiness: Readiness,
    ) -> Result<AdminServer, AdminError> {
        let bind_error = |source| AdminError::Bind {
            address: addr,
            source,
        };
        let socket = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = socket.local_addr().map_err(bind_error)?;
        info!(address = %local_addr, "admin listening (/healthz, /readyz, /metrics)");
        Ok(AdminServer {
            socket,
            local_addr,
            state: Arc::new(State { metrics, readiness }),
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        })
    }

    /// Replaces [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, gives in-flight requests a moment to
    /// finish and returns (readiness is cleared at that point: nothing answers probes any more).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Reap finished connections so the set does not grow with every probe.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.socket.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(
                            stream,
                            peer,
                            self.state.clone(),
                            self.header_read_timeout,
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        self.state.readiness.set_ready(false);
        drop(self.socket);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            debug!(
                open = connections.len(),
                "closing the remaining admin connections"
            );
        }
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| {
        let response = respond(&request, &state);
        async move { Ok::<_, Infallible>(response) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "admin connection ended with an error");
    }
}

fn respond(request: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(ALLOWED));
        return response;
    }
    let response = match path {
        "/healthz" => plain(StatusCode::OK, "ok"),
        "/readyz" if state.readiness.is_ready() => plain(StatusCode::OK, "ready"),
        "/readyz" => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        _ => {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let alive = runtime.metrics().num_alive_tasks();
                state
                    .metrics
                    .runtime_tasks_alive
                    .set(i64::try_from(alive).unwrap_or(i64::MAX));
            }
            with_body(StatusCode::OK, OPENMETRICS, state.metrics.encode().into())
        }
    };
    if method == Method::HEAD {
        // Same head as GET, length included; hyper does not send a body in answer to HEAD.
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Full::new(Bytes::new()));
    }
    response
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_body(status, TEXT_PLAIN, Bytes::from_static(body.as_bytes()))
}

fn with_body(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let length = body.len();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    response
}
