//! Request framing hyper accepts but a proxy must not pass on: transfer codings besides `chunked`.
//!
//! hyper already refuses the ambiguous framings request smuggling is built from (two different
//! Content-Length values, a list in one, a non-numeric or negative length, Transfer-Encoding on HTTP/1.0 or
//! with `chunked` not last, obs-fold, bare CR) with a 400, and resolves Content-Length plus
//! Transfer-Encoding as RFC 9112 §6.3 says (the Content-Length is dropped, the body read as chunked, the
//! connection closed after the response). What it lets through is a body whose chunked coding was applied
//! twice, or over another coding (`gzip, chunked`): it strips the last `chunked` and hands on the rest
//! without saying which coding remains. The sidecar re-frames every body it forwards, and the
//! Transfer-Encoding header is hop-by-hop, so forwarding either would silently change the body the app
//! receives. Such requests are refused instead.

use http::header::{HeaderMap, TRANSFER_ENCODING};
use http::StatusCode;

/// Why a request is refused (its framing here, its Host headers in [`super::host_header`]): the status to
/// answer and a one-line reason.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub reason: String,
}

/// Checks the request's Transfer-Encoding: nothing, or `chunked` alone, is accepted.
pub fn check_request(headers: &HeaderMap) -> Result<(), Refusal> {
    check_codings(
        headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .map(|value| value.as_bytes()),
    )
}

/// The same check on the values of a request's Transfer-Encoding fields as they were parsed (the HTTP/1
/// engine's heads, which never become a `HeaderMap`).
pub fn check_codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<(), Refusal> {
    let codings: Vec<String> = values
        .flat_map(|value| value.split(|&b| b == b','))
        .map(|coding| String::from_utf8_lossy(coding).trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty())
        .collect();
    let chunked = codings.iter().filter(|c| c.as_str() == "chunked").count();
    if chunked > 1 {
        return Err(Refusal {
            status: StatusCode::BAD_REQUEST,
            reason: "sidecar: Transfer-Encoding applies chunked more than once (RFC 9112 §6.1 forbids it)"
                .into(),
        });
    }
    if let Some(other) = codings.iter().find(|c| c.as_str() != "chunked") {
        return Err(Refusal {
            status: StatusCode::NOT_IMPLEMENTED,
            reason: format!(
                "sidecar: transfer coding \"{other}\" is not supported; send the body with Transfer-Encoding: chunked alone, or with Content-Length"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(values: &[&'static str]) -> Result<(), StatusCode> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(TRANSFER_ENCODING, HeaderValue::from_static(value));
        }
        check_request(&headers).map_err(|refusal| refusal.status)
    }

    #[test]
    fn chunked_alone_or_nothing_passes() {
        assert_eq!(check(&[]), Ok(()));
        assert_eq!(check(&["chunked"]), Ok(()));
        assert_eq!(check(&[" Chunked "]), Ok(()));
    }

    #[test]
    fn chunked_twice_is_400() {
        assert_eq!(check(&["chunked, chunked"]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(check(&["chunked", "chunked"]), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn another_coding_is_501() {
        assert_eq!(check(&["gzip, chunked"]), Err(StatusCode::NOT_IMPLEMENTED));
        assert_eq!(
            check(&["deflate", "chunked"]),
            Err(StatusCode::NOT_IMPLEMENTED)
        );
    }
}
