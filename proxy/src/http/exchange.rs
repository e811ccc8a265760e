//! The part of one proxied exchange both proxies share: handing the upstream's response back to the
//! caller, joining upgraded connections, and turning client errors into a one-line reason.

use std::error::Error as StdError;

use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio_util::task::TaskTracker;

use super::body::ProxyBody;
use super::headers::remove_hop_by_hop;
use super::upgrade;
use crate::capture::HttpCapture;
use crate::net::DialError;

/// Prepares the upstream's response for the caller. A `101 Switching Protocols` answer to an upgrade
/// request keeps its `Connection`/`Upgrade` headers and starts the byte relay between the two sides.
/// The body streams to the caller through the exchange's capture.
pub fn finish_response(
    mut response: Response<Incoming>,
    client_upgrade: Option<OnUpgrade>,
    tasks: &TaskTracker,
    capture: &HttpCapture,
) -> Response<ProxyBody> {
    let client_upgrade = match client_upgrade {
        Some(client) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let upstream = hyper::upgrade::on(&mut response);
            let connection = capture.context();
            tasks.spawn(async move {
                upgrade::relay(client, upstream).await;
                drop(connection);
            });
            true
        }
        _ => false,
    };
    let (mut parts, body) = response.into_parts();
    // The record keeps the response head as the upstream sent it (like the request's), before the
    // hop-by-hop headers are dropped for the client.
    let body = capture.response_body(&parts, body).boxed_unsync();
    let protocol = parts.headers.get(http::header::UPGRADE).cloned();
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
