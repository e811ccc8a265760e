//! The rows of issue #8, scenario by scenario. Each of our rows comes twice, capture on and capture
//! off (scenario 6), right after each other so the pair shares the machine's state. Scenario 7 (issue
//! #10) pairs tls-out off and on instead, both with capture on: interception needs capture. Wherever a
//! plain tcp relay fits (reverse tcp: keep-alive, new connections, iperf3, latency, memory, h2c), the
//! minimal relay is there too (issue #17): the relay limit, which cannot do CONNECT or SOCKS5. In the
//! keep-alive scenario, the reverse tcp and reverse http sidecars also capture to NATS JetStream instead of
//! a file (issue #21), right after the file row, and a section of its own gives the records per second the
//! NATS sink delivers. Scenario 9 (issue #19) measures replay against wrk and the mock against the
//! forward relay; its replay and mock rows start sidecars of their own each round
//! ([`super::replay_mock`]).

use crate::contenders::{Capture, HaproxyMode, ServerSpec, SidecarMode, Upstream};
use crate::results::{Group, Row, Scenario, ScenarioKind, Section, Tool};

/// Our rows capture on then off (scenario 6); the keep-alive ones add capture to NATS between them.
const ON_OFF: &[Capture] = &[Capture::On, Capture::Off];
const ON_NATS_OFF: &[Capture] = &[Capture::On, Capture::Nats, Capture::Off];

/// One path: our sidecar in `mode` with each of `captures`, then the peers users know for it.
fn path(group: Group, mode: SidecarMode, captures: &[Capture], peers: &[ServerSpec]) -> Vec<Row> {
    let ours = captures
        .iter()
        .map(|capture| ServerSpec::Sidecar(mode, *capture));
    ours.chain(peers.iter().copied())
        .map(|spec| Row::through(group, spec))
        .collect()
}

/// Reverse tcp to `upstream`: ours, haproxy in tcp mode, and the relay limit.
fn reverse_tcp(upstream: Upstream, captures: &[Capture]) -> Vec<Row> {
    let haproxy = ServerSpec::Haproxy(HaproxyMode::Tcp, upstream);
    let mode = SidecarMode::ReverseTcp(upstream);
    let mut rows = path(Group::ReverseTcp, mode, captures, &[haproxy]);
    rows.push(minimal_relay(upstream));
    rows
}

/// The relay limit, in front of `upstream`.
fn minimal_relay(upstream: Upstream) -> Row {
    Row::through(Group::ReverseTcp, ServerSpec::MinimalRelay(upstream))
}

fn reverse_http(captures: &[Capture]) -> Vec<Row> {
    let peers = [
        ServerSpec::NginxReverse,
        ServerSpec::Haproxy(HaproxyMode::Http, Upstream::Http),
    ];
    path(
        Group::ReverseHttp,
        SidecarMode::ReverseHttp,
        captures,
        &peers,
    )
}

fn connect() -> Vec<Row> {
    path(
        Group::Connect,
        SidecarMode::ForwardHttp,
        ON_OFF,
        &[ServerSpec::Squid],
    )
}

fn socks5() -> Vec<Row> {
    let peers = [ServerSpec::Dante, ServerSpec::Microsocks];
    path(Group::Socks5, SidecarMode::ForwardSocks, ON_OFF, &peers)
}

/// The reverse http sidecar capturing to NATS: the NATS sink's own figure.
pub const NATS_SINK: ServerSpec = ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::Nats);

/// Scenarios 1 and 2 share their rows: every relay against the tools users know for it; keep-alive
/// (`with_nats`) adds the reverse rows capturing to NATS.
fn http_load_rows(with_nats: bool) -> Vec<Row> {
    let reverse = if with_nats { ON_NATS_OFF } else { ON_OFF };
    let absolute_form_peers = [
        ServerSpec::Squid,
        ServerSpec::Tinyproxy,
        ServerSpec::Mitmproxy,
    ];
    let mut rows = vec![Row::direct()];
    rows.extend(reverse_tcp(Upstream::Http, reverse));
    rows.extend(reverse_http(reverse));
    let forward = SidecarMode::ForwardHttp;
    rows.extend(path(
        Group::AbsoluteForm,
        forward,
        ON_OFF,
        &absolute_form_peers,
    ));
    rows.extend(connect());
    rows.extend(socks5());
    rows
}

