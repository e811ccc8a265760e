//! One record as a readable block of text: a heading line (id, time, direction, method, URL, status,
//! duration, sizes), then each side's head and its body decoded. Everything a peer chose (URLs, header
//! values, bodies) is escaped so it cannot drive the terminal.

use std::fmt::Write;

use anstyle::{AnsiColor, Style};

use crate::capture::record::{Body, Detail, HttpExchange, Record, StreamSummary};
use crate::log_escape::Escaped;

use super::body_view::{decoded_body, hex_dump, BodyContent};

/// Whether blocks are coloured (stdout is a terminal and `NO_COLOR` is unset) or plain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colours {
    On,
    Off,
}

impl Colours {
    fn paint(self, style: Style, text: impl std::fmt::Display) -> String {
        match self {
            Colours::On => format!("{}{text}{}", style.render(), style.render_reset()),
            Colours::Off => text.to_string(),
        }
    }
}

const HEADING: Style = Style::new().bold();
const REQUEST: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan)));
const RESPONSE: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Magenta)));
const DIM: Style = Style::new().dimmed();
const ERROR: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));

fn status_style(status: u16) -> Style {
    let colour = match status {
        200..=299 => AnsiColor::Green,
        300..=399 => AnsiColor::Blue,
        400..=499 => AnsiColor::Yellow,
        _ => AnsiColor::Red,
    };
    Style::new()
        .bold()
        .fg_color(Some(anstyle::Color::Ansi(colour)))
}

/// The record as a block of lines, ending with a blank line.
pub fn record_block(record: &Record, colours: Colours) -> String {
    let mut out = String::new();
    match &record.detail {
        Detail::Http(exchange) => http_block(&mut out, record, exchange, colours),
        Detail::Stream(stream) => stream_block(&mut out, record, stream, colours),
    }
    if !out.ends_with("\n\n") {
        out.push('\n');
    }
    out
}

fn http_block(out: &mut String, record: &Record, exchange: &HttpExchange, colours: Colours) {
    let request = &exchange.request;
    let status = match &exchange.response {
        Some(response) => {
            colours.paint(status_style(response.status), status_line(response.status))
        }
        None => colours.paint(ERROR, "no response"),
    };
    let heading = format!(
        "#{} {} {}",
        record.id,
        Escaped(&request.method),
        Escaped(&request.url)
    );
    let _ = writeln!(out, "{} -> {status}", colours.paint(HEADING, heading));
    let response_size = exchange
        .response
        .as_ref()
        .map_or("-".to_owned(), |response| size(&response.body));
    let _ = writeln!(
        out,
        "{}",
        colours.paint(
            DIM,
            format!(
                "  {} {} {} ms  request {}  response {}  {} via {}{}",
                record.start,
                record.direction,
                duration(record.duration_ms),
                size(&request.body),
                response_size,
                Escaped(&record.client),
                Escaped(&record.transport),
                record
                    .tls
                    .as_ref()
                    .map_or(String::new(), |tls| format!(" ({})", Escaped(&tls.version))),
            )
        )
    );
    if let Some(error) = &exchange.error {
        let _ = writeln!(
            out,
            "  {}",
            colours.paint(ERROR, format!("error: {}", Escaped(error)))
        );
    }
    if let Some(cause) = &record.caused_by {
        let _ = writeln!(out, "  made for inbound request {}", Escaped(cause));
    }
    if let Some(upgraded) = &exchange.upgraded {
        let _ = writeln!(
            out,
            "  upgraded to {} (the bytes after it are not recorded)",
            Escaped(upgraded)
        );
    }
    let _ = writeln!(
        out,
        "  {}",
        colours.paint(
            REQUEST,
            format!(
                "> {} {} {}",
                Escaped(&request.method),
                Escaped(&request.url),
                Escaped(&request.version)
            )
        )
    );
    fields(out, "> ", &request.headers, REQUEST, colours);
    body_lines(out, &request.body, &request.headers, colours);
    fields(out, "> ", &request.trailers, REQUEST, colours);
    if let Some(response) = &exchange.response {
        let _ = writeln!(
            out,
            "  {}",
            colours.paint(
                RESPONSE,
                format!(
                    "< {} {}",
                    Escaped(&response.version),
                    status_line(response.status)
                )
            )
        );
        fields(out, "< ", &response.headers, RESPONSE, colours);
        body_lines(out, &response.body, &response.headers, colours);
        fields(out, "< ", &response.trailers, RESPONSE, colours);
    }
}

