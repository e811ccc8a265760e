//! Following HTTP/2 on a relayed stream (prior knowledge, or h2 inside TLS that tls-out decrypted): frames
//! are read each way, header blocks decoded with one HPACK decoder per direction in wire order (the only
//! order HPACK can be decoded in), and each stream handed over as one exchange when both its sides have
//! ended or it was reset. gRPC is HTTP/2 like any other: its messages are the bodies, `grpc-status` is in
//! the response's trailers.
//!
//! A connection the tracker cannot follow (a header block HPACK cannot decode, a frame out of place) stops
//! being followed: its bytes go on untouched, and the stream is recorded as a stream saying why.

mod block_shape;
mod frames;

use std::collections::HashMap;

use bytes::Bytes;
use httlib_hpack::Decoder;

use super::exchange::{RawHead, RawMessage, RawTrailers};
use super::recorder::{Recorder, Started};
use crate::budget::{Purpose, Reservation};
use crate::capture::BodyTap;
use frames::{FrameReader, FrameStep};

/// The client's connection preface, skipped before its first frame.
const PREFACE_LEN: usize = 24;
/// Streams followed at once; a connection with more stops being followed (servers allow 100 to 250).
const MAX_STREAMS: usize = 1024;
/// The largest HPACK table either side may make the other keep (the default is 4 KiB; hyper, Go and
/// Envoy stay at or below 64 KiB).
const MAX_TABLE: u32 = 64 * 1024;
/// The HPACK table size every HTTP/2 connection starts with (RFC 9113 §6.5.2).
const DEFAULT_TABLE: u32 = 4096;
/// Fields in one header block past which a connection is followed as a stream: far above what real
/// requests carry (HTTP/1 heads are refused past 100), and it bounds the decoding work a block can cause.
const MAX_BLOCK_FIELDS: usize = 256;

pub struct H2Tracker {
    pub recorder: Recorder,
    from_client: FrameReader,
    from_upstream: FrameReader,
    /// Decodes the client's header blocks.
    client_fields: Decoder<'static>,
    upstream_fields: Decoder<'static>,
    streams: HashMap<u32, Exchange>,
    /// Why the connection is no longer followed, once it is not.
    pub lost: Option<String>,
}

struct Exchange {
    started: Started,
    request: Side,
    response: Option<Side>,
    /// The memory budget's share for the decoded fields this stream holds until it is recorded.
    fields_share: Reservation,
}

struct Side {
    fields: Vec<(Bytes, Bytes)>,
    body: BodyTap,
    trailers: Vec<(Bytes, Bytes)>,
    done: bool,
}

impl Side {
    fn into_message(self) -> RawMessage {
        RawMessage {
            head: RawHead::H2(self.fields),
            body: self.body.finish(self.done),
            trailers: if self.trailers.is_empty() {
                RawTrailers::None
            } else {
                RawTrailers::H2(self.trailers)
            },
        }
    }
}

#[derive(Clone, Copy)]
enum From {
    Client,
    Upstream,
}

impl H2Tracker {
    pub fn new(recorder: Recorder) -> Self {
        let block_limit = recorder.max_request_head.max(64 * 1024);
        let decoder = || {
            // The table starts at HTTP/2's default size, as the peer's encoder does; a size update
            // may grow it up to MAX_TABLE.
            let mut decoder = Decoder::with_dynamic_size(DEFAULT_TABLE);
            decoder.set_max_dynamic_size(MAX_TABLE);
            decoder
        };
        H2Tracker {
            recorder,
            from_client: FrameReader::new(PREFACE_LEN, block_limit),
            from_upstream: FrameReader::new(0, block_limit),
            client_fields: decoder(),
            upstream_fields: decoder(),
            streams: HashMap::new(),
            lost: None,
        }
    }

    pub fn client_sent(&mut self, input: &[u8]) {
        self.follow(From::Client, input);
    }

    pub fn upstream_sent(&mut self, input: &[u8]) {
        self.follow(From::Upstream, input);
    }

    fn follow(&mut self, from: From, mut input: &[u8]) {
        while self.lost.is_none() {
            let reader = match from {
                From::Client => &mut self.from_client,
                From::Upstream => &mut self.from_upstream,
            };
            match reader.step(&mut input) {
                FrameStep::NeedMore => return,
                FrameStep::Data { stream, bytes } => {
                    if let Some(side) = self.side(from, stream) {
                        side.body.observe(bytes);
                    }
                }
                FrameStep::DataEnd { stream, end_stream } => {
                    if end_stream {
                        self.side_ended(from, stream);
                    }
                }
                FrameStep::HeaderBlock {
                    stream,
                    block,
                    end_stream,
                    push,
                } => self.header_block(from, stream, &block, end_stream, push),
                FrameStep::Reset { stream, code } => self.reset(from, stream, code),
                FrameStep::HeaderTableSize(size) => {
                    // A side's setting bounds the table the *other* side's encoder keeps.
                    let allowed = size.min(MAX_TABLE);
                    match from {
                        From::Client => self.upstream_fields.set_max_dynamic_size(allowed),
                        From::Upstream => self.client_fields.set_max_dynamic_size(allowed),
                    }
                }
                FrameStep::Broken(why) => self.lose(format!("{} sent {why}", name(from))),
            }
        }
    }

