//! A record as the writer encodes it: every field borrowed from wherever it already is, so a record is
//! written without first being built as a [`Record`] of owned strings. The tap's raw exchanges are encoded
//! straight from their heads this way (see `crate::tap`), and [`Record`] itself is serialized through a
//! view of it, so both write the same bytes by construction: the fields of `sidecar.capture/v1` in the
//! order docs/capture.md shows them, optional fields left out when absent.
//!
//! Why not serde's derive on [`Record`]: the derive needs owned values (one allocation per header name and
//! value, per fixed field, per URL, per body's base64) and, for the `kind`-tagged detail flattened into
//! the record, goes through serde's map machinery; the profile of the writer thread showed both. And why
//! not serde_json at all: its byte-at-a-time string escaping was the next largest share of that profile,
//! so the view writes its JSON through [`super::json_line`].

use std::borrow::Cow;
use std::time::SystemTime;

use super::json_line::{self, JsonArray, JsonObject, PairList};
use super::record::{record_run, Body, MockAnswer, Record, StreamSummary, TlsSession};

/// A list of `[name, value]` fields (headers or trailers), however it is held.
pub trait FieldList {
    fn is_empty(&self) -> bool;

    /// Each field, in order, as a pair of `pairs`.
    fn write_pairs(&self, pairs: &mut PairList<'_>);

    /// The list as JSON, `[["name","value"],...]`, appended to `line`.
    fn write(&self, line: &mut Vec<u8>) {
        let mut pairs = PairList::open(line);
        self.write_pairs(&mut pairs);
        pairs.close();
    }
}

pub struct RecordView<'a, F> {
    pub head: HeadView<'a>,
    pub shared: SharedView<'a>,
    pub rest: RestView<'a, F>,
}

/// The fields before the shared ones: `schema` (always [`super::record::SCHEMA`]), `id`, `uid`.
pub struct HeadView<'a> {
    pub id: u64,
    pub uid: Uid<'a>,
}

/// The fields after the shared ones.
pub struct RestView<'a, F> {
    pub caused_by: Option<Uid<'a>>,
    pub start: Start<'a>,
    pub duration_ms: f64,
    pub detail: DetailView<'a, F>,
}

/// The fields between `uid` and `caused_by`: the same in every record of one connection and route, so
/// the tap encodes them once per stream (see [`write_with_shared`]).
pub struct SharedView<'a> {
    pub connection: u64,
    pub direction: &'a str,
    pub proxy_type: &'a str,
    pub protocol: &'a str,
    pub transport: &'a str,
    pub client: &'a str,
    pub target: &'a str,
    pub delivered_to: Option<&'a str>,
    pub tls: Option<&'a TlsSession>,
}

/// A record's `uid` (or a `caused_by`): as written, or that of this process's record `id`, spelled out
/// only as it is written.
#[derive(Clone, Copy)]
pub enum Uid<'a> {
    Text(&'a str),
    Of(u64),
}

/// A record's `start`: as written, or the wall-clock time, formatted (RFC 3339, microseconds) only as it
/// is written.
#[derive(Clone, Copy)]
pub enum Start<'a> {
    Text(&'a str),
    At(SystemTime),
}

pub enum DetailView<'a, F> {
    Http(HttpView<'a, F>),
    Stream(&'a StreamSummary),
}

pub struct HttpView<'a, F> {
    pub request: RequestView<'a, F>,
    pub response: Option<ResponseView<'a, F>>,
    pub error: Option<&'a str>,
    pub upgraded: Option<&'a str>,
    pub mock: Option<&'a MockAnswer>,
}

pub struct RequestView<'a, F> {
    pub method: Cow<'a, str>,
    pub url: Url<'a>,
    pub version: Cow<'a, str>,
    pub headers: F,
    pub body: &'a Body,
    pub trailers: F,
}

pub struct ResponseView<'a, F> {
    pub status: u16,
    pub version: Cow<'a, str>,
    pub headers: F,
    pub body: &'a Body,
    pub trailers: F,
}

