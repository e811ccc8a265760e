//! Following a chunked body (RFC 9112 §7.1) as it passes: chunk sizes and extensions are read and skipped,
//! chunk data is handed on for the record's copy, and the trailer section is kept whole.

use bytes::{Bytes, BytesMut};

/// The most bytes of trailer fields followed; a larger section means the stream is not followed further.
const MAX_TRAILERS: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
pub enum ChunkStep<'a> {
    /// Every byte given was consumed and more are needed.
    NeedMore,
    /// Chunk data (consumed from the input).
    Data(&'a [u8]),
    /// The body ended; the trailer section (fields and blank line) when it had fields.
    End(Option<Bytes>),
    Broken(&'static str),
}

#[derive(Debug)]
pub enum ChunkedBody {
    Size { size: u64, digits: u8 },
    Extension { size: u64 },
    SizeLineFeed { size: u64 },
    Data { left: u64 },
    DataCarriageReturn,
    DataLineFeed,
    Trailers { section: BytesMut },
}

impl Default for ChunkedBody {
    fn default() -> Self {
        ChunkedBody::Size { size: 0, digits: 0 }
    }
}

impl ChunkedBody {
    /// Consumes from `input` up to the next thing worth telling.
    pub fn step<'a>(&mut self, input: &mut &'a [u8]) -> ChunkStep<'a> {
        loop {
            if let ChunkedBody::Data { left } = self {
                if input.is_empty() {
                    return ChunkStep::NeedMore;
                }
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let (data, rest) = input.split_at(n);
                *input = rest;
                *left -= n as u64;
                if *left == 0 {
                    *self = ChunkedBody::DataCarriageReturn;
                }
                return ChunkStep::Data(data);
            }
            let Some((&byte, rest)) = input.split_first() else {
                return ChunkStep::NeedMore;
            };
            *input = rest;
            match self {
                ChunkedBody::Size { size, digits } => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                        if *digits >= 16 {
                            return ChunkStep::Broken("a chunk size longer than 16 hex digits");
                        }
                        *size = *size * 16 + digit;
                        *digits += 1;
                    }
                    b';' | b' ' | b'\t' if *digits > 0 => {
                        *self = ChunkedBody::Extension { size: *size }
                    }
                    b'\r' if *digits > 0 => *self = ChunkedBody::SizeLineFeed { size: *size },
                    b'\n' if *digits > 0 => {
                        let size = *size;
                        self.size_line_ended(size)
                    }
                    _ => return ChunkStep::Broken("a chunk size that is not hexadecimal"),
                },
                ChunkedBody::Extension { size } => match byte {
                    b'\r' => *self = ChunkedBody::SizeLineFeed { size: *size },
                    b'\n' => {
                        let size = *size;
                        self.size_line_ended(size)
                    }
                    _ => {}
                },
                ChunkedBody::SizeLineFeed { size } => match byte {
                    b'\n' => {
                        let size = *size;
                        self.size_line_ended(size)
                    }
                    _ => return ChunkStep::Broken("a chunk size line not ended by CRLF"),
                },
                ChunkedBody::DataCarriageReturn => match byte {
                    b'\r' => *self = ChunkedBody::DataLineFeed,
                    b'\n' => *self = ChunkedBody::default(),
                    _ => return ChunkStep::Broken("chunk data longer than its size"),
                },
                ChunkedBody::DataLineFeed => match byte {
                    b'\n' => *self = ChunkedBody::default(),
                    _ => return ChunkStep::Broken("chunk data not ended by CRLF"),
                },
                ChunkedBody::Trailers { section } => {
                    section.extend_from_slice(&[byte]);
                    if &section[..] == b"\r\n" || &section[..] == b"\n" {
                        *self = ChunkedBody::default();
                        return ChunkStep::End(None);
                    }
                    if section.ends_with(b"\r\n\r\n") || section.ends_with(b"\n\n") {
                        let section = std::mem::take(section).freeze();
                        *self = ChunkedBody::default();
                        return ChunkStep::End(Some(section));
                    }
                    if section.len() > MAX_TRAILERS {
                        return ChunkStep::Broken("a trailer section over 64 KiB");
                    }
                }
                ChunkedBody::Data { .. } => unreachable!("handled above"),
            }
        }
    }

    fn size_line_ended(&mut self, size: u64) {
        *self = if size == 0 {
            ChunkedBody::Trailers {
                section: BytesMut::new(),
            }
        } else {
            ChunkedBody::Data { left: size }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `piece` bytes; returns the data, the trailers and what was left over.
    fn decode(wire: &[u8], piece: usize) -> (Vec<u8>, Option<Bytes>, Vec<u8>) {
        let mut body = ChunkedBody::default();
        let mut data = Vec::new();
        for (index, chunk) in wire.chunks(piece).enumerate() {
            let mut input = chunk;
            loop {
                match body.step(&mut input) {
                    ChunkStep::NeedMore => break,
                    ChunkStep::Data(bytes) => data.extend_from_slice(bytes),
                    ChunkStep::End(trailers) => {
                        let mut rest = input.to_vec();
                        for later in wire.chunks(piece).skip(index + 1) {
                            rest.extend_from_slice(later);
                        }
                        return (data, trailers, rest);
                    }
                    ChunkStep::Broken(why) => panic!("{why}"),
                }
            }
        }
        panic!("the body did not end");
    }

    #[test]
    fn chunks_extensions_and_trailers_are_followed_in_any_split() {
        let wire =
            b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\nx-t: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, wire.len()] {
            let (data, trailers, rest) = decode(wire, piece);
            assert_eq!(data, b"hello world", "piece {piece}");
            assert_eq!(
                trailers.as_deref(),
                Some(&b"grpc-status: 0\r\nx-t: 1\r\n\r\n"[..])
            );
            assert_eq!(rest, b"NEXT");
        }
    }

    #[test]
    fn a_body_without_trailers_ends_at_the_blank_line() {
        let (data, trailers, rest) = decode(b"A\r\n0123456789\r\n0\r\n\r\nGET", 4);
        assert_eq!(
            (&data[..], trailers, &rest[..]),
            (&b"0123456789"[..], None, &b"GET"[..])
        );
    }

    #[test]
    fn garbage_is_reported_not_followed() {
        let mut body = ChunkedBody::default();
        let mut input: &[u8] = b"zz\r\n";
        assert!(matches!(body.step(&mut input), ChunkStep::Broken(_)));
        let mut body = ChunkedBody::default();
        let mut input: &[u8] = b"2\r\nabc\r\n";
        assert_eq!(body.step(&mut input), ChunkStep::Data(b"ab"));
        assert!(matches!(body.step(&mut input), ChunkStep::Broken(_)));
    }
}
