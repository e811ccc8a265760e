//! Issue #17's goals (and issue #19's, [`replay_mock`]), "capture at the cost of a relay", judged on the rows of the same run: each goal
//! compares one of our rows with capture on to another row (the minimal relay, the same row with
//! capture off, a peer, direct) or to a fixed bound, and is MET, NOT MET, or not measured when a row it
//! needs is missing or has no valid round.
//!
//! Goals between two rows divide the two rows' medians. Goals against direct use the × direct column of
//! the tables (the median of each round's ratio to that round's direct figure), so the figure here is
//! the one the table shows.

use std::fmt::{self, Write as _};

use crate::contenders::{Capture, ServerSpec, SidecarMode, Upstream};
use crate::markdown;
use crate::results::{Figure, Group, Row, Scenario, ScenarioKind, Section, Tool};
use crate::stats::{summarize, RowSummary};
use crate::targets::idle_mb_and_per_connection_kb;

/// Keep-alive relays (reverse tcp, CONNECT, SOCKS5) with capture on, against the minimal relay's
/// reverse tcp row and against the same row with capture off.
pub const RELAY_SHARE: f64 = 0.95;
/// Reverse http and absolute-form with capture on, against the minimal relay's reverse tcp row.
pub const HTTP_SHARE: f64 = 0.90;
/// Bulk, capture on and off, against direct.
pub const BULK_SHARE: f64 = 0.85;
/// h2c with capture on, against capture off.
pub const H2C_SHARE: f64 = 0.90;
/// Keep-alive reverse tcp and reverse http capturing to NATS, against the same row capturing to a file
/// (issue #21).
pub const NATS_SHARE: f64 = 0.95;
/// KB (10³ bytes) per idle connection, capture on.
pub const MAX_KB_PER_CONNECTION: f64 = 12.0;
/// MB (10⁶ bytes) of RSS idle, capture on.
pub const MAX_IDLE_MB: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Met,
    NotMet,
    NotMeasured,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Met => "MET",
            Status::NotMet => "**NOT MET**",
            Status::NotMeasured => "not measured",
        })
    }
}

/// One goal, judged.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalCheck {
    /// The scenario it is read from, e.g. `1. keep-alive`.
    pub area: &'static str,
    pub goal: String,
    /// The measured figure, or why there is none.
    pub measured: String,
    pub status: Status,
}

impl GoalCheck {
    /// `judged`: the measured figure and whether it meets the goal, or why it was not measured.
    fn new(area: &'static str, goal: String, judged: Result<(String, bool), String>) -> GoalCheck {
        let (measured, status) = match judged {
            Ok((measured, true)) => (measured, Status::Met),
            Ok((measured, false)) => (measured, Status::NotMet),
            Err(why) => (format!("not measured: {why}"), Status::NotMeasured),
        };
        GoalCheck {
            area,
            goal,
            measured,
            status,
        }
    }
}

/// A median read from a row, or why there is none.
type Reading = Result<f64, String>;

/// The section of `kind` measured with `tool`, or why the run has none.
fn section(scenarios: &[Scenario], kind: ScenarioKind, tool: Tool) -> Result<&Section, String> {
    scenarios
        .iter()
        .filter(|scenario| scenario.kind == kind)
        .flat_map(|scenario| &scenario.sections)
        .find(|section| section.tool == tool)
        .ok_or_else(|| format!("the run has no scenario {} rows", kind.number()))
}

/// The row of `spec` on `group` in `section`, summarised against the section's direct row, and its
/// name (`reverse tcp, sidecar-proxy, capture on`); or why there is no such row.
fn summary(
    section: &Result<&Section, String>,
    group: Group,
    spec: ServerSpec,
) -> Result<(RowSummary, String), String> {
    let name = format!("{group}, {}", Row::through(group, spec).label());
    let section = section.clone()?;
    let row = section
        .rows
        .iter()
        .find(|row| row.group == group && row.server == Some(spec))
        .ok_or_else(|| format!("the run has no row {name}"))?;
    Ok((summarize(row, section.baseline()), name))
}

