//! Recording one HTTP exchange while it streams.
//!
//! The request and response bodies are wrapped in [`CapturingBody`], which passes every frame on at once
//! and keeps a bounded copy. The pieces share one [`ExchangeState`]; when both bodies have ended, or the last
//! of them is dropped (the response body has been written out and the request body consumed or abandoned),
//! the record is complete and goes to the sink. No JSON and no I/O happen on the connection's task. Built
//! only with capture on; the exchange's duration metric is the HTTP path's own (`crate::http::observed`).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Version};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::body_tap::BodyTap;
use super::record::{self, next_record_id, Detail, Origin, Route};
use super::settings::{CaptureSettings, REDACTED};
use super::{Capture, Hints, Link};

/// The record of one exchange, built while it streams: the handle the proxy handler holds.
pub struct HttpCapture {
    shared: Arc<ExchangeState>,
}

struct ExchangeState {
    /// Taken when the request arrived, so ids follow the order exchanges started.
    id: u64,
    capture: Capture,
    origin: Origin,
    route: Route,
    started: Instant,
    start_time: SystemTime,
    parts: Mutex<Parts>,
    /// Inbound: in flight until the exchange is recorded; outbound: the request it was made for.
    link: Link,
}

#[derive(Default)]
struct Parts {
    request: Option<record::HttpRequest>,
    request_body: Option<record::Body>,
    response: Option<record::HttpResponse>,
    response_body: Option<record::Body>,
    error: Option<String>,
    /// The protocol a `101` switched the connection to.
    upgraded: Option<String>,
    /// How the mock answered, when it did.
    mock: Option<Box<record::MockAnswer>>,
    request_trailers: Vec<(String, String)>,
    response_trailers: Vec<(String, String)>,
    /// The record has been handed to the sink.
    emitted: bool,
}

#[derive(Clone, Copy)]
enum Side {
    Request,
    Response,
}

impl HttpCapture {
    /// Starts recording a request of the connection `origin` describes, as it arrived.
    pub fn begin(
        capture: &Capture,
        origin: Origin,
        route: Route,
        request: &http::request::Parts,
    ) -> HttpCapture {
        let parts = Parts {
            request: Some(record::HttpRequest {
                method: request.method.to_string(),
                url: absolute_url(request),
                version: version_text(request.version),
                headers: headers(&request.headers, &capture.settings),
                body: record::Body::default(),
                trailers: Vec::new(),
            }),
            ..Parts::default()
        };
        let id = next_record_id();
        let link = capture.link(id, origin.direction, || {
            let field = |name: &str| request.headers.get(name).map(http::HeaderValue::as_bytes);
            Hints {
                traceparent: field("traceparent"),
                replay_of: field(super::causes::REPLAY_OF),
            }
        });
        HttpCapture {
            shared: Arc::new(ExchangeState {
                id,
                link,
                capture: capture.clone(),
                origin,
                route,
                started: Instant::now(),
                start_time: SystemTime::now(),
                parts: Mutex::new(parts),
            }),
        }
    }

    /// Wraps the request body on its way upstream.
    pub fn request_body<B: HttpBody>(&self, body: B) -> CapturingBody<B> {
        self.wrap(body, Side::Request)
    }

    /// Records the response head and wraps the response body on its way to the client.
    pub fn response_body<B: HttpBody>(
        &self,
        response: &http::response::Parts,
        body: B,
    ) -> CapturingBody<B> {
        let head = record::HttpResponse {
            status: response.status.as_u16(),
            version: version_text(response.version),
            headers: headers(&response.headers, &self.shared.capture.settings),
            body: record::Body::default(),
            trailers: Vec::new(),
        };
        self.shared.lock().response = Some(head);
        self.wrap(body, Side::Response)
    }

    /// Marks the exchange as one that switched the connection to `protocol` (a `101` relayed, the bytes
    /// after it joined without records): `websocket` from `websocket/13`, as the tap names it.
    pub fn mark_upgraded(&self, protocol: Option<&http::HeaderValue>) {
        let name = protocol
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .and_then(|first| first.split('/').next())
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown".to_owned());
        self.shared.lock().upgraded = Some(name);
    }

    /// Outbound: the recorded request that the inbound request this call was made for replays
    /// (`sidecar-replay-of`), when it was a replay.
    pub fn replay_of(&self) -> Option<&str> {
        self.shared.link.replay_of.as_deref()
    }

    /// Records how the mock answered the exchange.
    pub fn mark_mock(&self, answer: record::MockAnswer) {
        self.shared.lock().mock = Some(Box::new(answer));
    }

    /// Marks the exchange failed (no response from upstream, or the sidecar refused it).
    pub fn fail(&self, reason: impl Into<String>) {
        self.shared.lock().error = Some(reason.into());
    }

