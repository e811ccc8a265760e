//! HAR 1.2 export of capture records (`sidecar-proxy capture export --har`).
//!
//! [`to_har`] is the pure mapping: every `kind: http` record becomes one HAR entry, stream records are
//! skipped and counted. [`read_records`] and [`export_files`] are the command around it: JSON lines in,
//! one HAR document out, and a bad line reported by file and line number. docs/har-export.md describes
//! the mapping for users; change both together.
//!
//! The HAR 1.2 specification: <http://www.softwareishard.com/blog/har-12-spec/>. Custom fields start with
//! an underscore, as the specification allows (`_sidecar`, `_error`, `_encoding`).

use std::borrow::Borrow;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;

use super::record::{Body, Detail, HttpExchange, Record, SCHEMA};
use super::settings::REDACTED;

/// `log.version`.
pub const HAR_VERSION: &str = "1.2";
/// `content.mimeType` / `postData.mimeType` when the message has no `Content-Type` (what browsers write).
pub const UNKNOWN_MIME_TYPE: &str = "x-unknown";

// --- The HAR 1.2 document ------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Har {
    pub log: Log,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Log {
    pub version: String,
    pub creator: Creator,
    /// Always empty (the sidecar sees no pages), but present: Chrome's and Firefox's importers read it
    /// unconditionally.
    pub pages: Vec<Page>,
    pub entries: Vec<Entry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Creator {
    pub name: String,
    pub version: String,
}

/// A page (`log.pages`); none are written, the type only gives the array its element.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub started_date_time: String,
    pub id: String,
    pub title: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub started_date_time: String,
    /// Milliseconds: the sum of the non-negative `timings`.
    pub time: f64,
    pub request: Request,
    pub response: Response,
    pub cache: Cache,
    pub timings: Timings,
    #[serde(rename = "serverIPAddress", skip_serializing_if = "Option::is_none")]
    pub server_ip_address: Option<String>,
    /// The capture record's connection id: entries from one keep-alive connection share it.
    pub connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(rename = "_sidecar")]
    pub sidecar: SidecarFields,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: String,
    pub url: String,
    pub http_version: String,
    pub cookies: Vec<Cookie>,
    pub headers: Vec<NameValue>,
    pub query_string: Vec<NameValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_data: Option<PostData>,
    pub headers_size: i64,
    pub body_size: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status: u16,
    pub status_text: String,
    pub http_version: String,
    pub cookies: Vec<Cookie>,
    pub headers: Vec<NameValue>,
    pub content: Content,
    #[serde(rename = "redirectURL")]
    pub redirect_url: String,
    pub headers_size: i64,
    pub body_size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Why the exchange failed (Chrome writes the same field for failed requests).
    #[serde(rename = "_error", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A header or a query-string parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// ISO 8601.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostData {
    pub mime_type: String,
    /// Only for `application/x-www-form-urlencoded` bodies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<NameValue>,
    pub text: String,
    /// HAR 1.2 has no encoding for request bodies; `base64` here means `text` is base64, as in `content`.
    #[serde(rename = "_encoding", skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Content {
    pub size: i64,
    pub mime_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Nothing is known about caching: the object is present (HAR requires it) and empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cache {}

/// Milliseconds; -1 where the phase does not apply or was not measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timings {
    pub blocked: f64,
    pub dns: f64,
    pub connect: f64,
    pub send: f64,
    pub wait: f64,
    pub receive: f64,
    pub ssl: f64,
}

/// What the capture record knows that HAR has no field for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SidecarFields {
    pub id: u64,
    pub direction: String,
    pub proxy_type: String,
    pub protocol: String,
    pub transport: String,
    pub client: String,
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// --- Records → HAR (pure) ------------------------------------------------------------------------------

/// A HAR document and what went into it.
#[derive(Clone, Debug, PartialEq)]
pub struct Export {
    pub har: Har,
    /// Stream records (tcp relays, SOCKS, CONNECT tunnels): HAR has no place for them.
    pub skipped_streams: usize,
}

