//! The mock's responses: a recorded response as the app gets it, and the answer for a request nothing
//! matched, naming the nearest recorded request and the fields that differ.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::capture::record::{FieldDifference, HttpResponse};

use super::index::Recorded;

/// The recorded status, headers (except those that framed the recorded transfer: the body is sent whole
/// with its own length) and body.
pub fn recorded_response(recorded: &HttpResponse) -> Response<Bytes> {
    let mut response = Response::new(recorded.body.base64.clone());
    *response.status_mut() = StatusCode::from_u16(recorded.status).unwrap_or(StatusCode::OK);
    for (name, value) in &recorded.headers {
        let framing = matches!(
            name.to_ascii_lowercase().as_str(),
            "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "trailer"
        );
        if framing {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The recorded trailers (gRPC's `grpc-status`, chunked trailers), sent after the body; `None` when the
/// recorded response had none.
pub fn recorded_trailers(recorded: &HttpResponse) -> Option<HeaderMap> {
    let trailers: HeaderMap = recorded
        .trailers
        .iter()
        .filter_map(|(name, value)| {
            Some((
                HeaderName::from_bytes(name.as_bytes()).ok()?,
                HeaderValue::from_str(value).ok()?,
            ))
        })
        .collect();
    (!trailers.is_empty()).then_some(trailers)
}

/// The text of a miss: what was asked, the nearest recorded request and how it differs.
pub fn unmatched_message(
    method: &str,
    url: &str,
    nearest: Option<&Recorded>,
    differences: &[FieldDifference],
) -> String {
    let mut message = format!("sidecar mock: no recorded exchange matches {method} {url}");
    match nearest {
        None => message.push_str("; the mock capture holds no outbound HTTP exchange\n"),
        Some(nearest) => {
            message.push_str(&format!(
                "; nearest recorded request: record {} ({} {}), which differs in:\n",
                nearest.name, nearest.method, nearest.url
            ));
            for difference in differences {
                message.push_str(&format!(
                    "  {}: recorded {}, now {}\n",
                    difference.field, difference.recorded, difference.actual
                ));
            }
        }
    }
    message
}
