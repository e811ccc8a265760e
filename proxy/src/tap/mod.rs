//! The capture tap: records HTTP/1 and HTTP/2 exchanges from the bytes a stream relay moves, without
//! taking part in the conversation.
//!
//! The relay ([`crate::io::copy_bidirectional`]) moves every byte unchanged and in order; the tap is an
//! [`Observer`] on the client side of it and sees each chunk once, as it passes: what the client sent
//! (`read`) and what reached the client (`written`). A tracker follows the protocol's framing in those
//! chunks and keeps bounded copies of heads and bodies; a finished exchange is handed to the capture
//! writer, which builds and writes the record on its own thread.
//!
//! The tap never answers anyone. The one decision it feeds back is the sidecar's own limit on request
//! heads (`--max-request-head`): a client whose head goes past it is answered 431 by the relay, as the
//! HTTP listeners do. When the tracker cannot follow the stream (bytes that are not the protocol, a header
//! block HPACK cannot decode), the bytes keep flowing untouched and the stream is recorded as a stream,
//! its `error` saying what was seen.

mod encode;
mod exchange;
mod h2;
mod http1;
#[cfg(test)]
mod record_golden;
mod record_parts;
mod recorder;

use std::sync::Arc;

use bytes::Bytes;

use crate::capture::{Capture, Route};
use crate::connection::Connection;
use crate::io::Observer;
use exchange::TapOrigin;
use h2::H2Tracker;
use http1::{Http1Tracker, Stop};
use recorder::Recorder;

/// Which protocol a tapped stream opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 with prior knowledge: the client's first bytes are the connection preface.
    H2,
}

pub struct HttpTap {
    tracker: Tracker,
}

enum Tracker {
    Http1(Box<Http1Tracker>),
    // Both boxed: the tap lives in every tapped connection for its whole life, and
    // an unboxed tracker would size every HttpTap by the largest one.
    H2(Box<H2Tracker>),
}

/// How following a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// Every exchange was recorded (an upgrade or a tunnel ends the following by design).
    Whole,
    /// A request head over `--max-request-head`, refused by the sidecar.
    HeadTooLarge,
    /// The stream stopped being followed: the bytes went on untouched, and this says why.
    Lost(String),
}

impl HttpTap {
    pub fn new(
        context: &Connection,
        capture: &Capture,
        route: Arc<Route>,
        protocol: Protocol,
    ) -> Self {
        let origin = TapOrigin::new(context.origin(), route, capture.settings.clone());
        let recorder = Recorder::new(context, capture, origin);
        let tracker = match protocol {
            Protocol::Http1 => Tracker::Http1(Box::new(Http1Tracker::new(recorder))),
            Protocol::H2 => Tracker::H2(Box::new(H2Tracker::new(recorder))),
        };
        HttpTap { tracker }
    }

    /// Records the next exchanges under `route` (the reverse `http` listener's target is each request's
    /// `Host`, so it can change between the requests of one connection).
    pub fn set_route(&mut self, context: &Connection, capture: &Capture, route: Arc<Route>) {
        let origin = TapOrigin::new(context.origin(), route, capture.settings.clone());
        match &mut self.tracker {
            Tracker::Http1(tracker) => tracker.recorder.set_origin(origin),
            Tracker::H2(tracker) => tracker.recorder.set_origin(origin),
        }
    }

    /// The sidecar answered the request being followed itself (a refusal, a 502, a 504): the exchange is
    /// recorded with that answer (`head` as the record shows it, `body`) and `reason` as its error.
    pub fn answered_by_sidecar(&mut self, head: Bytes, body: &[u8], reason: String) {
        if let Tracker::Http1(tracker) = &mut self.tracker {
            tracker.answered_by_sidecar(head, body, reason);
        }
    }

    /// Whether the client's request head went past `--max-request-head`.
    pub fn head_too_large(&self) -> bool {
        matches!(
            &self.tracker,
            Tracker::Http1(t) if t.stopped == Some(Stop::HeadTooLarge)
        )
    }

    /// The relay ended (`failure` says why when it did not end cleanly): every exchange still open is
    /// recorded as it stands.
    pub fn finish(mut self, failure: Option<&str>) -> Followed {
        match &mut self.tracker {
            Tracker::Http1(tracker) => {
                tracker.finish(failure);
                match tracker.stopped.take() {
                    Some(Stop::HeadTooLarge) => Followed::HeadTooLarge,
                    Some(Stop::Lost(why)) => Followed::Lost(why),
                    Some(Stop::Upgraded) | None => Followed::Whole,
                }
            }
            Tracker::H2(tracker) => {
                tracker.finish(failure);
                match tracker.lost.take() {
                    Some(why) => Followed::Lost(why),
                    None => Followed::Whole,
                }
            }
        }
    }
}

impl Observer for HttpTap {
    fn read(&mut self, bytes: &[u8]) {
        match &mut self.tracker {
            Tracker::Http1(tracker) => tracker.client_sent(bytes),
            Tracker::H2(tracker) => tracker.client_sent(bytes),
        }
    }

    fn written(&mut self, bytes: &[u8]) {
        match &mut self.tracker {
            Tracker::Http1(tracker) => tracker.upstream_sent(bytes),
            Tracker::H2(tracker) => tracker.upstream_sent(bytes),
        }
    }

    fn halted(&self) -> bool {
        self.head_too_large()
    }
}
