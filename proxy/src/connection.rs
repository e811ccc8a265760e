//! One client connection, from accept to its last record: who the client is, which listener took it, and
//! what every part of it shares (its handler, its streams and exchanges, and a tunnel or upgrade that
//! outlives the handler). Built by the accept loop ([`crate::server`]) and handed to the listener's handler.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::capture::{Capture, Origin, Route, StreamCapture};
use crate::metrics::{GaugeGuard, HandshakeErrorLabels, ListenerLabels, Metrics};
use crate::tls_out::{TlsInterceptor, TlsSession};

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// One accepted client connection, cloned into each exchange of it.
#[derive(Clone)]
pub struct Connection {
    /// Unique within one sidecar process, in accept order: the `connection` field of its records.
    pub id: u64,
    pub client: SocketAddr,
    /// `inbound` or `outbound`: the listener that accepted it.
    pub direction: &'static str,
    /// The sidecar's `proxy-type`.
    pub proxy_type: &'static str,
    /// The listener's protocol: `tcp`, `http`, `socks` or `transparent`.
    pub protocol: &'static str,
    pub metrics: Arc<Metrics>,
    /// Where this connection's records go and what they keep; `None` with capture off, when nothing of
    /// capture is built for it.
    pub capture: Option<Capture>,
    /// tls-out, for the streams of an outbound connection when it is on.
    tls_out: Option<Arc<TlsInterceptor>>,
    /// The TLS the sidecar terminated on this connection when it serves the HTTP inside itself (mock
    /// mode): the `tls` of every exchange recorded in it.
    decrypted: Option<Arc<TlsSession>>,
    /// `--max-request-head`, for HTTP found inside this connection's streams: it is served by the sidecar
    /// like any other, and a head that never ends must not hold more memory there than on an HTTP listener.
    max_request_head: usize,
    /// Keeps the connection counted as open while any part of it (a tunnel, an upgrade) is alive.
    _open: Option<Arc<GaugeGuard>>,
}

impl Connection {
    pub fn new(
        capture: Option<Capture>,
        metrics: Arc<Metrics>,
        direction: &'static str,
        proxy_type: &'static str,
        protocol: &'static str,
        client: SocketAddr,
    ) -> Self {
        Connection {
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            client,
            direction,
            proxy_type,
            protocol,
            metrics,
            capture,
            tls_out: None,
            decrypted: None,
            max_request_head: crate::options::DEFAULT_MAX_REQUEST_HEAD,
            _open: None,
        }
    }

    /// What every record of this connection says about where it came from.
    pub fn origin(&self) -> Origin {
        Origin {
            connection: self.id,
            direction: self.direction,
            proxy_type: self.proxy_type,
            protocol: self.protocol,
            client: self.client,
        }
    }

    /// Starts the record of a stream on `route`, when capture is on: before the upstream is dialled, so
    /// that ids follow the order streams started and a refused dial is recorded too.
    pub fn record_stream(&self, route: &Arc<Route>) -> Option<StreamCapture> {
        let capture = self.capture.as_ref()?;
        Some(StreamCapture::begin(capture, self.origin(), route.clone()))
    }

    /// Lets this connection's TLS streams be intercepted (tls-out).
    pub fn with_tls_out(mut self, interceptor: Option<Arc<TlsInterceptor>>) -> Self {
        self.tls_out = interceptor;
        self
    }

    /// tls-out's interceptor, when this connection's TLS streams are to be intercepted.
    pub fn tls_out(&self) -> Option<&TlsInterceptor> {
        self.tls_out.as_deref()
    }

    /// The same connection inside TLS the sidecar terminated, whose HTTP it serves itself (mock mode).
    pub fn inside_tls(mut self, session: TlsSession) -> Self {
        self.decrypted = Some(Arc::new(session));
        self
    }

    /// The TLS the sidecar terminated around this connection's HTTP, when it serves that HTTP itself.
    pub fn decrypted(&self) -> Option<&TlsSession> {
        self.decrypted.as_deref()
    }

    /// The largest request head HTTP inside this connection's streams may send (`--max-request-head`).
    pub fn with_max_request_head(mut self, limit: usize) -> Self {
        self.max_request_head = limit;
        self
    }

    pub fn max_request_head(&self) -> usize {
        self.max_request_head
    }

    /// Ties the connection's open-gauge to this connection and all its clones.
    pub fn holding(mut self, open: Arc<GaugeGuard>) -> Self {
        self._open = Some(open);
        self
    }

    /// Counts a client handshake that was refused or failed (`timeout`, `malformed`, `not_socks`, ...).
    pub fn count_handshake_error(&self, reason: &'static str) {
        self.metrics
            .handshake_errors
            .get_or_create(&HandshakeErrorLabels {
                direction: self.direction,
                protocol: self.protocol,
                reason,
            })
            .inc();
    }

    /// Counts a connection to the app or an upstream that could not be opened.
    pub fn count_connect_failure(&self) {
        self.metrics
            .upstream_connect_failures
            .get_or_create(&ListenerLabels {
                direction: self.direction,
                protocol: self.protocol,
            })
            .inc();
    }
}
