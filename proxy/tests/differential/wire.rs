//! HTTP/1 as bytes, for both ends of the differential test: a reader that parses messages the way
//! RFC 9112 frames them (1xx, 204, 304 and HEAD without bodies, chunked bodies with their trailers, a
//! response without length ending with the connection) and keeps every byte it consumed, so a client can
//! check that what reached it is exactly what the origin wrote.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// One HTTP/1 message as it crossed the wire.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// `GET /path HTTP/1.1` or `HTTP/1.1 200 OK`.
    pub start: String,
    /// Names lower-cased, values trimmed, in wire order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The trailer section of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// False when the connection ended before the body did.
    pub complete: bool,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A response's status code.
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {:?}", self.start))
    }

    /// A response's version (`HTTP/1.1`), or a request's.
    pub fn version(&self) -> &str {
        if self.start.starts_with("HTTP/") {
            self.start.split(' ').next().unwrap_or_default()
        } else {
            self.start.rsplit(' ').next().unwrap_or_default()
        }
    }

    /// A request's method.
    pub fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or_default()
    }

    /// A request's target, as on the request line.
    pub fn target(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or_default()
    }
}

/// How a body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The framing of a request body (RFC 9112 §6.3).
pub fn request_framing(headers: &[(String, String)]) -> Framing {
    framing_of(headers).unwrap_or(Framing::Empty)
}

/// The framing of a response body, given the request method it answers.
pub fn response_framing(method: &str, status: u16, headers: &[(String, String)]) -> Framing {
    if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        return Framing::Empty;
    }
    if method == "CONNECT" && (200..300).contains(&status) {
        return Framing::Empty;
    }
    framing_of(headers).unwrap_or(Framing::UntilClose)
}

fn framing_of(headers: &[(String, String)]) -> Option<Framing> {
    let field = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if let Some(codings) = field("transfer-encoding") {
        if codings.to_ascii_lowercase().trim_end().ends_with("chunked") {
            return Some(Framing::Chunked);
        }
        return Some(Framing::UntilClose);
    }
    field("content-length").map(
        |n| match n.trim().parse().expect("a numeric content-length") {
            0 => Framing::Empty,
            n => Framing::Length(n),
        },
    )
}

/// A stream read message by message, every byte consumed kept until taken.
pub struct Wire<S> {
    reader: BufReader<S>,
    seen: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Wire<S> {
    pub fn new(stream: S) -> Self {
        Wire {
            reader: BufReader::new(stream),
            seen: Vec::new(),
        }
    }

    /// The bytes consumed since the last call.
    pub fn take_seen(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.seen)
    }

