//! One exchange as the tap saw it, in raw form (heads as bytes or as decoded HTTP/2 fields, bounded body
//! copies), and how it is written as a `sidecar.capture/v1` record on the writer thread: the heads are
//! parsed there, never on the connection's task, and the record is encoded straight from them (see
//! [`crate::capture::record_view`]), without building a `Record` of owned strings first.

use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::record_parts::{request_view, response_view, RawFields};
use crate::capture::output::{RecordKind, WrittenRecord};
use crate::capture::record::{Body, Origin, Route};
use crate::capture::record_view::{DetailView, HttpView, RecordView, Start, Uid};
use crate::capture::{CaptureSettings, EncodeRecord};

/// Header fields an HTTP/1 request head may carry: more is refused (431) like a head over the size limit,
/// as hyper refuses it on the HTTP listeners (its limit is 100 too).
pub const MAX_FIELDS: usize = 100;

/// A message head as it crossed the wire.
pub enum RawHead {
    /// An HTTP/1 head: start line, fields, the blank line.
    Http1(Bytes),
    /// HTTP/2 fields as HPACK decoded them, pseudo-fields (`:method`, `:path`, `:status`) included.
    H2(Vec<(Bytes, Bytes)>),
}

/// Fields after a body.
#[derive(Default)]
pub enum RawTrailers {
    #[default]
    None,
    /// The trailer section of a chunked HTTP/1 body: `name: value` lines and the final blank line.
    Http1(Bytes),
    H2(Vec<(Bytes, Bytes)>),
}

pub struct RawMessage {
    pub head: RawHead,
    pub body: Body,
    pub trailers: RawTrailers,
}

pub struct RawExchange {
    pub id: u64,
    /// The inbound request (its record id) this outbound call was made for.
    pub caused_by: Option<u64>,
    pub origin: Arc<TapOrigin>,
    pub start: SystemTime,
    pub duration: Duration,
    pub request: RawMessage,
    pub response: Option<RawMessage>,
    pub error: Option<String>,
    pub upgraded: Option<String>,
}

/// What every record of one tapped stream shares, captured once when the tap starts so that records can be
/// built on the writer thread without holding the connection (and its open-connection gauge).
pub struct TapOrigin {
    origin: Origin,
    route: Arc<Route>,
    pub settings: Arc<CaptureSettings>,
    /// The client's address as records write it, spelled out once, by the first record's writer.
    client: OnceLock<String>,
}

impl TapOrigin {
    pub fn new(
        origin: Origin,
        route: Arc<Route>,
        settings: Arc<CaptureSettings>,
    ) -> Arc<TapOrigin> {
        Arc::new(TapOrigin {
            origin,
            route,
            settings,
            client: OnceLock::new(),
        })
    }

    /// The scheme of the URLs this stream's requests were made to.
    pub fn scheme(&self) -> &'static str {
        if self.route.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Record `id`: the fields every record of the stream shares, filled in from the origin and route
    /// (as [`Origin::record`] fills in an owned record's).
    fn view<'a>(
        &'a self,
        id: u64,
        start: SystemTime,
        duration: Duration,
        detail: DetailView<'a, RawFields<'a>>,
    ) -> RecordView<'a, RawFields<'a>> {
        RecordView {
            id,
            uid: Uid::Of(id),
            connection: self.origin.connection,
            direction: self.origin.direction,
            proxy_type: self.origin.proxy_type,
            protocol: self.origin.protocol,
            transport: self.route.transport,
            client: self.client.get_or_init(|| self.origin.client.to_string()),
            target: &self.route.target,
            delivered_to: self.route.delivered_to.as_deref(),
            tls: self.route.tls.as_ref(),
            caused_by: None,
            start: Start::At(start),
            duration_ms: duration.as_secs_f64() * 1000.0,
            detail,
        }
    }
}

impl EncodeRecord for RawExchange {
    fn encode(&self, line: &mut Vec<u8>) -> serde_json::Result<Option<WrittenRecord<'static>>> {
        let origin = &*self.origin;
        // The heads' fields are parsed into arrays on the stack; trailers, rare, into vectors.
        let mut request_fields = [MaybeUninit::uninit(); MAX_FIELDS];
        let mut request_trailers = Vec::new();
        let Some(request) = request_view(
            &self.request,
            origin,
            &mut request_fields,
            &mut request_trailers,
        ) else {
            return Ok(None);
        };
        let mut response_fields = [MaybeUninit::uninit(); MAX_FIELDS];
        let mut response_trailers = Vec::new();
        let response = self.response.as_ref().and_then(|response| {
            response_view(
                response,
                origin,
                &mut response_fields,
                &mut response_trailers,
            )
        });
        let detail = DetailView::Http(HttpView {
            request,
            response,
            error: self.error.as_deref(),
            upgraded: self.upgraded.as_deref(),
            mock: None,
        });
        let mut record = origin.view(self.id, self.start, self.duration, detail);
        record.caused_by = self.caused_by.map(Uid::Of);
        serde_json::to_writer(line, &record)?;
        Ok(Some(WrittenRecord {
            kind: RecordKind::Http,
            id: self.id,
            uid: "",
        }))
    }
}
