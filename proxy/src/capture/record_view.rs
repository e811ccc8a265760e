//! A record as the writer encodes it: every field borrowed from wherever it already is, so a record is
//! written without first being built as a [`Record`] of owned strings. The tap's raw exchanges are encoded
//! straight from their heads this way (see `crate::tap`), and [`Record`] itself is serialized through a
//! view of it, so both write the same bytes by construction: the fields of `sidecar.capture/v1` in the
//! order docs/capture.md shows them, optional fields left out when absent.
//!
//! Why not serde's derive on [`Record`]: the derive needs owned values (one allocation per header name and
//! value, per fixed field, per URL, per body's base64) and, for the `kind`-tagged detail flattened into
//! the record, goes through serde's map machinery; the profile of the writer thread showed both.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::ser::{SerializeSeq, SerializeStruct, SerializeTuple};
use serde::{Serialize, Serializer};

use super::record::{record_run, Body, MockAnswer, Record, StreamSummary, TlsSession};

/// A list of `[name, value]` fields (headers or trailers), however it is held.
pub trait FieldList: Serialize {
    fn is_empty(&self) -> bool;
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

impl<F: FieldList> Serialize for RecordView<'_, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut record = serializer.serialize_struct("Record", 24)?;
        self.head.fields(&mut record)?;
        self.shared.fields(&mut record)?;
        self.rest.fields(&mut record)?;
        record.end()
    }
}

/// A record's JSON into `line`, as [`RecordView`] writes it, with the shared fields as
/// [`SharedView::encode`] encoded them rather than encoded again.
pub fn write_with_shared<F: FieldList>(
    line: &mut Vec<u8>,
    head: &HeadView<'_>,
    shared: &[u8],
    rest: &RestView<'_, F>,
) -> serde_json::Result<()> {
    // `{"schema":...,"uid":...}`, its `}` replaced by a comma...
    serde_json::to_writer(&mut *line, &Part(head))?;
    line.pop();
    line.push(b',');
    // ...the shared fields, ending in a comma...
    line.extend_from_slice(shared);
    // ...and the rest, continuing the object the head opened.
    let mut continuing = serde_json::Serializer::with_formatter(&mut *line, Continuing::default());
    Part(rest).serialize(&mut continuing)
}

impl RecordPart for HeadView<'_> {
    fn fields<S: SerializeStruct>(&self, record: &mut S) -> Result<(), S::Error> {
        record.serialize_field("schema", super::record::SCHEMA)?;
        record.serialize_field("id", &self.id)?;
        if !self.uid.is_empty() {
            record.serialize_field("uid", &self.uid)?;
        }
        Ok(())
    }
}

impl<F: FieldList> RecordPart for RestView<'_, F> {
    fn fields<S: SerializeStruct>(&self, record: &mut S) -> Result<(), S::Error> {
        if let Some(caused_by) = &self.caused_by {
            record.serialize_field("caused_by", caused_by)?;
        }
        record.serialize_field("start", &self.start)?;
        record.serialize_field("duration_ms", &self.duration_ms)?;
        match &self.detail {
            DetailView::Http(http) => {
                record.serialize_field("kind", "http")?;
                record.serialize_field("request", &http.request)?;
                if let Some(response) = &http.response {
                    record.serialize_field("response", response)?;
                }
                if let Some(error) = http.error {
                    record.serialize_field("error", error)?;
                }
                if let Some(upgraded) = http.upgraded {
                    record.serialize_field("upgraded", upgraded)?;
                }
                if let Some(mock) = http.mock {
                    record.serialize_field("mock", mock)?;
                }
            }
            DetailView::Stream(stream) => {
                record.serialize_field("kind", "stream")?;
                record.serialize_field("protocol_seen", &stream.protocol_seen)?;
                record.serialize_field("bytes_client_to_target", &stream.bytes_client_to_target)?;
                record.serialize_field("bytes_target_to_client", &stream.bytes_target_to_client)?;
                if let Some(sni) = &stream.sni {
                    record.serialize_field("sni", sni)?;
                }
                record.serialize_field("end", &stream.end)?;
                if let Some(error) = &stream.error {
                    record.serialize_field("error", error)?;
                }
                if let Some(payload) = &stream.payload {
                    record.serialize_field("payload", payload)?;
                }
            }
        }
        Ok(())
    }
}

impl SharedView<'_> {
    /// The shared fields as [`RecordView::write_with_shared`] takes them: `"connection":...,` up to and
    /// including the comma after the last one.
    pub fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let mut encoded = serde_json::to_vec(&Part(self))?;
        // `{...}` to `...,`
        encoded.remove(0);
        encoded.pop();
        encoded.push(b',');
        Ok(encoded)
    }
}

impl RecordPart for SharedView<'_> {
    fn fields<S: SerializeStruct>(&self, record: &mut S) -> Result<(), S::Error> {
        record.serialize_field("connection", &self.connection)?;
        record.serialize_field("direction", self.direction)?;
        record.serialize_field("proxy_type", self.proxy_type)?;
        record.serialize_field("protocol", self.protocol)?;
        record.serialize_field("transport", self.transport)?;
        record.serialize_field("client", self.client)?;
        record.serialize_field("target", self.target)?;
        if let Some(delivered_to) = self.delivered_to {
            record.serialize_field("delivered_to", delivered_to)?;
        }
        if let Some(tls) = self.tls {
            record.serialize_field("tls", tls)?;
        }
        Ok(())
    }
}

