//! What a run produces, as the report shows it: the scenarios, their sections and rows, and the figure
//! each round gives a row. It lives below the code that measures, so the statistics, the targets and the
//! report read results without importing the measurements.

use std::{fmt, mem};

use crate::clients::Invalid;
use crate::contenders::{Capture, ServerSpec};
use crate::route::Route;

/// A scenario, numbered as the issue numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ScenarioKind {
    KeepAlive = 1,
    NewConnection = 2,
    Bulk = 3,
    Latency = 4,
    Memory = 5,
    /// HTTPS through CONNECT with tls-out off and on (issue #10; 6 is capture on/off, which has no
    /// section of its own).
    TlsOut = 7,
    /// HTTP/2 cleartext with prior knowledge through a tcp relay (issue #17).
    H2c = 8,
    /// `sidecar-proxy replay --rate max` as a load generator, and `--mock` answering from a capture
    /// (issue #19).
    ReplayMock = 9,
}

impl ScenarioKind {
    pub const ALL: [ScenarioKind; 8] = [
        ScenarioKind::KeepAlive,
        ScenarioKind::NewConnection,
        ScenarioKind::Bulk,
        ScenarioKind::Latency,
        ScenarioKind::Memory,
        ScenarioKind::TlsOut,
        ScenarioKind::H2c,
        ScenarioKind::ReplayMock,
    ];

    /// The scenario the report numbers `number` (as `--scenario` takes it).
    pub fn from_number(number: &str) -> Result<ScenarioKind, String> {
        let known = Self::ALL.map(|kind| kind.number().to_string()).join(", ");
        let parsed: u8 = number.parse().map_err(|_| {
            format!("{number:?} is not a scenario number; the scenarios are {known}")
        })?;
        Self::ALL
            .into_iter()
            .find(|kind| kind.number() == parsed)
            .ok_or_else(|| format!("there is no scenario {parsed}; the scenarios are {known}"))
    }

    /// The number for the scenario.
    pub fn number(self) -> u8 {
        self as u8
    }

    pub fn title(self) -> &'static str {
        match self {
            ScenarioKind::KeepAlive => "Small responses over keep-alive connections",
            ScenarioKind::NewConnection => "Small responses, a new connection per request",
            ScenarioKind::Bulk => "Bulk throughput",
            ScenarioKind::Latency => "Latency at a fixed request rate",
            ScenarioKind::Memory => "Memory: idle, and with idle connections held open",
            ScenarioKind::TlsOut => "HTTPS through CONNECT, relayed and intercepted (tls-out)",
            ScenarioKind::H2c => "HTTP/2 cleartext (h2c) through a tcp relay",
            ScenarioKind::ReplayMock => "Replay and mock",
        }
    }
}

/// The path a row's traffic takes (and so what its figure is compared with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Direct,
    ReverseTcp,
    ReverseHttp,
    AbsoluteForm,
    Connect,
    Socks5,
    /// HTTPS through CONNECT, the TLS relayed as opaque bytes (tls-out off).
    ConnectTlsRelayed,
    /// HTTPS through CONNECT, the TLS terminated by the proxy and opened anew to the origin (tls-out).
    ConnectTlsIntercepted,
    /// `sidecar-proxy replay --rate max` sending a capture's inbound exchanges straight to the origin.
    Replay,
    /// Absolute-form through a forward sidecar whose `--mock` answers from a capture; nothing reaches
    /// the origin.
    Mock,
}

