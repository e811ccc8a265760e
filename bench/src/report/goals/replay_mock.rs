//! Issue #19's goals, scenario 9: `replay --rate max` sends at least [`REPLAY_SHARE`] of wrk's rate
//! against the same origin (wrk is the direct row of its section, so this is the × direct column), and a
//! forward sidecar answering from `--mock` serves at least [`MOCK_SHARE`] of the rate at which the same
//! sidecar relays the same requests to the origin (the reference is a row of its own, so the two
//! medians are divided).

use super::{ratio_to_direct, request_rate, section, share_goal, summary, GoalCheck};
use crate::contenders::ServerSpec;
use crate::results::{Group, Scenario, ScenarioKind, Tool};

/// Replay's rate against wrk's.
pub const REPLAY_SHARE: f64 = 0.80;
/// The mock's rate against the forward relay's.
pub const MOCK_SHARE: f64 = 0.80;

const AREA: &str = "9. replay and mock";

pub fn goals(scenarios: &[Scenario], checks: &mut Vec<GoalCheck>) {
    let replay = summary(
        &section(scenarios, ScenarioKind::ReplayMock, Tool::Replay),
        Group::Replay,
        ServerSpec::REVERSE_CAPTURING,
    );
    checks.push(GoalCheck::new(
        AREA,
        format!("replay --rate max ≥ {REPLAY_SHARE:.2} × wrk"),
        ratio_to_direct(replay, "wrk", REPLAY_SHARE),
    ));
    let mock = section(
        scenarios,
        ScenarioKind::ReplayMock,
        Tool::WrkRecordedRequests,
    );
    let rate = |group| request_rate(summary(&mock, group, ServerSpec::FORWARD_CAPTURING));
    checks.push(share_goal(
        AREA,
        format!("--mock ≥ {MOCK_SHARE:.2} × the forward relay (absolute-form, capture on)"),
        rate(Group::Mock),
        rate(Group::AbsoluteForm),
        MOCK_SHARE,
    ));
}
