//! One proxied exchange as the sidecar keeps it: its duration in `sidecar_http_request_duration_seconds`,
//! always, and its record, only with capture on (with capture off nothing of capture is built) and unless
//! it is a kubelet probe (`capture::probes`).
//!
//! The duration runs from the request head to the end of the response body: the timer is shared by the
//! exchange and the response body handed to hyper, and observed once, when the last of them lets go (the
//! body ended or was dropped, or the exchange was abandoned before there was one).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::histogram::Histogram;

use super::body::ProxyBody;
use crate::capture::probes::{is_probe_direction, is_probe_request};
use crate::capture::{CapturingBody, HttpCapture, Route};
use crate::connection::Connection;
use crate::metrics::DirectionLabels;

/// The handle a proxy handler holds for one exchange.
pub struct ObservedExchange {
    connection: Connection,
    timer: Arc<RequestTimer>,
    capture: Option<HttpCapture>,
}

impl ObservedExchange {
    /// Starts an exchange of `connection` as the request arrived (before any header is changed).
    ///
    /// `route` gives `(target, delivered_to)`, the destination as the client named it and where the
    /// sidecar delivers; it is called only with capture on, so with capture off no per-request strings are
    /// built.
    pub fn begin(
        connection: &Connection,
        transport: &'static str,
        request: &http::request::Parts,
        route: impl FnOnce() -> (String, Option<String>),
    ) -> ObservedExchange {
        let histogram = connection
            .metrics
            .request_duration
            .get_or_create(&DirectionLabels {
                direction: connection.direction,
            })
            .clone();
        let capture = connection.capture.as_ref().filter(|capture| {
            let skipped = !capture.settings.record_probes
                && is_probe_direction(connection.direction)
                && is_probe_request(&request.headers);
            if skipped {
                connection
                    .metrics
                    .probes_skipped
                    .get_or_create(&DirectionLabels {
                        direction: connection.direction,
                    })
                    .inc();
            }
            !skipped
        });
        let capture = capture.map(|capture| {
            let (target, delivered_to) = route();
            let mut route = Route::new(transport, target, delivered_to);
            if let Some(session) = connection.decrypted() {
                route = route.inside_tls(session.clone());
            }
            HttpCapture::begin(capture, connection.origin(), route, request)
        });
        ObservedExchange {
            connection: connection.clone(),
            timer: Arc::new(RequestTimer {
                started: Instant::now(),
                histogram,
            }),
            capture,
        }
    }

    /// The connection, for tasks that outlive the exchange (an upgraded connection).
    pub fn connection(&self) -> Connection {
        self.connection.clone()
    }

    /// Wraps the request body on its way upstream.
    pub fn request_body<B: Body<Data = Bytes> + Unpin>(&self, body: B) -> ObservedBody<B> {
        ObservedBody {
            inner: match &self.capture {
                Some(capture) => Inner::Captured(capture.request_body(body)),
                None => Inner::Plain(body),
            },
            timer: None,
        }
    }

    /// Wraps the response body on its way to the client (recording the response head with capture on).
    pub fn response_body<B: Body<Data = Bytes> + Unpin>(
        &self,
        response: &http::response::Parts,
        body: B,
    ) -> ObservedBody<B> {
        let inner = match &self.capture {
            Some(capture) => Inner::Captured(capture.response_body(response, body)),
            None => Inner::Plain(body),
        };
        let mut wrapped = ObservedBody {
            inner,
            timer: Some(self.timer.clone()),
        };
        // An empty body (a 204, a 101) has ended before it starts: hyper never polls it.
        if wrapped.is_end_stream() {
            wrapped.timer = None;
        }
        wrapped
    }

    /// A response the sidecar writes itself (a 502, a refusal): the exchange is marked failed.
    pub fn sidecar_response(
        &self,
        response: Response<ProxyBody>,
        reason: impl Into<String>,
    ) -> Response<ProxyBody> {
        self.fail(reason);
        let (parts, body) = response.into_parts();
        let body = self.response_body(&parts, body).boxed_unsync();
        Response::from_parts(parts, body)
    }

