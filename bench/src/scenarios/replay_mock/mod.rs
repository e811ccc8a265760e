//! Scenario 9 (issue #19): replay and mock at the speed of the tools they stand in for.
//!
//! - [`replay`]: `sidecar-proxy replay --rate max` of a capture of wrk's load, against wrk's own rate
//!   straight to nginx (the section's direct row) in the same round;
//! - [`mock`]: wrk cycling through 10,000 recorded requests, answered by a forward sidecar's `--mock`,
//!   against the same sidecar relaying them to nginx;
//! - [`recording`]: the sidecars both start for themselves each round: the recording one and the mock.

pub mod mock;
pub mod recording;
pub mod replay;

use super::{http_load, Bench};
use crate::clients::wrk::ReadErrors;
use crate::contenders::ServerSpec;
use crate::results::{Group, Outcome};
use crate::route::Route;

/// A row of the replay section: wrk straight to nginx, or the replay.
pub async fn replay_row(bench: &Bench<'_>, group: Group) -> anyhow::Result<Outcome> {
    match group {
        Group::Replay => replay::measure(bench).await,
        _ => http_load::measure(bench, Route::Direct, false, ReadErrors::NoneAllowed).await,
    }
}

/// A row of the mock section: wrk cycling through the recorded requests straight to nginx, through the
/// fleet's forward sidecar, or through a mock of its own.
pub async fn mock_row(
    bench: &Bench<'_>,
    group: Group,
    server: Option<ServerSpec>,
) -> anyhow::Result<Outcome> {
    match group {
        Group::Mock => mock::measure(bench).await,
        _ => mock::wrk_recorded_requests(bench, bench.route(group, server)?).await,
    }
}
