//! Scenario 5: resident memory of a fresh server, idle (after the one request that proves it ready),
//! then with N idle client connections held open through it (each relayed to the origin after one
//! keep-alive request). A fresh instance each round, so "idle" is never memory left over from the
//! load of other scenarios. The cost per connection is (loaded − idle) / N.

use std::time::Duration;

use super::Bench;

use crate::clients::idle;
use crate::contenders::{ServerSpec, SMALL_BODY, SMALL_PATH};
use crate::results::{Figure, Group, Outcome};
use crate::rss;

/// Time for allocations to settle before RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

pub async fn measure(bench: &Bench<'_>, group: Group, spec: ServerSpec) -> anyhow::Result<Outcome> {
    let mut server = spec.start(bench.ctx).await?;
    tokio::time::sleep(SETTLE).await;
    let pid = server.process.pid();
    let idle = rss::tree_footprint(pid)?;
    let count = bench.settings.idle_connections;
    let route = group.route(server.port);
    let held = match idle::open(
        route,
        bench.ctx.origin.http_port,
        SMALL_PATH,
        SMALL_BODY,
        count as usize,
    )
    .await?
    {
        Ok(held) => held,
        Err(invalid) => return Ok(Err(invalid)),
    };
    tokio::time::sleep(SETTLE * 2).await;
    let loaded = rss::tree_footprint(pid)?;
    server.process.ensure_running()?;
    drop(held);
    Ok(Ok(Figure::Memory {
        idle_kib: idle.rss_kib,
        loaded_kib: loaded.rss_kib,
        loaded_pss_kib: loaded.pss_kib,
        processes: loaded.processes,
        connections: count,
    }))
}