    /// Marks the exchange as one that switched the connection to `protocol` (a `101` relayed).
    pub fn mark_upgraded(&self, protocol: Option<&HeaderValue>) {
        if let Some(capture) = &self.capture {
            capture.mark_upgraded(protocol);
        }
    }

    /// See [`HttpCapture::replay_of`]; `None` with capture off, which keeps no links.
    pub fn replay_of(&self) -> Option<&str> {
        self.capture.as_ref().and_then(HttpCapture::replay_of)
    }

    /// Records how the mock answered the exchange.
    pub fn mark_mock(&self, answer: crate::capture::record::MockAnswer) {
        if let Some(capture) = &self.capture {
            capture.mark_mock(answer);
        }
    }

    /// Marks the exchange failed (no response from upstream, or the sidecar refused it).
    pub fn fail(&self, reason: impl Into<String>) {
        if let Some(capture) = &self.capture {
            capture.fail(reason);
        }
    }
}

/// Observes the exchange's duration once, when dropped by the last of its holders.
struct RequestTimer {
    started: Instant,
    histogram: Histogram,
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed().as_secs_f64());
    }
}

/// A body passed through unchanged, frame by frame: copied for the record with capture on, and for a
/// response, holding the exchange's timer until it ends.
pub struct ObservedBody<B> {
    inner: Inner<B>,
    timer: Option<Arc<RequestTimer>>,
}

enum Inner<B> {
    Captured(CapturingBody<B>),
    Plain(B),
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Captured(body) => Pin::new(body).poll_frame(cx),
            Inner::Plain(body) => Pin::new(body).poll_frame(cx),
        };
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => frame.is_trailers() || this.is_end_stream(),
            Poll::Ready(Some(Err(_)) | None) => true,
            Poll::Pending => false,
        };
        if ended {
            this.timer = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Captured(body) => body.is_end_stream(),
            Inner::Plain(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Captured(body) => body.size_hint(),
            Inner::Plain(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    use super::ObservedExchange;
    use crate::connection::Connection;
    use crate::metrics::Metrics;

    /// A connection of a reverse http listener with capture off.
    fn connection(metrics: &Arc<Metrics>) -> Connection {
        let client = SocketAddr::from(([127, 0, 0, 1], 40000));
        Connection::new(None, metrics.clone(), "inbound", "reverse", "http", client)
    }

    /// The histogram's count as the metrics endpoint shows it.
    fn timed(metrics: &Metrics) -> Option<u64> {
        metrics.encode().lines().find_map(|line| {
            line.strip_prefix(
                r#"sidecar_http_request_duration_seconds_count{direction="inbound"} "#,
            )
            .map(|count| count.parse().expect("a count"))
        })
    }

    fn begin(connection: &Connection) -> ObservedExchange {
        let (request, ()) = http::Request::get("/").body(()).unwrap().into_parts();
        ObservedExchange::begin(connection, "http", &request, || {
            unreachable!("with capture off, no route is built for a record")
        })
    }

    #[tokio::test]
    async fn an_exchange_is_timed_once_when_its_response_body_ends() {
        let metrics = Arc::new(Metrics::new());
        let exchange = begin(&connection(&metrics));
        let (head, body) =
            http::Response::new(Full::new(Bytes::from_static(b"hello"))).into_parts();
        let mut body = exchange.response_body(&head, body);
        drop(exchange);
        assert_eq!(timed(&metrics), Some(0), "the body has not been sent yet");

        while let Some(frame) = body.frame().await {
            frame.expect("a full body does not fail");
        }
        assert_eq!(timed(&metrics), Some(1), "the body has ended");
        drop(body);
        assert_eq!(timed(&metrics), Some(1), "and is counted once");
    }

    #[test]
    fn an_exchange_abandoned_before_its_response_is_timed_too() {
        let metrics = Arc::new(Metrics::new());
        drop(begin(&connection(&metrics)));
        assert_eq!(timed(&metrics), Some(1));
    }
}
