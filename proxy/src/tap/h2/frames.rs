//! One direction of an HTTP/2 connection read frame by frame as it passes (RFC 9113 §4): DATA payloads
//! are handed on as they arrive, without padding; header blocks (HEADERS or PUSH_PROMISE and their
//! CONTINUATIONs) are gathered whole for HPACK; RST_STREAM and SETTINGS are read; everything else is
//! skipped.

use bytes::{Buf, Bytes, BytesMut};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

#[derive(Debug, PartialEq)]
pub enum FrameStep<'a> {
    NeedMore,
    /// Payload bytes of a DATA frame (padding removed).
    Data {
        stream: u32,
        bytes: &'a [u8],
    },
    /// A DATA frame ended; `end_stream` when it was the stream's last.
    DataEnd {
        stream: u32,
        end_stream: bool,
    },
    /// A whole header block. `push` for a PUSH_PROMISE's, decoded only to keep HPACK's table in step.
    HeaderBlock {
        stream: u32,
        block: Bytes,
        end_stream: bool,
        push: bool,
    },
    Reset {
        stream: u32,
        code: u32,
    },
    /// The sender's SETTINGS_HEADER_TABLE_SIZE: how large the *other* side's encoder may make its table.
    HeaderTableSize(u32),
    Broken(String),
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    len: usize,
    read: usize,
    /// A padded DATA frame's pad length, once its first byte is read.
    pad: Option<usize>,
    /// The payload of a frame read whole (not DATA).
    payload: BytesMut,
}

/// A header block spread over HEADERS/PUSH_PROMISE and CONTINUATION frames.
struct Block {
    stream: u32,
    fragments: BytesMut,
    end_stream: bool,
    push: bool,
}

pub struct FrameReader {
    /// Bytes of the client's connection preface still to skip.
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    frame: Option<Frame>,
    block: Option<Block>,
    /// The most bytes a header block may take.
    block_limit: usize,
}

impl FrameReader {
    pub fn new(preface: usize, block_limit: usize) -> Self {
        FrameReader {
            preface_left: preface,
            header: [0; 9],
            header_len: 0,
            frame: None,
            block: None,
            block_limit,
        }
    }

    pub fn step<'a>(&mut self, input: &mut &'a [u8]) -> FrameStep<'a> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(input.len());
            *input = &input[n..];
            self.preface_left -= n;
            if self.preface_left > 0 {
                return FrameStep::NeedMore;
            }
        }
        loop {
            let Some(frame) = &mut self.frame else {
                let n = (9 - self.header_len).min(input.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&input[..n]);
                self.header_len += n;
                *input = &input[n..];
                if self.header_len < 9 {
                    return FrameStep::NeedMore;
                }
                self.header_len = 0;
                if let Err(why) = self.begin_frame() {
                    return FrameStep::Broken(why);
                }
                continue;
            };
            if frame.kind == DATA {
                if let Some(step) = data(frame, input) {
                    if matches!(step, FrameStep::DataEnd { .. }) {
                        self.frame = None;
                    }
                    return step;
                }
                if frame.read == frame.len {
                    let end = FrameStep::DataEnd {
                        stream: frame.stream,
                        end_stream: frame.flags & END_STREAM != 0,
                    };
                    self.frame = None;
                    return end;
                }
                return FrameStep::NeedMore;
            }
            let n = (frame.len - frame.read).min(input.len());
            if keeps_payload(frame.kind) {
                frame.payload.extend_from_slice(&input[..n]);
            }
            frame.read += n;
            *input = &input[n..];
            if frame.read < frame.len {
                return FrameStep::NeedMore;
            }
            let frame = self.frame.take().expect("matched above");
            match self.complete(frame) {
                Some(step) => return step,
                None => continue,
            }
        }
    }

    fn begin_frame(&mut self) -> Result<(), String> {
        let h = &self.header;
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let kind = h[3];
        let flags = h[4];
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if self.block.is_some() && kind != CONTINUATION {
            return Err("a frame inside a header block that is not CONTINUATION".into());
        }
        if keeps_payload(kind) && len > self.block_limit {
            return Err(format!(
                "a frame of {len} bytes over the {} limit",
                self.block_limit
            ));
        }
        self.frame = Some(Frame {
            kind,
            flags,
            stream,
            len,
            read: 0,
            pad: None,
            payload: BytesMut::new(),
        });
        Ok(())
    }

    /// A frame read whole (not DATA): what it tells, if anything.
    fn complete(&mut self, frame: Frame) -> Option<FrameStep<'static>> {
        let Frame {
            kind,
            flags,
            stream,
            mut payload,
            ..
        } = frame;
        match kind {
            HEADERS | PUSH_PROMISE => {
                let pad = if flags & PADDED != 0 {
                    if payload.is_empty() {
                        return Some(FrameStep::Broken("an empty padded frame".into()));
                    }
                    usize::from(payload.get_u8())
                } else {
                    0
                };
                let skip = match kind {
                    HEADERS if flags & PRIORITY != 0 => 5,
                    PUSH_PROMISE => 4,
                    _ => 0,
                };
                if pad + skip > payload.len() {
                    return Some(FrameStep::Broken("padding longer than its frame".into()));
                }
                payload.truncate(payload.len() - pad);
                payload.advance(skip);
                self.block = Some(Block {
                    stream,
                    fragments: payload,
                    end_stream: kind == HEADERS && flags & END_STREAM != 0,
                    push: kind == PUSH_PROMISE,
                });
            }
            CONTINUATION => {
                let Some(block) = &mut self.block else {
                    return Some(FrameStep::Broken(
                        "CONTINUATION outside a header block".into(),
                    ));
                };
                if block.stream != stream {
                    return Some(FrameStep::Broken("CONTINUATION of another stream".into()));
                }
                if block.fragments.len() + payload.len() > self.block_limit {
                    return Some(FrameStep::Broken(format!(
                        "a header block over the {} limit",
                        self.block_limit
                    )));
                }
                block.fragments.extend_from_slice(&payload);
            }
            RST_STREAM if payload.len() == 4 => {
                return Some(FrameStep::Reset {
                    stream,
                    code: payload.get_u32(),
                });
            }
            SETTINGS if flags & ACK == 0 => {
                let mut size = None;
                while payload.len() >= 6 {
                    let id = payload.get_u16();
                    let value = payload.get_u32();
                    if id == SETTINGS_HEADER_TABLE_SIZE {
                        size = Some(value);
                    }
                }
                return size.map(FrameStep::HeaderTableSize);
            }
            _ => return None,
        }
        if flags & END_HEADERS != 0 {
            let block = self.block.take()?;
            return Some(FrameStep::HeaderBlock {
                stream: block.stream,
                block: block.fragments.freeze(),
                end_stream: block.end_stream,
                push: block.push,
            });
        }
        None
    }
}