fn request_rate(found: Result<(RowSummary, String), String>) -> Reading {
    let (summary, name) = found?;
    match summary.figure {
        Some(Figure::RequestRate { per_sec }) => Ok(per_sec),
        _ => Err(format!("{name} has no valid round")),
    }
}

fn p99_ms(found: Result<(RowSummary, String), String>) -> Reading {
    let (summary, name) = found?;
    match summary.figure {
        Some(Figure::Latency { p99_ms, .. }) => Ok(p99_ms),
        _ => Err(format!("{name} has no valid round")),
    }
}

/// The × direct column's figure, `{ratio} × {direct}`, and whether it is at least `share`.
fn ratio_to_direct(
    found: Result<(RowSummary, String), String>,
    direct: &str,
    share: f64,
) -> Result<(String, bool), String> {
    let (summary, name) = found?;
    let ratio = summary
        .ratio
        .ok_or_else(|| format!("{name} has no round to compare with direct"))?;
    Ok((format!("{ratio:.2} × {direct}"), ratio >= share))
}

/// Request rates, ours against a reference's: whether they `met` the goal, and their ratio.
fn rate_goal(
    area: &'static str,
    goal: String,
    ours: Reading,
    reference: Reading,
    met: impl Fn(f64, f64) -> bool,
) -> GoalCheck {
    let judged = ours.and_then(|ours| {
        let reference = reference?;
        if reference > 0.0 {
            let measured = format!(
                "{:.2} ({} vs {} req/s)",
                ours / reference,
                super::format_count(ours),
                super::format_count(reference)
            );
            Ok((measured, met(ours, reference)))
        } else {
            Err("the reference has no requests".to_owned())
        }
    });
    GoalCheck::new(area, goal, judged)
}

/// ours ≥ share × reference, request rates.
fn share_goal(
    area: &'static str,
    goal: String,
    ours: Reading,
    reference: Reading,
    share: f64,
) -> GoalCheck {
    rate_goal(area, goal, ours, reference, |ours, reference| {
        ours / reference >= share
    })
}

/// The sidecar in the mode that serves `group`'s traffic in scenarios 1, 2 and 4.
fn ours(group: Group, capture: Capture) -> ServerSpec {
    let mode = match group {
        Group::ReverseHttp => SidecarMode::ReverseHttp,
        Group::AbsoluteForm | Group::Connect => SidecarMode::ForwardHttp,
        Group::Socks5 => SidecarMode::ForwardSocks,
        _ => SidecarMode::ReverseTcp(Upstream::Http),
    };
    ServerSpec::Sidecar(mode, capture)
}

/// Every goal of issue #17, in the order of the report's scenarios.
pub fn evaluate(scenarios: &[Scenario]) -> Vec<GoalCheck> {
    let mut checks = Vec::new();
    keep_alive_goals(scenarios, &mut checks);
    new_connection_goals(scenarios, &mut checks);
    bulk_goals(scenarios, &mut checks);
    latency_goal(scenarios, &mut checks);
    memory_goals(scenarios, &mut checks);
    h2c_goals(scenarios, &mut checks);
    nats_goals(scenarios, &mut checks);
    replay_mock::goals(scenarios, &mut checks);
    checks
}

/// Issue #21: publishing records to NATS costs no more than writing them to a file.
fn nats_goals(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    let keep_alive = keep_alive_rate(scenarios);
    for group in [Group::ReverseTcp, Group::ReverseHttp] {
        checks.push(share_goal(
            "1. keep-alive",
            format!("{group}, capture to NATS ≥ {NATS_SHARE:.2} × capture on (a file)"),
            keep_alive(group, ours(group, Capture::Nats)),
            keep_alive(group, ours(group, Capture::On)),
            NATS_SHARE,
        ));
    }
}

