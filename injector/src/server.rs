//! `sidecar-injector serve`: the admission webhook over HTTPS (HTTP/1.1, and h2 by ALPN).
//!
//! - `POST /mutate` with `Content-Type: application/json`: an AdmissionReview in, its answer out
//!   ([`review`](crate::review::review)). A body that is not an AdmissionReview gets `400` with an
//!   AdmissionReview saying why; another content type, `415`; over [`DEFAULT_BODY_LIMIT`], `413`.
//! - `GET /healthz`: `200 ok`, for the Deployment's probes.
//!
//! Other methods get `405` with `Allow`, other paths `404`. The serving certificate is re-read every
//! [`DEFAULT_RELOAD_INTERVAL`] and swapped in when it changed (see [`ServingCert`]).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use kube::core::admission::AdmissionReview;
use kube::core::DynamicObject;
use serde_json::Value;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::certs::{LoadError, ServingCert};
use crate::containers::SidecarOptions;
use crate::review::review;

/// How often the certificate files are checked for a new pair.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// The largest AdmissionReview accepted: a pod is at most ~1.5 MiB (etcd's limit), and the review wraps it.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// After shutdown starts, how long in-flight requests may take. The API server gives up after the
/// webhook's `timeoutSeconds` (5 s in deploy/) anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Time a client has for the TLS handshake and, on HTTP/1.1, for each request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Everything `serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub sidecar: SidecarOptions,
    pub reload_interval: Duration,
    pub body_limit: usize,
    pub shutdown_grace: Duration,
}

impl ServerSettings {
    /// Settings with the defaults for everything the command line does not set.
    pub fn new(
        listen: SocketAddr,
        tls_cert: impl Into<PathBuf>,
        tls_key: impl Into<PathBuf>,
        sidecar: SidecarOptions,
    ) -> Self {
        ServerSettings {
            listen,
            tls_cert: tls_cert.into(),
            tls_key: tls_key.into(),
            sidecar,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            body_limit: DEFAULT_BODY_LIMIT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

#[derive(Debug, Error)]
pub enum ServerError {
    /// The certificate or key cannot be served: a configuration error.
    #[error("{0}")]
    Tls(#[from] LoadError),
    #[error("cannot set up TLS: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
}

/// The webhook, bound and ready to serve.
pub struct Server {
    socket: TcpListener,
    local_addr: SocketAddr,
    acceptor: TlsAcceptor,
    cert: Arc<ServingCert>,
    state: Arc<State>,
    reload_interval: Duration,
    shutdown_grace: Duration,
}

struct State {
    sidecar: SidecarOptions,
    body_limit: usize,
}

impl Server {
    /// Loads the certificate and binds the listener.
    pub async fn bind(settings: ServerSettings) -> Result<Server, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = Arc::new(ServingCert::load(
            &settings.tls_cert,
            &settings.tls_key,
            provider.clone(),
        )?);
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let address = settings.listen;
        let bind_error = |source| ServerError::Bind { address, source };
        let socket = TcpListener::bind(address).await.map_err(bind_error)?;
        let local_addr = socket.local_addr().map_err(bind_error)?;
        info!(address = %local_addr, image = %settings.sidecar.image, "webhook listening (POST /mutate, GET /healthz)");
        Ok(Server {
            socket,
            local_addr,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            cert,
            state: Arc::new(State {
                sidecar: settings.sidecar,
                body_limit: settings.body_limit,
            }),
            reload_interval: settings.reload_interval,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests finish (at most
    /// the shutdown grace) and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let watcher = tokio::spawn(watch_certificate(
            self.cert.clone(),
            self.reload_interval,
            shutdown.clone(),
        ));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                // Reap finished connections so the set does not grow with every request.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.socket.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(
                            stream,
                            peer,
                            self.acceptor.clone(),
                            self.state.clone(),
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.socket);
        info!(
            open = connections.len(),
            "stopped accepting; finishing in-flight requests"
        );
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                open = connections.len(),
                grace = ?self.shutdown_grace,
                "closing connections still open after the shutdown grace"
            );
        }
        connections.shutdown().await;
        let _ = watcher.await;
    }
}

async fn watch_certificate(cert: Arc<ServingCert>, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        // Two small reads from a local (usually tmpfs) volume: not worth a blocking-pool hop.
        match cert.reload_if_changed() {
            Ok(true) => info!(path = %cert.cert_path().display(), "serving certificate reloaded"),
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "cannot reload the serving certificate; still serving the previous one")
            }
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => handshake,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            // A TCP probe or a port scan: it connected and left.
            debug!(%peer, "connection closed before the TLS handshake");
            return;
        }
        Ok(Err(e)) => {
            // Typically the API server refusing our certificate: a caBundle that does not match.
            warn!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };

    let service = hyper::service::service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(request, &state).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn respond(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    let allowed = match path {
        "/mutate" => "POST",
        "/healthz" => "GET, HEAD",
        _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    let method = request.method();
    if path == "/healthz" && (method == Method::GET || method == Method::HEAD) {
        // hyper sends no body in answer to HEAD.
        return plain(StatusCode::OK, "ok");
    }
    if path != "/mutate" || method != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return response;
    }
    mutate(request, state).await
}

