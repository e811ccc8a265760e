//! What is measured: the scenarios, each a list of sections, each a list of rows (a contender
//! on a path), measured once per round. A section that has a baseline starts with the direct row, and
//! every other row's figure is also given as a ratio to the direct figure of the same round.
//!
//! - [`plan`]: which rows exist (scenario 6, capture on and off, is a pair of rows for each of ours);
//! - [`http_load`]: scenarios 1 and 2 (wrk) and 4 (paced wrk), [`memory`]: 5 (RSS idle and with idle
//!   connections held open), [`tls_out`]: 7 (HTTPS through CONNECT, relayed and intercepted:
//!   handshakes, bulk, leaf-cache hits; issue #10), [`nats_sink`]: the keep-alive rows capturing to NATS
//!   and the records per second the sink delivers (issue #21), [`replay_mock`]: 9 (`replay --rate max`
//!   against wrk, `--mock` against the forward relay; issue #19);
//! - [`measure`] itself, the rows whose tool's reading is the figure: scenario 3's bulk throughput
//!   (iperf3 through a tcp relay to the origin's iperf3 server, a large download with curl through
//!   CONNECT and SOCKS5) and scenario 8's h2load rate (HTTP/2 cleartext with prior knowledge, straight
//!   to the origin's h2c server or through a tcp relay, whose capture tap, when on, finds the HTTP/2
//!   inside the stream and records every exchange; issue #17).

pub mod http_load;
pub mod memory;
pub mod nats_sink;
pub mod plan;
pub mod replay_mock;
pub mod tls_out;

use crate::clients::h2load::{self, H2Load};
use crate::clients::{curl, iperf3, wrk};
use crate::contenders::fleet::Fleet;
use crate::contenders::{Capture, Context, ServerSpec, LARGE_PATH, SMALL_PATH};
use crate::results::{Figure, Group, Outcome, ScenarioKind, Tool};
use crate::route::Route;
use crate::settings::Settings;

/// Everything a measurement needs.
pub struct Bench<'a> {
    pub ctx: &'a Context,
    pub fleet: &'a Fleet,
    pub settings: &'a Settings,
    pub load: wrk::Load,
}

impl Bench<'_> {
    /// The route of a row through the fleet's running server.
    pub fn route(&self, row_group: Group, server: Option<ServerSpec>) -> anyhow::Result<Route> {
        match server {
            None => Ok(Route::Direct),
            Some(spec) => Ok(row_group.route(self.fleet.port(&spec)?)),
        }
    }

    /// The port of a row's running server; the direct row's is the origin's `direct`.
    fn port(&self, server: Option<ServerSpec>, direct: u16) -> anyhow::Result<u16> {
        server.map_or(Ok(direct), |spec| self.fleet.port(&spec))
    }
}

/// Measures one row once.
pub async fn measure(
    bench: &Bench<'_>,
    kind: ScenarioKind,
    tool: Tool,
    group: Group,
    server: Option<ServerSpec>,
) -> anyhow::Result<Outcome> {
    let needs_server = |row: &str| {
        server.ok_or_else(|| anyhow::anyhow!("scenario {}: {row} needs a server", kind.number()))
    };
    let origin = &bench.ctx.origin;
    match tool {
        Tool::Wrk { connection_close } => {
            let read_errors = if server.is_some_and(|spec| spec.closes_client_connections()) {
                wrk::ReadErrors::OnePerResponse {
                    connections: bench.load.connections,
                }
            } else {
                wrk::ReadErrors::NoneAllowed
            };
            let route = bench.route(group, server)?;
            match server {
                Some(spec) if spec.capture() == Some(Capture::Nats) => {
                    nats_sink::wrk_row(bench, route, spec, connection_close).await
                }
                _ => http_load::measure(bench, route, connection_close, read_errors).await,
            }
        }
        Tool::PacedWrk => http_load::latency(bench, bench.route(group, server)?).await,
        Tool::Iperf3 => {
            let port = bench.port(server, origin.iperf_port)?;
            let run = iperf3::run(&bench.ctx.tools, port, bench.settings.measure_for).await?;
            Ok(run.map(|bits_per_sec| Figure::Bandwidth { bits_per_sec }))
        }
        Tool::Download => {
            let route = bench.route(group, server)?;
            download(bench, route, curl::Scheme::Http, origin.http_port).await
        }
        Tool::IdleConnections => memory::measure(bench, group, needs_server("a memory row")?).await,
        Tool::TlsHandshakes => tls_out::handshakes(bench, group, server).await,
        Tool::TlsDownload => tls_out::download(bench, group, server).await,
        Tool::SinkDrain => {
            let spec = needs_server("the NATS sink row")?;
            nats_sink::drain(bench, bench.route(group, server)?, spec).await
        }
        Tool::H2load => {
            // As many threads as wrk has, never more than connections.
            let load = H2Load {
                clients: h2load::CLIENTS,
                streams: h2load::STREAMS,
                threads: bench.load.threads.clamp(1, h2load::CLIENTS),
                duration: bench.load.duration,
            };
            let port = bench.port(server, origin.h2c_port)?;
            let run = h2load::run(&bench.ctx.tools, port, SMALL_PATH, load).await?;
            Ok(run.map(|summary| Figure::RequestRate {
                per_sec: summary.per_sec,
            }))
        }
        Tool::Replay => match group {
            Group::Replay => replay_mock::replay::measure(bench).await,
            _ => {
                let direct = wrk::ReadErrors::NoneAllowed;
                http_load::measure(bench, Route::Direct, false, direct).await
            }
        },
        Tool::WrkRecordedRequests => match group {
            Group::Mock => replay_mock::mock::measure(bench).await,
            _ => {
                let route = bench.route(group, server)?;
                replay_mock::mock::wrk_recorded_requests(bench, route).await
            }
        },
    }
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