/// The request rate of a row of scenario 1, by path and server.
fn keep_alive_rate(scenarios: &[Scenario]) -> impl Fn(Group, ServerSpec) -> Reading + '_ {
    let section = section(scenarios, ScenarioKind::KeepAlive, Tool::KEEP_ALIVE);
    move |group, spec| request_rate(summary(&section, group, spec))
}

fn keep_alive_goals(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    const AREA: &str = "1. keep-alive";
    let rate = keep_alive_rate(scenarios);
    let relay_limit = rate(Group::ReverseTcp, ServerSpec::MinimalRelay(Upstream::Http));
    let on = |group| rate(group, ours(group, Capture::On));
    for group in [Group::ReverseTcp, Group::Connect, Group::Socks5] {
        checks.push(share_goal(
            AREA,
            format!("{group}, capture on ≥ {RELAY_SHARE:.2} × the minimal relay (reverse tcp)"),
            on(group),
            relay_limit.clone(),
            RELAY_SHARE,
        ));
        checks.push(share_goal(
            AREA,
            format!("{group}, capture on ≥ {RELAY_SHARE:.2} × capture off"),
            on(group),
            rate(group, ours(group, Capture::Off)),
            RELAY_SHARE,
        ));
    }
    for (group, peer) in [
        (Group::ReverseHttp, ServerSpec::NginxReverse),
        (Group::AbsoluteForm, ServerSpec::Squid),
    ] {
        checks.push(share_goal(
            AREA,
            format!("{group}, capture on ≥ {HTTP_SHARE:.2} × the minimal relay (reverse tcp)"),
            on(group),
            relay_limit.clone(),
            HTTP_SHARE,
        ));
        checks.push(rate_goal(
            AREA,
            format!("{group}, capture on above {}", peer.contender()),
            on(group),
            rate(group, peer),
            |ours, reference| ours > reference,
        ));
    }
}