/// Turns capture records into one HAR 1.2 document. Entries are sorted by start time (the order HAR
/// prefers), ties kept in input order.
pub fn to_har<I>(records: I) -> Export
where
    I: IntoIterator,
    I::Item: Borrow<Record>,
{
    let mut entries = Vec::new();
    let mut skipped_streams = 0;
    for record in records {
        let record = record.borrow();
        match &record.detail {
            Detail::Http(exchange) => entries.push(entry(record, exchange)),
            Detail::Stream(_) => skipped_streams += 1,
        }
    }
    // RFC 3339 UTC with fixed precision sorts as text.
    entries.sort_by(|a, b| a.started_date_time.cmp(&b.started_date_time));
    let comment = (skipped_streams > 0).then(|| {
        format!("{skipped_streams} stream record(s) skipped: HAR holds HTTP exchanges only")
    });
    Export {
        har: Har {
            log: Log {
                version: HAR_VERSION.into(),
                creator: Creator {
                    name: "sidecar-proxy".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                },
                pages: Vec::new(),
                entries,
                comment,
            },
        },
        skipped_streams,
    }
}

fn entry(record: &Record, exchange: &HttpExchange) -> Entry {
    let duration = if record.duration_ms.is_finite() {
        record.duration_ms.max(0.0)
    } else {
        0.0
    };
    let error = exchange.error.clone().or_else(|| {
        exchange
            .response
            .is_none()
            .then(|| "no response was received".to_owned())
    });
    let server_ip_address = record
        .delivered_to
        .as_deref()
        .unwrap_or(&record.target)
        .parse::<SocketAddr>()
        .ok()
        .map(|addr| addr.ip().to_string());
    Entry {
        started_date_time: record.start.clone(),
        time: duration,
        request: request(exchange),
        response: response(exchange, error.clone()),
        cache: Cache {},
        timings: Timings {
            blocked: -1.0,
            dns: -1.0,
            connect: -1.0,
            send: 0.0,
            wait: duration,
            receive: 0.0,
            ssl: -1.0,
        },
        server_ip_address,
        connection: record.connection.to_string(),
        comment: error.clone(),
        sidecar: SidecarFields {
            id: record.id,
            direction: record.direction.clone(),
            proxy_type: record.proxy_type.clone(),
            protocol: record.protocol.clone(),
            transport: record.transport.clone(),
            client: record.client.clone(),
            target: record.target.clone(),
            delivered_to: record.delivered_to.clone(),
            error,
        },
    }
}

fn request(exchange: &HttpExchange) -> Request {
    let request = &exchange.request;
    let cookies = header_values(&request.headers, "cookie")
        .filter(|value| *value != REDACTED)
        .flat_map(parse_cookie_header)
        .collect();
    let post_data = (request.body.size > 0).then(|| {
        let mime_type = header_value(&request.headers, "content-type")
            .unwrap_or(UNKNOWN_MIME_TYPE)
            .to_owned();
        let body = body_text(&request.body);
        let params = if body.encoding.is_none() && is_form(&mime_type) {
            parse_pairs(&body.text)
        } else {
            Vec::new()
        };
        PostData {
            mime_type,
            params,
            text: body.text,
            encoding: body.encoding,
            comment: body.comment,
        }
    });
    Request {
        method: request.method.clone(),
        url: request.url.clone(),
        http_version: http_version(&request.version),
        cookies,
        headers: name_values(&request.headers),
        query_string: query_string(&request.url),
        post_data,
        headers_size: -1,
        body_size: size(request.body.size),
    }
}

