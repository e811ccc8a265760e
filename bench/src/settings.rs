//! What a run does, once the command line's defaults are applied ([`crate::cli`] fills it in): shared by
//! the run, the scenarios and the report, which need nothing else of the command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::results::ScenarioKind;

/// What a run does, with the smoke and full defaults applied.
#[derive(Debug, Clone)]
pub struct Settings {
    pub smoke: bool,
    pub rounds: u32,
    pub measure_for: Duration,
    pub idle_connections: u32,
    /// Size of the origin's download file: long enough that a download is not all connection setup.
    pub large_file_bytes: u64,
    pub out: Option<PathBuf>,
    pub proxy_bin: Option<PathBuf>,
    /// The minimal relay (the relay limit) to measure instead of building it.
    pub relay_bin: Option<PathBuf>,
    pub keep_workdir: bool,
    /// The scenarios to measure (`--scenario`); empty: all of them.
    pub only: Vec<ScenarioKind>,
}

impl Settings {
    /// Whether the run measures `kind`.
    pub fn measures(&self, kind: ScenarioKind) -> bool {
        self.only.is_empty() || self.only.contains(&kind)
    }
}
