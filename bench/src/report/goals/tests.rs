use rstest::rstest;

use super::*;
use crate::clients::Invalid;
use crate::report::fixtures::*;
use crate::results::Outcome;

fn find<'a>(checks: &'a [GoalCheck], area: &str, goal: &str) -> &'a GoalCheck {
    checks
        .iter()
        .find(|check| check.area == area && check.goal == goal)
        .unwrap_or_else(|| panic!("no goal {area} / {goal} in {checks:#?}"))
}

/// Replaces the single outcome of the row of `spec` on `group` in the section of `kind` and `tool`.
fn set(
    run: &mut [Scenario],
    kind: ScenarioKind,
    tool: Tool,
    group: Group,
    spec: Option<ServerSpec>,
    outcome: Outcome,
) {
    let row = run
        .iter_mut()
        .filter(|scenario| scenario.kind == kind)
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

#[test]
fn the_measured_figures_are_the_ratios_of_the_medians() {
    let checks = evaluate(&passing_run());
    let relay = find(
        &checks,
        "1. keep-alive",
        "reverse tcp, capture on ≥ 0.95 × the minimal relay (reverse tcp)",
    );
    assert_eq!(relay.measured, "0.95 (57,000 vs 60,000 req/s)");
    let nginx = find(
        &checks,
        "1. keep-alive",
        "reverse http, capture on above nginx",
    );
    assert_eq!(nginx.measured, "1.00 (54,000 vs 53,999 req/s)");
    let best = find(
        &checks,
        "2. new connection per request",
        "forward, absolute-form, capture on ≥ the best peer",
    );
    assert_eq!(best.measured, "15,000 vs tinyproxy 8,000 req/s");
    let socks = find(
        &checks,
        "2. new connection per request",
        "forward, SOCKS5, capture on ≥ the best peer",
    );
    assert_eq!(socks.measured, "5,000 vs microsocks 4,700 req/s");
    let memory = find(
        &checks,
        "5. memory",
        "reverse tcp, capture on: ≤ 12 KB per idle connection",
    );
    assert_eq!(memory.measured, "12.00 KB/conn");
    let h2c = find(
        &checks,
        "8. h2c",
        "reverse tcp, capture on ≥ 0.90 × capture off",
    );
    assert_eq!(h2c.measured, "0.90 (45,000 vs 50,000 req/s)");
    let nats = find(
        &checks,
        "1. keep-alive",
        "reverse http, capture to NATS ≥ 0.95 × capture on (a file)",
    );
    assert_eq!(nats.measured, "0.95 (51,300 vs 54,000 req/s)");
    let replay = find(
        &checks,
        "9. replay and mock",
        "replay --rate max ≥ 0.80 × wrk",
    );
    assert_eq!(replay.measured, "0.80 × wrk");
    let mock = find(
        &checks,
        "9. replay and mock",
        "--mock ≥ 0.80 × the forward relay (absolute-form, capture on)",
    );
    assert_eq!(mock.measured, "0.80 (16,000 vs 20,000 req/s)");
}

#[rstest]
// Just under 0.95 × the minimal relay.
#[case(
    ScenarioKind::KeepAlive,
    KEEP_ALIVE,
    Group::Connect,
    on(FORWARD),
    rate(56_999.0),
    "1. keep-alive",
    "forward, CONNECT, capture on ≥ 0.95 × the minimal relay (reverse tcp)"
)]
// Just under 0.95 × its own capture-off row.
#[case(
    ScenarioKind::KeepAlive,
    KEEP_ALIVE,
    Group::Socks5,
    off(SOCKS),
    rate(62_200.0),
    "1. keep-alive",
    "forward, SOCKS5, capture on ≥ 0.95 × capture off"
)]
// Equal to nginx is not above it.
#[case(
    ScenarioKind::KeepAlive,
    KEEP_ALIVE,
    Group::ReverseHttp,
    Some(ServerSpec::NginxReverse),
    rate(54_000.0),
    "1. keep-alive",
    "reverse http, capture on above nginx"
)]
#[case(
    ScenarioKind::KeepAlive,
    KEEP_ALIVE,
    Group::AbsoluteForm,
    on(FORWARD),
    rate(53_999.0),
    "1. keep-alive",
    "forward, absolute-form, capture on ≥ 0.90 × the minimal relay (reverse tcp)"
)]
#[case(
    ScenarioKind::Latency,
    Tool::PacedWrk,
    Group::ReverseHttp,
    on(HTTP),
    latency(1.51),
    "4. latency",
    "reverse http, capture on: p99 ≤ nginx's p99"
)]
#[case(
    ScenarioKind::NewConnection, Tool::Wrk { connection_close: true }, Group::Connect, Some(ServerSpec::Squid), rate(4_001.0),
    "2. new connection per request", "forward, CONNECT, capture on ≥ the best peer"
)]
#[case(
    ScenarioKind::Bulk,
    Tool::Download,
    Group::Socks5,
    off(SOCKS),
    gbit_per_sec(8.49),
    "3. bulk",
    "download, forward, SOCKS5, capture off ≥ 0.85 × direct"
)]
#[case(
    ScenarioKind::Memory,
    Tool::IdleConnections,
    Group::ReverseTcp,
    on(TCP),
    memory(9_000, 12_001),
    "5. memory",
    "reverse tcp, capture on: ≤ 12 KB per idle connection"
)]
#[case(
    ScenarioKind::Memory,
    Tool::IdleConnections,
    Group::Socks5,
    on(SOCKS),
    memory(9_766, 1_000),
    "5. memory",
    "forward, SOCKS5, capture on: idle RSS < 10 MB"
)]
#[case(
    ScenarioKind::H2c,
    Tool::H2load,
    Group::ReverseTcp,
    on(SidecarMode::ReverseTcp(Upstream::H2c)),
    rate(44_999.0),
    "8. h2c",
    "reverse tcp, capture on ≥ 0.90 × capture off"
)]
#[case(
    ScenarioKind::KeepAlive,
    KEEP_ALIVE,
    Group::ReverseTcp,
    nats(TCP),
    rate(54_149.0),
    "1. keep-alive",
    "reverse tcp, capture to NATS ≥ 0.95 × capture on (a file)"
)]
#[case(
    ScenarioKind::ReplayMock,
    Tool::Replay,
    Group::Replay,
    on(HTTP),
    rate(39_999.0),
    "9. replay and mock",
    "replay --rate max ≥ 0.80 × wrk"
)]
#[case(
    ScenarioKind::ReplayMock,
    Tool::WrkRecordedRequests,
    Group::AbsoluteForm,
    on(FORWARD),
    rate(20_001.0),
    "9. replay and mock",
    "--mock ≥ 0.80 × the forward relay (absolute-form, capture on)"
)]
fn a_figure_just_past_its_bound_is_not_met_and_fails_only_its_goal(
    #[case] kind: ScenarioKind,
    #[case] tool: Tool,
    #[case] group: Group,
    #[case] spec: Option<ServerSpec>,
    #[case] outcome: Outcome,
    #[case] area: &str,
    #[case] goal: &str,
) {
    let mut run = passing_run();
    set(&mut run, kind, tool, group, spec, outcome);
    let checks = evaluate(&run);
    assert_eq!(find(&checks, area, goal).status, Status::NotMet);
    let others_not_met = checks
        .iter()
        .filter(|check| check.status != Status::Met)
        .count();
    assert_eq!(others_not_met, 1, "{checks:#?}");
}

