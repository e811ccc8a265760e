//! Made-up measurements for the report's, the goals' and the statistics' tests: a run in which every goal of
//! [`super::goals`] is met at its bound, and the rows and sections the goals do not read.

use std::time::Duration;

use super::Meta;
use crate::clients::Invalid;
use crate::contenders::{Capture, HaproxyMode, ServerSpec, SidecarMode, Upstream};
use crate::results::{
    Figure, Group, LeafCounts, Outcome, Row, Scenario, ScenarioKind, Section, Tool,
};

pub fn rate(per_sec: f64) -> Outcome {
    Ok(Figure::RequestRate { per_sec })
}

pub fn gbit_per_sec(gbit: f64) -> Outcome {
    Ok(Figure::Bandwidth {
        bits_per_sec: gbit * 1e9,
    })
}

pub fn latency(p99_ms: f64) -> Outcome {
    Ok(Figure::Latency {
        p50_ms: 0.5,
        p99_ms,
        p999_ms: 9.0,
        per_sec: 2_500.0,
    })
}

/// 1,024 connections, so that (loaded − idle) KiB / 1,000 is the KB per connection exactly.
pub fn memory(idle_kib: u64, growth_kib: u64) -> Outcome {
    Ok(Figure::Memory {
        idle_kib,
        loaded_kib: idle_kib + growth_kib,
        loaded_pss_kib: idle_kib + growth_kib,
        processes: 1,
        connections: 1_024,
    })
}

pub fn invalid(why: &str) -> Outcome {
    Err(Invalid(why.into()))
}

pub fn row(
    group: Group,
    spec: impl Into<Option<ServerSpec>>,
    outcomes: impl IntoIterator<Item = Outcome>,
) -> Row {
    let mut row = match spec.into() {
        Some(spec) => Row::through(group, spec),
        None => Row::direct(),
    };
    row.outcomes = outcomes.into_iter().collect();
    row
}

pub fn on(mode: SidecarMode) -> Option<ServerSpec> {
    Some(ServerSpec::Sidecar(mode, Capture::On))
}

pub fn off(mode: SidecarMode) -> Option<ServerSpec> {
    Some(ServerSpec::Sidecar(mode, Capture::Off))
}

pub fn nats(mode: SidecarMode) -> Option<ServerSpec> {
    Some(ServerSpec::Sidecar(mode, Capture::Nats))
}

fn scenario(kind: ScenarioKind, tool: Tool, rows: Vec<Row>) -> Scenario {
    Scenario {
        kind,
        sections: vec![Section {
            title: "made up",
            tool,
            rows,
        }],
    }
}

pub const TCP: SidecarMode = SidecarMode::ReverseTcp(Upstream::Http);
pub const HTTP: SidecarMode = SidecarMode::ReverseHttp;
pub const FORWARD: SidecarMode = SidecarMode::ForwardHttp;
pub const SOCKS: SidecarMode = SidecarMode::ForwardSocks;
pub const H2C: SidecarMode = SidecarMode::ReverseTcp(Upstream::H2c);
pub const RELAY: Option<ServerSpec> = Some(ServerSpec::MinimalRelay(Upstream::Http));