fn bulk_sections() -> Vec<Section> {
    let mut iperf = vec![Row::direct()];
    iperf.extend(reverse_tcp(Upstream::Iperf3, ON_OFF));
    let mut download = vec![Row::direct()];
    download.extend(connect());
    download.extend(socks5());
    vec![
        Section {
            title: "iperf3 through a tcp relay",
            tool: Tool::Iperf3,
            rows: iperf,
        },
        Section {
            title: "large download (curl) through a tunnel",
            tool: Tool::Download,
            rows: download,
        },
    ]
}

fn latency_rows() -> Vec<Row> {
    let mut rows = vec![Row::direct()];
    rows.extend(reverse_http(ON_OFF));
    rows.extend(reverse_tcp(Upstream::Http, ON_OFF));
    rows
}

fn memory_rows() -> Vec<Row> {
    let mut rows = reverse_tcp(Upstream::Http, ON_OFF);
    rows.extend(socks5());
    rows
}

/// Scenario 7's rows: the client's TLS straight to the origin, relayed through our CONNECT (the same
/// forward http sidecar as the CONNECT rows above), and intercepted by a forward http sidecar with
/// tls-out.
fn tls_out_rows() -> Vec<Row> {
    vec![
        Row::direct(),
        Row::through(
            Group::ConnectTlsRelayed,
            ServerSpec::Sidecar(SidecarMode::ForwardHttp, Capture::On),
        ),
        Row::through(
            Group::ConnectTlsIntercepted,
            ServerSpec::Sidecar(SidecarMode::ForwardHttpTlsOut, Capture::On),
        ),
    ]
}

/// Scenario 8's rows: HTTP/2 with prior knowledge straight to the origin's h2c server, through our
/// reverse tcp relay (whose capture tap records the HTTP/2 inside the stream) with capture on and off,
/// and through the minimal relay.
fn h2c_rows() -> Vec<Row> {
    let mut rows = vec![Row::direct()];
    let mode = SidecarMode::ReverseTcp(Upstream::H2c);
    rows.extend(path(Group::ReverseTcp, mode, ON_OFF, &[]));
    rows.push(minimal_relay(Upstream::H2c));
    rows
}

/// The forward http sidecar with capture on: the relay of the mock's reference row and, with `--mock`,
/// the mock.
const FORWARD_CAPTURING: ServerSpec = ServerSpec::Sidecar(SidecarMode::ForwardHttp, Capture::On);
/// The reverse http sidecar with capture on, which records the capture the replay row sends again.
const REVERSE_CAPTURING: ServerSpec = ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::On);

/// Scenario 9's sections: wrk straight to nginx, then `replay --rate max` of a capture the reverse http
/// sidecar recorded; wrk cycling through a capture's distinct requests straight to nginx, through the
/// forward sidecar relaying them, and through the forward sidecar answering them from `--mock`.
fn replay_mock_sections() -> Vec<Section> {
    vec![
        Section {
            title: "a capture of wrk's load through reverse http, sent again by `sidecar-proxy replay --rate max` \
                    with as many requests in flight as wrk has connections; direct is wrk itself",
            tool: Tool::Replay,
            rows: vec![
                Row::direct(),
                Row::through(Group::Replay, REVERSE_CAPTURING),
            ],
        },
        Section {
            title: "wrk keep-alive cycling through the distinct requests of a capture of 10,000 outbound \
                    exchanges (1,000 in a smoke run): relayed to nginx, and answered by `--mock` from that capture",
            tool: Tool::WrkRecordedRequests,
            rows: vec![
                Row::direct(),
                Row::through(Group::AbsoluteForm, FORWARD_CAPTURING),
                Row::through(Group::Mock, FORWARD_CAPTURING),
            ],
        },
    ]
}

