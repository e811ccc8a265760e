//! The one body type both proxies hand to hyper, and the sidecar's own short text responses.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

/// A streamed request or response body (never buffered whole), or one of the sidecar's own replies.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

pub fn empty() -> ProxyBody {
    full(Bytes::new())
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A response written by the sidecar itself (502, 400, ...): plain text, one line, naming what went wrong.
pub fn text_response(status: StatusCode, message: impl Into<String>) -> Response<ProxyBody> {
    let mut text = message.into();
    text.push('\n');
    let mut response = Response::new(full(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
