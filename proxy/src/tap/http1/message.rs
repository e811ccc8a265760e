//! One direction of an HTTP/1 connection, followed message by message from the bytes as they pass: the
//! head (parsed with httparse once it is whole), then the body as its framing says.
//!
//! The reader never holds bytes it does not need: a head that arrives in one read is parsed where it lies
//! and copied once, for the record; only a head split over several reads is gathered, up to its limit.

use bytes::{Bytes, BytesMut};

use super::chunked::{ChunkStep, ChunkedBody};
use crate::budget::{Purpose, Reservation};
use crate::tap::exchange::MAX_FIELDS;

/// Which side of the exchange a reader follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// How a message's body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// A response without length: it ends when the connection does.
    UntilClose,
}

/// The methods whose responses are read differently; the others are all alike to the tracker. Kept
/// without a copy of the method's text, which would be an allocation per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `CONNECT`: a `2xx` answer turns the connection into a tunnel.
    Connect,
    /// `HEAD`: the response has no body, whatever its fields say.
    Head,
    Other,
}

impl Method {
    fn of(method: &str) -> Method {
        match method {
            "CONNECT" => Method::Connect,
            "HEAD" => Method::Head,
            _ => Method::Other,
        }
    }
}

/// What a head says, as far as following the connection needs it.
#[derive(Debug, PartialEq, Eq)]
pub struct HeadInfo {
    /// A request's method, as far as it changes how the response is read.
    pub method: Option<Method>,
    pub status: Option<u16>,
    /// The framing the head's own fields give (a response's may be overridden by its request).
    pub framing: Framing,
    /// The protocol an `Upgrade` field asks for, lower-cased (first one listed).
    pub upgrade: Option<String>,
}

#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    NeedMore,
    Head(HeadInfo, Bytes),
    Body(&'a [u8]),
    /// The trailer section of a chunked body.
    Trailers(Bytes),
    End,
    /// A head over the reader's limit.
    TooLarge,
    Broken(String),
}

enum State {
    Head(BytesMut),
    /// A head was handed out; the tracker says how its body is framed.
    AwaitingFraming,
    Length(u64),
    Chunked(ChunkedBody),
    UntilClose,
    /// Not followed any more (after an upgrade or a tunnel, or once lost): bytes pass unread.
    Ignored,
}

pub struct MessageReader {
    side: Side,
    state: State,
    head_limit: usize,
    /// The memory budget's share for a head gathered over several reads.
    gathered_share: Reservation,
}

impl MessageReader {
    pub fn new(side: Side, head_limit: usize) -> Self {
        MessageReader {
            side,
            state: State::Head(BytesMut::new()),
            head_limit,
            gathered_share: Reservation::default(),
        }
    }

    /// Sets how the body of the head just handed out is framed.
    pub fn expect(&mut self, framing: Framing) {
        self.state = match framing {
            Framing::Empty => State::Length(0),
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(ChunkedBody::default()),
            Framing::UntilClose => State::UntilClose,
        };
    }

    /// Stops following this direction: what comes is relayed without being read.
    pub fn ignore(&mut self) {
        self.state = State::Ignored;
    }

    /// Whether the reader is inside a body that only the end of the connection ends.
    pub fn until_close(&self) -> bool {
        matches!(self.state, State::UntilClose)
    }

    /// Whether the reader is between messages with nothing of the next one read yet.
    #[cfg(test)]
    pub fn idle(&self) -> bool {
        matches!(&self.state, State::Head(buffer) if buffer.is_empty())
    }

