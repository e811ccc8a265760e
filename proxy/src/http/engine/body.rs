//! Following a body the engine relays, by its framing, so that it knows where the body ends without
//! copying it: Content-Length bytes are counted, a chunked body's sizes are read as they pass (strictly:
//! CRLF line ends, at most 16 hex digits, as hyper read them before), and its trailer section is kept
//! whole, to be passed on filtered ([`filtered_trailers`]).
//!
//! The follower tells the relay, for each slice of input, how many bytes belong to the body and how many
//! of those go on as they are (everything but the trailer section).

/// How a message's body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// A response without length: it ends when the connection does.
    UntilClose,
}

/// The most trailer bytes followed; a larger section breaks the body.
const MAX_TRAILERS: usize = 64 * 1024;

/// What one call to [`BodyFollower::advance`] found.
#[derive(Debug, PartialEq, Eq)]
pub struct Advance {
    /// Input bytes that belong to the body (the rest is the next message's).
    pub consumed: usize,
    /// Of those, how many go on unchanged (a prefix); the others are trailer bytes, held back.
    pub forward: usize,
}

#[derive(Debug)]
enum Chunk {
    Size {
        size: u64,
        digits: u8,
    },
    /// Spaces after the size, before `;` or the line end.
    SizeSpace {
        size: u64,
    },
    Extension {
        size: u64,
    },
    SizeLineFeed {
        size: u64,
    },
    Data {
        left: u64,
    },
    DataCarriageReturn,
    DataLineFeed,
    /// After the last chunk: the trailer section, up to and including its empty line.
    Trailers,
}

#[derive(Debug)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug)]
pub struct BodyFollower {
    state: State,
    trailers: Vec<u8>,
}

impl BodyFollower {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::UntilClose => State::UntilClose,
        };
        BodyFollower {
            state,
            trailers: Vec::new(),
        }
    }

    pub fn done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Whether only the end of the connection ends this body.
    pub fn until_close(&self) -> bool {
        matches!(self.state, State::UntilClose)
    }

    /// The connection ended: the end of a body without length.
    pub fn closed(&mut self) {
        if self.until_close() {
            self.state = State::Done;
        }
    }

    /// The trailer section of a chunked body that ended (empty when it had none): its fields and the empty
    /// line, as received.
    pub fn take_trailers(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.trailers)
    }

    /// Follows the body through `input`. Err when the framing is broken (then nothing more is relayed).
    pub fn advance(&mut self, input: &[u8]) -> Result<Advance, &'static str> {
        match &mut self.state {
            State::Done => Ok(Advance {
                consumed: 0,
                forward: 0,
            }),
            State::UntilClose => Ok(Advance {
                consumed: input.len(),
                forward: input.len(),
            }),
            State::Length(left) => {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::Done;
                }
                Ok(Advance {
                    consumed: n,
                    forward: n,
                })
            }
            State::Chunked(_) => self.chunked(input),
        }
    }

    fn chunked(&mut self, input: &[u8]) -> Result<Advance, &'static str> {
        let mut at = 0;
        let mut forward = 0;
        while at < input.len() {
            let State::Chunked(chunk) = &mut self.state else {
                break;
            };
            if let Chunk::Data { left } = chunk {
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - at);
                *left -= n as u64;
                if *left == 0 {
                    *chunk = Chunk::DataCarriageReturn;
                }
                at += n;
                forward = at;
                continue;
            }
            let byte = input[at];
            at += 1;
            match chunk {
                Chunk::Size { size, digits } => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if *digits >= 16 {
                            return Err("a chunk size longer than 16 hex digits");
                        }
                        let digit = u64::from((byte as char).to_digit(16).unwrap_or(0));
                        *size = *size * 16 + digit;
                        *digits += 1;
                    }
                    b' ' | b'\t' if *digits > 0 => *chunk = Chunk::SizeSpace { size: *size },
                    b';' if *digits > 0 => *chunk = Chunk::Extension { size: *size },
                    b'\r' if *digits > 0 => *chunk = Chunk::SizeLineFeed { size: *size },
                    _ => return Err("a chunk size that is not hexadecimal or not ended by CRLF"),
                },
                Chunk::SizeSpace { size } => match byte {
                    b' ' | b'\t' => {}
                    b';' => *chunk = Chunk::Extension { size: *size },
                    b'\r' => *chunk = Chunk::SizeLineFeed { size: *size },
                    _ => return Err("a chunk size that is not hexadecimal"),
                },
                Chunk::Extension { size } => match byte {
                    b'\r' => *chunk = Chunk::SizeLineFeed { size: *size },
                    b'\n' => return Err("a chunk extension not ended by CRLF"),
                    _ => {}
                },
                Chunk::SizeLineFeed { size } => {
                    if byte != b'\n' {
                        return Err("a chunk size line not ended by CRLF");
                    }
                    *chunk = if *size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data { left: *size }
                    };
                    if matches!(chunk, Chunk::Trailers) {
                        // The last-chunk line goes on as it came; the section after it is held back.
                        forward = at;
                    }
                }
                Chunk::DataCarriageReturn => {
                    if byte != b'\r' {
                        return Err("chunk data longer than its size");
                    }
                    *chunk = Chunk::DataLineFeed;
                }
                Chunk::DataLineFeed => {
                    if byte != b'\n' {
                        return Err("chunk data not ended by CRLF");
                    }
                    *chunk = Chunk::Size { size: 0, digits: 0 };
                }
                Chunk::Trailers => {
                    self.trailers.push(byte);
                    let section = &self.trailers[..];
                    if section == b"\r\n" || section.ends_with(b"\r\n\r\n") {
                        self.state = State::Done;
                    } else if section.len() > MAX_TRAILERS {
                        return Err("a trailer section over 64 KiB");
                    } else if section.ends_with(b"\n") && !section.ends_with(b"\r\n") {
                        return Err("a trailer line not ended by CRLF");
                    }
                }
                Chunk::Data { .. } => unreachable!("handled above"),
            }
            if !matches!(self.state, State::Chunked(Chunk::Trailers)) && !self.done() {
                forward = at;
            }
        }
        Ok(Advance {
            consumed: at,
            forward,
        })
    }
}

