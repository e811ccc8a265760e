use rstest::rstest;

use super::*;
use crate::golden::assert_golden;
use crate::report::fixtures::*;
use crate::results::Outcome;

/// The goal `area | goal` (as its row in the table begins).
fn find<'a>(checks: &'a [GoalCheck], goal: &str) -> &'a GoalCheck {
    checks
        .iter()
        .find(|check| format!("{} | {}", check.area, check.goal) == goal)
        .unwrap_or_else(|| panic!("no goal {goal} in {checks:#?}"))
}

/// The row of a passing run to change (measured with the tool, on the path, by the server), and its
/// one outcome instead.
type Change = (Tool, Group, Option<ServerSpec>, Outcome);

fn set(run: &mut [Scenario], (tool, group, spec, outcome): Change) {
    let row = run
        .iter_mut()
        .flat_map(|scenario| &mut scenario.sections)
        .filter(|section| section.tool == tool)
        .flat_map(|section| &mut section.rows)
        .find(|row| row.group == group && row.server == spec)
        .expect("the row to change");
    row.outcomes = vec![outcome];
}

#[test]
fn every_goal_is_there_and_met_at_its_bound() {
    let checks = evaluate(&passing_run());
    // 6 relay goals, 4 for reverse http and absolute-form; 5 new-connection rows; 6 bulk rows;
    // 1 latency; 2 memory goals for each of 2 rows; 1 h2c; 2 NATS sink rows; replay and mock.
    assert_eq!(checks.len(), 10 + 5 + 6 + 1 + 4 + 1 + 2 + 2, "{checks:#?}");
    let not_met: Vec<_> = checks
        .iter()
        .filter(|check| check.status != Status::Met)
        .collect();
    assert!(not_met.is_empty(), "{not_met:#?}");
}

#[rstest]
// Just under 0.95 × the minimal relay.
#[case(
    (Tool::KEEP_ALIVE, Group::Connect, on(FORWARD), rate(56_999.0)),
    "1. keep-alive | forward, CONNECT, capture on ≥ 0.95 × the minimal relay (reverse tcp)"
)]
// Just under 0.95 × its own capture-off row.
#[case(
    (Tool::KEEP_ALIVE, Group::Socks5, off(SOCKS), rate(62_200.0)),
    "1. keep-alive | forward, SOCKS5, capture on ≥ 0.95 × capture off"
)]
// Equal to nginx is not above it.
#[case(
    (Tool::KEEP_ALIVE, Group::ReverseHttp, Some(ServerSpec::NginxReverse), rate(54_000.0)),
    "1. keep-alive | reverse http, capture on above nginx"
)]
#[case(
    (Tool::KEEP_ALIVE, Group::AbsoluteForm, on(FORWARD), rate(53_999.0)),
    "1. keep-alive | forward, absolute-form, capture on ≥ 0.90 × the minimal relay (reverse tcp)"
)]
#[case(
    (Tool::PacedWrk, Group::ReverseHttp, on(HTTP), latency(1.51)),
    "4. latency | reverse http, capture on: p99 ≤ nginx's p99"
)]
#[case(
    (Tool::NEW_CONNECTION, Group::Connect, Some(ServerSpec::Squid), rate(4_001.0)),
    "2. new connection per request | forward, CONNECT, capture on ≥ the best peer"
)]
#[case(
    (Tool::Download, Group::Socks5, off(SOCKS), gbit_per_sec(8.49)),
    "3. bulk | download, forward, SOCKS5, capture off ≥ 0.85 × direct"
)]
#[case(
    (Tool::IdleConnections, Group::ReverseTcp, on(TCP), memory(9_000, 12_001)),
    "5. memory | reverse tcp, capture on: ≤ 12 KB per idle connection"
)]
#[case(
    (Tool::IdleConnections, Group::Socks5, on(SOCKS), memory(9_766, 1_000)),
    "5. memory | forward, SOCKS5, capture on: idle RSS < 10 MB"
)]
#[case(
    (Tool::H2load, Group::ReverseTcp, on(H2C), rate(44_999.0)),
    "8. h2c | reverse tcp, capture on ≥ 0.90 × capture off"
)]
#[case(
    (Tool::KEEP_ALIVE, Group::ReverseTcp, nats(TCP), rate(54_149.0)),
    "1. keep-alive | reverse tcp, capture to NATS ≥ 0.95 × capture on (a file)"
)]
#[case(
    (Tool::Replay, Group::Replay, on(HTTP), rate(39_999.0)),
    "9. replay and mock | replay --rate max ≥ 0.80 × wrk"
)]
#[case(
    (Tool::WrkRecordedRequests, Group::AbsoluteForm, on(FORWARD), rate(20_001.0)),
    "9. replay and mock | --mock ≥ 0.80 × the forward relay (absolute-form, capture on)"
)]
fn a_figure_just_past_its_bound_is_not_met_and_fails_only_its_goal(
    #[case] change: Change,
    #[case] goal: &str,
) {
    let mut run = passing_run();
    set(&mut run, change);
    let checks = evaluate(&run);
    assert_eq!(find(&checks, goal).status, Status::NotMet);
    let others_not_met = checks
        .iter()
        .filter(|check| check.status != Status::Met)
        .count();
    assert_eq!(others_not_met, 1, "{checks:#?}");
}

/// The goals tables of a run without rows, and of a passing run in which one goal is not met, the
/// minimal relay's row has no valid round, squid's keep-alive row is missing and scenario 5 did not
/// run, byte for byte. After a deliberate change, `BLESS=1 cargo test` rewrites goals.md.
#[test]
fn missing_and_invalid_rows_leave_their_goals_not_measured_and_the_table_counts_the_verdicts() {
    let mut run = passing_run();
    let no_request = invalid("no request completed");
    set(
        &mut run,
        (Tool::KEEP_ALIVE, Group::ReverseTcp, RELAY, no_request),
    );
    set(
        &mut run,
        (Tool::H2load, Group::ReverseTcp, on(H2C), rate(1_000.0)),
    );
    run[0].sections[0]
        .rows
        .retain(|row| row.server != Some(ServerSpec::Squid));
    run.retain(|scenario| scenario.kind != ScenarioKind::Memory);
    let mut out = String::new();
    render(&mut out, &evaluate(&[]));
    render(&mut out, &evaluate(&run));
    assert_golden(&out, "src/report/goals/goals.md", include_str!("goals.md"));
}