    /// One line, its CRLF included in what was seen and removed from what is returned.
    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = Vec::new();
        if self.reader.read_until(b'\n', &mut line).await? == 0 || !line.ends_with(b"\n") {
            self.seen.extend_from_slice(&line);
            return Err(eof());
        }
        self.seen.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line);
        Ok(text.trim_end_matches(['\r', '\n']).to_owned())
    }

    async fn exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(n);
        let got = (&mut self.reader)
            .take(n as u64)
            .read_to_end(&mut bytes)
            .await?;
        self.seen.extend_from_slice(&bytes);
        if got < n {
            return Err(partial(bytes));
        }
        Ok(bytes)
    }

    /// Everything until the peer closes (or resets).
    pub async fn rest(&mut self) -> Vec<u8> {
        let mut bytes = Vec::new();
        let _ = self.reader.read_to_end(&mut bytes).await;
        self.seen.extend_from_slice(&bytes);
        bytes
    }

    /// Reads up to `n` bytes as they come, or fewer if the peer closes first.
    pub async fn some(&mut self, n: usize) -> Vec<u8> {
        self.exact(n).await.unwrap_or_else(partial_bytes)
    }

    /// A start line and header fields; `None` when the peer closed before sending anything.
    pub async fn head(&mut self) -> std::io::Result<Option<(String, Vec<(String, String)>)>> {
        let before = self.seen.len();
        let start = loop {
            match self.line().await {
                Ok(line) if line.is_empty() => continue,
                Ok(line) => break line,
                Err(_) if self.seen.len() == before => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                return Ok(Some((start, headers)));
            }
            headers.push(field(&line));
        }
    }

    /// A body framed as `framing`, with the trailers of a chunked one. A body cut off by the peer is
    /// returned as far as it came, `complete` false.
    pub async fn body(&mut self, framing: Framing) -> (Vec<u8>, Vec<(String, String)>, bool) {
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        let complete = match framing {
            Framing::Empty => true,
            Framing::Length(n) => match self.exact(n).await {
                Ok(bytes) => {
                    body = bytes;
                    true
                }
                Err(e) => {
                    body = partial_bytes(e);
                    false
                }
            },
            Framing::UntilClose => {
                body = self.rest().await;
                true
            }
            Framing::Chunked => self.chunked(&mut body, &mut trailers).await.is_ok(),
        };
        (body, trailers, complete)
    }

    async fn chunked(
        &mut self,
        body: &mut Vec<u8>,
        trailers: &mut Vec<(String, String)>,
    ) -> std::io::Result<()> {
        loop {
            let size_line = self.line().await?;
            let digits = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(digits, 16)
                .unwrap_or_else(|_| panic!("not a chunk size: {size_line:?}"));
            if size == 0 {
                loop {
                    let line = self.line().await?;
                    if line.is_empty() {
                        return Ok(());
                    }
                    trailers.push(field(&line));
                }
            }
            match self.exact(size).await {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(e) => {
                    body.extend_from_slice(&partial_bytes(e));
                    return Err(eof());
                }
            }
            let end = self.line().await?;
            assert!(end.is_empty(), "chunk data longer than its size: {end:?}");
        }
    }

    /// One response (a `1xx` included) to a request with `method`.
    pub async fn response(&mut self, method: &str) -> std::io::Result<Message> {
        let (start, headers) = self.head().await?.ok_or_else(eof)?;
        let mut message = Message {
            start,
            headers,
            ..Message::default()
        };
        let framing = response_framing(method, message.status(), &message.headers);
        (message.body, message.trailers, message.complete) = self.body(framing).await;
        Ok(message)
    }

    /// One request; `None` when the peer closed between requests.
    pub async fn request(&mut self) -> std::io::Result<Option<Message>> {
        let Some((start, headers)) = self.head().await? else {
            return Ok(None);
        };
        let mut message = Message {
            start,
            headers,
            ..Message::default()
        };
        let framing = request_framing(&message.headers);
        (message.body, message.trailers, message.complete) = self.body(framing).await;
        Ok(Some(message))
    }

    pub fn reader_mut(&mut self) -> &mut BufReader<S> {
        &mut self.reader
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub async fn send(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).await.expect("write to the peer");
        stream.flush().await.expect("flush to the peer");
    }

    /// Half-closes the write side: the peer reads the end of what was sent.
    pub async fn shutdown(&mut self) {
        let _ = self.reader.get_mut().shutdown().await;
    }
}

/// Parses one whole message out of bytes (the expected side of a comparison).
pub async fn parse_response(wire: &[u8], method: &str) -> Message {
    Wire::new(wire)
        .response(method)
        .await
        .unwrap_or_else(|e| panic!("not a whole response ({e}): {}", lossy(wire)))
}

/// Every response in `wire`, in order, each answering `method`.
pub async fn parse_responses(wire: &[u8], method: &str) -> Vec<Message> {
    let mut reader = Wire::new(wire);
    let mut all = Vec::new();
    while reader
        .reader
        .fill_buf()
        .await
        .map(|b| !b.is_empty())
        .unwrap()
    {
        all.push(reader.response(method).await.unwrap());
    }
    all
}

pub async fn parse_request(wire: &[u8]) -> Message {
    Wire::new(wire)
        .request()
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("not a whole request: {}", lossy(wire)))
}

fn field(line: &str) -> (String, String) {
    let (name, value) = line
        .split_once(':')
        .unwrap_or_else(|| panic!("not a header field: {line:?}"));
    (name.to_ascii_lowercase(), value.trim().to_owned())
}

fn eof() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the peer closed")
}

/// An end-of-file error carrying the bytes read before it.
fn partial(bytes: Vec<u8>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, Partial(bytes))
}

#[derive(Debug)]
struct Partial(Vec<u8>);

impl std::fmt::Display for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the peer closed after {} bytes", self.0.len())
    }
}

impl std::error::Error for Partial {}

fn partial_bytes(error: std::io::Error) -> Vec<u8> {
    error
        .into_inner()
        .and_then(|inner| inner.downcast::<Partial>().ok())
        .map(|partial| partial.0)
        .unwrap_or_default()
}

/// Bytes as text for assertion messages.
pub fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