/// Trailer fields that never pass, even when announced (RFC 9110 §6.5.1: framing, routing,
/// authentication, content format), as hyper dropped them.
const NEVER_TRAILERS: [&str; 12] = [
    "authorization",
    "cache-control",
    "content-encoding",
    "content-length",
    "content-range",
    "content-type",
    "host",
    "max-forwards",
    "set-cookie",
    "trailer",
    "transfer-encoding",
    "te",
];

/// The trailer section to pass on: the fields the message's `Trailer` header announced (`announced`, its
/// values), except those RFC 9110 rules out of trailers, then the empty line.
pub fn filtered_trailers(section: &[u8], announced: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut fields = [httparse::EMPTY_HEADER; 64];
    if let Ok(httparse::Status::Complete((_, parsed))) =
        httparse::parse_headers(section, &mut fields)
    {
        for field in parsed {
            let name = field.name;
            let named = announced.iter().any(|value| {
                value
                    .split(|&b| b == b',')
                    .any(|listed| listed.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
            });
            if named && !NEVER_TRAILERS.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(field.value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(
        framing: Framing,
        wire: &[u8],
    ) -> Result<(usize, usize, bool, Vec<u8>), &'static str> {
        let mut body = BodyFollower::new(framing);
        let mut consumed = 0;
        let mut forward = 0;
        // One byte at a time: the hardest way the bytes can arrive.
        for chunk in wire.chunks(1) {
            if body.done() {
                break;
            }
            let step = body.advance(chunk)?;
            consumed += step.consumed;
            forward += step.forward;
        }
        Ok((consumed, forward, body.done(), body.take_trailers()))
    }

    #[test]
    fn a_chunked_body_ends_after_its_trailers_and_leaves_the_next_message() {
        let wire = b"5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\nGET /next";
        let (consumed, forward, done, trailers) = follow(Framing::Chunked, wire).unwrap();
        assert!(done);
        assert_eq!(
            &wire[..consumed],
            b"5;ext=1\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n"
        );
        assert_eq!(&wire[..forward], b"5;ext=1\r\nhello\r\n0\r\n");
        assert_eq!(trailers, b"X-Sum: 1\r\n\r\n");
        let whole = BodyFollower::new(Framing::Chunked)
            .advance(b"3\r\nabc\r\n0\r\n\r\nrest")
            .unwrap();
        assert_eq!((whole.consumed, whole.forward), (13, 11));
    }

    #[test]
    fn bare_line_feeds_and_long_chunks_break_the_body() {
        for wire in [
            &b"5\nhello\n0\n\n"[..],
            b"5\r\nhelloGET / HTTP/1.1\r\n",
            b"ffffffffffffffffff1\r\nhello\r\n",
            b"zz\r\n",
        ] {
            assert!(follow(Framing::Chunked, wire).is_err(), "{wire:?}");
        }
    }

    #[test]
    fn a_length_counts_its_bytes() {
        let mut body = BodyFollower::new(Framing::Length(3));
        assert_eq!(body.advance(b"ab").unwrap().consumed, 2);
        assert_eq!(body.advance(b"cdef").unwrap().consumed, 1);
        assert!(body.done());
    }

    #[test]
    fn only_announced_trailers_pass_and_never_the_forbidden_ones() {
        let section = b"x-sum: 1\r\nhost: evil\r\nx-other: 2\r\n\r\n";
        let announced = vec![b"x-sum, host".to_vec()];
        assert_eq!(filtered_trailers(section, &announced), b"x-sum: 1\r\n\r\n");
        assert_eq!(filtered_trailers(b"\r\n", &announced), b"\r\n");
    }
}
