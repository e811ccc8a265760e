//! What is left out of a comparison: headers that differ on every response (hop-by-hop, `date`,
//! `server`, ...), the user's `--ignore-header` and `--ignore-json` rules, and fields learned as noise
//! because they already differ between repeats of one request inside the capture.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::json_path::{JsonPath, ValuePath};

/// Headers never compared: hop-by-hop fields, and fields that change on every response or describe the
/// connection or the body's transfer rather than the answer (the body itself is compared, decoded).
pub const DEFAULT_IGNORED_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "date",
    "server",
    "age",
    "expires",
    "last-modified",
    "etag",
    "via",
    "content-length",
    "x-request-id",
    "traceparent",
    "tracestate",
    "alt-svc",
    "report-to",
    "nel",
];

/// The rules one comparison applies.
#[derive(Clone, Debug, Default)]
pub struct Noise {
    /// Lower-case header names.
    headers: BTreeSet<String>,
    json: Vec<JsonPath>,
    /// Fields named as [`super::Difference::field`] names them (`header etag`, `$.now`, `body`).
    learned: BTreeSet<String>,
}

impl Noise {
    /// The default header list plus the user's rules.
    pub fn new(extra_headers: &[String], json: Vec<JsonPath>) -> Noise {
        Noise {
            headers: DEFAULT_IGNORED_HEADERS
                .iter()
                .map(|name| (*name).to_owned())
                .chain(
                    extra_headers
                        .iter()
                        .map(|name| name.trim().to_ascii_lowercase()),
                )
                .collect(),
            json,
            learned: BTreeSet::new(),
        }
    }

    /// The same rules, also leaving out `fields` (learned from repeats).
    pub fn with_learned<'a>(&self, fields: impl IntoIterator<Item = &'a String>) -> Noise {
        let mut noise = self.clone();
        noise.learned.extend(fields.into_iter().cloned());
        noise
    }

    pub fn ignores_header(&self, name: &str) -> bool {
        // Called for every header of every replayed answer: no allocation when the name is lower-case
        // already (as HTTP/2 and hyper's HTTP/1 give them) and nothing was learned.
        let lower = if name.bytes().any(|c| c.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        self.headers.contains(lower.as_ref())
            || (!self.learned.is_empty() && self.learned.contains(&format!("header {lower}")))
    }

    pub fn ignores_json(&self, path: &ValuePath) -> bool {
        self.json.iter().any(|pattern| pattern.covers(path))
            || self.learned.contains(&path.to_string())
    }

    /// Whether a field named as a difference names it is left out.
    pub fn ignores_field(&self, field: &str) -> bool {
        self.learned.contains(field)
    }
}
