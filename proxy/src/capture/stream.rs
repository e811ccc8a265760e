//! Recording an opaque stream (tcp relay, SOCKS, CONNECT tunnel): one record per connection with the
//! target, what the first bytes looked like, bytes each way, duration and how it ended.
//!
//! [`TappedIo`] wraps the client side of the relay: it counts bytes for the record and, only when payload
//! capture is on, keeps a bounded copy of each direction. (The relayed-bytes metric is counted for every
//! connection at accept, by `io::MeteredIo`.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::body_tap::BodyTap;
use super::context::{next_record_id, rfc3339, CaptureContext};
use super::record::{Detail, Record, StreamPayload, StreamSummary, SCHEMA};

/// How much of the client's first bytes is kept to name the protocol.
const SNIFF_LEN: usize = 24;

/// How the relay ended, for the record's `end` field.
pub enum StreamEnd {
    Closed,
    Reset(String),
    Refused(String),
}

/// The record of one stream, filled in as it goes and submitted by [`StreamCapture::finish`].
pub struct StreamCapture {
    /// Taken when the stream started, so ids follow the order records started.
    id: u64,
    context: CaptureContext,
    transport: &'static str,
    target: String,
    delivered_to: Option<String>,
    started: Instant,
    start_time: SystemTime,
}

impl StreamCapture {
    pub fn begin(
        context: &CaptureContext,
        transport: &'static str,
        target: String,
        delivered_to: Option<String>,
    ) -> Self {
        StreamCapture {
            id: next_record_id(),
            context: context.clone(),
            transport,
            target,
            delivered_to,
            started: Instant::now(),
            start_time: SystemTime::now(),
        }
    }

    pub fn transport(&self) -> &'static str {
        self.transport
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn delivered_to(&self) -> Option<&str> {
        self.delivered_to.as_deref()
    }

    /// Wraps the client side of the relay.
    pub fn tap<S>(&self, client: S) -> TappedIo<S> {
        let limit = self.context.settings.body_limit;
        let keep_payload = self.context.settings.stream_payload && self.context.sink.is_enabled();
        TappedIo {
            inner: client,
            from_client: Direction::new(keep_payload.then(|| BodyTap::new(limit))),
            to_client: Direction::new(keep_payload.then(|| BodyTap::new(limit))),
            first_bytes: Vec::new(),
        }
    }

    /// Submits the record of a stream that was relayed.
    pub fn finish<S>(self, tapped: TappedIo<S>, end: StreamEnd) {
        let protocol_seen = classify(&tapped.first_bytes);
        let payload = match (tapped.from_client.tap, tapped.to_client.tap) {
            (Some(up), Some(down)) => Some(StreamPayload {
                client_to_target: up.finish(true),
                target_to_client: down.finish(true),
            }),
            _ => None,
        };
        self.submit(
            protocol_seen,
            tapped.from_client.bytes,
            tapped.to_client.bytes,
            end,
            payload,
        );
    }

    /// Submits the record of a stream whose target could not be reached.
    pub fn refused(self, reason: String) {
        self.submit("none", 0, 0, StreamEnd::Refused(reason), None);
    }

    fn submit(
        self,
        protocol_seen: &str,
        up: u64,
        down: u64,
        end: StreamEnd,
        payload: Option<StreamPayload>,
    ) {
        if !self.context.sink.is_enabled() {
            return;
        }
        let (end, error) = match end {
            StreamEnd::Closed => ("closed", None),
            StreamEnd::Reset(reason) => ("reset", Some(reason)),
            StreamEnd::Refused(reason) => ("refused", Some(reason)),
        };
        let context = &self.context;
        context.sink.submit(Record {
            schema: SCHEMA.to_owned(),
            id: self.id,
            connection: context.connection,
            direction: context.direction.to_owned(),
            proxy_type: context.proxy_type.to_owned(),
            protocol: context.protocol.to_owned(),
            transport: self.transport.to_owned(),
            client: context.client.to_string(),
            target: self.target,
            delivered_to: self.delivered_to,
            start: rfc3339(self.start_time),
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            detail: Detail::Stream(StreamSummary {
                protocol_seen: protocol_seen.to_owned(),
                bytes_client_to_target: up,
                bytes_target_to_client: down,
                end: end.to_owned(),
                error,
                payload,
            }),
        });
    }
}

/// Names the protocol from the client's first bytes.
fn classify(first: &[u8]) -> &'static str {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    if first.is_empty() {
        "none"
    } else if first.len() >= 3 && first[0] == 0x16 && first[1] == 0x03 {
        "tls"
    } else if first.starts_with(b"PRI * HTTP/2.0") {
        "http2"
    } else if METHODS.iter().any(|m| first.starts_with(m)) {
        "http"
    } else {
        "opaque"
    }
}

struct Direction {
    tap: Option<BodyTap>,
    bytes: u64,
}

impl Direction {
    fn new(tap: Option<BodyTap>) -> Self {
        Direction { tap, bytes: 0 }
    }

    fn observe(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if let Some(tap) = &mut self.tap {
            tap.observe(chunk);
        }
    }
}

/// The client side of a relay, counted and optionally copied.
pub struct TappedIo<S> {
    inner: S,
    from_client: Direction,
    to_client: Direction,
    first_bytes: Vec<u8>,
}

impl<S> TappedIo<S> {
    /// Stops keeping payload copies (the stream turned out to be HTTP, recorded exchange by exchange).
    pub fn stop_copying(&mut self) {
        self.from_client.tap = None;
        self.to_client.tap = None;
    }

    fn note_read(&mut self, chunk: &[u8]) {
        if self.first_bytes.len() < SNIFF_LEN {
            let n = chunk.len().min(SNIFF_LEN - self.first_bytes.len());
            self.first_bytes.extend_from_slice(&chunk[..n]);
        }
        self.from_client.observe(chunk);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TappedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let this = &mut *self;
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                this.note_read(fresh);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TappedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.to_client.observe(&buf[..n]);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            // Observe exactly the n bytes written, which may end inside any of the slices.
            let mut left = n;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(buf.len());
                self.to_client.observe(&buf[..take]);
                left -= take;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), "http2");
        assert_eq!(classify(b"\x00\x01binary"), "opaque");
    }
}
