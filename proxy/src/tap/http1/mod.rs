//! Following HTTP/1 on a relayed stream: requests and responses are read from the bytes each way, paired in
//! order (pipelining included), and each pair handed over as one exchange.
//!
//! What ends the following, without ever touching the bytes: a `101` (the protocol it names is noted in
//! the record) or a `2xx` to CONNECT (`tunnel`), after which both ways are relayed unread; and anything the
//! tracker cannot read as HTTP/1, after which the stream is relayed unread and recorded as a stream.

mod chunked;
mod message;

use std::collections::VecDeque;

use bytes::Bytes;

use super::exchange::{RawHead, RawMessage, RawTrailers};
use super::recorder::{Recorder, Started};
use crate::capture::BodyTap;
use message::{Framing, HeadInfo, MessageReader, Method, Side, Step};

/// Requests sent ahead of their answers that are followed; a client pipelining more (with an app that
/// has not answered) makes the stream be recorded as a stream, so what it holds stays bounded.
const MAX_PIPELINED: usize = 128;

/// Response heads are bounded too (their senders are upstreams, not callers, so more generously).
const MAX_RESPONSE_HEAD: usize = 256 * 1024;

pub struct Http1Tracker {
    pub recorder: Recorder,
    requests: MessageReader,
    responses: MessageReader,
    /// Requests seen, oldest first; the front one is the one being answered.
    in_flight: VecDeque<Exchange>,
    /// An exchange answered before its request body ended (the server did not wait for it).
    answered_early: Option<Exchange>,
    /// The response being read is informational (1xx): its end is not the exchange's.
    informational: bool,
    /// Set once the stream is no longer followed.
    pub stopped: Option<Stop>,
}

/// Why the tracker stopped following the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// An upgrade or a tunnel: the rest is another protocol, relayed by design.
    Upgraded,
    /// A request head over `--max-request-head`: the sidecar refuses it (431).
    HeadTooLarge,
    /// Something that is not HTTP/1 as expected.
    Lost(String),
}

struct Exchange {
    started: Started,
    method: Option<Method>,
    upgrade: Option<String>,
    request: Part,
    response: Option<Part>,
}

struct Part {
    head: Bytes,
    body: BodyTap,
    trailers: RawTrailers,
    done: bool,
}

impl Part {
    fn new(head: Bytes, body: BodyTap) -> Part {
        Part {
            head,
            body,
            trailers: RawTrailers::None,
            done: false,
        }
    }

    fn into_message(self) -> RawMessage {
        let complete = self.done;
        RawMessage {
            head: RawHead::Http1(self.head),
            body: self.body.finish(complete),
            trailers: self.trailers,
        }
    }
}

impl Http1Tracker {
    pub fn new(recorder: Recorder) -> Self {
        let request_limit = recorder.max_request_head;
        Http1Tracker {
            recorder,
            requests: MessageReader::new(Side::Request, request_limit),
            responses: MessageReader::new(Side::Response, MAX_RESPONSE_HEAD.max(request_limit)),
            in_flight: VecDeque::new(),
            answered_early: None,
            informational: false,
            stopped: None,
        }
    }

    /// Bytes the client sent (on their way to the upstream).
    pub fn client_sent(&mut self, mut input: &[u8]) {
        while self.stopped.is_none() {
            match self.requests.step(&mut input) {
                Step::NeedMore => return,
                Step::Head(info, head) => self.request_head(info, head),
                Step::Body(bytes) => {
                    if let Some(part) = self.current_request() {
                        part.body.observe(bytes);
                    }
                }
                Step::Trailers(section) => {
                    if let Some(part) = self.current_request() {
                        part.trailers = RawTrailers::Http1(section);
                    }
                }
                Step::End => self.request_ended(),
                Step::TooLarge => self.stop(Stop::HeadTooLarge),
                Step::Broken(why) => self.stop(Stop::Lost(format!("client sent {why}"))),
            }
        }
    }

    /// Bytes the upstream sent (on their way to the client).
    pub fn upstream_sent(&mut self, mut input: &[u8]) {
        while self.stopped.is_none() {
            match self.responses.step(&mut input) {
                Step::NeedMore => return,
                Step::Head(info, head) => self.response_head(info, head),
                Step::Body(bytes) => {
                    if let Some(part) = self.current_response() {
                        part.body.observe(bytes);
                    }
                }
                Step::Trailers(section) => {
                    if let Some(part) = self.current_response() {
                        part.trailers = RawTrailers::Http1(section);
                    }
                }
                Step::End => self.response_ended(),
                Step::TooLarge => self.stop(Stop::Lost("a response head over 256 KiB".into())),
                Step::Broken(why) => self.stop(Stop::Lost(format!("upstream sent {why}"))),
            }
        }
    }

    /// The sidecar answered the oldest request itself: its exchange ends with that answer and `reason`.
    pub fn answered_by_sidecar(&mut self, head: Bytes, body: &[u8], reason: String) {
        let Some(mut exchange) = self.in_flight.pop_front() else {
            return;
        };
        let mut response = Part::new(head, self.recorder.body_tap());
        response.body.observe(body);
        response.done = true;
        exchange.response = Some(response);
        self.submit(exchange, Some(reason), None);
    }