impl Group {
    pub fn route(self, port: u16) -> Route {
        match self {
            Group::Direct | Group::Replay => Route::Direct,
            Group::ReverseTcp | Group::ReverseHttp => Route::Reverse { port },
            Group::AbsoluteForm | Group::Mock => Route::AbsoluteForm { proxy_port: port },
            Group::Connect | Group::ConnectTlsRelayed | Group::ConnectTlsIntercepted => {
                Route::Connect { proxy_port: port }
            }
            Group::Socks5 => Route::Socks5 { proxy_port: port },
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Group::Direct => "direct",
            Group::ReverseTcp => "reverse tcp",
            Group::ReverseHttp => "reverse http",
            Group::AbsoluteForm => "forward, absolute-form",
            Group::Connect => "forward, CONNECT",
            Group::Socks5 => "forward, SOCKS5",
            Group::ConnectTlsRelayed => "forward, CONNECT, TLS relayed (tls-out off)",
            Group::ConnectTlsIntercepted => "forward, CONNECT, TLS intercepted (tls-out on)",
            Group::Replay => "replay --rate max, straight to the origin",
            Group::Mock => "forward, absolute-form, answered by --mock",
        })
    }
}

/// The load generator of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// wrk as fast as it goes.
    Wrk {
        connection_close: bool,
    },
    /// wrk with a pause before each request: a fixed rate below saturation.
    PacedWrk,
    Iperf3,
    Download,
    /// A fresh server, its RSS idle, then with idle connections held open.
    IdleConnections,
    /// The harness's TLS load generator: a new connection, full handshake and one GET per request.
    TlsHandshakes,
    /// curl downloading the large file over HTTPS.
    TlsDownload,
    /// h2load: HTTP/2 with prior knowledge, several streams per connection.
    H2load,
    /// wrk keep-alive through a sidecar capturing to NATS, then until JetStream has acknowledged every
    /// record: how many records the sink delivers per second and per CPU-second (issue #21).
    SinkDrain,
    /// A capture's exchanges sent again by `sidecar-proxy replay --rate max`, against wrk's rate with as
    /// many connections (issue #19).
    Replay,
    /// wrk keep-alive cycling through the distinct requests of a capture (issue #19's mock rows).
    WrkRecordedRequests,
}

impl Tool {
    /// Scenario 1's wrk, over keep-alive connections.
    pub const KEEP_ALIVE: Tool = Tool::Wrk {
        connection_close: false,
    };
    /// Scenario 2's wrk, a new connection per request.
    pub const NEW_CONNECTION: Tool = Tool::Wrk {
        connection_close: true,
    };
}

/// One round's figure for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Figure {
    RequestRate {
        per_sec: f64,
    },
    Bandwidth {
        bits_per_sec: f64,
    },
    Latency {
        p50_ms: f64,
        p99_ms: f64,
        p999_ms: f64,
        per_sec: f64,
    },
    /// RSS summed over the server's processes, idle and with `connections` held open; the PSS sum
    /// and the process count with them held (see [`crate::rss`]).
    Memory {
        idle_kib: u64,
        loaded_kib: u64,
        loaded_pss_kib: u64,
        processes: u32,
        connections: u32,
    },
    /// Requests per second, each on a new TLS connection; for an intercepting proxy, the leaf
    /// certificates it showed meanwhile.
    Handshakes {
        per_sec: f64,
        leaves: Option<LeafCounts>,
    },
    /// Records JetStream acknowledged from the first request of the measurement until the last record was
    /// acknowledged, per second of that time, per CPU-second of the sidecar's publisher thread, and per
    /// CPU-second of the whole sidecar (relaying and recording too); records the sink dropped meanwhile.
    SinkRate {
        per_sec: f64,
        per_publisher_cpu_sec: f64,
        per_process_cpu_sec: f64,
        dropped: u64,
    },
}

/// tls-out's leaf certificates, from the sidecar's counters: minted and served from its cache during
/// the measurement, and minted since the sidecar started (its readiness check minted the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafCounts {
    pub minted: u64,
    pub cached: u64,
    pub minted_since_start: u64,
}

impl Figure {
    /// This figure relative to the direct path's of the same round: throughput as a fraction of
    /// direct (higher is better), latency as p99 over direct p99 (lower is better). Memory has none.
    pub fn ratio_to(&self, direct: &Figure) -> Option<f64> {
        let compared = |figure: &Figure| match *figure {
            Figure::RequestRate { per_sec } | Figure::Handshakes { per_sec, .. } => Some(per_sec),
            Figure::Bandwidth { bits_per_sec } => Some(bits_per_sec),
            Figure::Latency { p99_ms, .. } => Some(p99_ms),
            Figure::Memory { .. } | Figure::SinkRate { .. } => None,
        };
        if mem::discriminant(self) != mem::discriminant(direct) {
            return None;
        }
        let ratio = compared(self)? / compared(direct)?;
        ratio.is_finite().then_some(ratio)
    }
}

