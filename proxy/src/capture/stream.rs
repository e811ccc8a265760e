//! Recording an opaque stream (tcp relay, SOCKS, CONNECT tunnel): one record per connection with the
//! target, what the first bytes looked like, bytes each way, duration and how it ended.
//!
//! [`TappedIo`] wraps the client side of the relay: it counts bytes for the record and, only when payload
//! capture is on, keeps a bounded copy of each direction. (The relayed-bytes metric is counted for every
//! connection at accept, by `io::MeteredIo`.)

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::body_tap::BodyTap;
use super::record::{next_record_id, Detail, Origin, Route, StreamPayload, StreamSummary};
use super::Capture;
use crate::detect::{is_h2_preface, is_http_request, tls};
use crate::io::{ObservedIo, Observer, SpliceCounter};

/// How much of the client's first bytes is kept to name the protocol.
const SNIFF_LEN: usize = 24;

/// How the relay ended, for the record's `end` field.
pub enum StreamEnd {
    Closed,
    Reset(String),
    Refused(String),
    /// Both sides finished, and the stream is recorded as a stream because its HTTP could not be followed
    /// to the end: why.
    Untracked(String),
}

/// The record of one stream, filled in as it goes and submitted by [`StreamCapture::finish`] (or, for a
/// stream cut off before it ended, such as at shutdown, when it is dropped).
pub struct StreamCapture {
    /// Taken when the stream started, so ids follow the order records started.
    id: u64,
    capture: Capture,
    origin: Origin,
    /// The stream's route, as its handler classified it; inside tls-out's TLS once it was intercepted.
    route: Arc<Route>,
    started: Instant,
    start_time: SystemTime,
    /// Shared with the [`TappedIo`], so a stream dropped mid-relay is still recorded with its counts.
    progress: Arc<Progress>,
    submitted: bool,
    sni: Option<String>,
}

/// Bytes each way and what the first bytes looked like, as the relay goes.
#[derive(Default)]
struct Progress {
    client_to_target: AtomicU64,
    target_to_client: AtomicU64,
    protocol_seen: AtomicU8,
}

const SEEN: [&str; 5] = ["none", "tls", "http2", "http", "opaque"];

impl StreamCapture {
    pub fn begin(capture: &Capture, origin: Origin, route: Arc<Route>) -> Self {
        StreamCapture {
            id: next_record_id(),
            capture: capture.clone(),
            origin,
            route,
            started: Instant::now(),
            start_time: SystemTime::now(),
            progress: Arc::default(),
            submitted: false,
            sni: None,
        }
    }

    /// Wraps the client side of the relay.
    pub fn tap<S>(&self, client: S) -> TappedIo<S> {
        let limit = self.capture.settings.body_limit;
        let keep_payload = self.capture.settings.stream_payload;
        TappedIo::new(
            client,
            StreamTap {
                from_client: keep_payload.then(|| BodyTap::new(limit)),
                to_client: keep_payload.then(|| BodyTap::new(limit)),
                progress: self.progress.clone(),
                first_bytes: Vec::new(),
            },
        )
    }

    /// Submits the record of a stream that was relayed.
    pub fn finish<S>(mut self, tapped: TappedIo<S>, end: StreamEnd) {
        let tap = tapped.into_observer();
        let payload = match (tap.from_client, tap.to_client) {
            (Some(up), Some(down)) => Some(StreamPayload {
                client_to_target: up.finish(true),
                target_to_client: down.finish(true),
            }),
            _ => None,
        };
        self.submit(end, payload);
    }

    /// Submits the record of a stream whose client connection was lost inside a handshake (tls-out), so
    /// no payload copies can be taken from it.
    pub fn end(mut self, end: StreamEnd) {
        self.submit(end, None);
    }

    /// Submits the record of a stream whose target could not be reached.
    pub fn refused(mut self, reason: String) {
        self.submit(StreamEnd::Refused(reason), None);
    }

    /// The server name from the stream's TLS ClientHello.
    pub fn note_sni(&mut self, sni: String) {
        self.sni = Some(sni);
    }

    /// The stream's TLS was terminated by the sidecar (tls-out): `inside` is its route with the session.
    pub fn note_intercepted(&mut self, inside: Arc<Route>) {
        self.sni = inside.tls.as_ref().and_then(|session| session.sni.clone());
        self.route = inside;
    }

    /// No stream record: the stream turned out to be HTTP, recorded exchange by exchange.
    pub fn discard(mut self) {
        self.submitted = true;
    }

