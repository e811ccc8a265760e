//! Two HTTP messages compared field by field. Bodies are decoded first (gzip, deflate, br); two JSON
//! bodies are compared as values (key order, spacing and number spelling ignored) down to each field,
//! named by its path (`$.items[0].name`); other bodies byte for byte.

use std::borrow::Cow;

use serde_json::Value;

use crate::capture::content_coding::decode_content;
use crate::capture::REDACTED;

use super::json_path::{Step, ValuePath};
use super::noise::Noise;

/// Differences listed per message at most; more are counted in one last entry.
const MAX_DIFFERENCES: usize = 20;

/// Characters of a value shown in a difference.
const SHOWN: usize = 120;

/// One field that differs: `status`, `header content-type`, `query id`, `body`, or a JSON path (`$.name`).
/// The record schema's type, since the mock writes its differences into records.
pub use crate::capture::record::FieldDifference as Difference;

impl Difference {
    pub fn new(
        field: impl Into<String>,
        recorded: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Difference {
            field: field.into(),
            recorded: shorten(&recorded.into()),
            actual: shorten(&actual.into()),
        }
    }
}

pub const ABSENT: &str = "(absent)";

/// The parts of a message a comparison reads.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub headers: &'a [(String, String)],
    /// The body as sent (content codings not undone yet).
    pub body: &'a [u8],
    /// The body is the prefix the capture limit kept.
    pub truncated: bool,
}

/// Headers compared by name (values of a repeated header in order). Ignored names, and recorded values
/// that were redacted, are left out.
pub fn header_differences(
    recorded: &[(String, String)],
    actual: &[(String, String)],
    noise: &Noise,
) -> Vec<Difference> {
    field_differences("header", recorded, actual, noise)
}

/// Trailers (chunked trailers, HTTP/2 trailing HEADERS such as gRPC's `grpc-status`), compared as
/// headers are, each difference named `trailer NAME`.
pub fn trailer_differences(
    recorded: &[(String, String)],
    actual: &[(String, String)],
    noise: &Noise,
) -> Vec<Difference> {
    field_differences("trailer", recorded, actual, noise)
}

fn field_differences(
    kind: &str,
    recorded: &[(String, String)],
    actual: &[(String, String)],
    noise: &Noise,
) -> Vec<Difference> {
    // Every name is looked at once, in name order; values are only copied for a difference (this runs
    // for every replayed answer).
    let mut names: Vec<&str> = recorded
        .iter()
        .chain(actual)
        .map(|(name, _)| name.as_str())
        .filter(|name| !noise.ignores_header(name))
        .collect();
    names.sort_unstable_by(|a, b| {
        let (a, b) = (
            a.bytes().map(|c| c.to_ascii_lowercase()),
            b.bytes().map(|c| c.to_ascii_lowercase()),
        );
        a.cmp(b)
    });
    names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }
    let mut differences = Vec::new();
    for name in names {
        let was = values(recorded, name);
        if was.contains(&REDACTED) {
            continue;
        }
        let now = values(actual, name);
        if was != now {
            let shown = |values: Vec<&str>| {
                if values.is_empty() {
                    ABSENT.to_owned()
                } else {
                    values.join(", ")
                }
            };
            differences.push(Difference::new(
                format!("{kind} {}", name.to_ascii_lowercase()),
                shown(was),
                shown(now),
            ));
        }
    }
    differences
}

/// Bodies compared after their content codings are undone: as JSON values when both are JSON, else as
/// bytes. A recorded body the capture limit cut short is compared with the same number of bytes.
pub fn body_differences(
    recorded: Message<'_>,
    actual: Message<'_>,
    noise: &Noise,
) -> Vec<Difference> {
    let was = decoded(recorded);
    let now = decoded(actual);
    if !recorded.truncated {
        if let (Some(was_json), Some(now_json)) = (json(&was), json(&now)) {
            let mut differences = Vec::new();
            json_differences(
                &ValuePath::default(),
                &was_json,
                &now_json,
                noise,
                &mut differences,
            );
            return capped(differences);
        }
    }
    let same = if recorded.truncated {
        now.starts_with(&was)
    } else {
        was == now
    };
    if same || noise.ignores_field("body") {
        return Vec::new();
    }
    vec![Difference::new(
        "body",
        body_excerpt(&was),
        body_excerpt(&now),
    )]
}

/// The body with its content codings undone; borrowed when it has none (most answers: no copy).
fn decoded<'a>(message: Message<'a>) -> Cow<'a, [u8]> {
    let coded = message
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-encoding"));
    if !coded {
        return Cow::Borrowed(message.body);
    }
    Cow::Owned(decode_content(message.body, message.truncated, message.headers).bytes)
}

fn json(bytes: &[u8]) -> Option<Value> {
    let trimmed = bytes.trim_ascii_start();
    if !matches!(
        trimmed.first(),
        Some(b'{' | b'[' | b'"') | Some(b'0'..=b'9' | b'-' | b't' | b'f' | b'n')
    ) {
        return None;
    }
    serde_json::from_slice(bytes).ok()
}

