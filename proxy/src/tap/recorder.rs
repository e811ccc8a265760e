//! What the trackers share: bounded body copies, the request-duration metric, and the hand-off of a
//! finished exchange to the writer (which writes its record off the connection's task).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use prometheus_client::metrics::histogram::Histogram;

use super::exchange::{RawExchange, RawHead, RawMessage, TapOrigin};
use crate::capture::probes::{is_probe_direction, is_probe_h2_fields, is_probe_http1_head};
use crate::capture::{BodyTap, Capture, Hints, Link};
use crate::connection::Connection;
use crate::metrics::{DirectionLabels, Metrics};

pub struct Recorder {
    origin: Arc<TapOrigin>,
    /// Where records go, and the links between exchanges (dual and transparent modes).
    capture: Capture,
    metrics: Arc<Metrics>,
    /// `sidecar_http_request_duration_seconds` for this direction, looked up once per connection rather
    /// than per exchange (as the engine does with capture off).
    request_duration: Histogram,
    direction: &'static str,
    body_limit: usize,
    /// `--capture-probes`: kubelet probes are recorded too, not only counted.
    record_probes: bool,
    /// `--max-request-head`: a request head past it is refused by the sidecar (431), as on the HTTP
    /// listeners.
    pub max_request_head: usize,
}

/// When an exchange began: the monotonic clock for its duration, the wall clock for its record; and its
/// link to the inbound request it was made for, or, inbound, its place among the requests in flight.
pub struct Started {
    pub id: u64,
    at: Instant,
    wall: SystemTime,
    link: Link,
}

impl Recorder {
    pub fn new(context: &Connection, capture: &Capture, origin: Arc<TapOrigin>) -> Self {
        Recorder {
            origin,
            capture: capture.clone(),
            metrics: context.metrics.clone(),
            request_duration: context
                .metrics
                .request_duration
                .get_or_create(&DirectionLabels {
                    direction: context.direction,
                })
                .clone(),
            direction: context.direction,
            body_limit: capture.settings.body_limit,
            record_probes: capture.settings.record_probes,
            max_request_head: context.max_request_head(),
        }
    }

    /// What the next exchanges' records share from now on (their route changed).
    pub fn set_origin(&mut self, origin: Arc<TapOrigin>) {
        self.origin = origin;
    }

    /// An exchange begins; its head's `hints` are asked for only where outbound calls are linked.
    pub fn start<'a>(&self, hints: impl FnOnce() -> Hints<'a>) -> Started {
        let id = crate::capture::next_record_id();
        Started {
            id,
            at: Instant::now(),
            wall: SystemTime::now(),
            link: self.capture.link(id, self.direction, hints),
        }
    }

    pub fn body_tap(&self) -> BodyTap {
        BodyTap::new(self.body_limit)
    }

    /// Hands a finished exchange over; counts its duration.
    pub fn submit(
        &self,
        started: Started,
        request: RawMessage,
        response: Option<RawMessage>,
        error: Option<String>,
        upgraded: Option<String>,
    ) {
        let duration = started.at.elapsed();
        self.request_duration.observe(duration.as_secs_f64());
        if !self.record_probes && is_probe_direction(self.direction) && is_probe(&request.head) {
            self.metrics
                .probes_skipped
                .get_or_create(&DirectionLabels {
                    direction: self.direction,
                })
                .inc();
            return;
        }
        self.capture.sink.submit_to_encode(Box::new(RawExchange {
            id: started.id,
            caused_by: started.link.caused_by,
            origin: self.origin.clone(),
            start: started.wall,
            duration,
            request,
            response,
            error,
            upgraded,
        }));
    }
}

/// Whether the request is a kubelet probe's (see `capture::probes`).
fn is_probe(head: &RawHead) -> bool {
    match head {
        RawHead::Http1(head) => is_probe_http1_head(head),
        RawHead::H2(fields) => is_probe_h2_fields(fields),
    }
}