/// A request's absolute URL: as written, or `scheme://hostpath` joined only as it is written.
pub enum Url<'a> {
    Text(&'a str),
    Owned(String),
    Joined {
        scheme: &'a str,
        host: &'a str,
        path: &'a str,
    },
}

impl<F: FieldList> RecordView<'_, F> {
    /// The record's JSON (without the line's `\n`), appended to `line`.
    pub fn write(&self, line: &mut Vec<u8>) {
        let mut record = JsonObject::open(line);
        self.head.fields(&mut record);
        self.shared.fields(&mut record);
        self.rest.fields(&mut record);
        record.close();
    }
}

/// A record's JSON into `line`, as [`RecordView::write`] writes it, with the shared fields as
/// [`SharedView::encode`] encoded them rather than encoded again.
pub fn write_with_shared<F: FieldList>(
    line: &mut Vec<u8>,
    head: &HeadView<'_>,
    shared: &[u8],
    rest: &RestView<'_, F>,
) {
    let mut record = JsonObject::open(line);
    head.fields(&mut record);
    record.encoded_fields(shared);
    rest.fields(&mut record);
    record.close();
}

impl HeadView<'_> {
    fn fields(&self, record: &mut JsonObject<'_>) {
        record.str("schema", super::record::SCHEMA);
        record.u64("id", self.id);
        if !self.uid.is_empty() {
            self.uid.write(record.key("uid"));
        }
    }
}

impl<F: FieldList> RestView<'_, F> {
    fn fields(&self, record: &mut JsonObject<'_>) {
        if let Some(caused_by) = &self.caused_by {
            caused_by.write(record.key("caused_by"));
        }
        self.start.write(record.key("start"));
        record.f64("duration_ms", self.duration_ms);
        match &self.detail {
            DetailView::Http(http) => {
                record.str("kind", "http");
                http.request.write(record.key("request"));
                if let Some(response) = &http.response {
                    response.write(record.key("response"));
                }
                if let Some(error) = http.error {
                    record.str("error", error);
                }
                if let Some(upgraded) = http.upgraded {
                    record.str("upgraded", upgraded);
                }
                if let Some(mock) = http.mock {
                    write_mock(record.key("mock"), mock);
                }
            }
            DetailView::Stream(stream) => {
                record.str("kind", "stream");
                record.str("protocol_seen", &stream.protocol_seen);
                record.u64("bytes_client_to_target", stream.bytes_client_to_target);
                record.u64("bytes_target_to_client", stream.bytes_target_to_client);
                if let Some(sni) = &stream.sni {
                    record.str("sni", sni);
                }
                record.str("end", &stream.end);
                if let Some(error) = &stream.error {
                    record.str("error", error);
                }
                if let Some(payload) = &stream.payload {
                    let mut both = JsonObject::open(record.key("payload"));
                    payload.client_to_target.write(both.key("client_to_target"));
                    payload.target_to_client.write(both.key("target_to_client"));
                    both.close();
                }
            }
        }
    }
}

impl SharedView<'_> {
    /// The shared fields as [`write_with_shared`] takes them: `"connection":...` up to the last one's
    /// value, without braces or commas around them.
    pub fn encode(&self) -> Vec<u8> {
        let mut encoded = Vec::with_capacity(256);
        let mut part = JsonObject::open(&mut encoded);
        self.fields(&mut part);
        part.close();
        // `{...}` to `...`
        encoded.pop();
        encoded.remove(0);
        encoded
    }

    fn fields(&self, record: &mut JsonObject<'_>) {
        record.u64("connection", self.connection);
        record.str("direction", self.direction);
        record.str("proxy_type", self.proxy_type);
        record.str("protocol", self.protocol);
        record.str("transport", self.transport);
        record.str("client", self.client);
        record.str("target", self.target);
        if let Some(delivered_to) = self.delivered_to {
            record.str("delivered_to", delivered_to);
        }
        if let Some(tls) = self.tls {
            write_tls(record.key("tls"), tls);
        }
    }
}

