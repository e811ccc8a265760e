//! The target's answer to one replayed request, read whole (status, headers, body and trailers), over
//! HTTP/1.1 or HTTP/2 alike.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};

/// The largest response body a replay reads: anything larger is a failure, not a memory problem.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The target's answer to one request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Fields after the body (HTTP/2 trailing HEADERS, chunked trailers).
    pub trailers: Vec<(String, String)>,
    /// From sending the request to the whole response body.
    pub elapsed: Duration,
}

/// The whole answer: status, headers, body (at most [`MAX_BODY`]) and trailers.
pub async fn read_answer(
    response: http::Response<hyper::body::Incoming>,
    started: Instant,
) -> Result<Answer, String> {
    let status = response.status().as_u16();
    let headers = fields(response.headers());
    let collected = Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("the answer's body broke off: {e}"))?;
    let trailers = collected.trailers().map(fields).unwrap_or_default();
    Ok(Answer {
        status,
        headers,
        body: collected.to_bytes(),
        trailers,
        elapsed: started.elapsed(),
    })
}

fn fields(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}
