//! Mock mode (`--mock CAPTURE`): the app's outbound HTTP answered from the capture's outbound exchanges
//! instead of the network.
//!
//! - [`index`]: the recorded exchanges by method, scheme, host, port and path; the best match by score,
//!   repeats of one request served in recorded order; the nearest one when nothing matches.
//! - [`fingerprint`]: a request reduced to what matching compares, the index's key.
//! - [`answer`]: a recorded response as the response the app gets, and the answer for a miss.

pub mod answer;
pub mod fingerprint;
pub mod index;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use crate::capture::har::{read_capture, UnreadableLines};
use crate::compare::{JsonPath, Noise};

pub use index::{MockIndex, MockMatch, MockRequest};

/// What the mock does when no recorded exchange matches (`--mock-unmatched`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmatched {
    /// `502 Bad Gateway`, naming the nearest recorded request (the default).
    BadGateway,
    /// `404 Not Found`, the same body.
    NotFound,
    /// Sent on to the real destination, as without the mock.
    Passthrough,
}

impl Unmatched {
    pub fn parse(text: &str) -> Result<Unmatched, String> {
        match text.trim() {
            "502" => Ok(Unmatched::BadGateway),
            "404" => Ok(Unmatched::NotFound),
            "passthrough" => Ok(Unmatched::Passthrough),
            other => Err(format!(
                "invalid --mock-unmatched {other:?}: allowed: 502, 404 or passthrough"
            )),
        }
    }
}

/// What matching leaves out (`--mock-ignore-json`, `--mock-ignore-query`).
#[derive(Clone, Debug, Default)]
pub struct MatchRules {
    pub json: Vec<JsonPath>,
    pub query: Vec<String>,
}

/// The mock a sidecar serves from.
pub struct Mock {
    pub index: MockIndex,
    /// Wait as long as the recorded exchange took before answering (`--mock-latency recorded`).
    pub recorded_latency: bool,
    pub unmatched: Unmatched,
}

impl Mock {
    /// Reads `path` and indexes its outbound HTTP exchanges; unreadable lines are skipped (and counted).
    pub fn load(
        path: &Path,
        recorded_latency: bool,
        unmatched: Unmatched,
        rules: MatchRules,
    ) -> Result<(Mock, usize), String> {
        let source_name = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| format!("cannot read the mock capture {source_name}: {e}"))?;
        let read = read_capture(
            BufReader::new(file),
            &source_name,
            UnreadableLines::Skip,
            &mut |_| {},
        )
        .map_err(|e| format!("cannot read the mock capture: {e}"))?;
        let index = MockIndex::new(read.records, Noise::new(&[], rules.json), rules.query);
        Ok((
            Mock {
                index,
                recorded_latency,
                unmatched,
            },
            read.skipped_lines,
        ))
    }
}
