//! The part of one proxied exchange both proxies share: handing the upstream's response back to the
//! caller, joining upgraded connections, turning client errors into a one-line reason, and the sidecar's
//! own answers when there is no response to hand back (refused framing, a timeout, a broken request body).

use std::error::Error as StdError;
use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::body::{text_response, ProxyBody};
use super::framing::Refusal;
use super::headers::remove_hop_by_hop;
use super::observed::ObservedExchange;
use super::upgrade;
use crate::connection::Connection;
use crate::log_escape::Escaped;
use crate::metrics::ListenerLabels;
use crate::net::{humanize, DialError, DialFailure};

/// Prepares the upstream's response for the caller. A `101 Switching Protocols` answer to an upgrade
/// request keeps its `Connection`/`Upgrade` headers and starts the byte relay between the two sides.
/// The body streams to the caller through the exchange's capture.
pub fn finish_response(
    mut response: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    tasks: &TaskTracker,
    capture: &ObservedExchange,
) -> Response<ProxyBody> {
    let client_upgrade = match client_upgrade {
        Some(client) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let upstream = hyper::upgrade::on(&mut response);
            let connection = capture.connection();
            tasks.spawn(async move {
                upgrade::relay(client, upstream).await;
                drop(connection);
            });
            true
        }
        _ => false,
    };
    let (mut parts, body) = response.into_parts();
    let protocol = parts.headers.get(http::header::UPGRADE).cloned();
    if client_upgrade {
        // Before the body is wrapped: a 101's empty body completes the record at once.
        capture.mark_upgraded(protocol.as_ref());
    }
    // The record keeps the response head as the upstream sent it (like the request's), before the
    // hop-by-hop headers are dropped for the client.
    let body = capture.response_body(&parts, body).boxed_unsync();
    remove_hop_by_hop(&mut parts.headers);
    if let (true, Some(protocol)) = (client_upgrade, protocol) {
        upgrade::restore_headers(&mut parts.headers, protocol);
    }
    Response::from_parts(parts, body)
}

/// A short reason for a failed upstream exchange: the dial error when connecting failed, otherwise the
/// error chain joined on one line.
pub fn failure_reason(error: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    let mut parts = Vec::new();
    let mut innermost = String::new();
    while let Some(err) = source {
        if let Some(dial) = err.downcast_ref::<DialError>() {
            return dial.to_string();
        }
        innermost = err.to_string();
        if !innermost.is_empty() && parts.last() != Some(&innermost) {
            parts.push(innermost.clone());
        }
        source = err.source();
    }
    if error.is_connect() {
        // hyper's wrappers ("client error (Connect)", "tcp connect error") add nothing for a user.
        return format!("cannot connect: {innermost}");
    }
    parts.join(": ")
}

/// The status for a failed upstream exchange: 504 when connecting timed out, 502 for anything else.
pub fn failure_status(error: &hyper_util::client::legacy::Error) -> StatusCode {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(err) = source {
        let timed_out = err
            .downcast_ref::<DialError>()
            .is_some_and(|dial| dial.failure == DialFailure::TimedOut)
            || err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if timed_out {
            return StatusCode::GATEWAY_TIMEOUT;
        }
        source = err.source();
    }
    StatusCode::BAD_GATEWAY
}

/// The 504 for an upstream that did not begin its response within the upstream timeout; `upstream` names
/// it the way the caller knows it ("the app at 127.0.0.1:8080", "example.test:80").
pub fn upstream_timed_out(
    upstream: &str,
    timeout: Duration,
    context: &Connection,
    capture: &ObservedExchange,
) -> Response<ProxyBody> {
    let reason = format!(
        "{upstream} did not begin its response within {} (--upstream-timeout)",
        humanize(timeout)
    );
    warn!(reason = %Escaped(&reason), "upstream timed out");
    context
        .metrics
        .upstream_timeouts
        .get_or_create(&ListenerLabels {
            direction: context.direction,
            protocol: context.protocol,
        })
        .inc();
    let response = text_response(StatusCode::GATEWAY_TIMEOUT, format!("sidecar: {reason}"));
    capture.sidecar_response(response, reason)
}

/// The 400 for a request whose body the client broke on its way (bad chunked framing, a reset
/// mid-upload): the upstream was given up, and where the body ends is unknown, so the connection closes.
pub fn broken_request_body(reason: &str, capture: &ObservedExchange) -> Response<ProxyBody> {
    let reason = format!("the request body could not be read: {reason}");
    warn!(reason = %Escaped(&reason), "refused request");
    let response = closing(text_response(
        StatusCode::BAD_REQUEST,
        format!("sidecar: {reason}"),
    ));
    capture.sidecar_response(response, reason)
}

/// The answer to a request whose framing the sidecar will not forward (see [`super::framing`]). Its body
/// is left unread, so the connection closes after the answer.
pub fn refused_framing(refusal: Refusal, capture: &ObservedExchange) -> Response<ProxyBody> {
    warn!(reason = %Escaped(&refusal.reason), "refused request");
    let response = closing(text_response(refusal.status, refusal.reason.clone()));
    capture.sidecar_response(response, refusal.reason)
}

/// The answer to a request that is framed well but may not be forwarded (see [`super::host_header`]). The
/// connection stays open for the client's next request: hyper reads past an unread body if it is short,
/// and closes the connection otherwise.
pub fn refused_request(refusal: Refusal, capture: &ObservedExchange) -> Response<ProxyBody> {
    warn!(reason = %Escaped(&refusal.reason), "refused request");
    let response = text_response(refusal.status, refusal.reason.clone());
    capture.sidecar_response(response, refusal.reason)
}

/// Tells hyper (and the client) that the connection ends after this response.
pub fn closing(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
