//! The markdown report: what ran where, the targets and whether we meet them, issue #17's goals
//! ([`goals`]: our rows against the minimal relay, capture off, peers and direct), then one table per
//! scenario with medians, ratios to direct and every round's figure (an invalid round shows why).
//! [`render`] is pure; [`machine`] gathers the facts and versions, [`document`] puts the generated part
//! between markers in a file that may hold hand-written prose around it.

pub mod document;
pub mod goals;
pub mod machine;

use std::fmt::Write as _;
use std::time::Duration;

use crate::markdown;
use crate::results::{Figure, LeafCounts, Row, Scenario, ScenarioKind, Section, Tool};
use crate::stats::{summarize, RowSummary};
use crate::targets::{
    goal_for, idle_mb_and_per_connection_kb, judge, kib_to_mb, per_connection_kb,
};

/// Everything about the run that is not a measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    pub cores: usize,
    /// 1-minute load average when the measurements started and when they ended.
    pub load_before: String,
    pub load_after: String,
    pub cpu: String,
    pub kernel: String,
    pub command: String,
    pub smoke: bool,
    pub rounds: u32,
    pub seconds: u64,
    pub wall_time: Duration,
    pub wrk_threads: u32,
    pub wrk_connections: u32,
    pub pace_ms: u64,
    pub idle_connections: u32,
    /// Why fewer idle connections were held than asked, if so.
    pub idle_note: Option<String>,
    pub large_file_mib: u64,
    /// (program, version), sidecar-proxy first.
    pub versions: Vec<(String, String)>,
}

pub fn render(meta: &Meta, scenarios: &[Scenario]) -> String {
    let mut out = String::new();
    render_meta(&mut out, meta);
    render_targets(&mut out, scenarios);
    goals::render(&mut out, &goals::evaluate(scenarios));
    for scenario in scenarios {
        render_scenario(&mut out, scenario, meta);
    }
    out
}

fn render_meta(out: &mut String, meta: &Meta) {
    let kind = if meta.smoke { "Smoke run" } else { "Run" };
    let _ = writeln!(out, "## Results\n");
    let _ = writeln!(
        out,
        "{kind} started {}: {} round{} of {} s per measurement, medians; wall time {}.\n",
        meta.date,
        meta.rounds,
        if meta.rounds == 1 { "" } else { "s" },
        meta.seconds,
        format_duration(meta.wall_time),
    );
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(out, "| command | `{}` |", markdown::escape(&meta.command));
    let _ = writeln!(
        out,
        "| machine | {} cores (nproc), {}, Linux {}; load average {} before the first measurement, {} after the last |",
        meta.cores, meta.cpu, meta.kernel, meta.load_before, meta.load_after
    );
    let _ = writeln!(
        out,
        "| load | wrk {} threads × {} connections; latency paced at {} ms per request per connection; \
         {} idle connections; download file {} MiB; TLS handshakes: {} connections of the harness's own \
         load generator; h2c: h2load {} connections × {} concurrent streams |",
        meta.wrk_threads,
        meta.wrk_connections,
        meta.pace_ms,
        meta.idle_connections,
        meta.large_file_mib,
        meta.wrk_connections,
        crate::clients::h2load::CLIENTS,
        crate::clients::h2load::STREAMS,
    );
    if let Some(note) = &meta.idle_note {
        let _ = writeln!(out, "| note | {note} |");
    }
    out.push('\n');
    markdown::head(out, "program | version");
    for (program, version) in &meta.versions {
        let _ = writeln!(out, "| {program} | {} |", markdown::escape(version));
    }
    out.push('\n');
}