/// The next piece of a DATA frame's payload, without its padding; `None` when the input is used up.
fn data<'a>(frame: &mut Frame, input: &mut &'a [u8]) -> Option<FrameStep<'a>> {
    if frame.flags & PADDED != 0 && frame.pad.is_none() {
        if frame.len == 0 {
            return Some(FrameStep::Broken("an empty padded DATA frame".into()));
        }
        let (&pad, rest) = input.split_first()?;
        *input = rest;
        frame.read = 1;
        frame.pad = Some(usize::from(pad));
        if usize::from(pad) >= frame.len {
            return Some(FrameStep::Broken("padding longer than its frame".into()));
        }
    }
    let data_end = frame.len - frame.pad.unwrap_or(0);
    if frame.read < data_end {
        if input.is_empty() {
            return None;
        }
        let n = (data_end - frame.read).min(input.len());
        let (bytes, rest) = input.split_at(n);
        *input = rest;
        frame.read += n;
        return Some(FrameStep::Data {
            stream: frame.stream,
            bytes,
        });
    }
    let n = (frame.len - frame.read).min(input.len());
    *input = &input[n..];
    frame.read += n;
    None
}

/// Frames whose payload is needed whole.
fn keeps_payload(kind: u8) -> bool {
    matches!(
        kind,
        HEADERS | PUSH_PROMISE | CONTINUATION | RST_STREAM | SETTINGS
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn steps(reader: &mut FrameReader, wire: &[u8], piece: usize) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for chunk in wire.chunks(piece) {
            let mut input = chunk;
            loop {
                match reader.step(&mut input) {
                    FrameStep::NeedMore => break,
                    FrameStep::Data { stream, bytes } => {
                        // Pieces of one frame's data are joined, so any split reads the same.
                        let text = format!("data {stream} ");
                        match seen.last_mut() {
                            Some(last) if last.starts_with(&text) => {
                                last.push_str(&String::from_utf8_lossy(bytes))
                            }
                            _ => seen.push(format!("{text}{}", String::from_utf8_lossy(bytes))),
                        }
                    }
                    other => seen.push(format!("{other:?}")),
                }
            }
        }
        seen
    }

    #[test]
    fn padding_priority_and_continuation_are_taken_apart_in_any_split() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]));
        // HEADERS, padded (2 bytes) and with priority, continued once.
        let mut headers = vec![2, 0, 0, 0, 0, 16];
        headers.extend_from_slice(b"ab");
        headers.extend_from_slice(&[0, 0]);
        wire.extend(frame(HEADERS, PADDED | PRIORITY, 1, &headers));
        wire.extend(frame(CONTINUATION, END_HEADERS, 1, b"cd"));
        // DATA, padded (3 bytes), then the stream's last DATA.
        wire.extend(frame(DATA, PADDED, 1, b"\x03hello\0\0\0"));
        wire.extend(frame(DATA, END_STREAM, 1, b"!"));
        wire.extend(frame(RST_STREAM, 0, 3, &8u32.to_be_bytes()));
        for piece in [1, 2, 5, 9, wire.len()] {
            let mut reader = FrameReader::new(24, 1024);
            assert_eq!(
                steps(&mut reader, &wire, piece),
                [
                    "HeaderTableSize(4096)",
                    "HeaderBlock { stream: 1, block: b\"abcd\", end_stream: false, push: false }",
                    "data 1 hello",
                    "DataEnd { stream: 1, end_stream: false }",
                    "data 1 !",
                    "DataEnd { stream: 1, end_stream: true }",
                    "Reset { stream: 3, code: 8 }",
                ],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn a_block_over_the_limit_or_an_interleaved_frame_is_reported() {
        let mut reader = FrameReader::new(0, 4);
        let wire = frame(HEADERS, END_HEADERS, 1, b"12345");
        assert!(steps(&mut reader, &wire, 64)[0].starts_with("Broken"));
        let mut reader = FrameReader::new(0, 64);
        let mut wire = frame(HEADERS, 0, 1, b"ab");
        wire.extend(frame(DATA, 0, 1, b"x"));
        assert!(steps(&mut reader, &wire, 64)[0].starts_with("Broken"));
    }
}