    fn wrap<B: HttpBody>(&self, body: B, side: Side) -> CapturingBody<B> {
        let mut wrapped = CapturingBody {
            inner: body,
            tap: Some(BodyTap::new(self.shared.capture.settings.body_limit)),
            side,
            exchange: self.shared.clone(),
        };
        // An empty body (a GET, a 204) is complete before it starts: hyper never polls a body that says
        // it has ended, so without this its record would read as cut off when it is dropped.
        if wrapped.inner.is_end_stream() {
            wrapped.settle(true);
        }
        wrapped
    }
}

impl ExchangeState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Parts> {
        // A poisoned lock only means another holder panicked mid-update; the parts are still usable.
        self.parts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Emits the record as soon as both bodies have ended, so it does not wait for the last handle to be
    /// dropped (an HTTP/2 client task may hold the request body's wrapper a little longer).
    fn emit_if_finished(&self, parts: &mut Parts) {
        if !parts.emitted && parts.request_body.is_some() && parts.response_body.is_some() {
            self.emit(parts);
        }
    }

    fn emit(&self, parts: &mut Parts) {
        // Taken, and marked emitted: the Drop of the last handle must not emit again.
        let parts = std::mem::replace(
            parts,
            Parts {
                emitted: true,
                ..Parts::default()
            },
        );
        let Some(mut request) = parts.request else {
            return;
        };
        request.body = parts.request_body.unwrap_or_default();
        request.trailers = parts.request_trailers;
        let response = parts.response.map(|mut response| {
            response.body = parts.response_body.unwrap_or_default();
            response.trailers = parts.response_trailers;
            response
        });
        let detail = Detail::Http(record::HttpExchange {
            request,
            response,
            error: parts.error,
            upgraded: parts.upgraded,
            mock: parts.mock,
        });
        let started = (self.start_time, self.started.elapsed());
        let mut record = self
            .origin
            .record(self.id, self.route.clone(), started, detail);
        record.caused_by = self.link.caused_by.map(record::record_uid);
        self.capture.sink.submit(record);
    }
}

impl Drop for ExchangeState {
    /// The last handle is gone: whatever did not finish is recorded as it stands.
    fn drop(&mut self) {
        let mut parts = std::mem::take(
            self.parts
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        if !parts.emitted {
            if parts.response.is_none() && parts.error.is_none() {
                // The exchange was abandoned (the caller went away) before the upstream answered.
                parts.error = Some("the connection closed before a response arrived".to_owned());
            }
            self.emit(&mut parts);
        }
    }
}

/// A body passed through unchanged, frame by frame, with a bounded copy kept for the record.
pub struct CapturingBody<B> {
    inner: B,
    tap: Option<BodyTap>,
    side: Side,
    exchange: Arc<ExchangeState>,
}

impl<B> CapturingBody<B> {
    /// The fields after the body (chunked trailers, HTTP/2 trailing HEADERS such as `grpc-status`),
    /// redacted like headers.
    fn keep_trailers(&mut self, trailers: &HeaderMap) {
        let kept = headers(trailers, &self.exchange.capture.settings);
        let mut parts = self.exchange.lock();
        match self.side {
            Side::Request => parts.request_trailers = kept,
            Side::Response => parts.response_trailers = kept,
        }
    }

    fn settle(&mut self, complete: bool) {
        if let Some(tap) = self.tap.take() {
            let body = tap.finish(complete);
            let mut parts = self.exchange.lock();
            let (slot, cut_off) = match self.side {
                Side::Request => (&mut parts.request_body, "the request body did not finish"),
                Side::Response => (&mut parts.response_body, "the response body did not finish"),
            };
            *slot = Some(body);
            if !complete && parts.error.is_none() {
                parts.error = Some(cut_off.to_owned());
            }
            self.exchange.emit_if_finished(&mut parts);
        }
    }
}

impl<B> Drop for CapturingBody<B> {
    fn drop(&mut self) {
        // Dropped before its end: the peer went away or the exchange was abandoned.
        self.settle(false);
    }
}

impl<B> HttpBody for CapturingBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(tap)) = (frame.data_ref(), this.tap.as_mut()) {
                    tap.observe(data);
                }
                if let Some(trailers) = frame.trailers_ref() {
                    this.keep_trailers(trailers);
                }
                // Trailers are a body's last frame: hyper's HTTP/1 client stops polling a request body
                // once it has written them, so the end would otherwise never be seen.
                if frame.is_trailers() || this.inner.is_end_stream() {
                    this.settle(true);
                }
            }
            Poll::Ready(Some(Err(_))) => this.settle(false),
            Poll::Ready(None) => this.settle(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn version_text(version: Version) -> String {
    format!("{version:?}")
}

fn headers(map: &HeaderMap, settings: &CaptureSettings) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            let value = if settings.redacts(name) {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), value)
        })
        .collect()
}

/// The request's URL in absolute form: as sent for absolute-form requests, rebuilt from Host otherwise.
fn absolute_url(request: &http::request::Parts) -> String {
    let uri = &request.uri;
    if let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) {
        // Rebuilt rather than printed, so `user:password@` in the URL never reaches a record.
        let port = authority
            .port()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return format!("{scheme}://{}{port}{path}", authority.host());
    }
    let host = request
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("http://{host}{path}")
}