fn response(exchange: &HttpExchange, error: Option<String>) -> Response {
    let Some(response) = &exchange.response else {
        // What browsers write for a request that got no response.
        return Response {
            status: 0,
            status_text: String::new(),
            http_version: String::new(),
            cookies: Vec::new(),
            headers: Vec::new(),
            content: Content {
                size: 0,
                mime_type: UNKNOWN_MIME_TYPE.into(),
                text: None,
                encoding: None,
                comment: None,
            },
            redirect_url: String::new(),
            headers_size: -1,
            body_size: -1,
            comment: error.clone(),
            error,
        };
    };
    let cookies = header_values(&response.headers, "set-cookie")
        .filter(|value| *value != REDACTED)
        .filter_map(parse_set_cookie)
        .collect();
    let body = body_text(&response.body);
    Response {
        status: response.status,
        status_text: http::StatusCode::from_u16(response.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or_default()
            .to_owned(),
        http_version: http_version(&response.version),
        cookies,
        headers: name_values(&response.headers),
        content: Content {
            size: size(response.body.size),
            mime_type: header_value(&response.headers, "content-type")
                .unwrap_or(UNKNOWN_MIME_TYPE)
                .to_owned(),
            text: Some(body.text),
            encoding: body.encoding,
            comment: body.comment,
        },
        redirect_url: header_value(&response.headers, "location")
            .unwrap_or_default()
            .to_owned(),
        headers_size: -1,
        body_size: size(response.body.size),
        comment: error.clone(),
        error,
    }
}

/// The record's `HTTP/2.0` as browsers write it (`HTTP/2`), which is what HAR readers such as
/// mitmproxy recognise; HTTP/1.x unchanged.
fn http_version(version: &str) -> String {
    match version {
        "HTTP/2.0" => "HTTP/2".into(),
        "HTTP/3.0" => "HTTP/3".into(),
        other => other.into(),
    }
}

fn size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn name_values(headers: &[(String, String)]) -> Vec<NameValue> {
    headers
        .iter()
        .map(|(name, value)| NameValue {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn header_value<'a>(headers: &'a [(String, String)], name: &'a str) -> Option<&'a str> {
    header_values(headers, name).next()
}

fn is_form(mime_type: &str) -> bool {
    mime_type.split(';').next().is_some_and(|essence| {
        essence
            .trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    })
}

struct BodyText {
    text: String,
    encoding: Option<String>,
    comment: Option<String>,
}

/// The kept bytes as HAR text: UTF-8 as is, anything else base64. A truncated body cut inside a UTF-8
/// character stays text, without the partial character.
fn body_text(body: &Body) -> BodyText {
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

/// `name=value` pairs of a URL's query, decoded; the fragment is not part of it.
fn query_string(url: &str) -> Vec<NameValue> {
    match url.split_once('?') {
        Some((_, rest)) => parse_pairs(rest.split('#').next().unwrap_or_default()),
        None => Vec::new(),
    }
}

/// `a=1&b=2` (a query string or a urlencoded form), each part percent-decoded.
fn parse_pairs(text: &str) -> Vec<NameValue> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            NameValue {
                name: percent_decode(name),
                value: percent_decode(value),
            }
        })
        .collect()
}

/// `%XX` and `+` (a space in queries and forms) decoded; the raw text if the result is not UTF-8.
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

fn hex(byte: Option<&u8>) -> Option<u8> {
    let byte = *byte?;
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// A request's `Cookie: a=1; b=2`.
fn parse_cookie_header(value: &str) -> Vec<Cookie> {
    value
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            // A pair without `=` is a value with an empty name, as browsers read it.
            let (name, value) = pair.split_once('=').unwrap_or(("", pair));
            Cookie {
                name: name.trim().to_owned(),
                value: value.trim().to_owned(),
                ..Cookie::default()
            }
        })
        .collect()
}

/// A response's `Set-Cookie: id=7; Path=/; Domain=example.com; Expires=...; HttpOnly; Secure`.
fn parse_set_cookie(value: &str) -> Option<Cookie> {
    let mut parts = value.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let mut cookie = Cookie {
        name: name.trim().to_owned(),
        value: value.trim().to_owned(),
        ..Cookie::default()
    };
    for attribute in parts {
        let (key, value) = attribute.split_once('=').unwrap_or((attribute, ""));
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "path" => cookie.path = Some(value.to_owned()),
            "domain" => cookie.domain = Some(value.to_owned()),
            "expires" => cookie.expires = http_date_to_iso8601(value),
            "httponly" => cookie.http_only = Some(true),
            "secure" => cookie.secure = Some(true),
            _ => {}
        }
    }
    Some(cookie)
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, the RFC 850 and asctime forms, and the
/// `06-Nov-1994` spelling cookies use) as ISO 8601; `None` when it is none of those.
fn http_date_to_iso8601(text: &str) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let (mut day, mut month, mut year, mut time) = (None, None, None, None);
    for token in text.split([' ', '-', ',']).filter(|t| !t.is_empty()) {
        if token.contains(':') {
            let mut parts = token.split(':').map(|p| p.parse::<u32>().ok());
            let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
            if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
                return None;
            }
            time = Some((h, m, s));
        } else if let Ok(number) = token.parse::<u32>() {
            if day.is_none() {
                day = Some(number);
            } else if year.is_none() {
                year = Some(match (token.len(), number) {
                    (2, n) if n < 70 => 2000 + n,
                    (2, n) => 1900 + n,
                    (4, n) => n,
                    _ => return None,
                });
            } else {
                return None;
            }
        } else if let Some(index) = MONTHS.iter().position(|m| {
            token
                .get(..3)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(m))
        }) {
            // Weekday names never start like a month name.
            month = Some(index as u32 + 1);
        }
    }
    let (day, month, year, (h, m, s)) = (day?, month?, year?, time?);
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.000Z"
    ))
}

