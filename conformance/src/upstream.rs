//! What the conformance upstream answers and logs: shared by the upstream binary and the cells that check
//! its answers, so both sides agree on one definition.

use serde::{Deserialize, Serialize};

/// Printed on stdout once the upstream listens on every port.
pub const READY_LINE: &str = "conformance-upstream: listening";

/// One request as the upstream received it (a JSON line on its stdout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRequest {
    /// `http` or `https`: which of the upstream's listeners took the request.
    pub scheme: String,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// The `Host` header (or the HTTP/2 `:authority`).
    pub host: Option<String>,
    /// The request body, as text.
    pub body: String,
}

/// The body the upstream answers with: every field a client's request could lose or change on the way.
pub fn echo_body(scheme: &str, method: &str, path: &str, body: &str) -> String {
    format!("conformance upstream ({scheme}): {method} {path}\n{body}")
}

/// Reads the upstream's stdout: every request it saw, in order (other lines are skipped).
pub fn seen_requests(stdout: &str) -> Vec<SeenRequest> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_requests_skips_lines_that_are_not_requests() {
        let seen = SeenRequest {
            scheme: "http".into(),
            method: "POST".into(),
            path: "/post?x=1".into(),
            host: Some("app:80".into()),
            body: "hello".into(),
        };
        let stdout = format!("{READY_LINE}\n{}\n", serde_json::to_string(&seen).unwrap());
        assert_eq!(seen_requests(&stdout), vec![seen]);
    }
}