    fn request_head(&mut self, info: HeadInfo, head: Bytes) {
        if self.in_flight.len() >= MAX_PIPELINED {
            self.stop(Stop::Lost(format!(
                "more than {MAX_PIPELINED} requests sent ahead of their answers"
            )));
            return;
        }
        let connect = info.method == Some(Method::Connect);
        if connect {
            // What follows a CONNECT is the tunnel's (if it is granted): not read as requests.
            self.requests.ignore();
        } else {
            self.requests.expect(info.framing);
        }
        self.in_flight.push_back(Exchange {
            started: self
                .recorder
                .start(|| crate::capture::causes::hints_in_head(&head)),
            method: info.method,
            upgrade: info.upgrade,
            request: Part::new(head, self.recorder.body_tap()),
            response: None,
        });
    }

    fn request_ended(&mut self) {
        if let Some(mut exchange) = self.answered_early.take() {
            exchange.request.done = true;
            self.submit(exchange, None, None);
        } else if let Some(exchange) = self.in_flight.back_mut() {
            exchange.request.done = true;
        }
    }

    fn response_head(&mut self, info: HeadInfo, head: Bytes) {
        let Some(exchange) = self.in_flight.front_mut() else {
            self.stop(Stop::Lost(
                "upstream sent a response with no request waiting".into(),
            ));
            return;
        };
        let status = info.status.unwrap_or_default();
        let method = exchange.method;
        if status == 101 || (method == Some(Method::Connect) && (200..300).contains(&status)) {
            let upgraded = if status == 101 {
                exchange.upgrade.clone().unwrap_or_else(|| "unknown".into())
            } else {
                "tunnel".into()
            };
            let mut exchange = self.in_flight.pop_front().expect("checked above");
            let mut response = Part::new(head, self.recorder.body_tap());
            response.done = true;
            exchange.response = Some(response);
            exchange.request.done = true;
            self.submit(exchange, None, Some(upgraded));
            self.stop(Stop::Upgraded);
            return;
        }
        if (100..200).contains(&status) {
            // 100 Continue, 103 Early Hints: the final response is still to come.
            self.informational = true;
            self.responses.expect(Framing::Empty);
            return;
        }
        let framing = if method == Some(Method::Head) || status == 204 || status == 304 {
            Framing::Empty
        } else {
            info.framing
        };
        self.responses.expect(framing);
        exchange.response = Some(Part::new(head, self.recorder.body_tap()));
    }

    fn response_ended(&mut self) {
        if std::mem::take(&mut self.informational) {
            return;
        }
        let Some(mut exchange) = self.in_flight.pop_front() else {
            return;
        };
        if let Some(response) = exchange.response.as_mut() {
            response.done = true;
        }
        if exchange.method == Some(Method::Connect) {
            // A refused CONNECT: the client's next bytes were not read (they could have been the tunnel's).
            self.submit(exchange, None, None);
            self.stop(Stop::Lost(
                "the client's bytes after a refused CONNECT".into(),
            ));
        } else if exchange.request.done {
            self.submit(exchange, None, None);
        } else {
            self.answered_early = Some(exchange);
        }
    }

    fn current_request(&mut self) -> Option<&mut Part> {
        match &mut self.answered_early {
            Some(exchange) => Some(&mut exchange.request),
            None => self.in_flight.back_mut().map(|e| &mut e.request),
        }
    }

    fn current_response(&mut self) -> Option<&mut Part> {
        self.in_flight.front_mut()?.response.as_mut()
    }

    fn stop(&mut self, why: Stop) {
        self.requests.ignore();
        self.responses.ignore();
        if let Stop::Lost(reason) = &why {
            let reason = format!("the sidecar stopped following this connection: {reason}");
            self.flush(Some(&reason));
        } else if why == Stop::HeadTooLarge {
            // Refused by the sidecar, never delivered: no record, as on the HTTP listeners.
            self.in_flight.clear();
            self.answered_early = None;
        }
        self.stopped = Some(why);
    }

    /// The connection ended: every exchange still open is handed over as it stands. `failure` is why the
    /// relay ended, when it did not end cleanly.
    pub fn finish(&mut self, failure: Option<&str>) {
        if self.stopped.is_none() && failure.is_none() && self.responses.until_close() {
            // The end of the connection was the end of this response's body.
            if let Some(response) = self.current_response() {
                response.done = true;
            }
        }
        self.flush(failure);
    }

    fn flush(&mut self, failure: Option<&str>) {
        let early = self.answered_early.take();
        let open: Vec<Exchange> = early.into_iter().chain(self.in_flight.drain(..)).collect();
        for exchange in open {
            let why = match (&exchange.response, exchange.request.done) {
                (None, _) => "the connection closed before a response arrived",
                (Some(response), _) if !response.done => "the response body did not finish",
                (Some(_), false) => "the request body did not finish",
                (Some(_), true) => {
                    self.submit(exchange, None, None);
                    continue;
                }
            };
            let error = match failure {
                Some(failure) => format!("{why} ({failure})"),
                None => why.to_owned(),
            };
            self.submit(exchange, Some(error), None);
        }
    }

    fn submit(&self, exchange: Exchange, error: Option<String>, upgraded: Option<String>) {
        let Exchange {
            started,
            request,
            response,
            ..
        } = exchange;
        self.recorder.submit(
            started,
            request.into_message(),
            response.map(Part::into_message),
            error,
            upgraded,
        );
    }
}