// --- The command: JSON lines in, HAR out ---------------------------------------------------------------

/// Why an export failed; [`ExportError::exit_code`] tells bad input (2) from a failure to write (1).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read {source_name}: {error}")]
    Open {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name} line {line}: cannot read: {error}")]
    Read {
        source_name: String,
        line: usize,
        error: std::io::Error,
    },
    #[error("{source_name} line {line}: not a {SCHEMA} record: {message}")]
    Malformed {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("cannot write {destination}: {error}")]
    Write {
        destination: String,
        error: std::io::Error,
    },
}

impl ExportError {
    /// 2 for input the command refuses (nothing is written), 1 when the HAR could not be written.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Write { .. } => 1,
            _ => 2,
        }
    }
}

/// Parses capture JSON lines; blank lines are ignored. `source_name` names the input in errors.
pub fn read_records<R: BufRead>(reader: R, source_name: &str) -> Result<Vec<Record>, ExportError> {
    let mut records = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line_number = index + 1;
        let line = line.map_err(|error| ExportError::Read {
            source_name: source_name.to_owned(),
            line: line_number,
            error,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |message: String| ExportError::Malformed {
            source_name: source_name.to_owned(),
            line: line_number,
            message,
        };
        let record: Record = serde_json::from_str(&line).map_err(|e| {
            // serde_json's own "at line 1 column N" would read as a line of the file.
            let column = e.column();
            let text = e.to_string();
            let text = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(t, _)| t);
            malformed(format!("{text} (column {column})"))
        })?;
        if record.schema != SCHEMA {
            return Err(malformed(format!(
                "schema is \"{}\"; this sidecar reads \"{SCHEMA}\"",
                record.schema
            )));
        }
        records.push(record);
    }
    Ok(records)
}

/// What [`export_files`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub records: usize,
    pub entries: usize,
    pub skipped_streams: usize,
}

/// Reads every input (`-` is stdin), then writes one HAR document to `output` (`None` or `-`: stdout).
/// A file output is written beside its final name and renamed into place, so a failed export never
/// leaves half a HAR file behind (and an input may be overwritten safely).
pub fn export_files(
    inputs: &[PathBuf],
    output: Option<&Path>,
) -> Result<ExportSummary, ExportError> {
    let mut records = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            records.extend(read_records(std::io::stdin().lock(), "<stdin>")?);
        } else {
            let source_name = input.display().to_string();
            let file = File::open(input).map_err(|error| ExportError::Open {
                source_name: source_name.clone(),
                error,
            })?;
            records.extend(read_records(BufReader::new(file), &source_name)?);
        }
    }
    let export = to_har(&records);
    let summary = ExportSummary {
        records: records.len(),
        entries: export.har.log.entries.len(),
        skipped_streams: export.skipped_streams,
    };
    match output.filter(|path| path.as_os_str() != "-") {
        None => {
            let stdout = std::io::stdout().lock();
            write_har(&export.har, stdout).map_err(|error| ExportError::Write {
                destination: "stdout".into(),
                error,
            })?;
        }
        Some(path) => {
            let write_error = |error| ExportError::Write {
                destination: path.display().to_string(),
                error,
            };
            let mut temporary = path.as_os_str().to_owned();
            temporary.push(format!(".tmp-{}", std::process::id()));
            let temporary = PathBuf::from(temporary);
            let written = File::create(&temporary)
                .and_then(|file| write_har(&export.har, file))
                .and_then(|()| std::fs::rename(&temporary, path));
            if let Err(error) = written {
                let _ = std::fs::remove_file(&temporary);
                return Err(write_error(error));
            }
        }
    }
    Ok(summary)
}

