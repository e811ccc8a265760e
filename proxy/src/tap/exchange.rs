//! One exchange as the tap saw it, in raw form (heads as bytes or as decoded HTTP/2 fields, bounded body
//! copies), and what every record of its stream shares. It is written as a record on the writer thread
//! (`tap::encode`), never on the connection's task.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::capture::record::{Body, Origin, Route};
use crate::capture::record_view::SharedView;
use crate::capture::CaptureSettings;

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
    /// The fields all its records share, encoded once, by the first record's writer (see
    /// [`SharedView`]).
    shared: OnceLock<Vec<u8>>,
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
            shared: OnceLock::new(),
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

    /// The fields all records of the stream share, encoded.
    pub fn shared(&self) -> &[u8] {
        self.shared.get_or_init(|| {
            let client = self.origin.client.to_string();
            SharedView {
                connection: self.origin.connection,
                direction: self.origin.direction,
                proxy_type: self.origin.proxy_type,
                protocol: self.origin.protocol,
                transport: self.route.transport,
                client: &client,
                target: &self.route.target,
                delivered_to: self.route.delivered_to.as_deref(),
                tls: self.route.tls.as_ref(),
            }
            .encode()
        })
    }
}
