//! The sidecar's own answers on the HTTP/1 engine, as bytes: the text answers the hyper path gave
//! (`crate::http::exchange`: refusals, 502, 504, a broken request body), and the bare refusals of heads
//! that cannot be read (400, 431), which were hyper's own.

use bytes::Bytes;
use http::StatusCode;

/// One answer: what the caller gets, and the head the record shows (the fields the sidecar set, without
/// the length added on the way out, as the hyper path recorded it).
pub struct Answer {
    pub wire: Vec<u8>,
    pub record_head: Bytes,
    pub body: Vec<u8>,
}

/// A plain-text answer of one line, `text`; with `closes`, it says the connection ends after it.
pub fn text(status: StatusCode, text: &str, closes: bool) -> Answer {
    let mut body = Vec::with_capacity(text.len() + 1);
    body.extend_from_slice(text.as_bytes());
    body.push(b'\n');
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    if closes {
        head.push_str("connection: close\r\n");
    }
    let record_head = Bytes::from(format!("{head}\r\n"));
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut wire = head.into_bytes();
    wire.extend_from_slice(&body);
    Answer {
        wire,
        record_head,
        body,
    }
}

/// The answer to a head that cannot be read as a request (400) or is over the limit (431): the
/// connection closes after it, and no record is made (the request was never read).
pub fn unreadable_head(status: StatusCode, why: &str) -> Vec<u8> {
    let line = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            format!("sidecar: the request head is over the limit ({why})")
        }
        _ => format!("sidecar: the request head is not valid HTTP/1 ({why})"),
    };
    text(status, &line, true).wire
}

/// Sent before the caller's body when it asked to wait for one (`Expect: 100-continue`), as hyper sent
/// it: the app's own `1xx` answers are not passed on.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