/// A run in which every goal is met, each by a small margin or exactly at its bound.
pub fn passing_run() -> Vec<Scenario> {
    use Group::*;
    let keep_alive = vec![
        row(Direct, None, [rate(100_000.0)]),
        row(ReverseTcp, on(TCP), [rate(57_000.0)]),
        row(ReverseTcp, nats(TCP), [rate(54_150.0)]),
        row(ReverseTcp, off(TCP), [rate(60_000.0)]),
        row(ReverseTcp, RELAY, [rate(60_000.0)]),
        row(ReverseHttp, on(HTTP), [rate(54_000.0)]),
        row(ReverseHttp, nats(HTTP), [rate(51_300.0)]),
        row(ReverseHttp, ServerSpec::NginxReverse, [rate(53_999.0)]),
        row(AbsoluteForm, on(FORWARD), [rate(55_000.0)]),
        row(AbsoluteForm, ServerSpec::Squid, [rate(15_000.0)]),
        row(Connect, on(FORWARD), [rate(58_000.0)]),
        row(Connect, off(FORWARD), [rate(58_000.0)]),
        row(Socks5, on(SOCKS), [rate(59_000.0)]),
        row(Socks5, off(SOCKS), [rate(60_000.0)]),
    ];
    let new_connection = vec![
        row(Direct, None, [rate(25_000.0)]),
        row(ReverseTcp, on(TCP), [rate(14_000.0)]),
        row(
            ReverseTcp,
            ServerSpec::Haproxy(HaproxyMode::Tcp, Upstream::Http),
            [rate(13_000.0)],
        ),
        // The relay limit is no peer: being slower than it does not fail the goal.
        row(ReverseTcp, RELAY, [rate(20_000.0)]),
        row(ReverseHttp, on(HTTP), [rate(19_000.0)]),
        row(ReverseHttp, ServerSpec::NginxReverse, [rate(18_000.0)]),
        row(AbsoluteForm, on(FORWARD), [rate(15_000.0)]),
        row(AbsoluteForm, ServerSpec::Squid, [rate(5_000.0)]),
        row(AbsoluteForm, ServerSpec::Tinyproxy, [rate(8_000.0)]),
        row(Connect, on(FORWARD), [rate(4_000.0)]),
        row(Connect, ServerSpec::Squid, [rate(4_000.0)]),
        row(Socks5, on(SOCKS), [rate(5_000.0)]),
        // A peer without a valid round is left out of "the best peer".
        row(Socks5, ServerSpec::Dante, [invalid("socket errors")]),
        row(Socks5, ServerSpec::Microsocks, [rate(4_700.0)]),
    ];
    let latency = vec![
        row(Direct, None, [latency(0.9)]),
        row(ReverseHttp, on(HTTP), [latency(1.5)]),
        row(ReverseHttp, ServerSpec::NginxReverse, [latency(1.5)]),
    ];
    let iperf3 = SidecarMode::ReverseTcp(Upstream::Iperf3);
    let bulk = Scenario {
        kind: ScenarioKind::Bulk,
        sections: vec![
            Section {
                title: "iperf3",
                tool: Tool::Iperf3,
                rows: vec![
                    row(Direct, None, [gbit_per_sec(10.0)]),
                    row(ReverseTcp, on(iperf3), [gbit_per_sec(8.5)]),
                    row(ReverseTcp, off(iperf3), [gbit_per_sec(9.0)]),
                ],
            },
            Section {
                title: "download",
                tool: Tool::Download,
                rows: vec![
                    row(Direct, None, [gbit_per_sec(10.0)]),
                    row(Connect, on(FORWARD), [gbit_per_sec(9.5)]),
                    row(Connect, off(FORWARD), [gbit_per_sec(8.6)]),
                    row(Socks5, on(SOCKS), [gbit_per_sec(9.9)]),
                    row(Socks5, off(SOCKS), [gbit_per_sec(8.8)]),
                ],
            },
        ],
    };
    let memory_rows = vec![
        row(ReverseTcp, on(TCP), [memory(9_765, 12_000)]),
        row(ReverseTcp, off(TCP), [memory(9_000, 8_000)]),
        row(Socks5, on(SOCKS), [memory(8_000, 11_000)]),
    ];
    let h2c_rows = vec![
        row(Direct, None, [rate(60_000.0)]),
        row(ReverseTcp, on(H2C), [rate(45_000.0)]),
        row(ReverseTcp, off(H2C), [rate(50_000.0)]),
        row(
            ReverseTcp,
            ServerSpec::MinimalRelay(Upstream::H2c),
            [rate(52_000.0)],
        ),
    ];
    vec![
        scenario(ScenarioKind::KeepAlive, Tool::KEEP_ALIVE, keep_alive),
        scenario(
            ScenarioKind::NewConnection,
            Tool::NEW_CONNECTION,
            new_connection,
        ),
        bulk,
        scenario(ScenarioKind::Latency, Tool::PacedWrk, latency),
        scenario(ScenarioKind::Memory, Tool::IdleConnections, memory_rows),
        scenario(ScenarioKind::H2c, Tool::H2load, h2c_rows),
        replay_mock_run(),
    ]
}

/// Scenario 9 with both goals met at their bounds: replay at 0.80 × wrk, the mock at 0.80 × the
/// forward relay.
fn replay_mock_run() -> Scenario {
    use Group::*;
    Scenario {
        kind: ScenarioKind::ReplayMock,
        sections: vec![
            Section {
                title: "replay",
                tool: Tool::Replay,
                rows: vec![
                    row(Direct, None, [rate(50_000.0)]),
                    row(Replay, on(HTTP), [rate(40_000.0)]),
                ],
            },
            Section {
                title: "mock",
                tool: Tool::WrkRecordedRequests,
                rows: vec![
                    row(Direct, None, [rate(60_000.0)]),
                    row(AbsoluteForm, on(FORWARD), [rate(20_000.0)]),
                    row(Mock, on(FORWARD), [rate(16_000.0)]),
                ],
            },
        ],
    }
}