    fn submit(&mut self, end: StreamEnd, payload: Option<StreamPayload>) {
        self.submitted = true;
        let protocol_seen = SEEN[usize::from(self.progress.protocol_seen.load(Ordering::Relaxed))];
        let up = self.progress.client_to_target.load(Ordering::Relaxed);
        let down = self.progress.target_to_client.load(Ordering::Relaxed);
        let (end, error) = match end {
            StreamEnd::Closed => ("closed", None),
            StreamEnd::Reset(reason) => ("reset", Some(reason)),
            StreamEnd::Refused(reason) => ("refused", Some(reason)),
            StreamEnd::Untracked(reason) => {
                ("closed", Some(format!("recorded as a stream: {reason}")))
            }
        };
        let route = Route::clone(&self.route);
        let detail = Detail::Stream(StreamSummary {
            protocol_seen: protocol_seen.to_owned(),
            bytes_client_to_target: up,
            bytes_target_to_client: down,
            sni: self.sni.take(),
            end: end.to_owned(),
            error,
            payload,
        });
        let started = (self.start_time, self.started.elapsed());
        let record = self.origin.record(self.id, route, started, detail);
        self.capture.sink.submit(record);
    }
}

impl Drop for StreamCapture {
    /// Dropped mid-relay (the sidecar stopped, or the task was cancelled): record what got through.
    fn drop(&mut self) {
        if !self.submitted {
            self.submit(
                StreamEnd::Reset(
                    "the stream was cut off before it ended (the sidecar was stopping)".into(),
                ),
                None,
            );
        }
    }
}

/// Names the protocol from the client's first bytes.
fn classify(first: &[u8]) -> &'static str {
    // The same tests detection uses, so a record never calls "http" what detection relayed as opaque
    // (a Redis `GET key`, say).
    if first.is_empty() {
        "none"
    } else if tls::is_tls_handshake(first) {
        "tls"
    } else if is_h2_preface(first) {
        "http2"
    } else if is_http_request(first) {
        "http"
    } else {
        "opaque"
    }
}

/// The client side of a relay, counted and optionally copied.
pub type TappedIo<S> = ObservedIo<S, StreamTap>;

/// What a stream record needs from the bytes: counts (shared with the record, so a stream cut off mid-relay
/// still has them), what the first bytes looked like, and, with payload capture, bounded copies.
pub struct StreamTap {
    from_client: Option<BodyTap>,
    to_client: Option<BodyTap>,
    progress: Arc<Progress>,
    first_bytes: Vec<u8>,
}

impl StreamTap {
    /// Stops keeping payload copies (the stream turned out to be HTTP, recorded exchange by exchange).
    pub fn stop_copying(&mut self) {
        self.from_client = None;
        self.to_client = None;
    }
}

impl StreamTap {
    /// Whether payload copies are kept (`--capture-payload`): then the bytes must pass through user space.
    pub fn copies_payload(&self) -> bool {
        self.from_client.is_some() || self.to_client.is_some()
    }

    /// Whether the client's first bytes the record names the protocol from have all been seen.
    pub fn has_seen_first_bytes(&self) -> bool {
        self.first_bytes.len() >= SNIFF_LEN
    }
}

/// A spliced stream's bytes, counted for the record without being seen (what they were was seen already:
/// only streams detection has classified are spliced).
impl SpliceCounter for StreamTap {
    fn forward(&mut self, n: usize) {
        self.progress
            .client_to_target
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    fn backward(&mut self, n: usize) {
        self.progress
            .target_to_client
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Observer for StreamTap {
    fn read(&mut self, chunk: &[u8]) {
        if self.first_bytes.len() < SNIFF_LEN {
            let n = chunk.len().min(SNIFF_LEN - self.first_bytes.len());
            self.first_bytes.extend_from_slice(&chunk[..n]);
            let seen = classify(&self.first_bytes);
            let code = SEEN.iter().position(|name| *name == seen).unwrap_or(0) as u8;
            self.progress.protocol_seen.store(code, Ordering::Relaxed);
        }
        self.progress
            .client_to_target
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(tap) = &mut self.from_client {
            tap.observe(chunk);
        }
    }

    fn written(&mut self, chunk: &[u8]) {
        self.progress
            .target_to_client
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        if let Some(tap) = &mut self.to_client {
            tap.observe(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn names_protocols_by_their_first_bytes() {
        assert_eq!(classify(b""), "none");
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02]), "tls");
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), "http");
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "http2");
        assert_eq!(classify(b"GET key\r\n"), "opaque", "Redis, not HTTP");
        assert_eq!(classify(b"\x00\x01binary"), "opaque");
    }
}