/// Some of a record's fields, written as an object of their own.
struct Part<'r, T>(&'r T);

/// The parts of a record: each writes its fields into the record's object.
trait RecordPart {
    fn fields<S: SerializeStruct>(&self, record: &mut S) -> Result<(), S::Error>;
}

impl<T: RecordPart> Serialize for Part<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Any length but 0, which serde_json takes for an empty object.
        let mut part = serializer.serialize_struct("Record", 1)?;
        self.0.fields(&mut part)?;
        part.end()
    }
}

/// serde_json's compact output, except that the outermost object's `{` is not written: the object
/// continues one whose fields are already in the line.
#[derive(Default)]
struct Continuing {
    begun: bool,
}

impl serde_json::ser::Formatter for Continuing {
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        if self.begun {
            writer.write_all(b"{")
        } else {
            self.begun = true;
            Ok(())
        }
    }
}

impl Uid<'_> {
    fn is_empty(&self) -> bool {
        matches!(self, Uid::Text(""))
    }
}

impl Serialize for Uid<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Uid::Text(text) => serializer.serialize_str(text),
            Uid::Of(id) => {
                let mut text = [0u8; UID_CAPACITY];
                match uid_of(*id, &mut text) {
                    Some(uid) => serializer.serialize_str(uid),
                    None => serializer.collect_str(&format_args!("{}-{id}", record_run())),
                }
            }
        }
    }
}

/// Room for a uid: the run (16 hex digits), `-`, and up to 20 digits of id.
const UID_CAPACITY: usize = 40;

/// This process's uid of record `id` spelled out in `text` (as [`super::record::record_uid`] spells
/// it), without going through `fmt`.
fn uid_of(id: u64, text: &mut [u8; UID_CAPACITY]) -> Option<&str> {
    let run = record_run().as_bytes();
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = id;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let length = run.len() + 1 + digits.len();
    let uid = text.get_mut(..length)?;
    uid[..run.len()].copy_from_slice(run);
    uid[run.len()] = b'-';
    uid[run.len() + 1..].copy_from_slice(digits);
    std::str::from_utf8(uid).ok()
}

impl Serialize for Start<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Start::Text(text) => serializer.serialize_str(text),
            Start::At(at) => {
                let mut text = [0u8; super::rfc3339::LENGTH];
                match super::rfc3339::micros(*at, &mut text) {
                    Some(start) => serializer.serialize_str(start),
                    None => serializer.collect_str(&humantime::format_rfc3339_micros(*at)),
                }
            }
        }
    }
}

impl<F: FieldList> Serialize for RequestView<'_, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let trailers = !self.trailers.is_empty();
        let mut request = serializer.serialize_struct("HttpRequest", 5 + usize::from(trailers))?;
        request.serialize_field("method", &*self.method)?;
        request.serialize_field("url", &self.url)?;
        request.serialize_field("version", &*self.version)?;
        request.serialize_field("headers", &self.headers)?;
        request.serialize_field("body", self.body)?;
        if trailers {
            request.serialize_field("trailers", &self.trailers)?;
        }
        request.end()
    }
}

impl<F: FieldList> Serialize for ResponseView<'_, F> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let trailers = !self.trailers.is_empty();
        let mut response =
            serializer.serialize_struct("HttpResponse", 4 + usize::from(trailers))?;
        response.serialize_field("status", &self.status)?;
        response.serialize_field("version", &*self.version)?;
        response.serialize_field("headers", &self.headers)?;
        response.serialize_field("body", self.body)?;
        if trailers {
            response.serialize_field("trailers", &self.trailers)?;
        }
        response.end()
    }
}

impl Serialize for Url<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Url::Text(text) => serializer.serialize_str(text),
            Url::Owned(text) => serializer.serialize_str(text),
            Url::Joined { scheme, host, path } => {
                // Joined on the stack when it fits (nearly always), so it is written in one piece.
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
                        match std::str::from_utf8(joined) {
                            Ok(url) => serializer.serialize_str(url),
                            Err(_) => {
                                serializer.collect_str(&format_args!("{scheme}://{host}{path}"))
                            }
                        }
                    }
                    None => serializer.collect_str(&format_args!("{scheme}://{host}{path}")),
                }
            }
        }
    }
}

/// A [`Record`]'s own fields.
pub struct OwnedFields<'a>(pub &'a [(String, String)]);

impl Serialize for OwnedFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_seq(Some(self.0.len()))?;
        for (name, value) in self.0 {
            fields.serialize_element(&Pair(name, value))?;
        }
        fields.end()
    }
}

impl FieldList for OwnedFields<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `[name, value]` field.
pub struct Pair<N, V>(pub N, pub V);

impl<N: Serialize, V: Serialize> Serialize for Pair<N, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut pair = serializer.serialize_tuple(2)?;
        pair.serialize_element(&self.0)?;
        pair.serialize_element(&self.1)?;
        pair.end()
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
            let mut text = [0u8; UID_CAPACITY];
            assert_eq!(uid_of(id, &mut text), Some(record_uid(id).as_str()));
        }
    }
}
