//! A recorded body as a person reads it: compressed bodies decoded first (gzip, deflate, br: the capture's
//! content-coding reader), then JSON pretty-printed, text as text, and anything else as a short hex dump.

use crate::capture::content_coding::decode_content;
use crate::capture::record::Body;

/// Bytes of a binary body the hex dump shows.
pub const HEX_DUMP_BYTES: usize = 256;

/// What a body holds, once decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyContent {
    Empty,
    /// Pretty-printed, keys in the order sent.
    Json(String),
    Text(String),
    Binary(Vec<u8>),
}

/// A body decoded for reading, with what was done to it.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedBody {
    pub content: BodyContent,
    /// The content codings undone (`gzip`), in the order they were undone.
    pub decoded_from: Vec<String>,
    /// Why the body is not shown whole or not decoded: a coding this reader does not know, a compressed
    /// body cut short by the capture limit.
    pub note: Option<String>,
}

impl DecodedBody {
    /// Whether the body, as shown, holds `text` (a binary body: its bytes).
    pub fn text_contains(&self, text: &str) -> bool {
        match &self.content {
            BodyContent::Empty => false,
            BodyContent::Json(shown) | BodyContent::Text(shown) => shown.contains(text),
            BodyContent::Binary(bytes) => {
                text.is_empty()
                    || bytes
                        .windows(text.len())
                        .any(|window| window == text.as_bytes())
            }
        }
    }
}

/// The body's content codings (`Content-Encoding`, in the order applied) undone, then its content
/// classified.
pub fn decoded_body(body: &Body, headers: &[(String, String)]) -> DecodedBody {
    let decoded = decode_content(&body.base64, body.truncated, headers);
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.to_ascii_lowercase());
    DecodedBody {
        content: classify(decoded.bytes, content_type.as_deref()),
        decoded_from: decoded.decoded_from,
        note: decoded.note,
    }
}

fn classify(bytes: Vec<u8>, content_type: Option<&str>) -> BodyContent {
    if bytes.is_empty() {
        return BodyContent::Empty;
    }
    let looks_like_json = content_type.is_some_and(|t| t.contains("json"))
        || matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'['));
    if looks_like_json {
        if let Some(pretty) = pretty_json(&bytes) {
            return BodyContent::Json(pretty);
        }
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) if !text.contains('\0') => BodyContent::Text(text.to_owned()),
        // Cut inside a character by the capture limit: still text, without the partial character.
        Err(e) if e.error_len().is_none() && !bytes[..e.valid_up_to()].contains(&0) => {
            BodyContent::Text(String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned())
        }
        _ => BodyContent::Binary(bytes),
    }
}

/// The JSON re-indented, keys and numbers kept as sent; `None` when it is not one whole JSON value.
fn pretty_json(bytes: &[u8]) -> Option<String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"  "),
    );
    serde_transcode::transcode(&mut deserializer, &mut serializer).ok()?;
    deserializer.end().ok()?;
    String::from_utf8(out).ok()
}