async fn mutate(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if !is_json(&request) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /mutate takes an AdmissionReview as Content-Type: application/json\n",
        );
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > state.body_limit as u64) {
        return too_large(state.body_limit);
    }
    let body = match Limited::new(request.into_body(), state.body_limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(state.body_limit),
        Err(e) => {
            debug!(error = %e, "cannot read the request body");
            return plain(StatusCode::BAD_REQUEST, "cannot read the request body\n");
        }
    };

    let answer = review(&body, &state.sidecar);
    log_admission(&body, &answer);
    // Every request the API server sends has a uid; an answer without one means no request could be read.
    let unreadable = answer
        .response
        .as_ref()
        .is_none_or(|response| response.uid.is_empty());
    let status = if unreadable {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    match wire_json(&answer) {
        Ok(json) => with_body(status, JSON, json.into()),
        Err(e) => {
            warn!(error = %e, "cannot encode the AdmissionReview answer");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the answer\n",
            )
        }
    }
}

/// The AdmissionReview as the API server reads it. `patch` is a Go `[]byte`, which the API's JSON carries as
/// a base64 string; kube's type serializes its `Vec<u8>` as an array of numbers instead (kube-rs issue
/// #1781), so the patch is re-encoded here.
pub fn wire_json(answer: &AdmissionReview<DynamicObject>) -> serde_json::Result<Vec<u8>> {
    let mut json = serde_json::to_value(answer)?;
    let patch = answer
        .response
        .as_ref()
        .and_then(|response| response.patch.as_deref());
    if let (Some(patch), Some(response)) = (patch, json.get_mut("response")) {
        response["patch"] = Value::String(BASE64.encode(patch));
    }
    serde_json::to_vec(&json)
}

fn is_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(JSON))
}

/// One line per admission, naming the pod: the request fields are read beside the full parse in [`review`].
fn log_admission(body: &[u8], answer: &AdmissionReview<DynamicObject>) {
    let Some(response) = &answer.response else {
        return;
    };
    if response.uid.is_empty() {
        warn!(error = %response.result.message, "unreadable admission request");
        return;
    }
    let review: Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |pointer: &str| {
        review
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let uid = &response.uid;
    let namespace = field("/request/namespace");
    // A pod created by a controller has no name yet at admission, only its generateName prefix.
    let name = match field("/request/name") {
        "" => field("/request/object/metadata/name"),
        name => name,
    };
    let generate_name = field("/request/object/metadata/generateName");
    if !response.allowed {
        info!(%uid, %namespace, %name, %generate_name, decision = "denied", reason = %response.result.message, "admission");
    } else if response.patch.is_some() {
        info!(%uid, %namespace, %name, %generate_name, decision = "patched", "admission");
    } else {
        info!(%uid, %namespace, %name, %generate_name, decision = "unchanged", "admission");
    }
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    with_body(
        StatusCode::PAYLOAD_TOO_LARGE,
        TEXT_PLAIN,
        format!("the AdmissionReview is larger than {limit} bytes\n").into(),
    )
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
