//! The matrix as a markdown table (docs/conformance-matrix.md), from the cells' result files: rows are a
//! client and its setting, columns the spec's modes.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::clients::{self, Client};
use crate::expectations::{self, Expected, Unsupported};
use crate::modes::{self, Mode};
use crate::results::{CellResult, Outcome};

/// The rendered page, and the cells that are neither passing nor failing as documented (or never ran).
pub struct Report {
    pub markdown: String,
    pub not_as_documented: Vec<String>,
}

pub fn render(results: &[CellResult]) -> Report {
    let by_cell: BTreeMap<(&str, &str), &CellResult> = results
        .iter()
        .map(|result| ((result.client.as_str(), result.mode.as_str()), result))
        .collect();
    let mut reasons: Vec<String> = Vec::new();
    let mut not_as_documented = Vec::new();
    // Per reason, the first documented failure of each row: what the failure looked like.
    let mut examples: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut markdown = String::from(HEADER);

    for (heading, rows) in [
        (
            "The app's own requests, through the forward port",
            clients::OUTBOUND,
        ),
        (
            "Callers of the app, through the inbound port",
            clients::INBOUND,
        ),
        (
            "Transparent mode: the app's own requests, with no proxy setting",
            clients::TRANSPARENT_OUTBOUND,
        ),
        (
            "Transparent mode: callers of the app at the pod's address, and a probe of the admin port",
            clients::TRANSPARENT_INBOUND,
        ),
    ] {
        let columns: Vec<&Mode> = modes::ALL
            .iter()
            .filter(|mode| {
                rows.iter()
                    .any(|row| expectations::expected(row, mode).is_some())
            })
            .collect();
        let _ = writeln!(markdown, "\n## {heading}\n");
        let _ = writeln!(
            markdown,
            "| Client and setting | {} |",
            columns
                .iter()
                .map(|mode| format!("{} ({})", mode.title, mode.source))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(markdown, "|---|{}", "---|".repeat(columns.len()));
        for row in rows {
            let cells: Vec<String> = columns
                .iter()
                .map(|mode| {
                    cell_text(
                        row,
                        mode,
                        &by_cell,
                        &mut reasons,
                        &mut examples,
                        &mut not_as_documented,
                    )
                })
                .collect();
            let _ = writeln!(markdown, "| {} | {} |", row.title, cells.join(" | "));
        }
    }

    let _ = writeln!(markdown, "\n## Why the documented failures fail\n");
    for (i, reason) in reasons.iter().enumerate() {
        let _ = writeln!(markdown, "{}. {reason}. What each client saw:", i + 1);
        for example in examples.get(&(i + 1)).into_iter().flatten() {
            let _ = writeln!(markdown, "   - {example}");
        }
    }
    let _ = writeln!(markdown, "\n## The annotations of each column\n");
    let _ = writeln!(
        markdown,
        "| Column | Annotations (besides `inject: \"true\"`) |"
    );
    let _ = writeln!(markdown, "|---|---|");
    for mode in modes::ALL {
        let _ = writeln!(markdown, "| {} | {} |", mode.title, mode.annotations_yaml());
    }
    Report {
        markdown,
        not_as_documented,
    }
}

fn cell_text(
    row: &Client,
    mode: &Mode,
    by_cell: &BTreeMap<(&str, &str), &CellResult>,
    reasons: &mut Vec<String>,
    examples: &mut BTreeMap<usize, Vec<String>>,
    not_as_documented: &mut Vec<String>,
) -> String {
    let Some(expected) = expectations::expected(row, mode) else {
        return "—".to_owned();
    };
    let name = format!("{} in {}", row.id, mode.id);
    let Some(result) = by_cell.get(&(row.id, mode.id)) else {
        not_as_documented.push(format!("{name}: not run"));
        return "not run".to_owned();
    };
    match (&expected, result.outcome) {
        (Expected::Works, Outcome::Pass) => "pass".to_owned(),
        (Expected::Unsupported(unsupported), Outcome::Fail) if !result.fails_as_documented() => {
            not_as_documented.push(format!(
                "{name}: documented not to work, but failed without showing {:?}: {}",
                unsupported.signature,
                result.detail.as_deref().unwrap_or("")
            ));
            "**fails, not as documented**".to_owned()
        }
        (Expected::Unsupported(Unsupported { reason, signature }), Outcome::Fail) => {
            let reason = &format!("{reason}; the failure shows `{signature}`");
            let number = match reasons.iter().position(|known| known == reason) {
                Some(i) => i + 1,
                None => {
                    reasons.push(reason.clone());
                    reasons.len()
                }
            };
            let seen = examples.entry(number).or_default();
            let row_prefix = format!("{} (first in {}): ", row.title, mode.title);
            if !seen
                .iter()
                .any(|example| example.starts_with(&format!("{} (", row.title)))
            {
                seen.push(row_prefix + &first_problem(result.detail.as_deref()));
            }
            format!("fails, as documented ({number})")
        }
        (Expected::Works, Outcome::Fail) => {
            not_as_documented.push(format!(
                "{name}: documented to work, failed: {}",
                result.detail.as_deref().unwrap_or("")
            ));
            "**FAIL**".to_owned()
        }
        (Expected::Unsupported(_), Outcome::Pass) => {
            not_as_documented.push(format!(
                "{name}: documented not to work, but works: the docs must change"
            ));
            "**works, docs say it does not**".to_owned()
        }
    }
}

/// The first problem of a cell's detail, short enough for a list item.
fn first_problem(detail: Option<&str>) -> String {
    let first = detail.unwrap_or("").split("; ").next().unwrap_or("");
    // Problems read "METHOD URL: what happened"; the row and column already say which request it was.
    let first = first.split_once(": ").map_or(first, |(_, what)| what);
    let mut short: String = first.chars().take(220).collect();
    if short.len() < first.len() {
        short.push('…');
    }
    format!("`{}`", short.replace('`', "'"))
}

const HEADER: &str = "\
# Conformance matrix

Generated by `scripts/test.sh` (the `sidecar-conformance` suite, then `conformance-matrix`); do not edit by
hand. Each cell is a pod: the sidecar started from its image and configured only by the column's
annotations, an upstream, and the row's client configured exactly as
[language-configuration.md](language-configuration.md) says, all sharing one network namespace. A cell
**passes** when a GET, a POST with a body and (for the app's own requests) an HTTPS GET all returned the
upstream's exact answer, the upstream saw the client's method, path and body, and the sidecar's capture
file recorded each exchange. In the tls-out columns (the mock one too) the sidecar decrypts the HTTPS
GET: the client trusts only the sidecar's capture CA, through the trust files and the settings
`configure-app` gives, and the capture must hold the decrypted exchange with the status and body the
client got. The upstream's host
name resolves only inside the sidecar's container, so a client that bypassed the sidecar fails. Cells
the docs call unsupported run too, and must fail the way the docs say (each failure below must show its
documented sign, so a crash or a timeout does not pass for it); one that works would make the run fail
until the docs change. Row titles show the default ports; in the example 4 column the clients use 10001
(forward) and 10000 (inbound).

The mock column (`forward http, tls-out, mock`) runs each cell twice in one pod. First the client's
requests are recorded as in the tls-out column, with every check of that column. Then the upstream
container is stopped, and the sidecar is started again from the pod the injector makes of the column's
annotations with `mock` and `mock-configmap` added, the recording mounted as that ConfigMap. The same
client runs again. Each of its answers must equal the one it got while recording (status and body),
the new capture must mark each exchange as answered by the mock from the recorded exchange of that same
request, whose response is what the client got, and no exchange may have reached the network. The mock
answers HTTP only, so the SOCKS rows fail there as in `forward http`, while recording.

The transparent columns run the pod the injector's image writes (`sidecar-injector inject`, native
layout): the iptables init container, then the sidecar once ready, then the app. The clients have no
proxy setting at all. The upstream is a container of its own on the test's network, at an address the
rules redirect, and callers call the pod's address from containers of their own. An HTTPS GET passes as
a `stream` record with the upstream's name as SNI, or with tls-out as the decrypted exchange, the trust
coming only from what `configure-app` sets. Callers' requests pass as `inbound` records. A request to a
port in `ignore-outbound-ports`, and a probe of the sidecar's admin port, must get their answer and have
no record at all. See [conformance.md](conformance.md) for how to run it and what the tls-out and
transparent columns set up.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_undocumented_outcomes_are_reported() {
        let passing = CellResult::new(
            clients::GO_ENV_HTTP.id,
            modes::FORWARD_HTTP.id,
            &Expected::Works,
            Outcome::Pass,
            None,
        );
        let node_in_socks = CellResult::new(
            clients::NODE_GLOBAL_AGENT.id,
            modes::FORWARD_SOCKS.id,
            &expectations::expected(&clients::NODE_GLOBAL_AGENT, &modes::FORWARD_SOCKS).unwrap(),
            Outcome::Pass,
            None,
        );
        let report = render(&[passing, node_in_socks]);
        assert!(report
            .not_as_documented
            .iter()
            .any(|cell| cell
                .starts_with("node_global_agent in forward_socks: documented not to work")));
        assert!(report
            .not_as_documented
            .iter()
            .any(|cell| cell == "go_env_socks5 in forward_socks: not run"));
        assert!(!report
            .not_as_documented
            .iter()
            .any(|cell| cell.starts_with("go_env_http in forward_http:")));
    }
}