/// Up to [`HEX_DUMP_BYTES`] bytes as offset, hex and printable ASCII, 16 to a line.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (row, chunk) in bytes.chunks(16).take(HEX_DUMP_BYTES / 16).enumerate() {
        out.push_str(&format!("{:04x}  ", row * 16));
        for column in 0..16 {
            match chunk.get(column) {
                Some(byte) => out.push_str(&format!("{byte:02x} ")),
                None => out.push_str("   "),
            }
        }
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                char::from(b)
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    if bytes.len() > HEX_DUMP_BYTES {
        out.push_str(&format!(
            "... {} more bytes\n",
            bytes.len() - HEX_DUMP_BYTES
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;

    use super::*;

    fn body(bytes: &[u8]) -> Body {
        Body {
            size: bytes.len() as u64,
            truncated: false,
            base64: Bytes::copy_from_slice(bytes),
            complete: true,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_keeps_its_key_order() {
        let shown = decoded_body(&body(br#"{"z":1,"a":[true,null],"m":1.50}"#), &[]);
        assert_eq!(
            shown.content,
            BodyContent::Json(
                "{\n  \"z\": 1,\n  \"a\": [\n    true,\n    null\n  ],\n  \"m\": 1.5\n}".into()
            )
        );
    }

    #[test]
    fn gzip_then_json() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"{"ok":true}"#).unwrap();
        let shown = decoded_body(
            &body(&gz.finish().unwrap()),
            &headers(&[
                ("content-encoding", "gzip"),
                ("content-type", "application/json"),
            ]),
        );
        assert_eq!(shown.decoded_from, ["gzip"]);
        assert_eq!(
            shown.content,
            BodyContent::Json("{\n  \"ok\": true\n}".into())
        );
        assert_eq!(shown.note, None);
    }

    /// Brotli's simplest stream, written by hand (no encoder is a dependency): one uncompressed
    /// meta-block, then the last, empty one.
    fn brotli_stored(data: &[u8]) -> Vec<u8> {
        let header: u32 = ((data.len() as u32 - 1) << 4) | (1 << 20);
        let mut stream = header.to_le_bytes()[..3].to_vec();
        stream.extend_from_slice(data);
        stream.push(0x03);
        stream
    }

    #[test]
    fn brotli_and_both_kinds_of_deflate() {
        let shown = decoded_body(
            &body(&brotli_stored(br#"{"br":1}"#)),
            &headers(&[("content-encoding", "br")]),
        );
        assert_eq!(shown.content, BodyContent::Json("{\n  \"br\": 1\n}".into()));
        assert_eq!(shown.note, None);

        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zlib.write_all(b"zlib text").unwrap();
        let mut raw =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        raw.write_all(b"raw text").unwrap();
        for (encoded, plain) in [
            (zlib.finish().unwrap(), "zlib text"),
            (raw.finish().unwrap(), "raw text"),
        ] {
            let shown = decoded_body(
                &body(&encoded),
                &headers(&[("content-encoding", "deflate")]),
            );
            assert_eq!(shown.content, BodyContent::Text(plain.into()));
            assert_eq!(shown.decoded_from, ["deflate"]);
        }
    }

    #[test]
    fn a_truncated_gzip_body_shows_what_decodes() {
        let text = "line of text\n".repeat(200);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        gz.write_all(text.as_bytes()).unwrap();
        let whole = gz.finish().unwrap();
        let mut cut = body(&whole[..whole.len() / 2]);
        cut.size = whole.len() as u64;
        cut.truncated = true;
        let shown = decoded_body(&cut, &headers(&[("content-encoding", "gzip")]));
        assert_eq!(
            shown.note.as_deref(),
            Some("gzip body cut short by the capture limit: showing what decodes")
        );
        match shown.content {
            BodyContent::Text(shown) => assert!(text.starts_with(&shown) && shown.len() > 100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_coding_is_named_and_left_alone() {
        let shown = decoded_body(
            &body(b"\x28\xb5\x2f\xfd"),
            &headers(&[("content-encoding", "zstd")]),
        );
        assert!(shown.note.unwrap().contains("zstd"));
        assert_eq!(
            shown.content,
            BodyContent::Binary(b"\x28\xb5\x2f\xfd".to_vec())
        );
    }

    #[test]
    fn text_cut_inside_a_character_stays_text() {
        let shown = decoded_body(&body("grüß".as_bytes().split_last().unwrap().1), &[]);
        assert_eq!(shown.content, BodyContent::Text("grü".into()));
    }

    #[test]
    fn binary_as_a_hex_dump() {
        let dump = hex_dump(&(0..=255u8).chain(0..10).collect::<Vec<_>>());
        assert!(dump.starts_with("0000  00 01 02"), "{dump}");
        assert!(dump.contains("0040  40 41 42 43"), "{dump}");
        assert!(dump.contains("  @ABCDEFGHIJKLMNO\n"), "{dump}");
        assert!(dump.ends_with("... 10 more bytes\n"), "{dump}");
    }
}