fn write_tls(line: &mut Vec<u8>, tls: &TlsSession) {
    let mut session = JsonObject::open(line);
    if let Some(sni) = &tls.sni {
        session.str("sni", sni);
    }
    if let Some(alpn) = &tls.alpn {
        session.str("alpn", alpn);
    }
    session.str("version", &tls.version);
    if let Some(upstream_version) = &tls.upstream_version {
        session.str("upstream_version", upstream_version);
    }
    session.close();
}

fn write_mock(line: &mut Vec<u8>, mock: &MockAnswer) {
    let mut answer = JsonObject::open(line);
    answer.bool("matched", mock.matched);
    if let Some(served_from) = &mock.served_from {
        answer.str("served_from", served_from);
    }
    if let Some(nearest) = &mock.nearest {
        answer.str("nearest", nearest);
    }
    if !mock.differences.is_empty() {
        let mut differences = JsonArray::open(answer.key("differences"));
        for difference in &mock.differences {
            let mut entry = JsonObject::open(differences.item());
            entry.str("field", &difference.field);
            entry.str("recorded", &difference.recorded);
            entry.str("actual", &difference.actual);
            entry.close();
        }
        differences.close();
    }
    answer.close();
}

impl Uid<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, Uid::Text(""))
    }

    fn write(&self, line: &mut Vec<u8>) {
        match self {
            Uid::Text(text) => json_line::string(line, text),
            Uid::Of(id) => {
                // The run's hex digits, a dash, the id's digits: nothing to escape.
                line.push(b'"');
                line.extend_from_slice(record_run().as_bytes());
                line.push(b'-');
                json_line::integer(line, *id);
                line.push(b'"');
            }
        }
    }
}

impl Start<'_> {
    fn write(&self, line: &mut Vec<u8>) {
        match self {
            Start::Text(text) => json_line::string(line, text),
            Start::At(at) => {
                let mut text = [0u8; super::rfc3339::LENGTH];
                match super::rfc3339::micros(*at, &mut text) {
                    Some(start) => json_line::plain_string(line, start.as_bytes()),
                    None => {
                        json_line::string(line, &humantime::format_rfc3339_micros(*at).to_string())
                    }
                }
            }
        }
    }
}

impl<F: FieldList> RequestView<'_, F> {
    fn write(&self, line: &mut Vec<u8>) {
        let mut request = JsonObject::open(line);
        request.str("method", &self.method);
        self.url.write(request.key("url"));
        request.str("version", &self.version);
        self.headers.write(request.key("headers"));
        self.body.write(request.key("body"));
        if !self.trailers.is_empty() {
            self.trailers.write(request.key("trailers"));
        }
        request.close();
    }
}

impl<F: FieldList> ResponseView<'_, F> {
    fn write(&self, line: &mut Vec<u8>) {
        let mut response = JsonObject::open(line);
        response.u64("status", u64::from(self.status));
        response.str("version", &self.version);
        self.headers.write(response.key("headers"));
        self.body.write(response.key("body"));
        if !self.trailers.is_empty() {
            self.trailers.write(response.key("trailers"));
        }
        response.close();
    }
}

impl Url<'_> {
    fn write(&self, line: &mut Vec<u8>) {
        match self {
            Url::Text(text) => json_line::string(line, text),
            Url::Owned(text) => json_line::string(line, text),
            Url::Joined { scheme, host, path } => {
                // Joined on the stack when it fits (nearly always), so it is escaped in one piece.
                let mut text = [0u8; 512];
                let pieces = [scheme.as_bytes(), b"://", host.as_bytes(), path.as_bytes()];
                let length: usize = pieces.iter().map(|piece| piece.len()).sum();
                match text.get_mut(..length) {
                    Some(joined) => {
                        let mut at = 0;
                        for piece in pieces {
                            joined[at..at + piece.len()].copy_from_slice(piece);
                            at += piece.len();
                        }
                        // Pieces of `str`s joined: still UTF-8.
                        match std::str::from_utf8(joined) {
                            Ok(url) => json_line::string(line, url),
                            Err(_) => json_line::string(line, &self.to_string()),
                        }
                    }
                    None => json_line::string(line, &self.to_string()),
                }
            }
        }
    }
}