/// The whole plan, in the order each round measures it.
pub fn plan() -> Vec<Scenario> {
    vec![
        Scenario {
            kind: ScenarioKind::KeepAlive,
            sections: vec![
                Section {
                    title: "wrk, 50 keep-alive connections",
                    tool: Tool::Wrk {
                        connection_close: false,
                    },
                    rows: http_load_rows(true),
                },
                Section {
                    title: "the NATS sink: wrk as above through reverse http capturing to NATS, then until JetStream has \
                            acknowledged every record",
                    tool: Tool::SinkDrain,
                    rows: vec![Row::through(Group::ReverseHttp, NATS_SINK)],
                },
            ],
        },
        Scenario {
            kind: ScenarioKind::NewConnection,
            sections: vec![Section {
                title: "wrk, 50 connections, `Connection: close`",
                tool: Tool::Wrk {
                    connection_close: true,
                },
                rows: http_load_rows(false),
            }],
        },
        Scenario {
            kind: ScenarioKind::Bulk,
            sections: bulk_sections(),
        },
        Scenario {
            kind: ScenarioKind::Latency,
            sections: vec![Section {
                title: "wrk, 50 connections, each pausing before every request",
                tool: Tool::PacedWrk,
                rows: latency_rows(),
            }],
        },
        Scenario {
            kind: ScenarioKind::Memory,
            sections: vec![Section {
                title: "a fresh server per round; idle connections opened by the harness",
                tool: Tool::IdleConnections,
                rows: memory_rows(),
            }],
        },
        Scenario {
            kind: ScenarioKind::TlsOut,
            sections: vec![
                Section {
                    title: "50 connections, each request on a new TLS connection (CONNECT, full \
                            handshake, one GET, close): the harness's TLS load generator",
                    tool: Tool::TlsHandshakes,
                    rows: tls_out_rows(),
                },
                Section {
                    title: "large download (curl) over one TLS connection",
                    tool: Tool::TlsDownload,
                    rows: tls_out_rows(),
                },
            ],
        },
        Scenario {
            kind: ScenarioKind::H2c,
            sections: vec![Section {
                title: "h2load, 10 connections × 10 concurrent streams, HTTP/2 prior knowledge",
                tool: Tool::H2load,
                rows: h2c_rows(),
            }],
        },
        Scenario {
            kind: ScenarioKind::ReplayMock,
            sections: replay_mock_sections(),
        },
    ]
}

