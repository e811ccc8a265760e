//! What every record of one client connection shares: who, where, through which listener.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::record::{Detail, Record, TlsSession, SCHEMA};
use super::settings::CaptureSettings;
use super::sink::CaptureSink;
use crate::metrics::{GaugeGuard, HandshakeErrorLabels, ListenerLabels, Metrics};
use crate::tls_out::TlsInterceptor;

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
static NEXT_RECORD: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_record_id() -> u64 {
    NEXT_RECORD.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// How a record's bytes reached the sidecar and where they were going.
pub(super) struct RecordRoute {
    pub transport: &'static str,
    pub target: String,
    pub delivered_to: Option<String>,
    pub tls: Option<TlsSession>,
}

/// Per-connection capture context, cloned into each exchange of the connection.
#[derive(Clone)]
pub struct CaptureContext {
    pub sink: CaptureSink,
    pub settings: Arc<CaptureSettings>,
    pub metrics: Arc<Metrics>,
    pub connection: u64,
    pub direction: &'static str,
    pub proxy_type: &'static str,
    pub protocol: &'static str,
    pub client: SocketAddr,
    /// tls-out, for the streams of an outbound connection when it is on.
    tls_out: Option<Arc<TlsInterceptor>>,
    /// `--max-request-head`, for HTTP found inside this connection's streams: it is served by the sidecar
    /// like any other, and a head that never ends must not hold more memory there than on an HTTP listener.
    max_request_head: usize,
    /// Keeps the connection counted as open while any part of it (a tunnel, an upgrade) is alive.
    _open: Option<Arc<GaugeGuard>>,
}

impl CaptureContext {
    pub fn new(
        sink: CaptureSink,
        settings: Arc<CaptureSettings>,
        metrics: Arc<Metrics>,
        direction: &'static str,
        proxy_type: &'static str,
        protocol: &'static str,
        client: SocketAddr,
    ) -> Self {
        CaptureContext {
            sink,
            settings,
            metrics,
            connection: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            direction,
            proxy_type,
            protocol,
            client,
            tls_out: None,
            max_request_head: crate::options::DEFAULT_MAX_REQUEST_HEAD,
            _open: None,
        }
    }

    /// A record of this connection: the fields every kind shares, filled in from the context.
    pub(super) fn record(
        &self,
        id: u64,
        route: RecordRoute,
        started: (SystemTime, Duration),
        detail: Detail,
    ) -> Record {
        Record {
            schema: SCHEMA.to_owned(),
            id,
            connection: self.connection,
            direction: self.direction.to_owned(),
            proxy_type: self.proxy_type.to_owned(),
            protocol: self.protocol.to_owned(),
            transport: route.transport.to_owned(),
            client: self.client.to_string(),
            target: route.target,
            delivered_to: route.delivered_to,
            tls: route.tls,
            start: rfc3339(started.0),
            duration_ms: started.1.as_secs_f64() * 1000.0,
            detail,
        }
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

    /// The largest request head HTTP inside this connection's streams may send (`--max-request-head`).
    pub fn with_max_request_head(mut self, limit: usize) -> Self {
        self.max_request_head = limit;
        self
    }

    pub fn max_request_head(&self) -> usize {
        self.max_request_head
    }

    /// Ties the connection's open-gauge to this context and all its clones.
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
