//! A cell's result as a file: each cell test writes one, and `conformance-matrix` turns them into the
//! table in docs/conformance-matrix.md.

use std::fs;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::expectations::Expected;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every request got the upstream's exact answer, through the sidecar.
    Pass,
    /// At least one request did not.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellResult {
    pub client: String,
    pub mode: String,
    /// `None` when the docs say the cell works; otherwise why they say it does not.
    pub unsupported_because: Option<String>,
    /// For an unsupported cell: what its failure must show.
    #[serde(default)]
    pub failure_signature: Option<String>,
    pub outcome: Outcome,
    /// What went wrong, when something did (the first failure).
    pub detail: Option<String>,
}

impl CellResult {
    pub fn new(
        client: &str,
        mode: &str,
        expected: &Expected,
        outcome: Outcome,
        detail: Option<String>,
    ) -> Self {
        CellResult {
            client: client.to_owned(),
            mode: mode.to_owned(),
            unsupported_because: match expected {
                Expected::Works => None,
                Expected::Unsupported(unsupported) => Some(unsupported.reason.clone()),
            },
            failure_signature: match expected {
                Expected::Works => None,
                Expected::Unsupported(unsupported) => Some(unsupported.signature.to_owned()),
            },
            outcome,
            detail,
        }
    }

    /// Passing where the docs promise it works, failing where they say it does not.
    pub fn as_documented(&self) -> bool {
        match self.unsupported_because {
            None => self.outcome == Outcome::Pass,
            Some(_) => self.outcome == Outcome::Fail && self.fails_as_documented(),
        }
    }

    /// Whether the failure shows the documented signature (true when there is none to show).
    pub fn fails_as_documented(&self) -> bool {
        let Some(signature) = &self.failure_signature else {
            return true;
        };
        self.detail
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase()
            .contains(&signature.to_ascii_lowercase())
    }

    pub fn file_name(client: &str, mode: &str) -> String {
        format!("{client}__{mode}.json")
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir)?;
        let path = dir.join(Self::file_name(&self.client, &self.mode));
        fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Every result in `dir`.
    pub fn read_all(dir: &Path) -> anyhow::Result<Vec<CellResult>> {
        let mut results = Vec::new();
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(results),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "json") {
                let text = fs::read(&path)?;
                results.push(
                    serde_json::from_slice(&text)
                        .with_context(|| format!("{} is not a cell result", path.display()))?,
                );
            }
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clients, expectations, modes};

    #[test]
    fn an_unsupported_cell_must_fail_the_documented_way() {
        let expected =
            expectations::expected(&clients::NODE_GLOBAL_AGENT, &modes::FORWARD_SOCKS).unwrap();
        let failed = |detail: &str| {
            CellResult::new(
                "node_global_agent",
                "forward_socks",
                &expected,
                Outcome::Fail,
                Some(detail.to_owned()),
            )
        };
        assert!(failed("GET http://x/: got status 400 and body \"sidecar: this port speaks SOCKS4/SOCKS5, not HTTP\"").as_documented());
        assert!(!failed("the client exited with Some(139): Segmentation fault").as_documented());
    }
}