    /// Consumes from `input` up to the next event.
    pub fn step<'a>(&mut self, input: &mut &'a [u8]) -> Step<'a> {
        match &mut self.state {
            State::Head(_) => self.head(input),
            State::AwaitingFraming | State::Ignored => {
                *input = &[];
                Step::NeedMore
            }
            State::Length(0) => {
                self.state = State::Head(BytesMut::new());
                Step::End
            }
            State::Length(left) => {
                if input.is_empty() {
                    return Step::NeedMore;
                }
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let (body, rest) = input.split_at(n);
                *input = rest;
                *left -= n as u64;
                Step::Body(body)
            }
            State::Chunked(chunked) => match chunked.step(input) {
                ChunkStep::NeedMore => Step::NeedMore,
                ChunkStep::Data(data) => Step::Body(data),
                ChunkStep::End(trailers) => {
                    // The trailers first, then (at the next step) the end.
                    self.state = State::Length(0);
                    match trailers {
                        Some(section) => Step::Trailers(section),
                        None => self.step(input),
                    }
                }
                ChunkStep::Broken(why) => Step::Broken(why.to_owned()),
            },
            State::UntilClose => {
                if input.is_empty() {
                    return Step::NeedMore;
                }
                let body = std::mem::take(input);
                Step::Body(body)
            }
        }
    }

    fn head<'a>(&mut self, input: &mut &'a [u8]) -> Step<'a> {
        let State::Head(gathered) = &mut self.state else {
            unreachable!("called in the head state")
        };
        if gathered.is_empty() {
            // RFC 9112 §2.2: empty lines before a request line are ignored (clients send one after a POST).
            let blank = input
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            *input = &input[blank..];
            if input.is_empty() {
                return Step::NeedMore;
            }
            match parse(self.side, input) {
                Ok(Some((len, info))) => {
                    if len > self.head_limit {
                        return Step::TooLarge;
                    }
                    let head = Bytes::copy_from_slice(&input[..len]);
                    *input = &input[len..];
                    self.state = State::AwaitingFraming;
                    Step::Head(info, head)
                }
                Ok(None) if input.len() > self.head_limit => Step::TooLarge,
                Ok(None) => {
                    if !gather(gathered, input, &mut self.gathered_share, self.head_limit) {
                        return Step::Broken(OUT_OF_BUDGET.to_owned());
                    }
                    *input = &[];
                    Step::NeedMore
                }
                Err(why) => self.refusal(why),
            }
        } else {
            let before = gathered.len();
            if !gather(gathered, input, &mut self.gathered_share, self.head_limit) {
                return Step::Broken(OUT_OF_BUDGET.to_owned());
            }
            match parse(self.side, gathered) {
                Ok(Some((len, info))) => {
                    if len > self.head_limit {
                        return Step::TooLarge;
                    }
                    *input = &input[len - before..];
                    gathered.truncate(len);
                    let head = std::mem::take(gathered).freeze();
                    self.gathered_share = Reservation::default();
                    self.state = State::AwaitingFraming;
                    Step::Head(info, head)
                }
                Ok(None) if gathered.len() > self.head_limit => Step::TooLarge,
                Ok(None) => {
                    *input = &[];
                    Step::NeedMore
                }
                Err(why) => self.refusal(why),
            }
        }
    }

    /// A request with too many fields is refused like one too large; anything else is not followed.
    fn refusal<'a>(&self, why: String) -> Step<'a> {
        if self.side == Side::Request && why == TOO_MANY_FIELDS {
            Step::TooLarge
        } else {
            Step::Broken(why)
        }
    }
}

/// Appends `input` to a head being gathered, its buffer's growth drawn from the memory budget first: the
/// buffer grows by doubling up to the head limit (one more read's worth past it), and `share` holds its
/// whole capacity. False, with nothing appended, when the budget cannot spare the growth.
fn gather(gathered: &mut BytesMut, input: &[u8], share: &mut Reservation, limit: usize) -> bool {
    let needed = gathered.len() + input.len();
    if needed > gathered.capacity() {
        let target = needed.max((gathered.capacity() * 2).min(limit)).max(1024);
        let growth = target - gathered.capacity();
        if !share.grow(Purpose::RequestHead, growth) {
            return false;
        }
        // A new buffer of exactly that size: `reserve` may round up past what the budget holds.
        let mut larger = BytesMut::with_capacity(target);
        larger.extend_from_slice(gathered);
        *gathered = larger;
    }
    gathered.extend_from_slice(input);
    true
}

/// Why a head was not followed when the memory budget could not hold it while it arrived.
const OUT_OF_BUDGET: &str = "a head split over several reads while the memory budget was spent";

/// Why a head with more than [`MAX_FIELDS`] fields was not followed.
const TOO_MANY_FIELDS: &str = "too many header fields";

/// Parses a whole head: its length and what it says, `None` while it is incomplete.
fn parse(side: Side, bytes: &[u8]) -> Result<Option<(usize, HeadInfo)>, String> {
    // Uninitialized: a head is parsed on the connection's task, and zeroing room for every field httparse
    // may find would cost more than the parse of a small head.
    let mut fields = [std::mem::MaybeUninit::uninit(); MAX_FIELDS];
    let (len, method, status, headers) = match side {
        Side::Request => {
            let mut request = httparse::Request::new(&mut []);
            match request.parse_with_uninit_headers(bytes, &mut fields) {
                Ok(httparse::Status::Complete(len)) => {
                    (len, request.method.map(Method::of), None, request.headers)
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_FIELDS.to_owned()),
                Err(e) => return Err(format!("not an HTTP/1 request head ({e})")),
            }
        }
        Side::Response => {
            let mut response = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                bytes,
                &mut fields,
            ) {
                Ok(httparse::Status::Complete(len)) => (len, None, response.code, response.headers),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(format!("not an HTTP/1 response head ({e})")),
            }
        }
    };
    let framing = framing(side, headers)?;
    let upgrade = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("upgrade"))
        .and_then(|h| {
            let first = h.value.split(|&b| b == b',').next()?;
            let name = String::from_utf8_lossy(first).trim().to_ascii_lowercase();
            // `websocket`, not `websocket/13`: the protocol, without its version.
            let name = name.split('/').next().unwrap_or_default().to_owned();
            (!name.is_empty()).then_some(name)
        });
    Ok(Some((
        len,
        HeadInfo {
            method,
            status,
            framing,
            upgrade,
        },
    )))
}

