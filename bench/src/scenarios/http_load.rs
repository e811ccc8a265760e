//! Scenarios 1 and 2: wrk's request rate through each path, keep-alive or a new connection per
//! request. CONNECT and SOCKS5 rows run wrk under proxychains4; [`check_proxychains`] proves first that
//! proxychains4 really carries wrk's connections, or those rows would quietly measure the direct path.

use std::path::PathBuf;
use std::time::Duration;

use super::Bench;

use crate::clients::proxychains::{self, Tunnel};
use crate::clients::wrk::{self, Load, ReadErrors, Script};
use crate::clients::Invalid;
use crate::contenders::SMALL_PATH;
use crate::results::{Figure, Outcome};
use crate::route::{origin_url, Route};

/// What wrk is pointed at for a route: its URL, the request target, and the proxychains4 config that
/// wraps it, if any.
pub struct WrkTarget {
    pub url: String,
    pub target: String,
    pub proxychains: Option<PathBuf>,
}

pub fn wrk_target(bench: &Bench<'_>, route: Route) -> anyhow::Result<WrkTarget> {
    let origin_port = bench.ctx.origin.http_port;
    let first_hop = format!(
        "http://127.0.0.1:{}{SMALL_PATH}",
        route.first_hop(origin_port)
    );
    let origin = format!("{}{SMALL_PATH}", origin_url(origin_port));
    let target = route.request_target(origin_port, SMALL_PATH);
    Ok(match route {
        Route::Direct | Route::Reverse { .. } | Route::AbsoluteForm { .. } => WrkTarget {
            url: first_hop,
            target,
            proxychains: None,
        },
        Route::Connect { proxy_port } => WrkTarget {
            url: origin,
            target,
            proxychains: Some(proxychains::write_config(
                &bench.ctx.workdir,
                Tunnel::HttpConnect,
                proxy_port,
            )?),
        },
        Route::Socks5 { proxy_port } => WrkTarget {
            url: origin,
            target,
            proxychains: Some(proxychains::write_config(
                &bench.ctx.workdir,
                Tunnel::Socks5,
                proxy_port,
            )?),
        },
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
    let target = wrk_target(bench, route)?;
    let script = Script {
        target: target.target,
        host: format!("127.0.0.1:{}", bench.ctx.origin.http_port),
        connection_close,
        pace,
    };
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
    let script_path = bench
        .ctx
        .workdir
        .write(&name, &wrk::render_script(&script))?;
    wrk::run(
        &bench.ctx.tools,
        target.proxychains.as_deref(),
        &target.url,
        &script_path,
        bench.load,
        read_errors,
    )
    .await
}

pub async fn measure(
    bench: &Bench<'_>,
    route: Route,
    connection_close: bool,
    read_errors: ReadErrors,
) -> anyhow::Result<Outcome> {
    Ok(run_wrk(bench, route, connection_close, None, read_errors)
        .await?
        .map(|summary| Figure::RequestRate {
            per_sec: summary.requests_per_sec(),
        }))
}

/// wrk under proxychains4 pointed at a port where nothing listens must get nowhere. If requests
/// complete, proxychains4 did not intercept wrk's connect() (a static wrk, a broken preload), and every
/// CONNECT and SOCKS5 row would be measuring the direct path.
pub async fn check_proxychains(bench: &Bench<'_>) -> anyhow::Result<()> {
    let nowhere = bench.ctx.ports.next()?;
    let load = Load {
        duration: Duration::from_secs(1),
        ..bench.load
    };
    let config = proxychains::write_config(&bench.ctx.workdir, Tunnel::Socks5, nowhere)?;
    let script = wrk::render_script(&Script {
        target: SMALL_PATH.to_owned(),
        host: format!("127.0.0.1:{}", bench.ctx.origin.http_port),
        connection_close: false,
        pace: None,
    });
    let script_path = bench
        .ctx
        .workdir
        .write("wrk-proxychains-check.lua", &script)?;
    let url = format!("{}{SMALL_PATH}", origin_url(bench.ctx.origin.http_port));
    let run = wrk::run(
        &bench.ctx.tools,
        Some(&config),
        &url,
        &script_path,
        load,
        ReadErrors::NoneAllowed,
    );
    match run.await? {
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
