//! Scenario 3: bulk throughput. iperf3 through a tcp relay (ours in reverse tcp, haproxy mode tcp) to
//! the origin's iperf3 server; and a large download with curl through CONNECT and SOCKS5.

use super::Bench;

use crate::clients::{curl, iperf3};
use crate::contenders::LARGE_PATH;
use crate::results::{Figure, Outcome};
use crate::route::Route;

pub async fn iperf3(bench: &Bench<'_>, port: u16) -> anyhow::Result<Outcome> {
    Ok(
        iperf3::run(&bench.ctx.tools, port, bench.settings.measure_for)
            .await?
            .map(|bits_per_sec| Figure::Bandwidth { bits_per_sec }),
    )
}

/// The origin's large file downloaded with curl over `scheme` from the origin's `port`, through `route`.
pub async fn download(
    bench: &Bench<'_>,
    route: Route,
    scheme: curl::Scheme<'_>,
    port: u16,
) -> anyhow::Result<Outcome> {
    Ok(curl::download(
        &bench.ctx.tools,
        route,
        scheme,
        port,
        LARGE_PATH,
        bench.ctx.origin.large_file_bytes,
        bench.settings.measure_for,
    )
    .await?
    .map(|bits_per_sec| Figure::Bandwidth { bits_per_sec }))
}
