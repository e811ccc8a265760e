//! The sidecar's Prometheus metrics, served in text format by the admin listener at `/metrics`.
//!
//! Families are created once and cloned into the places that count (they are cheap handles onto shared
//! atomics), so counting on the data path is an atomic add, never a lock or an allocation per byte.

use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::budget::Purpose;

/// One listener: its direction and protocol.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub direction: &'static str,
    pub protocol: &'static str,
}

/// Bytes relayed by one listener in one flow (`client_to_target` or `target_to_client`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub direction: &'static str,
    pub flow: &'static str,
}

/// A refused or failed handshake, by reason (`timeout`, `malformed`, `too_large`, `not_socks`,
/// `unsupported_command`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeErrorLabels {
    pub direction: &'static str,
    pub protocol: &'static str,
    pub reason: &'static str,
}

/// Capture records by kind (`http`, `stream`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    pub kind: &'static str,
}

/// HTTP exchanges by direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: &'static str,
}

/// One outcome of tls-out: `intercepted`, `upstream_failed` (the upstream's TLS or certificate failed, the
/// client got an alert), `client_failed` (the client refused the minted certificate or left), `passed`
/// (relayed untouched: an excluded host).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsOutcomeLabels {
    pub result: &'static str,
}

/// Memory-budget reservations by what they were for (`relay_buffer`, `request_head`, `capture_copy`,
/// `queued_for_peer`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PurposeLabels {
    pub purpose: &'static str,
}

/// Leaf certificates shown to clients, by `source`: `cached` or `minted`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeafLabels {
    pub source: &'static str,
}

type HistogramFamily = Family<DirectionLabels, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    // 1 ms to ~33 s in doublings.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Holds a gauge up by one for as long as it lives (an open connection, however its tasks end).
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub fn new(gauge: Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct Metrics {
    registry: Registry,
    pub connections_accepted: Family<ListenerLabels, Counter>,
    pub connections_open: Family<ListenerLabels, Gauge>,
    pub relayed_bytes: Family<FlowLabels, Counter>,
    pub handshake_errors: Family<HandshakeErrorLabels, Counter>,
    pub upstream_connect_failures: Family<ListenerLabels, Counter>,
    pub upstream_timeouts: Family<ListenerLabels, Counter>,
    pub connections_refused: Family<ListenerLabels, Counter>,
    pub accept_errors: Family<ListenerLabels, Counter>,
    pub records_captured: Family<RecordLabels, Counter>,
    pub records_dropped: Counter,
    /// Kubelet probes (User-Agent `kube-probe/...`) not recorded, per direction.
    pub probes_skipped: Family<DirectionLabels, Counter>,
    /// Set when /metrics is scraped (see `admin`).
    pub runtime_tasks_alive: Gauge,
    pub request_duration: HistogramFamily,
    pub tls_connections: Family<TlsOutcomeLabels, Counter>,
    pub tls_leaf_certificates: Family<LeafLabels, Counter>,
    memory_budget: MemoryBudgetMetrics,
    /// The NATS sink's records (`--capture-sink`); zero without one.
    pub nats_sink: NatsSinkMetrics,
}

/// Records on their way to NATS JetStream, through the spool (see `capture::nats`).
pub struct NatsSinkMetrics {
    pub spooled: Counter,
    pub published: Counter,
    pub acknowledged: Counter,
    pub resent: Counter,
    pub dropped: Counter,
    pub lag: Gauge,
    pub spool_bytes: Gauge,
}

impl NatsSinkMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = NatsSinkMetrics {
            spooled: Counter::default(),
            published: Counter::default(),
            acknowledged: Counter::default(),
            resent: Counter::default(),
            dropped: Counter::default(),
            lag: Gauge::default(),
            spool_bytes: Gauge::default(),
        };
        let registry = registry.sub_registry_with_prefix("capture_nats");
        registry.register(
            "spooled",
            "Capture records written to the NATS spool (every record bound for NATS goes through it)",
            metrics.spooled.clone(),
        );
        registry.register(
            "published",
            "Capture records published to JetStream for the first time (a message carries a run of records; each counts)",
            metrics.published.clone(),
        );
        registry.register(
            "acknowledged",
            "Capture records JetStream acknowledged (their message stored, or already stored under the same id)",
            metrics.acknowledged.clone(),
        );
        registry.register(
            "resent",
            "Capture records published again after an acknowledgement failed (in the same messages, under the same ids: JetStream drops the copies)",
            metrics.resent.clone(),
        );
        registry.register(
            "dropped",
            "Capture records not sent to NATS: the spool was full (--capture-spool-size) or could not be written, or the record's message was larger than NATS accepts",
            metrics.dropped.clone(),
        );
        registry.register(
            "lag_records",
            "Capture records in the spool not yet acknowledged by JetStream",
            metrics.lag.clone(),
        );
        registry.register(
            "spool_bytes",
            "Bytes of the NATS spool's files",
            metrics.spool_bytes.clone(),
        );
        metrics
    }
}

/// Idle connections to the app in the reverse `http` listeners' pools (`http/engine/app_pool.rs` counts
/// them), process-wide like the memory budget, read when the metrics are scraped.
pub static APP_IDLE_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// The process's memory budget ([`crate::budget`]), read when the metrics are scraped.
struct MemoryBudgetMetrics {
    limit: Gauge,
    used: Gauge,
    denied: Family<PurposeLabels, Counter>,
    shed: Family<PurposeLabels, Counter>,
    /// Not the budget's, but read at the same moment: the pool's idle connections (each holds a little of
    /// the budget).
    app_idle: Gauge,
}