/// The framing a head's fields give: Transfer-Encoding over Content-Length, as RFC 9112 §6.3 orders.
fn framing(side: Side, headers: &[httparse::Header<'_>]) -> Result<Framing, String> {
    let mut transfer_encoding: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    for header in headers {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = Some(header.value);
        } else if header.name.eq_ignore_ascii_case("content-length") {
            for value in header.value.split(|&b| b == b',') {
                let value = std::str::from_utf8(value)
                    .ok()
                    .map(str::trim)
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| "a Content-Length that is not a number".to_owned())?;
                if length.is_some_and(|seen| seen != value) {
                    return Err("Content-Length fields that disagree".to_owned());
                }
                length = Some(value);
            }
        }
    }
    if let Some(codings) = transfer_encoding {
        let last = codings
            .rsplit(|&b| b == b',')
            .next()
            .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase());
        return match (last.as_deref(), side) {
            (Some("chunked"), _) => Ok(Framing::Chunked),
            (_, Side::Response) => Ok(Framing::UntilClose),
            (_, Side::Request) => Err("a request body whose last coding is not chunked".to_owned()),
        };
    }
    Ok(match (length, side) {
        (Some(0), _) => Framing::Empty,
        (Some(n), _) => Framing::Length(n),
        (None, Side::Request) => Framing::Empty,
        (None, Side::Response) => Framing::UntilClose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(reader: &mut MessageReader, wire: &[u8]) -> Vec<String> {
        let mut input = wire;
        let mut seen = Vec::new();
        loop {
            match reader.step(&mut input) {
                Step::NeedMore => return seen,
                Step::Head(info, head) => {
                    seen.push(format!("head {} {:?}", head.len(), info.framing));
                    reader.expect(info.framing);
                }
                Step::Body(bytes) => seen.push(format!("body {}", String::from_utf8_lossy(bytes))),
                Step::Trailers(t) => seen.push(format!("trailers {}", t.len())),
                Step::End => seen.push("end".into()),
                Step::TooLarge => return vec!["too large".into()],
                Step::Broken(why) => return vec![format!("broken: {why}")],
            }
        }
    }

    #[test]
    fn pipelined_requests_are_told_apart_by_their_framing() {
        let mut reader = MessageReader::new(Side::Request, 1024);
        let wire = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\r\nPUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
        assert_eq!(
            events(&mut reader, wire),
            [
                "head 28 Empty",
                "end",
                "head 48 Length(3)",
                "body abc",
                "end",
                "head 47 Chunked",
                "body z",
                "end"
            ]
        );
        assert!(reader.idle());
    }

    #[test]
    fn a_head_split_over_reads_is_gathered_and_the_rest_left_for_the_body() {
        let mut reader = MessageReader::new(Side::Response, 1024);
        assert!(events(&mut reader, b"HTTP/1.1 200 OK\r\nContent-Le").is_empty());
        assert_eq!(
            events(
                &mut reader,
                b"ngth: 2\r\n\r\nokHTTP/1.1 204 No Content\r\n\r\n"
            ),
            ["head 38 Length(2)", "body ok", "end", "head 27 UntilClose"]
        );
    }

    #[test]
    fn a_head_over_the_limit_is_reported_whether_whole_or_gathered() {
        let mut reader = MessageReader::new(Side::Request, 16);
        assert_eq!(
            events(&mut reader, b"GET /a-long-path HTTP/1.1\r\n\r\n"),
            ["too large"]
        );
        let mut reader = MessageReader::new(Side::Request, 16);
        assert!(events(&mut reader, b"GET /a-lo").is_empty());
        assert_eq!(events(&mut reader, b"ng-path HTTP/1.1\r\n"), ["too large"]);
    }

    #[test]
    fn smuggling_shapes_are_not_followed() {
        for wire in [
            &b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"\x16\x03\x01 not http\r\n\r\n",
        ] {
            let mut reader = MessageReader::new(Side::Request, 1024);
            let seen = events(&mut reader, wire);
            assert!(seen[0].starts_with("broken"), "{seen:?}");
        }
    }

    #[test]
    fn an_upgrade_names_the_protocol_without_its_version() {
        let wire = b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: WebSocket/13, h2c\r\n\r\n";
        let mut input = &wire[..];
        let mut reader = MessageReader::new(Side::Request, 1024);
        let Step::Head(info, _) = reader.step(&mut input) else {
            panic!("a head")
        };
        assert_eq!(info.upgrade.as_deref(), Some("websocket"));
    }
}
