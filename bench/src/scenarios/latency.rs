//! Scenario 4: latency percentiles at a fixed request rate well below saturation. Debian's wrk 4.1 has
//! no `-R`: each connection pauses [`PACE`] before every request instead, so 50 connections offer
//! about 50 / (PACE + latency) requests per second (≈ 2,500/s). The achieved rate is reported next to
//! the percentiles, so a path that could not keep up shows it.

use std::time::Duration;

use super::http_load::run_wrk;
use super::Bench;
use crate::clients::wrk::ReadErrors;
use crate::results::{Figure, Outcome};
use crate::route::Route;

pub const PACE: Duration = Duration::from_millis(20);

pub async fn measure(bench: &Bench<'_>, route: Route) -> anyhow::Result<Outcome> {
    Ok(
        run_wrk(bench, route, false, Some(PACE), ReadErrors::NoneAllowed)
            .await?
            .map(|summary| Figure::Latency {
                p50_ms: summary.p50_us as f64 / 1000.0,
                p99_ms: summary.p99_us as f64 / 1000.0,
                p999_ms: summary.p999_us as f64 / 1000.0,
                per_sec: summary.requests_per_sec(),
            }),
    )
}