fn stream_block(out: &mut String, record: &Record, stream: &StreamSummary, colours: Colours) {
    let heading = format!(
        "#{} stream {} ({}{})",
        record.id,
        Escaped(&record.target),
        Escaped(&stream.protocol_seen),
        stream.sni.as_ref().map_or(String::new(), |sni| format!(
            ", server name {}",
            Escaped(sni)
        ))
    );
    let _ = writeln!(
        out,
        "{} -> {}",
        colours.paint(HEADING, heading),
        Escaped(&stream.end)
    );
    let _ = writeln!(
        out,
        "{}",
        colours.paint(
            DIM,
            format!(
                "  {} {} {} ms  client->target {}  target->client {}  {} via {}",
                record.start,
                record.direction,
                duration(record.duration_ms),
                bytes(stream.bytes_client_to_target),
                bytes(stream.bytes_target_to_client),
                Escaped(&record.client),
                Escaped(&record.transport),
            )
        )
    );
    if let Some(error) = &stream.error {
        let _ = writeln!(
            out,
            "  {}",
            colours.paint(ERROR, format!("error: {}", Escaped(error)))
        );
    }
    if let Some(payload) = &stream.payload {
        let _ = writeln!(out, "  {}", colours.paint(REQUEST, "> client -> target"));
        body_lines(out, &payload.client_to_target, &[], colours);
        let _ = writeln!(out, "  {}", colours.paint(RESPONSE, "< target -> client"));
        body_lines(out, &payload.target_to_client, &[], colours);
    }
}

fn fields(
    out: &mut String,
    marker: &str,
    fields: &[(String, String)],
    style: Style,
    colours: Colours,
) {
    for (name, value) in fields {
        let _ = writeln!(
            out,
            "  {}",
            colours.paint(
                style,
                format!("{marker}{}: {}", Escaped(name), Escaped(value))
            )
        );
    }
}

/// The body, decoded, indented under its head; nothing for an empty body.
fn body_lines(out: &mut String, body: &Body, headers: &[(String, String)], colours: Colours) {
    if body.size == 0 {
        return;
    }
    let shown = decoded_body(body, headers);
    let mut notes = Vec::new();
    if !shown.decoded_from.is_empty() {
        notes.push(format!("decoded from {}", shown.decoded_from.join(", ")));
    }
    notes.extend(shown.note.clone());
    if body.truncated {
        notes.push(format!(
            "truncated by the capture: {} of {} bytes kept",
            body.base64.len(),
            body.size
        ));
    }
    if !body.complete {
        notes.push("incomplete: the transfer did not finish".into());
    }
    let text = match shown.content {
        BodyContent::Empty => String::new(),
        BodyContent::Json(text) | BodyContent::Text(text) => terminal_text(&text),
        BodyContent::Binary(bytes) => {
            notes.push(format!("binary, {} bytes", bytes.len()));
            hex_dump(&bytes)
        }
    };
    out.push('\n');
    for line in text.lines() {
        let _ = writeln!(out, "    {line}");
    }
    if !notes.is_empty() {
        let _ = writeln!(
            out,
            "    {}",
            colours.paint(DIM, format!("[{}]", notes.join("; ")))
        );
    }
    out.push('\n');
}

/// Body text with its line breaks and tabs kept, and every other control character (and what reorders a
/// line in a viewer) written as a visible escape.
fn terminal_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() || crate::log_escape::reorders_or_splits_text(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// `404 Not Found`: the code and its standard reason (the record does not keep the phrase sent).
fn status_line(status: u16) -> String {
    match http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
    {
        Some(reason) => format!("{status} {reason}"),
        None => status.to_string(),
    }
}

/// A body's size: every byte that passed.
fn size(body: &Body) -> String {
    bytes(body.size)
}

fn bytes(count: u64) -> String {
    if count < 1024 {
        format!("{count} B")
    } else {
        bytesize::ByteSize::b(count).display().iec().to_string()
    }
}

fn duration(ms: f64) -> String {
    format!("{ms:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_bodies_are_escaped_and_lines_kept() {
        assert_eq!(
            terminal_text("a\r\n\x1b[31mb\tc\u{202e}"),
            "a\n\\u{1b}[31mb\tc\\u{202e}"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(bytes(5), "5 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