fn render_targets(out: &mut String, scenarios: &[Scenario]) {
    let _ = writeln!(out, "### Our rows against the issue's targets\n");
    markdown::head(
        out,
        "scenario | path | sidecar-proxy | our figure: | target | verdict",
    );
    for scenario in scenarios {
        // The NATS sink's figure is not compared with direct; its goal is in the goals table.
        let sections = scenario
            .sections
            .iter()
            .filter(|s| s.tool != Tool::SinkDrain);
        for section in sections {
            for row in section.rows.iter().filter(|row| row.is_ours()) {
                let Some(goal) = goal_for(scenario.kind, row.group) else {
                    continue;
                };
                let summary = summarize(row, section.baseline());
                let figure = match (scenario.kind, summary.figure) {
                    (ScenarioKind::Latency, Some(Figure::Latency { p99_ms, .. })) => {
                        Some(format!("p99 {p99_ms:.2} ms"))
                    }
                    (ScenarioKind::Latency, _) => None,
                    (ScenarioKind::Memory, figure) => {
                        idle_mb_and_per_connection_kb(figure).map(|(idle, per_connection)| {
                            format!("{idle:.1} MB idle, {per_connection:.2} KB/conn")
                        })
                    }
                    _ => summary.ratio.map(|r| format!("{r:.2} × direct")),
                }
                .unwrap_or_else(|| "—".to_owned());
                let capture = row.capture().map_or(String::new(), |c| c.to_string());
                let _ = writeln!(
                    out,
                    "| {}. {} | {} | {capture} | {figure} | {goal} | {} |",
                    scenario.kind.number(),
                    section_short_name(scenario.kind, section),
                    row.group,
                    judge(goal, &summary),
                );
            }
        }
    }
    out.push('\n');
}

fn section_short_name(kind: ScenarioKind, section: &Section) -> &'static str {
    match (kind, section.tool) {
        (ScenarioKind::KeepAlive, _) => "keep-alive",
        (ScenarioKind::NewConnection, _) => "new connection per request",
        (_, Tool::Iperf3) => "bulk, iperf3",
        (_, Tool::Download) => "bulk, download",
        (ScenarioKind::Latency, _) => "latency",
        (ScenarioKind::Memory, _) => "memory",
        (ScenarioKind::H2c, _) => "h2c",
        (ScenarioKind::ReplayMock, Tool::Replay) => "replay",
        (ScenarioKind::ReplayMock, _) => "mock",
        _ => section.title,
    }
}

fn render_scenario(out: &mut String, scenario: &Scenario, meta: &Meta) {
    let kind = scenario.kind;
    let _ = writeln!(out, "### {}. {}\n", kind.number(), kind.title());
    for section in &scenario.sections {
        let _ = writeln!(out, "_{}_\n", section.title);
        match section.tool {
            Tool::Wrk { .. } | Tool::H2load | Tool::Replay | Tool::WrkRecordedRequests => {
                rate_table(out, kind, section, "req/s", per_sec)
            }
            Tool::Iperf3 | Tool::Download => {
                rate_table(out, kind, section, "Gbit/s", |f| match f {
                    Figure::Bandwidth { bits_per_sec } => {
                        Some(format!("{:.2}", bits_per_sec / 1e9))
                    }
                    _ => None,
                })
            }
            Tool::TlsDownload => rate_table(out, kind, section, "MB/s", |f| match f {
                Figure::Bandwidth { bits_per_sec } => Some(format!("{:.0}", bits_per_sec / 8e6)),
                _ => None,
            }),
            Tool::PacedWrk => latency_table(out, kind, section),
            Tool::IdleConnections => memory_table(out, kind, section, meta.idle_connections),
            Tool::TlsHandshakes => handshake_table(out, section),
            Tool::SinkDrain => sink_table(out, section),
        }
        out.push('\n');
    }
}

