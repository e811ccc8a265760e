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

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::certs::{LoadError, ServingCert};
use crate::containers::SidecarOptions;

mod auto_layout;
mod routes;

pub use auto_layout::{AutoLayoutSource, REFRESH_INTERVAL};
use auto_layout::{CurrentLayout, Refresher};
use routes::{respond, State};

/// How often the certificate files are checked for a new pair.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);
/// The largest AdmissionReview accepted: a pod is at most ~1.5 MiB (etcd's limit), and the review wraps it.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// After shutdown starts, how long in-flight requests may take. The API server gives up after the
/// webhook's `timeoutSeconds` (5 s in deploy/) anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Time a client has for the TLS handshake and, on HTTP/1.1, for each request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS 1.3 and 1.2, nothing older. Named here rather than taken from rustls' defaults so the floor is a
/// decision of this server, visible in review, and not something a dependency upgrade could move. Every
/// API server that calls webhooks speaks TLS 1.2 or later. (rustls implements nothing below 1.2 anyway;
/// injector/tests/security_defaults.rs proves the refusal with a real TLS 1.0/1.1 client.)
const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Everything `serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub sidecar: SidecarOptions,
    /// Where a pod's `native-sidecar: auto` gets its layout: `sidecar.auto_layout`, or the API server.
    pub auto_layout: AutoLayoutSource,
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
            auto_layout: AutoLayoutSource::Fixed,
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
    refresher: Option<Refresher>,
    reload_interval: Duration,
    shutdown_grace: Duration,
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
            .with_protocol_versions(PROTOCOL_VERSIONS)?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let address = settings.listen;
        let bind_error = |source| ServerError::Bind { address, source };
        let socket = TcpListener::bind(address).await.map_err(bind_error)?;
        let local_addr = socket.local_addr().map_err(bind_error)?;
        let (refresher, layout) = match settings.auto_layout {
            AutoLayoutSource::Fixed => (None, CurrentLayout::Fixed),
            AutoLayoutSource::AskCluster(access) => {
                let (refresher, layout) = Refresher::start(access).await;
                (Some(refresher), layout)
            }
        };
        info!(address = %local_addr, image = %settings.sidecar.image, "webhook listening (POST /mutate, GET /healthz)");
        Ok(Server {
            socket,
            local_addr,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            cert,
            state: Arc::new(State {
                sidecar: settings.sidecar,
                layout,
                body_limit: settings.body_limit,
            }),
            refresher,
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
        let refresher = self
            .refresher
            .map(|refresher| tokio::spawn(refresher.run(shutdown.clone())));
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
        if let Some(refresher) = refresher {
            let _ = refresher.await;
        }
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
