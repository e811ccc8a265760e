//! Scenario 9's mock rows. A forward http sidecar with capture on records [`RECORDED`] distinct outbound
//! exchanges (GET `/?item=1` ... `/?item=N` on nginx, absolute-form, each once, sent by the harness and
//! each answer checked); a fresh forward sidecar then answers from that capture with `--mock`. wrk
//! cycles through the same N requests straight to nginx (direct), through the fleet's forward sidecar
//! relaying them (the reference), and through the mock, which must answer every one from the capture: a
//! request it cannot match gets a 502, which makes the row invalid, and before it is measured the mock
//! must refuse a request that was never recorded.

use anyhow::{bail, Context as _};

use super::recording::CapturingSidecar;
use crate::clients::wrk::{self, ReadErrors, Script};
use crate::clients::Invalid;
use crate::contenders::{SidecarMode, SMALL_BODY, SMALL_PATH};
use crate::http_client;
use crate::probe;
use crate::results::Outcome;
use crate::route::{self, origin_url, Route};
use crate::scenarios::{http_load, Bench};

/// Distinct exchanges in the mock's capture (issue #19: 10,000).
pub const RECORDED: usize = 10_000;
/// In a smoke run, enough to exercise the index in a fraction of a second.
pub const SMOKE_RECORDED: usize = 1_000;
/// Connections the harness records on.
const RECORDING_CONNECTIONS: usize = 8;

fn recorded_count(bench: &Bench<'_>) -> usize {
    if bench.settings.smoke {
        SMOKE_RECORDED
    } else {
        RECORDED
    }
}

/// The path and query of recorded request `item` (1-based).
pub fn item_path(item: usize) -> String {
    format!("{SMALL_PATH}?item={item}")
}

/// wrk's script: the usual request settings and summary line, and a `request()` that cycles through the
/// `count` recorded requests (each thread from the first), built once per thread in `init()`.
pub fn render_script(target_prefix: &str, host: &str, count: usize) -> String {
    let mut lua = wrk::render_script(&Script {
        target: format!("{target_prefix}{}", item_path(1)),
        host: host.to_owned(),
        connection_close: false,
        pace: None,
    });
    let prefix = format!("{target_prefix}{SMALL_PATH}?item=");
    lua += &format!(
        r#"local recorded = {{}}
local next_item = 0
function init(args)
  for item = 1, {count} do
    recorded[item] = wrk.format(nil, "{prefix}" .. item)
  end
end
function request()
  next_item = next_item % {count} + 1
  return recorded[next_item]
end
"#
    );
    lua
}

/// wrk through `route` (direct, or absolute-form through a forward proxy) cycling through the recorded
/// requests.
pub async fn wrk_recorded_requests(bench: &Bench<'_>, route: Route) -> anyhow::Result<Outcome> {
    let origin_port = bench.ctx.origin.http_port;
    let (target_prefix, name) = match route {
        Route::AbsoluteForm { .. } => (origin_url(origin_port), "wrk-recorded-absolute.lua"),
        _ => (String::new(), "wrk-recorded-origin.lua"),
    };
    let script = render_script(
        &target_prefix,
        &format!("127.0.0.1:{origin_port}"),
        recorded_count(bench),
    );
    let load = bench.load;
    let run = http_load::run_script(bench, route, name, &script, load, ReadErrors::NoneAllowed);
    Ok(run.await?.map(http_load::request_rate))
}

/// Records the capture, starts the mock on it, proves it answers from it, and measures wrk through it.
pub async fn measure(bench: &Bench<'_>) -> anyhow::Result<Outcome> {
    let ctx = bench.ctx;
    let count = recorded_count(bench);
    let recorder =
        CapturingSidecar::start(ctx, "mock-recording", SidecarMode::ForwardHttp, &[]).await?;
    let recording = send_each_once(recorder.port, ctx.origin.http_port, count).await;
    let (capture, records) = recorder.finish()?;
    if let Err(error) = recording {
        return Ok(Err(Invalid(format!("recording the capture: {error:#}"))));
    }
    if records != count {
        return Ok(Err(Invalid(format!(
            "the capture holds {records} records after {count} requests"
        ))));
    }
    let capture_arg = capture.display().to_string();
    let mut mock = CapturingSidecar::start(
        ctx,
        "mock-answering",
        SidecarMode::ForwardHttp,
        &["--mock", &capture_arg],
    )
    .await?;
    let route = Route::AbsoluteForm {
        proxy_port: mock.port,
    };
    let origin_port = ctx.origin.http_port;
    probe::expect_body(
        &mut mock.process,
        route,
        origin_port,
        &item_path(count),
        SMALL_BODY,
    )
    .await?;
    let never_recorded = item_path(count + 1);
    let (refused, _) = route::get(route, origin_port, &never_recorded, false).await?;
    if refused.status != 502 {
        bail!(
            "the mock answered GET {never_recorded}, never recorded, with {} instead of 502: it is not \
             answering from the capture",
            refused.status
        );
    }
    let outcome = wrk_recorded_requests(bench, route).await?;
    mock.process.ensure_running()?;
    Ok(outcome)
}

/// GET `/?item=1` ... `/?item=count` through the forward proxy on `proxy_port`, each once, on
/// [`RECORDING_CONNECTIONS`] keep-alive connections; every answer must be nginx's small body.
async fn send_each_once(proxy_port: u16, origin_port: u16, count: usize) -> anyhow::Result<()> {
    let route = Route::AbsoluteForm { proxy_port };
    let host = format!("127.0.0.1:{origin_port}");
    let mut senders = tokio::task::JoinSet::new();
    for first in 1..=RECORDING_CONNECTIONS.min(count) {
        let host = host.clone();
        senders.spawn(async move {
            let stream = route::open(route, origin_port).await?;
            let mut sender = http_client::handshake(stream).await?;
            for item in (first..=count).step_by(RECORDING_CONNECTIONS) {
                let target = route.request_target(origin_port, &item_path(item));
                let response = http_client::send_get(&mut sender, &target, &host, true)
                    .await
                    .with_context(|| format!("GET {target}"))?;
                if response.status != 200 || response.body != SMALL_BODY {
                    bail!(
                        "GET {target} through the recording sidecar answered {} with a {}-byte body",
                        response.status,
                        response.body.len()
                    );
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(sent) = senders.join_next().await {
        sent.context("a recording connection failed")??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::absolute_form(
        "http://127.0.0.1:8080",
        r#"wrk.format(nil, "http://127.0.0.1:8080/?item=" .. item)"#
    )]
    #[case::origin_form_when_direct("", r#"wrk.format(nil, "/?item=" .. item)"#)]
    fn the_script_cycles_through_every_recorded_request(
        #[case] prefix: &str,
        #[case] request: &str,
    ) {
        let lua = render_script(prefix, "127.0.0.1:8080", 10_000);
        let host = r#"wrk.headers["Host"] = "127.0.0.1:8080""#;
        let cycle = "next_item = next_item % 10000 + 1";
        // The summary line the harness parses is still there.
        let summary = "function done(summary, latency, requests)";
        for expected in [request, "for item = 1, 10000 do", cycle, host, summary] {
            assert!(lua.contains(expected), "{expected} in {lua}");
        }
    }
}