/// A table of `section`: path, contender, then the columns `head` names, filled by `cells` from each
/// row's summary against the section's direct row, and last every round's figure as `round` writes
/// it. On wrk's tables a server that closes every client connection is footnoted.
fn table(
    out: &mut String,
    section: &Section,
    head: &str,
    cells: impl Fn(&Row, &RowSummary) -> String,
    round: fn(&Figure) -> Option<String>,
) {
    markdown::head(out, &format!("path | contender | {head}"));
    let wrk = matches!(section.tool, Tool::Wrk { .. });
    let mut closing = Vec::new();
    for row in &section.rows {
        let mut contender = contender_cell(row);
        if wrk
            && row
                .server
                .is_some_and(|spec| spec.closes_client_connections())
        {
            contender.push_str(" ¹");
            closing.push(row.contender());
        }
        let rounds = row
            .outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(figure) => round(figure).unwrap_or_else(|| "?".to_owned()),
                Err(invalid) => format!("✗ {}", markdown::escape(&invalid.0)),
            })
            .collect::<Vec<_>>()
            .join(" · ");
        let cells = cells(row, &summarize(row, section.baseline()));
        let _ = writeln!(out, "| {} | {contender} | {cells} | {rounds} |", row.group);
    }
    if !closing.is_empty() {
        let _ = writeln!(
            out,
            "\n¹ {} closes every client connection after one response without announcing it (no \
             `Connection: close`), so keep-alive is in effect a new connection per request, and wrk \
             counts each close as a read error: up to one read error per completed response is \
             accepted for it, and no other socket error.",
            closing.join(", ")
        );
    }
}

/// Requests per second or Gbit/s, ratio to direct, target, and each round.
fn rate_table(
    out: &mut String,
    kind: ScenarioKind,
    section: &Section,
    unit: &str,
    show: fn(&Figure) -> Option<String>,
) {
    let head = format!("{unit}: | × direct: | target | each round ({unit})");
    let cells = |row: &Row, summary: &RowSummary| {
        format!(
            "{} | {} | {}",
            median_cell(summary, show),
            ratio_cell(summary),
            target_cell(kind, row, summary)
        )
    };
    table(out, section, &head, cells, show);
}

/// Requests, handshakes or records per second, as a count.
fn per_sec(figure: &Figure) -> Option<String> {
    match figure {
        Figure::RequestRate { per_sec }
        | Figure::Handshakes { per_sec, .. }
        | Figure::SinkRate { per_sec, .. } => Some(format_count(*per_sec)),
        _ => None,
    }
}

/// A row's median as `show` writes it, or "no result" without one.
fn median_cell(summary: &RowSummary, show: fn(&Figure) -> Option<String>) -> String {
    summary
        .figure
        .as_ref()
        .and_then(show)
        .unwrap_or_else(|| "no result".to_owned())
}

/// The ratio to direct, two decimals, or a dash without one.
fn ratio_cell(summary: &RowSummary) -> String {
    summary.ratio.map_or("—".to_owned(), |r| format!("{r:.2}"))
}

/// New TLS connections per second, ratio to direct, and for an intercepting sidecar the leaf
/// certificates it showed: minted or from its cache (summed over the rounds' measurements).
fn handshake_table(out: &mut String, section: &Section) {
    let cells = |_: &Row, summary: &RowSummary| {
        let leaves = match summary.figure {
            Some(Figure::Handshakes {
                leaves: Some(leaves),
                ..
            }) => leaf_cell(&leaves),
            _ => String::new(),
        };
        format!(
            "{} | {} | {leaves}",
            median_cell(summary, per_sec),
            ratio_cell(summary)
        )
    };
    table(out, section, "handshakes/s: | × direct: | leaf certificates during the measurements | each round (handshakes/s)", cells, per_sec);
}

/// The NATS sink: records JetStream acknowledged per second (from the first request to the last
/// acknowledgement), per CPU-second of the sidecar's publisher thread and of the whole sidecar.
fn sink_table(out: &mut String, section: &Section) {
    let cells = |_: &Row, summary: &RowSummary| match summary.figure {
        Some(Figure::SinkRate {
            per_sec,
            per_publisher_cpu_sec,
            per_process_cpu_sec,
            dropped,
        }) => format!(
            "{} | {} | {} | {}",
            format_count(per_sec),
            format_count(per_publisher_cpu_sec),
            format_count(per_process_cpu_sec),
            format_count(dropped as f64)
        ),
        _ => "no result | | | ".to_owned(),
    };
    table(out, section, "records/s acknowledged: | records per publisher CPU-second: | records per sidecar CPU-second: | dropped: | each round (records/s)", cells, per_sec);
}

