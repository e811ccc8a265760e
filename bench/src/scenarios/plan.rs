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
    let peers = [ServerSpec::Squid];
    path(Group::Connect, SidecarMode::ForwardHttp, ON_OFF, &peers)
}

fn socks5() -> Vec<Row> {
    let peers = [ServerSpec::Dante, ServerSpec::Microsocks];
    path(Group::Socks5, SidecarMode::ForwardSocks, ON_OFF, &peers)
}

/// The reverse http sidecar capturing to NATS: the NATS sink's own figure.
const NATS_SINK: ServerSpec = ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::Nats);

/// Scenarios 1 and 2 share their rows: every relay against the tools users know for it; keep-alive
/// (`with_nats`) adds the reverse rows capturing to NATS.
fn http_load_rows(with_nats: bool) -> Vec<Row> {
    let reverse = if with_nats { ON_NATS_OFF } else { ON_OFF };
    let absolute_form_peers = [
        ServerSpec::Squid,
        ServerSpec::Tinyproxy,
        ServerSpec::Mitmproxy,
    ];
    let forward = SidecarMode::ForwardHttp;
    [
        vec![Row::direct()],
        reverse_tcp(Upstream::Http, reverse),
        reverse_http(reverse),
        path(Group::AbsoluteForm, forward, ON_OFF, &absolute_form_peers),
        connect(),
        socks5(),
    ]
    .concat()
}

/// Scenario 7's rows: the client's TLS straight to the origin, relayed through our CONNECT (the same
/// forward http sidecar as the CONNECT rows above), and intercepted by a forward http sidecar with
/// tls-out.
fn tls_out_rows() -> Vec<Row> {
    vec![
        Row::direct(),
        Row::through(Group::ConnectTlsRelayed, ServerSpec::FORWARD_CAPTURING),
        Row::through(
            Group::ConnectTlsIntercepted,
            ServerSpec::Sidecar(SidecarMode::ForwardHttpTlsOut, Capture::On),
        ),
    ]
}

/// The whole plan, in the order each round measures it: each section with the scenario it belongs to.
pub fn plan() -> Vec<Scenario> {
    let sections = [
        (
            ScenarioKind::KeepAlive,
            "wrk, 50 keep-alive connections",
            Tool::KEEP_ALIVE,
            http_load_rows(true),
        ),
        (
            ScenarioKind::KeepAlive,
            "the NATS sink: wrk as above through reverse http capturing to NATS, then \
             until JetStream has acknowledged every record",
            Tool::SinkDrain,
            vec![Row::through(Group::ReverseHttp, NATS_SINK)],
        ),
        (
            ScenarioKind::NewConnection,
            "wrk, 50 connections, `Connection: close`",
            Tool::NEW_CONNECTION,
            http_load_rows(false),
        ),
        (
            ScenarioKind::Bulk,
            "iperf3 through a tcp relay",
            Tool::Iperf3,
            [vec![Row::direct()], reverse_tcp(Upstream::Iperf3, ON_OFF)].concat(),
        ),
        (
            ScenarioKind::Bulk,
            "large download (curl) through a tunnel",
            Tool::Download,
            [vec![Row::direct()], connect(), socks5()].concat(),
        ),
        (
            ScenarioKind::Latency,
            "wrk, 50 connections, each pausing before every request",
            Tool::PacedWrk,
            [
                vec![Row::direct()],
                reverse_http(ON_OFF),
                reverse_tcp(Upstream::Http, ON_OFF),
            ]
            .concat(),
        ),
        (
            ScenarioKind::Memory,
            "a fresh server per round; idle connections opened by the harness",
            Tool::IdleConnections,
            [reverse_tcp(Upstream::Http, ON_OFF), socks5()].concat(),
        ),
        (
            ScenarioKind::TlsOut,
            "50 connections, each request on a new TLS connection (CONNECT, full \
             handshake, one GET, close): the harness's TLS load generator",
            Tool::TlsHandshakes,
            tls_out_rows(),
        ),
        (
            ScenarioKind::TlsOut,
            "large download (curl) over one TLS connection",
            Tool::TlsDownload,
            tls_out_rows(),
        ),
        // Scenario 8: HTTP/2 with prior knowledge straight to the origin's h2c server, through our
        // reverse tcp relay (whose capture tap records the HTTP/2 inside the stream) with capture on and
        // off, and through the minimal relay.
        (
            ScenarioKind::H2c,
            "h2load, 10 connections × 10 concurrent streams, HTTP/2 prior knowledge",
            Tool::H2load,
            [
                vec![Row::direct()],
                path(
                    Group::ReverseTcp,
                    SidecarMode::ReverseTcp(Upstream::H2c),
                    ON_OFF,
                    &[],
                ),
                vec![minimal_relay(Upstream::H2c)],
            ]
            .concat(),
        ),
        // Scenario 9: wrk straight to nginx, then `replay --rate max` of a capture the reverse http
        // sidecar recorded; wrk cycling through a capture's distinct requests straight to nginx, through
        // the forward sidecar relaying them, and through the forward sidecar answering them from `--mock`.
        (
            ScenarioKind::ReplayMock,
            "a capture of wrk's load through reverse http, sent again by `sidecar-proxy \
             replay --rate max` with as many requests in flight as wrk has connections; \
             direct is wrk itself",
            Tool::Replay,
            vec![
                Row::direct(),
                Row::through(Group::Replay, ServerSpec::REVERSE_CAPTURING),
            ],
        ),
        (
            ScenarioKind::ReplayMock,
            "wrk keep-alive cycling through the distinct requests of a capture of 10,000 \
             outbound exchanges (1,000 in a smoke run): relayed to nginx, and answered by \
             `--mock` from that capture",
            Tool::WrkRecordedRequests,
            vec![
                Row::direct(),
                Row::through(Group::AbsoluteForm, ServerSpec::FORWARD_CAPTURING),
                Row::through(Group::Mock, ServerSpec::FORWARD_CAPTURING),
            ],
        ),
    ];
    let mut plan: Vec<Scenario> = Vec::new();
    for (kind, title, tool, rows) in sections {
        let section = Section { title, tool, rows };
        match plan.last_mut() {
            Some(scenario) if scenario.kind == kind => scenario.sections.push(section),
            _ => plan.push(Scenario {
                kind,
                sections: vec![section],
            }),
        }
    }
    plan
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
    use crate::golden::assert_golden;
    use rstest::rstest;
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
        assert_golden(&listing(), "src/scenarios/plan.golden.txt", golden);
    }

    /// Measured alone, the memory scenario needs no fleet (a fresh server per round), and scenario 9 only
    /// the forward relay of the mock's reference row: the recording sidecars and the mock are its own.
    #[rstest]
    #[case(ScenarioKind::Memory, &[])]
    #[case(ScenarioKind::ReplayMock, &[ServerSpec::FORWARD_CAPTURING])]
    fn rows_that_start_their_own_servers_leave_them_out_of_the_fleet(
        #[case] kind: ScenarioKind,
        #[case] fleet: &[ServerSpec],
    ) {
        let mut alone = plan();
        alone.retain(|scenario| scenario.kind == kind);
        assert_eq!(fleet_specs(&alone), fleet);
    }
}