fn write_har<W: Write>(har: &Har, writer: W) -> std::io::Result<()> {
    let mut writer = BufWriter::new(writer);
    serde_json::to_writer_pretty(&mut writer, har)?;
    writer.write_all(b"\n")?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::record::{HttpRequest, HttpResponse, StreamSummary};
    use bytes::Bytes;
    use serde_json::{json, Value};

    fn body(bytes: &'static [u8]) -> Body {
        Body {
            size: bytes.len() as u64,
            truncated: false,
            base64: Bytes::from_static(bytes),
            complete: true,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn http_record(id: u64, start: &str, exchange: HttpExchange) -> Record {
        Record {
            schema: SCHEMA.into(),
            id,
            connection: 40 + id,
            direction: "outbound".into(),
            proxy_type: "forward".into(),
            protocol: "http".into(),
            transport: "http".into(),
            client: "127.0.0.1:50000".into(),
            target: "api.test:80".into(),
            delivered_to: None,
            start: start.into(),
            duration_ms: 12.5,
            detail: Detail::Http(exchange),
        }
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url.into(),
            version: "HTTP/1.1".into(),
            headers: headers(&[("host", "api.test")]),
            body: Body::default(),
        }
    }

    fn ok(content_type: &str, bytes: &'static [u8]) -> HttpResponse {
        HttpResponse {
            status: 200,
            version: "HTTP/1.1".into(),
            headers: headers(&[("content-type", content_type)]),
            body: body(bytes),
        }
    }

    fn single(record: Record) -> Value {
        let export = to_har([record]);
        assert_eq!(export.har.log.entries.len(), 1);
        serde_json::to_value(&export.har.log.entries[0]).unwrap()
    }

    #[test]
    fn the_log_names_its_version_and_creator() {
        let export = to_har(Vec::<Record>::new());
        let value = serde_json::to_value(&export.har).unwrap();
        assert_eq!(value["log"]["version"], "1.2");
        assert_eq!(value["log"]["creator"]["name"], "sidecar-proxy");
        assert_eq!(
            value["log"]["creator"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(value["log"]["entries"], json!([]));
        assert_eq!(value["log"]["pages"], json!([]));
        assert!(value["log"].get("comment").is_none());
    }

    #[test]
    fn a_get_maps_every_required_field() {
        let record = http_record(
            1,
            "2026-11-26T10:00:00.000001Z",
            HttpExchange {
                request: get("http://api.test/v1/items?id=7&q=a%20b+c&flag#frag"),
                response: Some(ok("application/json", br#"{"ok":true}"#)),
                error: None,
            },
        );
        let entry = single(record);
        assert_eq!(entry["startedDateTime"], "2026-11-26T10:00:00.000001Z");
        assert_eq!(entry["time"], 12.5);
        assert_eq!(entry["connection"], "41");
        assert_eq!(entry["cache"], json!({}));
        assert_eq!(
            entry["timings"],
            json!({"blocked": -1.0, "dns": -1.0, "connect": -1.0, "send": 0.0, "wait": 12.5,
                   "receive": 0.0, "ssl": -1.0})
        );
        let request = &entry["request"];
        assert_eq!(request["method"], "GET");
        assert_eq!(request["httpVersion"], "HTTP/1.1");
        assert_eq!(
            request["headers"],
            json!([{"name": "host", "value": "api.test"}])
        );
        assert_eq!(
            request["queryString"],
            json!([{"name": "id", "value": "7"}, {"name": "q", "value": "a b c"},
                   {"name": "flag", "value": ""}])
        );
        assert_eq!(request["cookies"], json!([]));
        assert!(request.get("postData").is_none());
        assert_eq!(request["headersSize"], -1);
        assert_eq!(request["bodySize"], 0);
        let response = &entry["response"];
        assert_eq!(response["status"], 200);
        assert_eq!(response["statusText"], "OK");
        assert_eq!(
            response["content"],
            json!({"size": 11, "mimeType": "application/json", "text": "{\"ok\":true}"})
        );
        assert_eq!(response["redirectURL"], "");
        assert_eq!(response["bodySize"], 11);
        assert_eq!(response["headersSize"], -1);
        assert_eq!(entry["_sidecar"]["direction"], "outbound");
        assert_eq!(entry["_sidecar"]["transport"], "http");
        assert_eq!(entry["_sidecar"]["target"], "api.test:80");
        assert!(entry.get("serverIPAddress").is_none());
        assert!(entry.get("comment").is_none());
    }

    #[test]
    fn a_form_post_has_post_data_with_params() {
        let mut request = get("http://api.test/login");
        request.method = "POST".into();
        request.headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        request.body = body(b"user=ann&note=hi%21+there");
        let entry = single(http_record(
            2,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(ok("text/plain", b"")),
                error: None,
            },
        ));
        assert_eq!(
            entry["request"]["postData"],
            json!({"mimeType": "application/x-www-form-urlencoded",
                   "params": [{"name": "user", "value": "ann"}, {"name": "note", "value": "hi! there"}],
                   "text": "user=ann&note=hi%21+there"})
        );
        assert_eq!(entry["request"]["bodySize"], 25);
        assert_eq!(entry["response"]["content"]["text"], "");
    }

    #[test]
    fn binary_bodies_are_base64_and_truncation_is_noted() {
        let mut request = get("http://api.test/upload");
        request.method = "PUT".into();
        request.body = Body {
            size: 1000,
            truncated: true,
            base64: Bytes::from_static(&[0xff, 0x00, 0x01]),
            complete: true,
        };
        let mut response = ok("image/png", b"");
        response.body = Body {
            size: 4,
            truncated: false,
            base64: Bytes::from_static(&[0x89, b'P', b'N', b'G']),
            complete: false,
        };
        let entry = single(http_record(
            3,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(response),
                error: None,
            },
        ));
        let post = &entry["request"]["postData"];
        assert_eq!(post["mimeType"], UNKNOWN_MIME_TYPE);
        assert_eq!(post["text"], "/wAB");
        assert_eq!(post["_encoding"], "base64");
        assert_eq!(
            post["comment"],
            "body truncated by capture: 3 of 1000 bytes kept"
        );
        assert_eq!(entry["request"]["bodySize"], 1000);
        let content = &entry["response"]["content"];
        assert_eq!(content["text"], "iVBORw==");
        assert_eq!(content["encoding"], "base64");
        assert_eq!(
            content["comment"],
            "body incomplete: the transfer did not finish"
        );
    }

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

    #[test]
    fn a_failed_exchange_has_status_zero_and_the_error() {
        let mut record = http_record(
            4,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request: get("http://down.test/"),
                response: None,
                error: Some("cannot connect to down.test:80: connection refused".into()),
            },
        );
        record.delivered_to = Some("10.0.0.9:80".into());
        let entry = single(record);
        let response = &entry["response"];
        assert_eq!(response["status"], 0);
        assert_eq!(response["statusText"], "");
        assert_eq!(response["httpVersion"], "");
        assert_eq!(
            response["_error"],
            "cannot connect to down.test:80: connection refused"
        );
        assert_eq!(response["comment"], response["_error"]);
        assert_eq!(entry["comment"], response["_error"]);
        assert_eq!(entry["_sidecar"]["error"], response["_error"]);
        assert_eq!(entry["_sidecar"]["delivered_to"], "10.0.0.9:80");
        assert_eq!(entry["serverIPAddress"], "10.0.0.9");
        assert_eq!(
            response["content"],
            json!({"size": 0, "mimeType": "x-unknown"})
        );
        assert_eq!(response["bodySize"], -1);
    }

    #[test]
    fn cookies_are_parsed_unless_redacted() {
        let mut request = get("http://api.test/");
        request.headers.push(("cookie".into(), "a=1; b=two".into()));
        request.headers.push(("cookie".into(), "c=3".into()));
        let mut response = ok("text/html; charset=utf-8", b"<p>");
        response.status = 302;
        response.headers.extend(headers(&[
            ("location", "/next"),
            (
                "set-cookie",
                "sid=xyz; Path=/; Domain=api.test; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly; Secure",
            ),
            ("set-cookie", "theme=dark"),
        ]));
        let entry = single(http_record(
            5,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(response),
                error: None,
            },
        ));
        assert_eq!(
            entry["request"]["cookies"],
            json!([{"name": "a", "value": "1"}, {"name": "b", "value": "two"},
                   {"name": "c", "value": "3"}])
        );
        assert_eq!(
            entry["response"]["cookies"],
            json!([{"name": "sid", "value": "xyz", "path": "/", "domain": "api.test",
                    "expires": "2026-10-21T07:28:00.000Z", "httpOnly": true, "secure": true},
                   {"name": "theme", "value": "dark"}])
        );
        assert_eq!(entry["response"]["statusText"], "Found");
        assert_eq!(entry["response"]["redirectURL"], "/next");
        assert_eq!(
            entry["response"]["content"]["mimeType"],
            "text/html; charset=utf-8"
        );

        let mut request = get("http://api.test/");
        request.headers.push(("cookie".into(), REDACTED.into()));
        let mut response = ok("text/plain", b"");
        response
            .headers
            .push(("set-cookie".into(), REDACTED.into()));
        let entry = single(http_record(
            6,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request,
                response: Some(response),
                error: None,
            },
        ));
        assert_eq!(entry["request"]["cookies"], json!([]));
        assert_eq!(entry["response"]["cookies"], json!([]));
        // The header itself is still listed, as recorded.
        assert_eq!(entry["request"]["headers"][1]["value"], REDACTED);
    }

    #[test]
    fn http_dates_become_iso_8601() {
        for (text, want) in [
            (
                "Sun, 06 Nov 1994 08:49:37 GMT",
                Some("1994-11-06T08:49:37.000Z"),
            ),
            (
                "Sunday, 06-Nov-94 08:49:37 GMT",
                Some("1994-11-06T08:49:37.000Z"),
            ),
            ("Sun Nov  6 08:49:37 1994", Some("1994-11-06T08:49:37.000Z")),
            (
                "Wed, 21-Oct-2026 07:28:00 GMT",
                Some("2026-10-21T07:28:00.000Z"),
            ),
            ("tomorrow", None),
            ("Sun, 40 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 25:49:37 GMT", None),
        ] {
            assert_eq!(http_date_to_iso8601(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn percent_decoding_keeps_what_it_cannot_decode() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%ff"), "%ff");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
    }

    #[test]
    fn stream_records_are_skipped_and_entries_sorted_by_start() {
        let stream = Record {
            detail: Detail::Stream(StreamSummary {
                protocol_seen: "tls".into(),
                bytes_client_to_target: 10,
                bytes_target_to_client: 20,
                sni: None,
                end: "closed".into(),
                error: None,
                payload: None,
            }),
            ..http_record(
                9,
                "2026-11-26T09:00:00.000000Z",
                HttpExchange {
                    request: get("http://x/"),
                    response: None,
                    error: None,
                },
            )
        };
        let later = http_record(
            1,
            "2026-11-26T10:00:02.000000Z",
            HttpExchange {
                request: get("http://api.test/later"),
                response: Some(ok("text/plain", b"b")),
                error: None,
            },
        );
        let earlier = http_record(
            2,
            "2026-11-26T10:00:01.000000Z",
            HttpExchange {
                request: get("http://api.test/earlier"),
                response: Some(ok("text/plain", b"a")),
                error: None,
            },
        );
        let export = to_har(vec![later, stream, earlier]);
        assert_eq!(export.skipped_streams, 1);
        let urls: Vec<_> = export
            .har
            .log
            .entries
            .iter()
            .map(|e| e.request.url.as_str())
            .collect();
        assert_eq!(urls, ["http://api.test/earlier", "http://api.test/later"]);
        assert_eq!(
            export.har.log.comment.as_deref(),
            Some("1 stream record(s) skipped: HAR holds HTTP exchanges only")
        );
    }

    #[test]
    fn a_malformed_line_is_named_by_number() {
        let good = serde_json::to_string(&http_record(
            1,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request: get("http://api.test/"),
                response: None,
                error: Some("boom".into()),
            },
        ))
        .unwrap();
        let input = format!("{good}\n\n{good}\n{{\"schema\": 3\n");
        let err = read_records(input.as_bytes(), "cap.jsonl").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cap.jsonl line 4: not a sidecar.capture/v1 record: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(err.exit_code(), 2);

        let other = good.replace(SCHEMA, "sidecar.capture/v9");
        let err = read_records(format!("{good}\n{other}\n").as_bytes(), "cap.jsonl").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cap.jsonl line 2: not a sidecar.capture/v1 record: schema is \"sidecar.capture/v9\"; this sidecar reads \"sidecar.capture/v1\""
        );

        let records = read_records(format!("{good}\n\n{good}\n").as_bytes(), "x").unwrap();
        assert_eq!(records.len(), 2);
    }
}
