//! What capture keeps: body limit, stream payloads, which headers are redacted, and whether kubelet
//! probes are recorded.

use http::HeaderName;

/// Redacted unless the user says otherwise: credentials and session state.
pub const DEFAULT_REDACTED: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The text a redacted header value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    /// Bytes of each body (and each stream direction's payload) kept in a record.
    pub body_limit: usize,
    /// Keep opaque streams' payload bytes (off by default: they are often TLS or binary protocols).
    pub stream_payload: bool,
    /// Header names whose values are replaced by `[REDACTED]`; empty turns redaction off.
    pub redacted_headers: Vec<HeaderName>,
    /// Record kubelet probes too (`--capture-probes`); by default they are only counted (see `probes`).
    pub record_probes: bool,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        CaptureSettings {
            body_limit: DEFAULT_BODY_LIMIT,
            stream_payload: false,
            redacted_headers: DEFAULT_REDACTED
                .iter()
                .map(|name| HeaderName::from_static(name))
                .collect(),
            record_probes: false,
        }
    }
}

impl CaptureSettings {
    pub fn redacts(&self, name: &HeaderName) -> bool {
        self.redacted_headers.contains(name)
    }
}