/// [`passing_run`] with what its goals do not read: rows of several rounds, invalid rounds, a server
/// that closes keep-alive connections, the NATS sink's section and scenario 7 (tls-out).
pub fn full_run() -> Vec<Scenario> {
    use Group::*;
    let mut run = passing_run();
    run[0].sections[0].rows.extend([
        row(
            ReverseTcp,
            ServerSpec::Haproxy(HaproxyMode::Tcp, Upstream::Http),
            [
                rate(45_000.0),
                invalid("socket errors: connect 3, read 0, write 0, timeout 0"),
            ],
        ),
        row(
            AbsoluteForm,
            ServerSpec::Tinyproxy,
            [rate(1_000.0), rate(1_200.0)],
        ),
        row(
            Connect,
            ServerSpec::Squid,
            [
                invalid("no request completed"),
                invalid("no request completed"),
            ],
        ),
    ]);
    let sink = |per_sec, dropped| {
        Ok(Figure::SinkRate {
            per_sec,
            per_publisher_cpu_sec: 80_000.0,
            per_process_cpu_sec: 12_000.0,
            dropped,
        })
    };
    run[0].sections.push(Section {
        title: "the NATS sink",
        tool: Tool::SinkDrain,
        rows: vec![
            row(
                ReverseHttp,
                nats(HTTP),
                [sink(20_000.0, 0), sink(24_000.0, 3)],
            ),
            row(
                ReverseTcp,
                nats(TCP),
                [invalid("JetStream acknowledged 9 of 10 records")],
            ),
        ],
    });
    // Scenario 5 (memory) is the fifth of the passing run; tls-out comes before h2c, the sixth.
    run[4].sections[0].rows.push(row(
        Socks5,
        ServerSpec::Dante,
        [memory(3_000, 200_000), invalid("dante exited")],
    ));
    run.insert(5, tls_out());
    run
}

fn tls_out() -> Scenario {
    use Group::*;
    let intercepting = on(SidecarMode::ForwardHttpTlsOut);
    let handshakes = |per_sec, leaves: Option<(u64, u64)>| {
        Ok(Figure::Handshakes {
            per_sec,
            leaves: leaves.map(|(minted, cached)| LeafCounts {
                minted,
                cached,
                minted_since_start: minted + 1,
            }),
        })
    };
    let mb_per_sec = |mb: f64| {
        Ok(Figure::Bandwidth {
            bits_per_sec: mb * 8e6,
        })
    };
    Scenario {
        kind: ScenarioKind::TlsOut,
        sections: vec![
            Section {
                title: "handshakes",
                tool: Tool::TlsHandshakes,
                rows: vec![
                    row(
                        Direct,
                        None,
                        [handshakes(2_000.0, None), handshakes(4_000.0, None)],
                    ),
                    row(
                        ConnectTlsRelayed,
                        on(FORWARD),
                        [handshakes(1_000.0, None), handshakes(2_000.0, None)],
                    ),
                    row(
                        ConnectTlsIntercepted,
                        intercepting,
                        [
                            handshakes(500.0, Some((1, 499))),
                            handshakes(1_000.0, Some((0, 1_000))),
                        ],
                    ),
                    row(
                        ConnectTlsIntercepted,
                        ServerSpec::Mitmproxy,
                        [handshakes(300.0, Some((0, 0))), invalid("handshake failed")],
                    ),
                ],
            },
            Section {
                title: "download",
                tool: Tool::TlsDownload,
                rows: vec![
                    row(Direct, None, [mb_per_sec(1_000.0), mb_per_sec(1_200.0)]),
                    row(
                        ConnectTlsIntercepted,
                        intercepting,
                        [mb_per_sec(400.0), mb_per_sec(720.0)],
                    ),
                ],
            },
        ],
    }
}

/// A smoke run with a note on the idle connections.
pub fn smoke_meta() -> Meta {
    Meta {
        date: "2026-05-01T10:00:00Z".into(),
        cores: 2,
        load_before: "0.10".into(),
        load_after: "1.90".into(),
        cpu: "AMD EPYC".into(),
        kernel: "6.1.0".into(),
        command: "sidecar-bench run --smoke --note a|b".into(),
        smoke: true,
        rounds: 2,
        seconds: 5,
        wall_time: Duration::from_secs(125),
        wrk_threads: 2,
        wrk_connections: 50,
        pace_ms: 20,
        idle_connections: 1_024,
        idle_note: Some("the harness held 1,000 of 1,024 (ulimit)".into()),
        large_file_mib: 1024,
        versions: vec![
            ("sidecar-proxy".into(), "0.1.0 (abc1234)".into()),
            ("haproxy".into(), "2.6.12 | lts".into()),
        ],
    }
}