fn json_differences(
    path: &ValuePath,
    was: &Value,
    now: &Value,
    noise: &Noise,
    out: &mut Vec<Difference>,
) {
    if noise.ignores_json(path) || out.len() > MAX_DIFFERENCES {
        return;
    }
    match (was, now) {
        (Value::Object(was), Value::Object(now)) => {
            for (key, value) in was {
                let child = path.child(Step::Key(key.clone()));
                match now.get(key) {
                    Some(other) => json_differences(&child, value, other, noise, out),
                    None if !noise.ignores_json(&child) => {
                        out.push(Difference::new(child.to_string(), compact(value), ABSENT))
                    }
                    None => {}
                }
            }
            for (key, value) in now.iter().filter(|(key, _)| !was.contains_key(*key)) {
                let child = path.child(Step::Key(key.clone()));
                if !noise.ignores_json(&child) {
                    out.push(Difference::new(child.to_string(), ABSENT, compact(value)));
                }
            }
        }
        (Value::Array(was), Value::Array(now)) => {
            for index in 0..was.len().max(now.len()) {
                let child = path.child(Step::Index(index));
                match (was.get(index), now.get(index)) {
                    (Some(a), Some(b)) => json_differences(&child, a, b, noise, out),
                    (a, b) if !noise.ignores_json(&child) => out.push(Difference::new(
                        child.to_string(),
                        a.map_or(ABSENT.to_owned(), compact),
                        b.map_or(ABSENT.to_owned(), compact),
                    )),
                    _ => {}
                }
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push(Difference::new(path.to_string(), compact(a), compact(b))),
    }
}

fn capped(mut differences: Vec<Difference>) -> Vec<Difference> {
    if differences.len() > MAX_DIFFERENCES {
        let more = differences.len() - MAX_DIFFERENCES;
        differences.truncate(MAX_DIFFERENCES);
        differences.push(Difference::new(
            "…",
            format!("{more} more differences not listed"),
            "",
        ));
    }
    differences
}

fn compact(value: &Value) -> String {
    value.to_string()
}

/// A body as a short excerpt: text as text, anything else as its length.
fn body_excerpt(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".to_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("{} bytes of binary", bytes.len()),
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= SHOWN {
        return text.to_owned();
    }
    let kept: String = text.chars().take(SHOWN).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::compare::JsonPath;

    fn message<'a>(headers: &'a [(String, String)], body: &'a [u8]) -> Message<'a> {
        Message {
            headers,
            body,
            truncated: false,
        }
    }

    #[test]
    fn json_is_compared_as_values_down_to_each_field() {
        let was = br#"{"name":"Ann","n":1.0,"items":[{"id":1,"at":"x"}],"gone":true}"#;
        let now = br#"{ "items":[{"at":"y","id":1}], "n":1, "name":"Anne", "new":null }"#;
        let fields: Vec<(String, String, String)> =
            body_differences(message(&[], was), message(&[], now), &Noise::default())
                .into_iter()
                .map(|d| (d.field, d.recorded, d.actual))
                .collect();
        assert_eq!(
            fields,
            // Members in name order, whatever order either side sent them in.
            [
                ("$.gone".into(), "true".into(), ABSENT.into()),
                ("$.items[0].at".into(), "\"x\"".into(), "\"y\"".into()),
                ("$.name".into(), "\"Ann\"".into(), "\"Anne\"".into()),
                ("$.new".into(), ABSENT.into(), "null".into()),
            ]
            .map(|(a, b, c): (String, String, String)| (a, b, c))
        );
        let noise = Noise::new(
            &[],
            vec![
                JsonPath::parse("$.items[*].at").unwrap(),
                JsonPath::parse("$.name").unwrap(),
            ],
        );
        let left: Vec<String> = body_differences(message(&[], was), message(&[], now), &noise)
            .into_iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(left, ["$.gone", "$.new"]);
    }

    #[test]
    fn gzip_is_decoded_before_comparing() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(br#"{"a":1}"#).unwrap();
        let zipped = gz.finish().unwrap();
        let gzip = [("content-encoding".to_owned(), "gzip".to_owned())];
        assert!(body_differences(
            message(&gzip, &zipped),
            message(&[], br#"{"a": 1}"#),
            &Noise::default()
        )
        .is_empty());
        let differs = body_differences(
            message(&gzip, &zipped),
            message(&[], br#"{"a": 2}"#),
            &Noise::default(),
        );
        assert_eq!(differs[0].field, "$.a");
    }

    #[test]
    fn other_bodies_byte_for_byte_and_headers_by_name() {
        let differs = body_differences(
            message(&[], b"hello"),
            message(&[], b"hullo"),
            &Noise::default(),
        );
        assert_eq!(differs, [Difference::new("body", "\"hello\"", "\"hullo\"")]);
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| ((*a).into(), (*b).into()))
                .collect()
        };
        let noise = Noise::new(&["X-Trace".into()], Vec::new());
        let differs = header_differences(
            &h(&[
                ("content-type", "text/plain"),
                ("date", "a"),
                ("x-trace", "1"),
                ("cookie", REDACTED),
            ]),
            &h(&[
                ("Content-Type", "text/html"),
                ("date", "b"),
                ("x-trace", "2"),
                ("x-new", "1"),
            ]),
            &noise,
        );
        let fields: Vec<&str> = differs.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["header content-type", "header x-new"]);
    }
}
