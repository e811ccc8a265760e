//! The matrix's columns: every row of the spec's protocol list and every one of its four YAML examples,
//! written as the annotations a user puts on the workload. The ports and protocols each column must
//! serve are written out here by hand from the spec, not computed by the proxy's config model, so a
//! model that misread an annotation would fail the cells instead of agreeing with itself.

/// What a sidecar port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Http,
    Socks,
    /// Transparent mode: iptables redirects the pod's connections to the port, which detects what each
    /// one carries; nothing connects to it directly.
    Redirected,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
            Protocol::Socks => "socks",
            Protocol::Redirected => "transparent",
        }
    }
}

/// One sidecar listener the column promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub protocol: Protocol,
    pub port: u16,
}

#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Stable id, used in test names and result files.
    pub id: &'static str,
    /// The column header.
    pub title: &'static str,
    /// Where in the spec this column comes from.
    pub source: &'static str,
    /// The workload's `sidecar.speedscale.com/*` annotations, besides `inject: "true"`.
    pub annotations: &'static [(&'static str, &'static str)],
    /// The inbound (reverse) listener, if the mode has one.
    pub inbound: Option<Port>,
    /// The outbound (forward) listener, if the mode has one.
    pub outbound: Option<Port>,
    /// Where the app listens (`proxy-port`, default 80).
    pub app_port: u16,
    /// `tls-out: "true"`: the sidecar decrypts the app's outbound HTTPS with the capture CA, which the
    /// clients trust through the files the sidecar writes (docs/injector.md, "tls-out").
    pub tls_out: bool,
}

impl Mode {
    /// Transparent mode: the pod's traffic reaches the sidecar through iptables, and its clients have no
    /// proxy setting at all.
    pub fn transparent(&self) -> bool {
        [self.inbound, self.outbound]
            .iter()
            .flatten()
            .any(|port| port.protocol == Protocol::Redirected)
    }

