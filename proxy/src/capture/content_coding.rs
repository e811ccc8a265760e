//! Undoing a body's content codings (`Content-Encoding: gzip`, `deflate`, `br`), for whatever reads bodies
//! back: `capture show` lays them out, `replay` and the mock compare them.

use std::io::Read;

/// Bytes a compressed body may grow to when decoded: a small bomb cannot fill memory.
const DECODED_LIMIT: u64 = 8 * 1024 * 1024;

/// A body with its content codings undone, and what was done to it.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodedContent {
    pub bytes: Vec<u8>,
    /// The content codings undone (`gzip`), in the order they were undone.
    pub decoded_from: Vec<String>,
    /// Why the body is not decoded whole: a coding this reader does not know, a compressed body cut short
    /// (by the capture limit when `truncated`).
    pub note: Option<String>,
}

/// Undoes the content codings `headers` name (`Content-Encoding`, in the order applied) on `bytes`.
/// `truncated` says the bytes are a prefix the capture limit kept, which only changes the note.
pub fn decode_content(
    bytes: &[u8],
    truncated: bool,
    headers: &[(String, String)],
) -> DecodedContent {
    let codings: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("content-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .collect();
    let mut bytes = bytes.to_vec();
    let mut decoded_from = Vec::new();
    let mut note = None;
    if !bytes.is_empty() {
        for coding in codings.iter().rev() {
            match decode(coding, &bytes) {
                Decoded::Whole(plain) => bytes = plain,
                Decoded::Partial(plain) => {
                    note = Some(if truncated {
                        format!(
                            "{coding} body cut short by the capture limit: showing what decodes"
                        )
                    } else {
                        format!("{coding} body does not decode to the end: showing what decodes")
                    });
                    bytes = plain;
                }
                Decoded::Unknown => {
                    note = Some(format!(
                        "content-encoding {coding} is not decoded here: showing the bytes as sent"
                    ));
                    break;
                }
            }
            decoded_from.push(coding.clone());
            if note.is_some() {
                break;
            }
        }
    }
    DecodedContent {
        bytes,
        decoded_from,
        note,
    }
}

enum Decoded {
    Whole(Vec<u8>),
    /// The coding broke off (a truncated capture, a body cut mid-stream): what decoded before it did.
    Partial(Vec<u8>),
    Unknown,
}

fn decode(coding: &str, bytes: &[u8]) -> Decoded {
    let read = |reader: &mut dyn Read| {
        let mut plain = Vec::new();
        match reader.take(DECODED_LIMIT).read_to_end(&mut plain) {
            Ok(_) => Decoded::Whole(plain),
            // read_to_end keeps what was read before the error.
            Err(_) => Decoded::Partial(plain),
        }
    };
    match coding {
        "gzip" | "x-gzip" => read(&mut flate2::read::MultiGzDecoder::new(bytes)),
        // HTTP's "deflate" is zlib-wrapped; some servers send the raw deflate stream instead.
        "deflate" => match read(&mut flate2::read::ZlibDecoder::new(bytes)) {
            Decoded::Partial(plain) if plain.is_empty() => {
                read(&mut flate2::read::DeflateDecoder::new(bytes))
            }
            decoded => decoded,
        },
        "br" => read(&mut brotli_decompressor::Decompressor::new(bytes, 4096)),
        _ => Decoded::Unknown,
    }
}