    fn header_block(
        &mut self,
        from: From,
        stream: u32,
        block: &[u8],
        end_stream: bool,
        push: bool,
    ) {
        let decoder = match from {
            From::Client => &mut self.client_fields,
            From::Upstream => &mut self.upstream_fields,
        };
        // Field by field, so that a block of thousands of tiny fields is given up after MAX_BLOCK_FIELDS
        // rather than decoded whole (the decoder consumes its input from the front).
        if !block_shape::is_whole(block) {
            self.lose(format!(
                "{} sent a header block that ends inside a field",
                name(from)
            ));
            return;
        }
        let mut input = block.to_vec();
        let mut fields = Vec::new();
        let mut decoded = Vec::with_capacity(1);
        while !input.is_empty() {
            if let Err(e) = decoder.decode_exact(&mut input, &mut decoded) {
                // Every later block depends on this one's table changes: nothing after it can be read.
                self.lose(format!(
                    "{} sent a header block HPACK cannot decode ({e:?})",
                    name(from)
                ));
                return;
            }
            for (field_name, value, _) in decoded.drain(..) {
                fields.push((Bytes::from(field_name), Bytes::from(value)));
            }
            if fields.len() > MAX_BLOCK_FIELDS {
                self.lose(format!(
                    "{} sent a header block of more than {MAX_BLOCK_FIELDS} fields",
                    name(from)
                ));
                return;
            }
        }
        if push {
            // A promised stream's request: decoded only to keep the table in step.
            return;
        }
        let mut share = Reservation::default();
        let size: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
        if !share.grow(Purpose::RequestHead, size) {
            self.lose("header fields while the memory budget was spent".into());
            return;
        }
        match from {
            From::Client => match self.streams.get_mut(&stream) {
                Some(exchange) => {
                    exchange.request.trailers = fields;
                    exchange.fields_share.absorb(share);
                }
                None => {
                    if self.streams.len() >= MAX_STREAMS {
                        self.lose(format!("more than {MAX_STREAMS} streams open at once"));
                        return;
                    }
                    let exchange = Exchange {
                        started: self.recorder.start(|| {
                            let field = |wanted: &[u8]| {
                                fields
                                    .iter()
                                    .find(|(name, _)| name.as_ref() == wanted)
                                    .map(|(_, value)| value.as_ref())
                            };
                            crate::capture::Hints {
                                traceparent: field(b"traceparent"),
                                replay_of: field(crate::capture::causes::REPLAY_OF.as_bytes()),
                            }
                        }),
                        request: Side {
                            fields,
                            body: self.recorder.body_tap(),
                            trailers: Vec::new(),
                            done: false,
                        },
                        response: None,
                        fields_share: share,
                    };
                    self.streams.insert(stream, exchange);
                }
            },
            From::Upstream => {
                let Some(exchange) = self.streams.get_mut(&stream) else {
                    return;
                };
                exchange.fields_share.absorb(share);
                match &mut exchange.response {
                    Some(response) => response.trailers = fields,
                    None if informational(&fields) && !end_stream => return,
                    None => {
                        exchange.response = Some(Side {
                            fields,
                            body: self.recorder.body_tap(),
                            trailers: Vec::new(),
                            done: false,
                        })
                    }
                }
            }
        }
        if end_stream {
            self.side_ended(from, stream);
        }
    }

    fn side(&mut self, from: From, stream: u32) -> Option<&mut Side> {
        let exchange = self.streams.get_mut(&stream)?;
        match from {
            From::Client => Some(&mut exchange.request),
            From::Upstream => exchange.response.as_mut(),
        }
    }

    fn side_ended(&mut self, from: From, stream: u32) {
        let Some(side) = self.side(from, stream) else {
            return;
        };
        side.done = true;
        let exchange = &self.streams[&stream];
        if exchange.request.done && exchange.response.as_ref().is_some_and(|r| r.done) {
            let exchange = self.streams.remove(&stream).expect("looked up above");
            self.submit(exchange, None);
        }
    }

    fn reset(&mut self, from: From, stream: u32, code: u32) {
        if let Some(exchange) = self.streams.remove(&stream) {
            let error = format!("the stream was reset by the {} (code {code})", name(from));
            self.submit(exchange, Some(error));
        }
    }

    fn lose(&mut self, why: String) {
        let error = format!("the sidecar stopped following this connection: {why}");
        self.flush(&error);
        self.lost = Some(why);
    }

    /// The connection ended: every stream still open is handed over as it stands.
    pub fn finish(&mut self, failure: Option<&str>) {
        let error = match failure {
            Some(failure) => format!("the connection ended before the stream did ({failure})"),
            None => "the connection ended before the stream did".to_owned(),
        };
        self.flush(&error);
    }

    fn flush(&mut self, error: &str) {
        let mut open: Vec<(u32, Exchange)> = self.streams.drain().collect();
        open.sort_by_key(|(stream, _)| *stream);
        for (_, exchange) in open {
            self.submit(exchange, Some(error.to_owned()));
        }
    }

    fn submit(&self, exchange: Exchange, error: Option<String>) {
        self.recorder.submit(
            exchange.started,
            exchange.request.into_message(),
            exchange.response.map(Side::into_message),
            error,
            None,
        );
    }
}

fn informational(fields: &[(Bytes, Bytes)]) -> bool {
    fields
        .iter()
        .any(|(name, value)| &name[..] == b":status" && value.first() == Some(&b'1'))
}

fn name(from: From) -> &'static str {
    match from {
        From::Client => "client",
        From::Upstream => "upstream",
    }
}