/// The servers the long-lived fleet must run: every server of every section but the memory one and the
/// replay and mock rows (which start their own, fresh each round), each once, in plan order.
pub fn fleet_specs(plan: &[Scenario]) -> Vec<ServerSpec> {
    let mut specs: Vec<ServerSpec> = Vec::new();
    for section in plan.iter().flat_map(|scenario| &scenario.sections) {
        if section.tool == Tool::IdleConnections {
            continue;
        }
        let fleet_rows = section
            .rows
            .iter()
            .filter(|row| !matches!(row.group, Group::Replay | Group::Mock));
        for spec in fleet_rows.filter_map(|row| row.server) {
            if !specs.contains(&spec) {
                specs.push(spec);
            }
        }
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    /// The plan as text: every scenario, each section's tool and title, each row's group and server, in
    /// order; then the servers the fleet runs for it.
    fn listing() -> String {
        let plan = plan();
        let mut text = String::new();
        for scenario in &plan {
            writeln!(text, "{:?}", scenario.kind).unwrap();
            for section in &scenario.sections {
                writeln!(text, "  {:?}: {}", section.tool, section.title).unwrap();
                for row in &section.rows {
                    writeln!(text, "    {:?} {:?}", row.group, row.server).unwrap();
                }
            }
        }
        text += "fleet\n";
        for spec in fleet_specs(&plan) {
            writeln!(text, "  {spec:?}").unwrap();
        }
        text
    }

    #[test]
    fn the_plan_is_the_golden_listing() {
        let golden = include_str!("plan.golden.txt");
        let listing = listing();
        if listing != golden {
            panic!("the plan differs from plan.golden.txt; it is now:\n{listing}");
        }
    }

    #[test]
    fn every_throughput_and_latency_section_starts_with_its_direct_baseline() {
        for scenario in plan() {
            for section in &scenario.sections {
                let has_baseline = section.baseline().is_some();
                assert_eq!(
                    has_baseline,
                    !matches!(section.tool, Tool::IdleConnections | Tool::SinkDrain),
                    "{}",
                    section.title
                );
                let directs = section
                    .rows
                    .iter()
                    .filter(|row| row.server.is_none())
                    .count();
                assert_eq!(directs, usize::from(has_baseline), "{}", section.title);
            }
        }
    }

    #[test]
    fn each_of_our_rows_comes_with_capture_on_then_off() {
        let capture_pairs = plan().into_iter().filter(|scenario| {
            !matches!(
                scenario.kind,
                ScenarioKind::TlsOut | ScenarioKind::ReplayMock
            )
        });
        for section in capture_pairs.flat_map(|scenario| scenario.sections) {
            if section.tool == Tool::SinkDrain {
                continue;
            }
            let ours: Vec<&Row> = section
                .rows
                .iter()
                .filter(|row| row.is_ours() && row.capture() != Some(Capture::Nats))
                .collect();
            assert!(!ours.is_empty(), "{}", section.title);
            for pair in ours.chunks(2) {
                assert_eq!(pair[0].capture(), Some(Capture::On), "{}", section.title);
                assert_eq!(pair[1].capture(), Some(Capture::Off), "{}", section.title);
                assert_eq!(pair[0].group, pair[1].group);
            }
        }
    }

    #[test]
    fn nats_rows_follow_the_file_rows_of_reverse_tcp_and_http_in_keep_alive_only() {
        let plan = plan();
        let mut found = Vec::new();
        for scenario in &plan {
            for section in &scenario.sections {
                for (i, row) in section.rows.iter().enumerate() {
                    if row.capture() != Some(Capture::Nats) {
                        continue;
                    }
                    found.push((scenario.kind, section.tool, row.group));
                    if section.tool != Tool::SinkDrain {
                        let file = section.rows[i - 1].server;
                        let expected = row.server.map(|spec| match spec {
                            ServerSpec::Sidecar(mode, _) => ServerSpec::Sidecar(mode, Capture::On),
                            other => other,
                        });
                        assert_eq!(file, expected, "{}", section.title);
                    }
                }
            }
        }
        let keep_alive = Tool::Wrk {
            connection_close: false,
        };
        assert_eq!(
            found,
            [
                (ScenarioKind::KeepAlive, keep_alive, Group::ReverseTcp),
                (ScenarioKind::KeepAlive, keep_alive, Group::ReverseHttp),
                (ScenarioKind::KeepAlive, Tool::SinkDrain, Group::ReverseHttp),
            ]
        );
    }

    #[test]
    fn tls_out_compares_relayed_and_intercepted_tls_with_capture_on() {
        let plan = plan();
        let scenario = plan
            .iter()
            .find(|scenario| scenario.kind == ScenarioKind::TlsOut)
            .expect("scenario 7");
        let tools: Vec<Tool> = scenario.sections.iter().map(|s| s.tool).collect();
        assert_eq!(tools, [Tool::TlsHandshakes, Tool::TlsDownload]);
        for section in &scenario.sections {
            let rows: Vec<(Group, Option<ServerSpec>)> = section
                .rows
                .iter()
                .map(|row| (row.group, row.server))
                .collect();
            assert_eq!(
                rows,
                [
                    (Group::Direct, None),
                    (
                        Group::ConnectTlsRelayed,
                        Some(ServerSpec::Sidecar(SidecarMode::ForwardHttp, Capture::On))
                    ),
                    (
                        Group::ConnectTlsIntercepted,
                        Some(ServerSpec::Sidecar(
                            SidecarMode::ForwardHttpTlsOut,
                            Capture::On
                        ))
                    ),
                ]
            );
        }
    }

    #[test]
    fn the_issues_contenders_are_all_there() {
        let plan = plan();
        let names: Vec<&str> = plan
            .iter()
            .flat_map(|scenario| &scenario.sections)
            .flat_map(|section| &section.rows)
            .map(Row::contender)
            .collect();
        for expected in [
            "haproxy (mode tcp)",
            "haproxy (mode http)",
            "nginx",
            "squid",
            "tinyproxy",
            "mitmproxy",
            "dante",
            "microsocks",
            "minimal relay (the relay limit)",
        ] {
            assert!(names.contains(&expected), "{expected}");
        }
    }

    #[test]
    fn the_minimal_relay_is_in_every_plain_tcp_relay_row_and_nowhere_else() {
        let plan = plan();
        let mut sections_with_it = Vec::new();
        for scenario in &plan {
            for section in &scenario.sections {
                for row in &section.rows {
                    if let Some(ServerSpec::MinimalRelay(upstream)) = row.server {
                        assert_eq!(row.group, Group::ReverseTcp, "{}", section.title);
                        assert!(!row.is_ours());
                        sections_with_it.push((scenario.kind, section.tool, upstream));
                    }
                }
            }
        }
        assert_eq!(
            sections_with_it,
            [
                (
                    ScenarioKind::KeepAlive,
                    Tool::Wrk {
                        connection_close: false
                    },
                    Upstream::Http
                ),
                (
                    ScenarioKind::NewConnection,
                    Tool::Wrk {
                        connection_close: true
                    },
                    Upstream::Http
                ),
                (ScenarioKind::Bulk, Tool::Iperf3, Upstream::Iperf3),
                (ScenarioKind::Latency, Tool::PacedWrk, Upstream::Http),
                (ScenarioKind::Memory, Tool::IdleConnections, Upstream::Http),
                (ScenarioKind::H2c, Tool::H2load, Upstream::H2c),
            ]
        );
    }

    #[test]
    fn h2c_compares_capture_on_off_direct_and_the_relay_limit() {
        let plan = plan();
        let scenario = plan
            .iter()
            .find(|scenario| scenario.kind == ScenarioKind::H2c)
            .expect("scenario 8");
        let rows: Vec<Option<ServerSpec>> = scenario.sections[0]
            .rows
            .iter()
            .map(|row| row.server)
            .collect();
        let ours = |capture| ServerSpec::Sidecar(SidecarMode::ReverseTcp(Upstream::H2c), capture);
        assert_eq!(
            rows,
            [
                None,
                Some(ours(Capture::On)),
                Some(ours(Capture::Off)),
                Some(ServerSpec::MinimalRelay(Upstream::H2c)),
            ]
        );
    }

    #[test]
    fn replay_is_compared_with_wrk_and_the_mock_with_the_forward_relay() {
        let plan = plan();
        let scenario = plan
            .iter()
            .find(|scenario| scenario.kind == ScenarioKind::ReplayMock)
            .expect("scenario 9");
        let rows: Vec<(Tool, Group, Option<ServerSpec>)> = scenario
            .sections
            .iter()
            .flat_map(|section| {
                section
                    .rows
                    .iter()
                    .map(|row| (section.tool, row.group, row.server))
            })
            .collect();
        let forward = Some(ServerSpec::Sidecar(SidecarMode::ForwardHttp, Capture::On));
        assert_eq!(
            rows,
            [
                (Tool::Replay, Group::Direct, None),
                (
                    Tool::Replay,
                    Group::Replay,
                    Some(ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::On))
                ),
                (Tool::WrkRecordedRequests, Group::Direct, None),
                (Tool::WrkRecordedRequests, Group::AbsoluteForm, forward),
                (Tool::WrkRecordedRequests, Group::Mock, forward),
            ]
        );
    }

    #[test]
    fn the_replay_and_mock_rows_start_their_own_sidecars() {
        let only_nine: Vec<Scenario> = plan()
            .into_iter()
            .filter(|scenario| scenario.kind == ScenarioKind::ReplayMock)
            .collect();
        // The forward relay's reference row runs on the fleet; the recording sidecars and the mock do not.
        assert_eq!(
            fleet_specs(&only_nine),
            [ServerSpec::Sidecar(SidecarMode::ForwardHttp, Capture::On)]
        );
    }

    #[test]
    fn the_fleet_runs_each_server_once_and_none_only_for_memory() {
        let specs = fleet_specs(&plan());
        let unique: std::collections::HashSet<_> = specs.iter().collect();
        assert_eq!(unique.len(), specs.len());
        assert!(specs.contains(&ServerSpec::Mitmproxy));
        assert!(specs.contains(&ServerSpec::Haproxy(HaproxyMode::Tcp, Upstream::Iperf3)));
        assert!(specs.contains(&ServerSpec::Sidecar(
            SidecarMode::ForwardHttpTlsOut,
            Capture::On
        )));
    }
}
