//! wrk's rows. Scenarios 1 and 2: wrk's request rate through each path, keep-alive or a new connection
//! per request. CONNECT and SOCKS5 rows run wrk under proxychains4; [`check_proxychains`] proves first
//! that proxychains4 really carries wrk's connections, or those rows would quietly measure the direct
//! path.
//!
//! Scenario 4: latency percentiles at a fixed request rate well below saturation. Debian's wrk 4.1 has
//! no `-R`: each connection pauses [`PACE`] before every request instead, so 50 connections offer
//! about 50 / (PACE + latency) requests per second (≈ 2,500/s). The achieved rate is reported next to
//! the percentiles, so a path that could not keep up shows it.

use std::time::Duration;

use super::Bench;

use crate::clients::proxychains;
use crate::clients::wrk::{self, Load, ReadErrors, Script};
use crate::clients::Invalid;
use crate::contenders::SMALL_PATH;
use crate::results::{Figure, Outcome};
use crate::route::Route;

pub const PACE: Duration = Duration::from_millis(20);

/// Writes `script` to the work directory as `name` and runs wrk with it through `route` for `load`.
/// For CONNECT and SOCKS5, wrk runs under proxychains4 and names the origin, which the tunnel reaches;
/// otherwise it connects to the route's first hop.
pub async fn run_script(
    bench: &Bench<'_>,
    route: Route,
    name: &str,
    script: &str,
    load: Load,
    read_errors: ReadErrors,
) -> anyhow::Result<Result<wrk::Summary, Invalid>> {
    let origin_port = bench.ctx.origin.http_port;
    let config = proxychains::write_config(&bench.ctx.workdir, route)?;
    let hop = match config {
        Some(_) => origin_port,
        None => route.first_hop(origin_port),
    };
    let script_path = bench.ctx.workdir.write(name, script)?;
    let url = format!("http://127.0.0.1:{hop}{SMALL_PATH}");
    wrk::run(
        &bench.ctx.tools,
        config.as_deref(),
        &url,
        &script_path,
        load,
        read_errors,
    )
    .await
}

/// wrk's script for the small response through `route`.
fn small_script(
    bench: &Bench<'_>,
    route: Route,
    connection_close: bool,
    pace: Option<Duration>,
) -> String {
    let origin_port = bench.ctx.origin.http_port;
    wrk::render_script(&Script {
        target: route.request_target(origin_port, SMALL_PATH),
        host: format!("127.0.0.1:{origin_port}"),
        connection_close,
        pace,
    })
}

/// Runs wrk through `route` with the given pacing; the parsed summary or why it is no result.
pub async fn run_wrk(
    bench: &Bench<'_>,
    route: Route,
    connection_close: bool,
    pace: Option<Duration>,
    read_errors: ReadErrors,
) -> anyhow::Result<Result<wrk::Summary, Invalid>> {
    let name = format!(
        "wrk-{}-{}{}.lua",
        if matches!(route, Route::AbsoluteForm { .. }) {
            "absolute"
        } else {
            "origin"
        },
        if connection_close {
            "close"
        } else {
            "keepalive"
        },
        if pace.is_some() { "-paced" } else { "" },
    );
    let script = small_script(bench, route, connection_close, pace);
    run_script(bench, route, &name, &script, bench.load, read_errors).await
}

/// wrk's request rate.
pub fn request_rate(summary: wrk::Summary) -> Figure {
    Figure::RequestRate {
        per_sec: summary.requests_per_sec(),
    }
}

/// Scenarios 1 and 2's figure.
pub async fn measure(
    bench: &Bench<'_>,
    route: Route,
    connection_close: bool,
    read_errors: ReadErrors,
) -> anyhow::Result<Outcome> {
    let run = run_wrk(bench, route, connection_close, None, read_errors).await?;
    Ok(run.map(request_rate))
}

/// Scenario 4's figure.
pub async fn latency(bench: &Bench<'_>, route: Route) -> anyhow::Result<Outcome> {
    let run = run_wrk(bench, route, false, Some(PACE), ReadErrors::NoneAllowed).await?;
    Ok(run.map(|summary| Figure::Latency {
        p50_ms: summary.p50_us as f64 / 1000.0,
        p99_ms: summary.p99_us as f64 / 1000.0,
        p999_ms: summary.p999_us as f64 / 1000.0,
        per_sec: summary.requests_per_sec(),
    }))
}

/// wrk under proxychains4 pointed at a port where nothing listens must get nowhere. If requests
/// complete, proxychains4 did not intercept wrk's connect() (a static wrk, a broken preload), and every
/// CONNECT and SOCKS5 row would be measuring the direct path.
pub async fn check_proxychains(bench: &Bench<'_>) -> anyhow::Result<()> {
    let route = Route::Socks5 {
        proxy_port: bench.ctx.ports.next()?,
    };
    let load = Load {
        duration: Duration::from_secs(1),
        ..bench.load
    };
    let script = small_script(bench, route, false, None);
    let name = "wrk-proxychains-check.lua";
    match run_script(bench, route, name, &script, load, ReadErrors::NoneAllowed).await? {
        Ok(summary) => anyhow::bail!(
            "proxychains4 did not intercept wrk: {} requests reached the origin through a SOCKS5 proxy \
             that does not exist, so the CONNECT and SOCKS5 rows would measure the direct path",
            summary.requests
        ),
        // wrk tries one connection before it starts its threads and exits when that fails.
        Err(Invalid(reason))
            if reason.contains("unable to connect") || reason.contains("no request completed") =>
        {
            Ok(())
        }
        Err(Invalid(reason)) => anyhow::bail!(
            "the proxychains4 check (wrk through a SOCKS5 proxy that does not exist) ended unexpectedly: {reason}"
        ),
    }
}