impl MemoryBudgetMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = MemoryBudgetMetrics {
            limit: Gauge::default(),
            used: Gauge::default(),
            denied: Family::default(),
            shed: Family::default(),
            app_idle: Gauge::default(),
        };
        registry.register(
            "memory_budget_bytes",
            "The memory budget for bytes held for peers (--memory-budget); 0 when there is none",
            metrics.limit.clone(),
        );
        registry.register(
            "memory_budget_used_bytes",
            "Bytes of the memory budget held now (relay buffers, request heads, capture copies, responses waiting for slow clients, each open connection's fixed cost)",
            metrics.used.clone(),
        );
        registry.register(
            "memory_budget_denied",
            "Reservations the memory budget could not spare, by purpose: the relay kept its small buffer, the tap stopped following a stream, a capture copy stopped growing, an HTTP connection paused reading a request head or an upstream's response for a slow client, or an accept loop paused for lack of room for another connection (connection)",
            metrics.denied.clone(),
        );
        registry.register(
            "memory_budget_shed",
            "Connections closed because they waited on a spent memory budget too long, by what they held: request_head (a head that could not be read on), queued_for_peer (a client that read nothing while its response waited) or connection (an idle connection closed to make room for new ones)",
            metrics.shed.clone(),
        );
        registry.register(
            "app_idle_connections",
            "Idle keep-alive connections to the app the reverse http listener holds for later requests (--app-idle-connections)",
            metrics.app_idle.clone(),
        );
        metrics
    }

    fn refresh(&self) {
        self.app_idle
            .set(i64::try_from(APP_IDLE_CONNECTIONS.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        let budget = crate::budget::process();
        let gauge = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
        self.limit.set(gauge(budget.limit().unwrap_or(0)));
        self.used.set(gauge(budget.used()));
        for purpose in Purpose::ALL {
            let counter = self.denied.get_or_create(&PurposeLabels {
                purpose: purpose.label(),
            });
            // The budget counts; the counter catches up with it.
            counter.inc_by(budget.denied(purpose).saturating_sub(counter.get()));
        }
        for purpose in [
            Purpose::RequestHead,
            Purpose::QueuedForPeer,
            Purpose::Connection,
        ] {
            let counter = self.shed.get_or_create(&PurposeLabels {
                purpose: purpose.label(),
            });
            counter.inc_by(budget.shed(purpose).saturating_sub(counter.get()));
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sidecar");
        let connections_accepted = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted, per listener",
            connections_accepted.clone(),
        );
        let connections_open = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Client connections currently open, per listener",
            connections_open.clone(),
        );
        let relayed_bytes = Family::<FlowLabels, Counter>::default();
        registry.register(
            "relayed_bytes",
            "Bytes relayed, per listener direction and flow",
            relayed_bytes.clone(),
        );
        let handshake_errors = Family::<HandshakeErrorLabels, Counter>::default();
        registry.register(
            "handshake_errors",
            "Client handshakes refused or failed, by reason",
            handshake_errors.clone(),
        );
        let upstream_connect_failures = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "upstream_connect_failures",
            "Connections to the app or an upstream that could not be opened",
            upstream_connect_failures.clone(),
        );
        let upstream_timeouts = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "upstream_timeouts",
            "HTTP requests answered 504 because the app or upstream did not begin its response within --upstream-timeout",
            upstream_timeouts.clone(),
        );
        let connections_refused = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Client connections refused because their direction already had --max-connections open",
            connections_refused.clone(),
        );
        let accept_errors = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "accept_errors",
            "Failed accepts, per listener (usually the file-descriptor limit): the listener pauses and retries",
            accept_errors.clone(),
        );
        let records_captured = Family::<RecordLabels, Counter>::default();
        registry.register(
            "capture_records",
            "Capture records written, by kind",
            records_captured.clone(),
        );
        let probes_skipped = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "capture_probes_skipped",
            "Kubelet probes (User-Agent kube-probe/...) left out of the capture, per direction; --capture-probes records them",
            probes_skipped.clone(),
        );
        let runtime_tasks_alive = Gauge::default();
        registry.register(
            "runtime_tasks_alive",
            "Tasks alive in the sidecar's async runtime (connections, their upstream sides, helpers); it returns to its resting level when traffic stops, so a steady climb is a leak",
            runtime_tasks_alive.clone(),
        );
        let records_dropped = Counter::default();
        registry.register(
            "capture_records_dropped",
            "Capture records lost: the writer queue was full, or encoding or writing failed",
            records_dropped.clone(),
        );
        let request_duration = HistogramFamily::new_with_constructor(request_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from request head to the end of the response body, per direction",
            request_duration.clone(),
        );
        let tls_connections = Family::<TlsOutcomeLabels, Counter>::default();
        registry.register(
            "tls_out_connections",
            "TLS streams tls-out handled, by result (intercepted, upstream_failed, client_failed, passed)",
            tls_connections.clone(),
        );
        let tls_leaf_certificates = Family::<LeafLabels, Counter>::default();
        registry.register(
            "tls_out_leaf_certificates",
            "Leaf certificates shown to clients, by source (cached, minted)",
            tls_leaf_certificates.clone(),
        );
        let memory_budget = MemoryBudgetMetrics::register(&mut registry);
        let nats_sink = NatsSinkMetrics::register(&mut registry);
        Metrics {
            nats_sink,
            registry,
            memory_budget,
            connections_accepted,
            connections_open,
            relayed_bytes,
            handshake_errors,
            upstream_connect_failures,
            upstream_timeouts,
            connections_refused,
            accept_errors,
            records_captured,
            records_dropped,
            probes_skipped,
            runtime_tasks_alive,
            request_duration,
            tls_connections,
            tls_leaf_certificates,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        self.memory_budget.refresh();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