/// A round's result: a figure, or why the run gave none.
pub type Outcome = Result<Figure, Invalid>;

/// A contender on a path, and its outcome in each round so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub group: Group,
    /// `None` for the direct row.
    pub server: Option<ServerSpec>,
    pub outcomes: Vec<Outcome>,
}

impl Row {
    pub fn direct() -> Row {
        Row {
            group: Group::Direct,
            server: None,
            outcomes: Vec::new(),
        }
    }

    pub fn through(group: Group, server: ServerSpec) -> Row {
        Row {
            server: Some(server),
            group,
            ..Row::direct()
        }
    }

    pub fn contender(&self) -> &'static str {
        self.server.map_or("direct", |spec| spec.contender())
    }

    pub fn capture(&self) -> Option<Capture> {
        self.server.and_then(|spec| spec.capture())
    }

    pub fn is_ours(&self) -> bool {
        self.capture().is_some()
    }

    /// `contender (capture on)` etc., as the report and the progress lines name it.
    pub fn label(&self) -> String {
        match self.capture() {
            Some(capture) => format!("{}, {capture}", self.contender()),
            None => self.contender().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    pub title: &'static str,
    pub tool: Tool,
    /// When the first row is [`Row::direct`], it is the baseline of the others.
    pub rows: Vec<Row>,
}

impl Section {
    pub fn baseline(&self) -> Option<&Row> {
        self.rows.first().filter(|row| row.server.is_none())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub kind: ScenarioKind,
    pub sections: Vec<Section>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Figure::RequestRate { per_sec: 50.0 }, Figure::RequestRate { per_sec: 100.0 }, Some(0.5))]
    #[case(Figure::Bandwidth { bits_per_sec: 3.0 }, Figure::Bandwidth { bits_per_sec: 4.0 }, Some(0.75))]
    #[case(
        Figure::Latency { p50_ms: 1.0, p99_ms: 3.0, p999_ms: 9.0, per_sec: 1.0 },
        Figure::Latency { p50_ms: 1.0, p99_ms: 1.5, p999_ms: 2.0, per_sec: 1.0 },
        Some(2.0)
    )]
    #[case(Figure::RequestRate { per_sec: 5.0 }, Figure::RequestRate { per_sec: 0.0 }, None)]
    #[case(Figure::RequestRate { per_sec: 5.0 }, Figure::Bandwidth { bits_per_sec: 1.0 }, None)]
    #[case(
        Figure::Handshakes { per_sec: 300.0, leaves: Some(LeafCounts { minted: 0, cached: 300, minted_since_start: 1 }) },
        Figure::Handshakes { per_sec: 1200.0, leaves: None },
        Some(0.25)
    )]
    #[case(Figure::Handshakes { per_sec: 5.0, leaves: None }, Figure::RequestRate { per_sec: 5.0 }, None)]
    fn ratios_compare_like_with_like(
        #[case] figure: Figure,
        #[case] direct: Figure,
        #[case] expected: Option<f64>,
    ) {
        assert_eq!(figure.ratio_to(&direct), expected);
    }

    #[test]
    fn scenarios_are_chosen_by_their_number_in_the_report() {
        for kind in ScenarioKind::ALL {
            assert_eq!(
                ScenarioKind::from_number(&kind.number().to_string()),
                Ok(kind)
            );
        }
        assert_eq!(
            ScenarioKind::from_number("6"),
            Err("there is no scenario 6; the scenarios are 1, 2, 3, 4, 5, 7, 8, 9".to_owned())
        );
        assert!(ScenarioKind::from_number("keep-alive")
            .unwrap_err()
            .starts_with("\"keep-alive\" is not a scenario number"));
    }
}