/// `0 minted, 41,212 cached (100.0 % hits); 1 minted since start`.
fn leaf_cell(leaves: &LeafCounts) -> String {
    let shown = leaves.minted + leaves.cached;
    let hits = if shown == 0 {
        "no leaf shown".to_owned()
    } else {
        format!("{:.1} % hits", leaves.cached as f64 * 100.0 / shown as f64)
    };
    format!(
        "{} minted, {} cached ({hits}); {} minted since start",
        format_count(leaves.minted as f64),
        format_count(leaves.cached as f64),
        format_count(leaves.minted_since_start as f64),
    )
}

fn latency_table(out: &mut String, kind: ScenarioKind, section: &Section) {
    let cells = |row: &Row, summary: &RowSummary| {
        let figures = match summary.figure {
            Some(Figure::Latency {
                p50_ms,
                p99_ms,
                p999_ms,
                per_sec,
            }) => format!(
                "{p50_ms:.3} | {p99_ms:.3} | {p999_ms:.3} | {}",
                format_count(per_sec)
            ),
            _ => "no result | | | ".to_owned(),
        };
        format!(
            "{figures} | {} | {}",
            ratio_cell(summary),
            target_cell(kind, row, summary)
        )
    };
    table(
        out,
        section,
        "p50 ms: | p99 ms: | p99.9 ms: | req/s: | p99 × direct: | target | each round (p99 ms)",
        cells,
        |f| match f {
            Figure::Latency { p99_ms, .. } => Some(format!("{p99_ms:.3}")),
            _ => None,
        },
    );
}

fn memory_table(out: &mut String, kind: ScenarioKind, section: &Section, connections: u32) {
    let cells = |row: &Row, summary: &RowSummary| {
        let figures = match summary.figure {
            Some(Figure::Memory {
                idle_kib,
                loaded_kib,
                loaded_pss_kib,
                processes,
                connections,
            }) => format!(
                "{:.1} | {:.1} | {:.2} | {:.1} | {processes}",
                kib_to_mb(idle_kib),
                kib_to_mb(loaded_kib),
                per_connection_kb(idle_kib, loaded_kib, connections),
                kib_to_mb(loaded_pss_kib),
            ),
            _ => "no result | | | | ".to_owned(),
        };
        format!("{figures} | {}", target_cell(kind, row, summary))
    };
    table(out, section, &format!("RSS idle (MB): | RSS with {connections} idle connections (MB): | KB per connection: | PSS with them (MB): | processes: | target | each round (idle → loaded RSS, MB)"), cells, |f| match f {
        Figure::Memory {
            idle_kib,
            loaded_kib,
            ..
        } => Some(format!(
            "{:.1} → {:.1}",
            kib_to_mb(*idle_kib),
            kib_to_mb(*loaded_kib)
        )),
        _ => None,
    });
}

/// Ours in bold, with the capture setting.
fn contender_cell(row: &Row) -> String {
    if row.is_ours() {
        format!("**{}**", row.label())
    } else {
        row.label()
    }
}

/// Our row's target and whether it is met; nothing for a row without a target.
fn target_cell(kind: ScenarioKind, row: &Row, summary: &RowSummary) -> String {
    match goal_for(kind, row.group) {
        Some(goal) if row.is_ours() => format!("{goal}: {}", judge(goal, summary)),
        _ => String::new(),
    }
}

/// 12345.6 → "12,346".
fn format_count(value: f64) -> String {
    let rounded = value.round().max(0.0) as u64;
    let digits = rounded.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 {
        format!("{} min {} s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds} s")
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