impl std::fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Url::Text(text) => f.write_str(text),
            Url::Owned(text) => f.write_str(text),
            Url::Joined { scheme, host, path } => write!(f, "{scheme}://{host}{path}"),
        }
    }
}

impl Body {
    /// `{"size":...,"truncated":...,"base64":"...","complete":...,"text":"..."}`, appended to `line`.
    pub fn write(&self, line: &mut Vec<u8>) {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine;

        let mut body = JsonObject::open(line);
        body.u64("size", self.size);
        body.bool("truncated", self.truncated);
        // base64's alphabet needs no escaping: encoded straight into the line, between its quotes.
        let line = body.key("base64");
        line.push(b'"');
        let at = line.len();
        let length = base64::encoded_len(self.base64.len(), true).unwrap_or(0);
        line.resize(at + length, 0);
        let written = STANDARD
            .encode_slice(&self.base64, &mut line[at..])
            .unwrap_or(0);
        line.truncate(at + written);
        line.push(b'"');
        body.bool("complete", self.complete);
        if let Some(text) = self.text() {
            body.str("text", text);
        }
        body.close();
    }
}

/// A [`Record`]'s own fields.
pub struct OwnedFields<'a>(pub &'a [(String, String)]);

impl FieldList for OwnedFields<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn write_pairs(&self, pairs: &mut PairList<'_>) {
        for (name, value) in self.0 {
            pairs.pair(name, value);
        }
    }
}

impl Record {
    /// The record as the writer encodes it.
    pub fn view(&self) -> RecordView<'_, OwnedFields<'_>> {
        RecordView {
            head: HeadView {
                id: self.id,
                uid: Uid::Text(&self.uid),
            },
            shared: SharedView {
                connection: self.connection,
                direction: &self.direction,
                proxy_type: &self.proxy_type,
                protocol: &self.protocol,
                transport: &self.transport,
                client: &self.client,
                target: &self.target,
                delivered_to: self.delivered_to.as_deref(),
                tls: self.tls.as_ref(),
            },
            rest: RestView {
                caused_by: self.caused_by.as_deref().map(Uid::Text),
                start: Start::Text(&self.start),
                duration_ms: self.duration_ms,
                detail: match &self.detail {
                    super::record::Detail::Http(http) => DetailView::Http(HttpView {
                        request: RequestView {
                            method: Cow::Borrowed(&http.request.method),
                            url: Url::Text(&http.request.url),
                            version: Cow::Borrowed(&http.request.version),
                            headers: OwnedFields(&http.request.headers),
                            body: &http.request.body,
                            trailers: OwnedFields(&http.request.trailers),
                        },
                        response: http.response.as_ref().map(|response| ResponseView {
                            status: response.status,
                            version: Cow::Borrowed(&response.version),
                            headers: OwnedFields(&response.headers),
                            body: &response.body,
                            trailers: OwnedFields(&response.trailers),
                        }),
                        error: http.error.as_deref(),
                        upgraded: http.upgraded.as_deref(),
                        mock: http.mock.as_deref(),
                    }),
                    super::record::Detail::Stream(stream) => DetailView::Stream(stream),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::record::record_uid;

    #[test]
    fn uids_are_spelled_as_record_uid_spells_them() {
        for id in [
            0,
            1,
            9,
            10,
            99,
            12_345,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut line = Vec::new();
            Uid::Of(id).write(&mut line);
            assert_eq!(line, format!("\"{}\"", record_uid(id)).into_bytes());
        }
    }
}