    /// The value of one of the column's annotations (`key` without the prefix).
    pub fn annotation(&self, key: &str) -> Option<&'static str> {
        self.annotations
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| *value)
    }

    /// The mock column: its cells record first, then answer the same requests from that recording
    /// (the `mock` annotation, which the recording pod leaves out).
    pub fn mocks(&self) -> bool {
        self.annotation(MOCK_ANNOTATION).is_some()
    }

    /// The ports of `ignore-outbound-ports`, which the column writes as single ports.
    pub fn ignored_outbound_ports(&self) -> Vec<u16> {
        self.annotation("ignore-outbound-ports")
            .into_iter()
            .flat_map(|list| list.split(','))
            .filter_map(|port| port.trim().parse().ok())
            .collect()
    }

    /// The annotations as the workload's YAML would carry them, for the docs table.
    pub fn annotations_yaml(&self) -> String {
        if self.annotations.is_empty() {
            return "none: transparent is the default".to_owned();
        }
        self.annotations
            .iter()
            .map(|(key, value)| format!("`{key}: {value}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The annotations that turn a recording pod into a mocking one.
pub const MOCK_ANNOTATION: &str = "mock";
pub const MOCK_ANNOTATIONS: [&str; 2] = [MOCK_ANNOTATION, "mock-configmap"];

const fn port(protocol: Protocol, port: u16) -> Option<Port> {
    Some(Port { protocol, port })
}

pub const REVERSE_TCP: Mode = Mode {
    id: "reverse_tcp",
    title: "reverse tcp",
    source: "protocol list: `tcp`",
    annotations: &[("proxy-type", "reverse"), ("proxy-protocol", "tcp")],
    inbound: port(Protocol::Tcp, 4143),
    outbound: None,
    app_port: 80,
    tls_out: false,
};

pub const REVERSE_HTTP_8888: Mode = Mode {
    id: "reverse_http_app_8888",
    title: "reverse http, app :8888",
    source: "example 3",
    annotations: &[
        ("proxy-type", "reverse"),
        ("proxy-protocol", "http"),
        ("proxy-port", "8888"),
    ],
    inbound: port(Protocol::Http, 4143),
    outbound: None,
    app_port: 8888,
    tls_out: false,
};

pub const REVERSE_SOCKS: Mode = Mode {
    id: "reverse_socks",
    title: "reverse socks",
    source: "protocol list: `socks`",
    annotations: &[("proxy-type", "reverse"), ("proxy-protocol", "socks")],
    inbound: port(Protocol::Socks, 4143),
    outbound: None,
    app_port: 80,
    tls_out: false,
};

pub const FORWARD_HTTP: Mode = Mode {
    id: "forward_http",
    title: "forward http",
    source: "protocol list: `http`",
    annotations: &[("proxy-type", "forward"), ("proxy-protocol", "http")],
    inbound: None,
    outbound: port(Protocol::Http, 4140),
    app_port: 80,
    tls_out: false,
};

pub const FORWARD_SOCKS: Mode = Mode {
    id: "forward_socks",
    title: "forward socks",
    source: "example 2",
    annotations: &[("proxy-type", "forward"), ("proxy-protocol", "socks")],
    inbound: None,
    outbound: port(Protocol::Socks, 4140),
    app_port: 80,
    tls_out: false,
};

pub const DUAL_HTTP: Mode = Mode {
    id: "dual_http",
    title: "dual http",
    source: "protocol list: `http`",
    annotations: &[("proxy-type", "dual"), ("proxy-protocol", "http")],
    inbound: port(Protocol::Http, 4143),
    outbound: port(Protocol::Http, 4140),
    app_port: 80,
    tls_out: false,
};

pub const DUAL_SOCKS: Mode = Mode {
    id: "dual_socks",
    title: "dual socks",
    source: "protocol list: `socks`",
    annotations: &[("proxy-type", "dual"), ("proxy-protocol", "socks")],
    inbound: port(Protocol::Socks, 4143),
    outbound: port(Protocol::Socks, 4140),
    app_port: 80,
    tls_out: false,
};

pub const DUAL_TCP_HTTP_8080: Mode = Mode {
    id: "dual_tcp_http_app_8080",
    title: "dual tcp:http, app :8080",
    source: "example 1",
    annotations: &[
        ("proxy-type", "dual"),
        ("proxy-protocol", "tcp:http"),
        ("proxy-port", "8080"),
    ],
    inbound: port(Protocol::Tcp, 4143),
    outbound: port(Protocol::Http, 4140),
    app_port: 8080,
    tls_out: false,
};

pub const DUAL_TCP_SOCKS: Mode = Mode {
    id: "dual_tcp_socks",
    title: "dual tcp:socks",
    source: "protocol list: `tcp:socks`",
    annotations: &[("proxy-type", "dual"), ("proxy-protocol", "tcp:socks")],
    inbound: port(Protocol::Tcp, 4143),
    outbound: port(Protocol::Socks, 4140),
    app_port: 80,
    tls_out: false,
};

pub const DUAL_TCP_HTTP_CUSTOM_PORTS: Mode = Mode {
    id: "dual_tcp_http_ports_10000_10001",
    title: "dual tcp:http, ports 10000/10001, app :8080",
    source: "example 4",
    annotations: &[
        ("proxy-type", "dual"),
        ("proxy-protocol", "tcp:http"),
        ("proxy-port", "8080"),
        ("proxy-in-port", "10000"),
        ("proxy-out-port", "10001"),
    ],
    inbound: port(Protocol::Tcp, 10000),
    outbound: port(Protocol::Http, 10001),
    app_port: 8080,
    tls_out: false,
};

/// The forward columns again, with tls-out: the app's HTTPS is decrypted and recorded, and the app trusts
/// the capture CA as the injector's `configure-app` tells it to (docs/injector.md).
pub const FORWARD_HTTP_TLS_OUT: Mode = Mode {
    id: "forward_http_tls_out",
    title: "forward http, tls-out",
    source: "protocol list: `http`; tls-out",
    annotations: &[
        ("proxy-type", "forward"),
        ("proxy-protocol", "http"),
        ("tls-out", "true"),
    ],
    inbound: None,
    outbound: port(Protocol::Http, 4140),
    app_port: 80,
    tls_out: true,
};

pub const FORWARD_SOCKS_TLS_OUT: Mode = Mode {
    id: "forward_socks_tls_out",
    title: "forward socks, tls-out",
    source: "example 2; tls-out",
    annotations: &[
        ("proxy-type", "forward"),
        ("proxy-protocol", "socks"),
        ("tls-out", "true"),
    ],
    inbound: None,
    outbound: port(Protocol::Socks, 4140),
    app_port: 80,
    tls_out: true,
};

/// Where the mock column's recording is mounted (the `mock` annotation), and the ConfigMap holding it.
pub const MOCK_PATH: &str = "/var/run/sidecar/mock/capture.jsonl";
pub const MOCK_CONFIGMAP: &str = "conformance-recording";

/// The forward http, tls-out column, recorded and then mocked: the client's requests are recorded with
/// the upstream up, the upstream is stopped, and the sidecar restarted with `mock` on that recording (in
/// a ConfigMap, as docs/replay-and-mock.md tells users) must answer the same client alike. tls-out lets
/// the mock answer the HTTPS GET too. There is no socks mock column: the mock does not serve SOCKS
/// (it relays such streams), so the SOCKS rows fail here as in `forward http`.
pub const FORWARD_HTTP_TLS_OUT_MOCK: Mode = Mode {
    id: "forward_http_tls_out_mock",
    title: "forward http, tls-out, mock",
    source: "protocol list: `http`; tls-out; recorded, then `mock` with the upstream stopped",
    annotations: &[
        ("proxy-type", "forward"),
        ("proxy-protocol", "http"),
        ("tls-out", "true"),
        ("mock", MOCK_PATH),
        ("mock-configmap", MOCK_CONFIGMAP),
    ],
    inbound: None,
    outbound: port(Protocol::Http, 4140),
    app_port: 80,
    tls_out: true,
};

/// Transparent, the default: no annotation besides `inject: "true"`. The pod is the injector's own output
/// (the iptables init container, then the sidecar), and the clients have no proxy setting at all.
pub const TRANSPARENT: Mode = Mode {
    id: "transparent",
    title: "transparent",
    source: "the default `proxy-type`",
    annotations: &[],
    inbound: port(Protocol::Redirected, 4143),
    outbound: port(Protocol::Redirected, 4140),
    app_port: 80,
    tls_out: false,
};

/// Transparent with tls-out: the app's HTTPS is decrypted; its trust in the capture CA is what
/// `configure-app` sets on the app container, and nothing else.
pub const TRANSPARENT_TLS_OUT: Mode = Mode {
    id: "transparent_tls_out",
    title: "transparent, tls-out",
    source: "the default `proxy-type`; tls-out with configure-app",
    annotations: &[("tls-out", "true"), ("configure-app", "true")],
    inbound: None,
    outbound: port(Protocol::Redirected, 4140),
    app_port: 80,
    tls_out: true,
};

/// Transparent with the HTTPS port in `ignore-outbound-ports`: the cleartext requests are redirected and
/// recorded, the HTTPS one leaves the pod directly and is not.
pub const TRANSPARENT_IGNORE_OUTBOUND: Mode = Mode {
    id: "transparent_ignore_outbound_9443",
    title: "transparent, ignore-outbound-ports 9443",
    source: "the default `proxy-type`; `ignore-outbound-ports`",
    annotations: &[("ignore-outbound-ports", "9443")],
    inbound: None,
    outbound: port(Protocol::Redirected, 4140),
    app_port: 80,
    tls_out: false,
};

/// Every column, in table order.
pub const ALL: &[Mode] = &[
    REVERSE_TCP,
    REVERSE_HTTP_8888,
    REVERSE_SOCKS,
    FORWARD_HTTP,
    FORWARD_SOCKS,
    DUAL_HTTP,
    DUAL_SOCKS,
    DUAL_TCP_HTTP_8080,
    DUAL_TCP_SOCKS,
    DUAL_TCP_HTTP_CUSTOM_PORTS,
    FORWARD_HTTP_TLS_OUT,
    FORWARD_SOCKS_TLS_OUT,
    FORWARD_HTTP_TLS_OUT_MOCK,
    TRANSPARENT,
    TRANSPARENT_TLS_OUT,
    TRANSPARENT_IGNORE_OUTBOUND,
];

pub fn by_id(id: &str) -> Option<&'static Mode> {
    ALL.iter().find(|mode| mode.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        for (i, mode) in ALL.iter().enumerate() {
            assert!(
                ALL[i + 1..].iter().all(|other| other.id != mode.id),
                "{}",
                mode.id
            );
        }
    }
}