/// Our row against the best of the established proxies in the same row (not the minimal relay, which
/// is a reference, not a peer).
fn new_connection_goals(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    let groups = [
        Group::ReverseTcp,
        Group::ReverseHttp,
        Group::AbsoluteForm,
        Group::Connect,
        Group::Socks5,
    ];
    let section = section(scenarios, ScenarioKind::NewConnection, Tool::NEW_CONNECTION);
    for group in groups {
        let ours = request_rate(summary(&section, group, ours(group, Capture::On)));
        let judged = ours.and_then(|ours| {
            let peers: Vec<&Row> = section
                .iter()
                .flat_map(|section| &section.rows)
                .filter(|row| row.group == group && is_peer(row))
                .collect();
            if peers.is_empty() {
                return Err(format!("the run has no peer on {group}"));
            }
            let (peer, theirs) = peers
                .iter()
                .filter_map(|row| match summarize(row, None).figure {
                    Some(Figure::RequestRate { per_sec }) => Some((row.label(), per_sec)),
                    _ => None,
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .ok_or_else(|| format!("no peer on {group} has a result"))?;
            let measured = format!(
                "{} vs {peer} {} req/s",
                super::format_count(ours),
                super::format_count(theirs)
            );
            Ok((measured, ours >= theirs))
        });
        checks.push(GoalCheck::new(
            "2. new connection per request",
            format!("{group}, capture on ≥ the best peer"),
            judged,
        ));
    }
}

/// An established proxy: neither ours nor the minimal relay nor direct.
fn is_peer(row: &Row) -> bool {
    matches!(row.server, Some(spec) if spec.capture().is_none() && !matches!(spec, ServerSpec::MinimalRelay(_)))
}

fn bulk_goals(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    let rows = [
        (Tool::Iperf3, "iperf3", Group::ReverseTcp),
        (Tool::Download, "download", Group::Connect),
        (Tool::Download, "download", Group::Socks5),
    ];
    for (tool, what, group) in rows {
        for capture in [Capture::On, Capture::Off] {
            let spec = match tool {
                Tool::Iperf3 => {
                    ServerSpec::Sidecar(SidecarMode::ReverseTcp(Upstream::Iperf3), capture)
                }
                _ => ours(group, capture),
            };
            checks.push(GoalCheck::new(
                "3. bulk",
                format!("{what}, {group}, {capture} ≥ {BULK_SHARE:.2} × direct"),
                ratio_to_direct(
                    summary(&section(scenarios, ScenarioKind::Bulk, tool), group, spec),
                    "direct",
                    BULK_SHARE,
                ),
            ));
        }
    }
}

/// Reverse http's p99 at a fixed rate below saturation (scenario 4), against nginx's.
fn latency_goal(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    let section = section(scenarios, ScenarioKind::Latency, Tool::PacedWrk);
    let p99 = |spec| p99_ms(summary(&section, Group::ReverseHttp, spec));
    let judged = p99(ours(Group::ReverseHttp, Capture::On)).and_then(|ours| {
        let nginx = p99(ServerSpec::NginxReverse)?;
        Ok((
            format!("p99 {ours:.2} ms vs nginx {nginx:.2} ms"),
            ours <= nginx,
        ))
    });
    checks.push(GoalCheck::new(
        "4. latency",
        "reverse http, capture on: p99 ≤ nginx's p99".to_owned(),
        judged,
    ));
}

fn memory_goals(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    let section = section(scenarios, ScenarioKind::Memory, Tool::IdleConnections);
    for group in [Group::ReverseTcp, Group::Socks5] {
        let found = summary(&section, group, ours(group, Capture::On));
        let figure = found.and_then(|(summary, name)| {
            idle_mb_and_per_connection_kb(summary.figure)
                .ok_or_else(|| format!("{name} has no valid round"))
        });
        checks.push(GoalCheck::new(
            "5. memory",
            format!("{group}, capture on: ≤ {MAX_KB_PER_CONNECTION} KB per idle connection"),
            figure.clone().map(|(_, per_connection)| {
                (
                    format!("{per_connection:.2} KB/conn"),
                    per_connection <= MAX_KB_PER_CONNECTION,
                )
            }),
        ));
        checks.push(GoalCheck::new(
            "5. memory",
            format!("{group}, capture on: idle RSS < {MAX_IDLE_MB} MB"),
            figure.map(|(idle_mb, _)| (format!("{idle_mb:.1} MB idle"), idle_mb < MAX_IDLE_MB)),
        ));
    }
}

fn h2c_goals(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    let section = section(scenarios, ScenarioKind::H2c, Tool::H2load);
    let rate = |capture| {
        let spec = ServerSpec::Sidecar(SidecarMode::ReverseTcp(Upstream::H2c), capture);
        request_rate(summary(&section, Group::ReverseTcp, spec))
    };
    checks.push(share_goal(
        "8. h2c",
        format!("reverse tcp, capture on ≥ {H2C_SHARE:.2} × capture off"),
        rate(Capture::On),
        rate(Capture::Off),
        H2C_SHARE,
    ));
}

/// The goals table, with a count of each verdict above it.
pub fn render(out: &mut String, checks: &[GoalCheck]) {
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let _ = writeln!(
        out,
        "### Goals of issues #17, #19 and #21: capture at the cost of a relay, replay and mock at the speed of the tools \
         they replace, NATS at the cost of a file\n"
    );
    let _ = writeln!(
        out,
        "{} of {} goals met, {} not met, {} not measured. Comparisons between two rows divide their \
         medians; × direct is the tables' column.\n",
        count(Status::Met),
        checks.len(),
        count(Status::NotMet),
        count(Status::NotMeasured),
    );
    markdown::head(out, "scenario | goal | measured | verdict");
    for check in checks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            check.area, check.goal, check.measured, check.status
        );
    }
    out.push('\n');
}

mod replay_mock;

#[cfg(test)]
mod tests;