#[test]
fn a_row_without_a_valid_round_leaves_its_goals_not_measured() {
    let mut run = passing_run();
    set(
        &mut run,
        ScenarioKind::KeepAlive,
        KEEP_ALIVE,
        Group::ReverseTcp,
        RELAY,
        Err(Invalid("no request completed".into())),
    );
    let checks = evaluate(&run);
    let not_measured: Vec<&str> = checks
        .iter()
        .filter(|check| check.status == Status::NotMeasured)
        .map(|check| check.goal.as_str())
        .collect();
    // The three relays and the two HTTP rows are compared with the relay limit.
    assert_eq!(not_measured.len(), 5, "{not_measured:#?}");
    assert!(not_measured
        .iter()
        .all(|goal| goal.contains("minimal relay")));
    let relay = find(
        &checks,
        "1. keep-alive",
        "reverse tcp, capture on ≥ 0.95 × the minimal relay (reverse tcp)",
    );
    assert_eq!(
        relay.measured,
        "not measured: reverse tcp, minimal relay (the relay limit) has no valid round"
    );
}

#[test]
fn a_run_without_rows_judges_nothing_and_does_not_panic() {
    let checks = evaluate(&[]);
    assert_eq!(checks.len(), 31);
    assert!(checks
        .iter()
        .all(|check| check.status == Status::NotMeasured));
    let h2c = find(
        &checks,
        "8. h2c",
        "reverse tcp, capture on ≥ 0.90 × capture off",
    );
    assert_eq!(h2c.measured, "not measured: the run has no scenario 8 rows");
    let replay = find(
        &checks,
        "9. replay and mock",
        "replay --rate max ≥ 0.80 × wrk",
    );
    assert_eq!(
        replay.measured,
        "not measured: the run has no scenario 9 rows"
    );
}

#[test]
fn a_missing_row_is_named() {
    let mut run = passing_run();
    run[0].sections[0]
        .rows
        .retain(|row| row.server != Some(ServerSpec::Squid));
    let checks = evaluate(&run);
    let squid = find(
        &checks,
        "1. keep-alive",
        "forward, absolute-form, capture on above squid",
    );
    assert_eq!(squid.status, Status::NotMeasured);
    assert_eq!(
        squid.measured,
        "not measured: the run has no row forward, absolute-form, squid"
    );
}

#[test]
fn the_table_counts_the_verdicts() {
    let mut run = passing_run();
    set(
        &mut run,
        ScenarioKind::H2c,
        Tool::H2load,
        Group::ReverseTcp,
        on(SidecarMode::ReverseTcp(Upstream::H2c)),
        rate(1_000.0),
    );
    run.retain(|scenario| scenario.kind != ScenarioKind::Memory);
    let mut out = String::new();
    render(&mut out, &evaluate(&run));
    assert!(
        out.contains("26 of 31 goals met, 1 not met, 4 not measured."),
        "{out}"
    );
    assert!(
        out.contains(
            "| 8. h2c | reverse tcp, capture on ≥ 0.90 × capture off | 0.02 (1,000 vs 50,000 req/s) | **NOT MET** |"
        ),
        "{out}"
    );
    assert!(
        out.contains("| 1. keep-alive | reverse tcp, capture on ≥ 0.95 × capture off | 0.95 (57,000 vs 60,000 req/s) | MET |"),
        "{out}"
    );
    assert!(
        out.contains("| 5. memory | forward, SOCKS5, capture on: idle RSS < 10 MB | not measured: the run has no scenario 5 rows | not measured |"),
        "{out}"
    );
}
