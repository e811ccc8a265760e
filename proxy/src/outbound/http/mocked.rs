//! Mock mode on the forward HTTP listener: the request is read whole (and recorded as usual), matched
//! against the mock capture, and answered with the recorded response, or, when nothing matches, with
//! the `--mock-unmatched` answer; the record carries a `mock` field saying which.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};

use crate::capture::record::MockAnswer;
use crate::http::body::{text_response, ProxyBody};
use crate::http::observed::{ObservedBody, ObservedExchange};
use crate::mock::answer::{recorded_response, recorded_trailers, unmatched_message};
use crate::mock::{Mock, MockMatch, MockRequest, Unmatched};

/// The largest request body the mock reads to match on.
const MAX_MATCHED_BODY: usize = 16 * 1024 * 1024;

pub(super) enum MockOutcome {
    Answered(Response<ProxyBody>),
    /// Nothing matched and `--mock-unmatched passthrough`: the request (its body read) goes on upstream.
    Passthrough(Bytes),
}

pub(super) async fn answer_from_mock(
    mock: &Mock,
    parts: &http::request::Parts,
    body: ObservedBody<Incoming>,
    capture: &ObservedExchange,
) -> MockOutcome {
    let body = match Limited::new(body, MAX_MATCHED_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            let message =
                format!("sidecar mock: cannot read the request body to match it: {error}");
            return MockOutcome::Answered(capture.sidecar_response(
                text_response(StatusCode::BAD_REQUEST, message.clone()),
                message,
            ));
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let request = MockRequest {
        method: parts.method.as_str(),
        uri: &parts.uri,
        headers,
        body: &body,
    };
    // A call made for a replayed request is answered first from the calls its recording caused.
    match mock.index.answer_for(&request, capture.replay_of()) {
        MockMatch::Served(recorded) => {
            capture.mark_mock(MockAnswer {
                matched: true,
                served_from: Some(recorded.name.clone()),
                nearest: None,
                differences: Vec::new(),
            });
            if mock.recorded_latency {
                tokio::time::sleep(Duration::from_secs_f64(
                    recorded.duration_ms.max(0.0) / 1000.0,
                ))
                .await;
            }
            let (head, body) = recorded_response(&recorded.response).into_parts();
            let body = match recorded_trailers(&recorded.response) {
                // HTTP/2 (gRPC's status) or chunked trailers: the body, then the trailers.
                Some(trailers) => {
                    let frames = [Frame::data(body), Frame::trailers(trailers)];
                    StreamBody::new(futures_util::stream::iter(frames.map(Ok))).boxed_unsync()
                }
                None => Full::new(body).boxed_unsync(),
            };
            let body = body.map_err(|never: Infallible| match never {});
            let body = capture.response_body(&head, body).boxed_unsync();
            MockOutcome::Answered(Response::from_parts(head, body))
        }
        MockMatch::Unmatched {
            nearest,
            differences,
        } => {
            let message = unmatched_message(
                parts.method.as_str(),
                &parts.uri.to_string(),
                nearest,
                &differences,
            );
            capture.mark_mock(MockAnswer {
                matched: false,
                served_from: None,
                nearest: nearest.map(|recorded| recorded.name.clone()),
                differences,
            });
            let status = match mock.unmatched {
                Unmatched::Passthrough => return MockOutcome::Passthrough(body),
                Unmatched::BadGateway => StatusCode::BAD_GATEWAY,
                Unmatched::NotFound => StatusCode::NOT_FOUND,
            };
            let reason = message.lines().next().unwrap_or_default().to_owned();
            MockOutcome::Answered(capture.sidecar_response(text_response(status, message), reason))
        }
    }
}
