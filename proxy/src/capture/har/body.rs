//! A captured body as HAR text: UTF-8 as is, anything else base64, with a note when capture cut it
//! short or the transfer did not finish.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::capture::record::Body;

/// What HAR's `text`, `encoding` and `comment` fields get for one body.
pub(super) struct BodyText {
    pub(super) text: String,
    pub(super) encoding: Option<String>,
    pub(super) comment: Option<String>,
}

/// The kept bytes as HAR text: UTF-8 as is, anything else base64. A truncated body cut inside a UTF-8
/// character stays text, without the partial character.
pub(super) fn body_text(body: &Body) -> BodyText {
    let bytes = &body.base64[..];
    let kept = bytes.len();
    let (text, encoding, shown) = match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), None, kept),
        Err(e) if body.truncated && e.error_len().is_none() => {
            let valid = e.valid_up_to();
            let text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            (text, None, valid)
        }
        Err(_) => (STANDARD.encode(bytes), Some("base64".to_owned()), kept),
    };
    let mut notes = Vec::new();
    if body.truncated || shown < kept {
        notes.push(format!(
            "body truncated by capture: {shown} of {} bytes kept",
            body.size
        ));
    }
    if !body.complete {
        notes.push("body incomplete: the transfer did not finish".to_owned());
    }
    BodyText {
        text,
        encoding,
        comment: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_truncated_body_cut_inside_a_character_stays_text() {
        let cut = Body {
            size: 100,
            truncated: true,
            base64: Bytes::from_static("héllo é".as_bytes().split_last().unwrap().1),
            complete: true,
        };
        let text = body_text(&cut);
        assert_eq!(text.text, "héllo ");
        assert_eq!(text.encoding, None);
        assert_eq!(
            text.comment.as_deref(),
            Some("body truncated by capture: 7 of 100 bytes kept")
        );
    }
}
