//! Traffic capture: every exchange through the sidecar becomes one JSON-lines record.
//!
//! - [`record`]: the record schema (`sidecar.capture/v1`).
//! - [`http`] and [`stream`]: recording HTTP exchanges and opaque streams as they flow.
//! - [`sink`]: the bounded queue and the writer thread; capture never holds traffic.
//! - [`probes`]: kubelet probes, left out of the capture unless asked for.
//! - [`output`]: what the writer hands records to: the file sink ([`file_sink`]) and NATS ([`nats`]).

mod body_tap;
pub mod causes;
pub mod content_coding;
mod file_sink;
pub mod har;
pub mod http;
pub mod json_line;
pub(crate) mod jsonl_file;
pub mod nats;
pub(crate) mod output;
pub mod probes;
mod raw_head;
pub mod record;
pub mod record_view;
mod rfc3339;
mod settings;
pub mod sink;
pub mod stream;

use std::sync::Arc;

pub use body_tap::BodyTap;
pub use causes::{Causes, Hints, Link};
pub use http::{CapturingBody, HttpCapture};
pub use jsonl_file::Rotation;
pub(crate) use record::next_record_id;
pub use record::{Origin, Route};
pub use settings::{CaptureSettings, DEFAULT_BODY_LIMIT, DEFAULT_REDACTED, REDACTED};
pub use sink::{CaptureSink, CaptureWriter, Destination, EncodeRecord, SinkOptions};
pub use stream::{StreamCapture, StreamEnd, StreamTap, TappedIo};

/// What capture keeps for a connection: where its records go, and what they keep.
#[derive(Clone)]
pub struct Capture {
    pub sink: CaptureSink,
    pub settings: Arc<CaptureSettings>,
    /// Dual and transparent modes: the inbound requests in flight, which outbound calls are linked to.
    pub causes: Option<Arc<Causes>>,
}

impl Capture {
    /// The link of exchange `id`, beginning in `direction` (its head's `hints` read only when links are
    /// kept).
    pub fn link<'a>(&self, id: u64, direction: &str, hints: impl FnOnce() -> Hints<'a>) -> Link {
        match &self.causes {
            Some(causes) => causes.link(id, direction == "inbound", hints()),
            None => Link::default(),
        }
    }
}
