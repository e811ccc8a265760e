//! The matrix's rows: each client runtime configured exactly as docs/language-configuration.md tells
//! users, nothing more. A row turns the sidecar port of a column into the command-line arguments and
//! environment of its client container; the client programs themselves live in `conformance/clients/`.

use crate::pki::CA_PATH_IN_CONTAINER;

/// One client image per runtime (`conformance/clients/<dir>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Curl,
    Go,
    Python,
    Node,
    Java,
}

impl Runtime {
    pub const ALL: [Runtime; 5] = [
        Runtime::Curl,
        Runtime::Go,
        Runtime::Python,
        Runtime::Node,
        Runtime::Java,
    ];

    /// The client's directory under `conformance/clients/`, also its image name.
    pub fn dir(self) -> &'static str {
        match self {
            Runtime::Curl => "curl",
            Runtime::Go => "go",
            Runtime::Python => "python",
            Runtime::Node => "node",
            Runtime::Java => "java",
        }
    }
}

/// Which side of the sidecar the client is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The app's own outbound calls, through the sidecar's forward port.
    Outbound,
    /// A caller of the app, through the sidecar's inbound port.
    Inbound,
}

/// What the client's settings expect the sidecar port to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    /// An `http://` proxy: absolute-form requests and CONNECT.
    HttpProxy,
    /// SOCKS4a or SOCKS5 with host names.
    Socks,
    /// Plain HTTP sent to the port itself (a caller of a reverse proxy).
    PlainHttp,
    /// Nothing the sidecar can serve: the client ignores these settings (the reason is documented).
    Ignored(&'static str),
    /// No proxy setting at all: only transparent mode's iptables redirect brings it to the sidecar.
    Nothing,
    /// Plain HTTP to the sidecar's own admin port (a kubelet probe, Prometheus), which transparent
    /// mode never redirects and the sidecar never records.
    SidecarAdmin,
}

/// The container command and environment for one cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// Arguments of `conformance-client` before the requests.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// Stable id, used in test names and result files.
    pub id: &'static str,
    pub runtime: Runtime,
    /// The row header: the client and its setting, with the default port.
    pub title: &'static str,
    pub side: Side,
    pub speaks: Speaks,
    /// Whether the row also makes an HTTPS request through the sidecar.
    pub https: bool,
    setup: fn(u16) -> Setup,
}

impl Client {
    /// The settings for a sidecar port (the column's forward port, or its inbound port for callers), with
    /// the runtime's trust in HTTPS servers as `trust` says.
    pub fn setup(&self, port: u16, trust: Trust) -> Setup {
        let mut setup = (self.setup)(port);
        setup.env.extend(trust.env());
        setup
    }
}

/// Where the app containers of a tls-out pod read the trust files the sidecar writes (docs/injector.md).
pub const TRUST_DIR_IN_CONTAINER: &str = "/var/run/sidecar/trust";

/// What a cell's client trusts for HTTPS. None of these settings carries proxy settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The run's test CA, which signs the upstream's certificate, through every runtime's usual setting;
    /// the Java client image turns the same file into a trust store.
    TestCa,
    /// tls-out: the capture CA, through the files the sidecar writes to the shared trust directory, with
    /// exactly the settings docs/injector.md says `configure-app` gives every app container. The test CA
    /// is nowhere in the client: only the sidecar, which decrypts, can verify the upstream.
    CaptureCa,
    /// tls-out with `configure-app`: the settings are the ones the injector put on the app container,
    /// and the harness adds none of its own.
    ConfiguredByInjector,
}

impl Trust {
    pub fn for_mode(mode: &crate::modes::Mode) -> Trust {
        if mode.tls_out {
            Trust::CaptureCa
        } else {
            Trust::TestCa
        }
    }

    fn env(self) -> Vec<(String, String)> {
        match self {
            Trust::ConfiguredByInjector => Vec::new(),
            Trust::TestCa => [
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS",
            ]
            .iter()
            .map(|name| ((*name).to_owned(), CA_PATH_IN_CONTAINER.to_owned()))
            .collect(),
            // Written out from the docs' table, not taken from the injector, so a patch that drifted
            // from the docs fails the injector's own tests and a docs table that is wrong fails here.
            Trust::CaptureCa => {
                let file = |name: &str| format!("{TRUST_DIR_IN_CONTAINER}/{name}");
                vec![
                    // Go, Python's ssl/urllib, OpenSSL-based clients.
                    ("SSL_CERT_FILE".to_owned(), file("ca-bundle.crt")),
                    ("CURL_CA_BUNDLE".to_owned(), file("ca-bundle.crt")),
                    ("REQUESTS_CA_BUNDLE".to_owned(), file("ca-bundle.crt")),
                    ("NODE_EXTRA_CA_CERTS".to_owned(), file("ca.crt")),
                    (
                        "JAVA_TOOL_OPTIONS".to_owned(),
                        format!(
                            "-Djavax.net.ssl.trustStore={} -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=changeit",
                            file("truststore.p12")
                        ),
                    ),
                ]
            }
        }
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

fn env(list: &[(&str, String)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn proxy_env(names: &[&str], url: String) -> Vec<(String, String)> {
    names
        .iter()
        .map(|name| ((*name).to_owned(), url.clone()))
        .collect()
}

pub const CURL_PROXY_HTTP: Client = Client {
    id: "curl_proxy_http",
    runtime: Runtime::Curl,
    title: "curl `--proxy http://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: vec!["--proxy".into(), format!("http://127.0.0.1:{port}")],
        env: vec![],
    },
};

pub const CURL_SOCKS5_HOSTNAME: Client = Client {
    id: "curl_socks5_hostname",
    runtime: Runtime::Curl,
    title: "curl `--socks5-hostname 127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::Socks,
    https: true,
    setup: |port| Setup {
        args: vec!["--socks5-hostname".into(), format!("127.0.0.1:{port}")],
        env: vec![],
    },
};

pub const CURL_SOCKS4A: Client = Client {
    id: "curl_socks4a",
    runtime: Runtime::Curl,
    title: "curl `--socks4a 127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::Socks,
    https: true,
    setup: |port| Setup {
        args: vec!["--socks4a".into(), format!("127.0.0.1:{port}")],
        env: vec![],
    },
};

pub const CURL_PROXY_SOCKS5H: Client = Client {
    id: "curl_proxy_socks5h",
    runtime: Runtime::Curl,
    title: "curl `--proxy socks5h://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::Socks,
    https: true,
    setup: |port| Setup {
        args: vec!["--proxy".into(), format!("socks5h://127.0.0.1:{port}")],
        env: vec![],
    },
};

pub const CURL_ENV_HTTP: Client = Client {
    id: "curl_env_http",
    runtime: Runtime::Curl,
    title: "curl, `http_proxy`/`HTTPS_PROXY=http://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: vec![],
        // curl reads `http_proxy` only in lower case (an upper-case HTTP_PROXY could come from a CGI
        // request's Proxy header); HTTPS_PROXY in either.
        env: env(&[
            ("http_proxy", format!("http://127.0.0.1:{port}")),
            ("HTTPS_PROXY", format!("http://127.0.0.1:{port}")),
        ]),
    },
};

pub const GO_ENV_HTTP: Client = Client {
    id: "go_env_http",
    runtime: Runtime::Go,
    title: "Go net/http, `HTTP_PROXY`/`HTTPS_PROXY=http://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: vec![],
        env: proxy_env(
            &["HTTP_PROXY", "HTTPS_PROXY"],
            format!("http://127.0.0.1:{port}"),
        ),
    },
};

pub const GO_ENV_SOCKS5: Client = Client {
    id: "go_env_socks5",
    runtime: Runtime::Go,
    title: "Go net/http, `HTTP_PROXY`/`HTTPS_PROXY=socks5://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::Socks,
    https: true,
    setup: |port| Setup {
        args: vec![],
        env: proxy_env(
            &["HTTP_PROXY", "HTTPS_PROXY"],
            format!("socks5://127.0.0.1:{port}"),
        ),
    },
};

pub const PYTHON_URLLIB_PROXIES_DICT: Client = Client {
    id: "python_urllib_proxies_dict",
    runtime: Runtime::Python,
    title: "Python urllib.request, proxies dict `http://localhost:4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: vec![
            "--library".into(),
            "urllib".into(),
            "--proxies-dict".into(),
            format!("http://localhost:{port}"),
        ],
        env: vec![],
    },
};

pub const PYTHON_URLLIB_ENV_HTTP: Client = Client {
    id: "python_urllib_env_http",
    runtime: Runtime::Python,
    title: "Python urllib.request, `HTTP_PROXY`/`HTTPS_PROXY=http://localhost:4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: args(&["--library", "urllib"]),
        env: proxy_env(
            &["HTTP_PROXY", "HTTPS_PROXY"],
            format!("http://localhost:{port}"),
        ),
    },
};

pub const PYTHON_REQUESTS_ENV_HTTP: Client = Client {
    id: "python_requests_env_http",
    runtime: Runtime::Python,
    title: "Python requests, `http_proxy`/`https_proxy=http://localhost:4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: args(&["--library", "requests"]),
        env: proxy_env(
            &["http_proxy", "https_proxy"],
            format!("http://localhost:{port}"),
        ),
    },
};

pub const PYTHON_REQUESTS_ENV_SOCKS5H: Client = Client {
    id: "python_requests_env_socks5h",
    runtime: Runtime::Python,
    title: "Python requests + PySocks, `HTTP_PROXY`/`HTTPS_PROXY=socks5h://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::Socks,
    https: true,
    setup: |port| Setup {
        args: args(&["--library", "requests"]),
        env: proxy_env(
            &["HTTP_PROXY", "HTTPS_PROXY"],
            format!("socks5h://127.0.0.1:{port}"),
        ),
    },
};

pub const PYTHON_REQUESTS_ENV_SOCKS4A: Client = Client {
    id: "python_requests_env_socks4a",
    runtime: Runtime::Python,
    title: "Python requests + PySocks, `HTTP_PROXY`/`HTTPS_PROXY=socks4a://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::Socks,
    https: true,
    setup: |port| Setup {
        args: args(&["--library", "requests"]),
        env: proxy_env(
            &["HTTP_PROXY", "HTTPS_PROXY"],
            format!("socks4a://127.0.0.1:{port}"),
        ),
    },
};

pub const NODE_GLOBAL_AGENT: Client = Client {
    id: "node_global_agent",
    runtime: Runtime::Node,
    title: "Node http/https + `global-agent/bootstrap`, `GLOBAL_AGENT_HTTP(S)_PROXY=http://127.0.0.1:4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: vec![],
        env: env(&[
            ("GLOBAL_AGENT_HTTP_PROXY", format!("http://127.0.0.1:{port}")),
            ("GLOBAL_AGENT_HTTPS_PROXY", format!("http://127.0.0.1:{port}")),
            ("GLOBAL_AGENT_NO_PROXY", "*127.0.0.1:12557".to_owned()),
        ]),
    },
};

pub const JAVA_URLCONNECTION_SOCKS_PROPERTIES: Client = Client {
    id: "java_urlconnection_socks_properties",
    runtime: Runtime::Java,
    title: "Java HttpURLConnection, `-DsocksProxyHost=127.0.0.1 -DsocksProxyPort=4140`",
    side: Side::Outbound,
    speaks: Speaks::Socks,
    https: true,
    setup: |port| Setup {
        args: vec![
            "-DsocksProxyHost=127.0.0.1".into(),
            format!("-DsocksProxyPort={port}"),
            "--library".into(),
            "urlconnection".into(),
        ],
        env: vec![],
    },
};

pub const JAVA_URLCONNECTION_HTTP_PROPERTIES: Client = Client {
    id: "java_urlconnection_http_properties",
    runtime: Runtime::Java,
    title: "Java HttpURLConnection, `-Dhttp(s).proxyHost=127.0.0.1 -Dhttp(s).proxyPort=4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: java_http_proxy_properties(port, "urlconnection"),
        env: vec![],
    },
};

pub const JAVA_HTTPCLIENT_SOCKS_PROPERTIES: Client = Client {
    id: "java_httpclient_socks_properties",
    runtime: Runtime::Java,
    title: "Java java.net.http.HttpClient, `-DsocksProxyHost=127.0.0.1 -DsocksProxyPort=4140`",
    side: Side::Outbound,
    speaks: Speaks::Ignored(
        "java.net.http.HttpClient ignores the SOCKS properties and connects directly",
    ),
    https: true,
    setup: |port| Setup {
        args: vec![
            "-DsocksProxyHost=127.0.0.1".into(),
            format!("-DsocksProxyPort={port}"),
            "--library".into(),
            "httpclient".into(),
        ],
        env: vec![],
    },
};

pub const JAVA_HTTPCLIENT_HTTP_PROPERTIES: Client = Client {
    id: "java_httpclient_http_properties",
    runtime: Runtime::Java,
    title:
        "Java java.net.http.HttpClient, `-Dhttp(s).proxyHost=127.0.0.1 -Dhttp(s).proxyPort=4140`",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |port| Setup {
        args: java_http_proxy_properties(port, "httpclient"),
        env: vec![],
    },
};

pub const OUTBOUND: &[Client] = &[
    CURL_PROXY_HTTP,
    CURL_SOCKS5_HOSTNAME,
    CURL_SOCKS4A,
    CURL_PROXY_SOCKS5H,
    CURL_ENV_HTTP,
    GO_ENV_HTTP,
    GO_ENV_SOCKS5,
    PYTHON_URLLIB_PROXIES_DICT,
    PYTHON_URLLIB_ENV_HTTP,
    PYTHON_REQUESTS_ENV_HTTP,
    PYTHON_REQUESTS_ENV_SOCKS5H,
    PYTHON_REQUESTS_ENV_SOCKS4A,
    NODE_GLOBAL_AGENT,
    JAVA_URLCONNECTION_SOCKS_PROPERTIES,
    JAVA_URLCONNECTION_HTTP_PROPERTIES,
    JAVA_HTTPCLIENT_SOCKS_PROPERTIES,
    JAVA_HTTPCLIENT_HTTP_PROPERTIES,
];

fn java_http_proxy_properties(port: u16, library: &str) -> Vec<String> {
    vec![
        "-Dhttp.proxyHost=127.0.0.1".into(),
        format!("-Dhttp.proxyPort={port}"),
        "-Dhttps.proxyHost=127.0.0.1".into(),
        format!("-Dhttps.proxyPort={port}"),
        "--library".into(),
        library.into(),
    ]
}

pub const CURL_CALLER: Client = Client {
    id: "curl_caller",
    runtime: Runtime::Curl,
    title: "curl calling `http://127.0.0.1:4143/`",
    side: Side::Inbound,
    speaks: Speaks::PlainHttp,
    https: false,
    setup: |_| Setup::default(),
};

pub const GO_CALLER: Client = Client {
    id: "go_caller",
    runtime: Runtime::Go,
    title: "Go net/http calling `http://127.0.0.1:4143/`",
    side: Side::Inbound,
    speaks: Speaks::PlainHttp,
    https: false,
    setup: |_| Setup::default(),
};

pub const PYTHON_REQUESTS_CALLER: Client = Client {
    id: "python_requests_caller",
    runtime: Runtime::Python,
    title: "Python requests calling `http://127.0.0.1:4143/`",
    side: Side::Inbound,
    speaks: Speaks::PlainHttp,
    https: false,
    setup: |_| Setup {
        args: args(&["--library", "requests"]),
        env: vec![],
    },
};

pub const NODE_CALLER: Client = Client {
    id: "node_caller",
    runtime: Runtime::Node,
    title: "Node http calling `http://127.0.0.1:4143/`",
    side: Side::Inbound,
    speaks: Speaks::PlainHttp,
    https: false,
    setup: |_| Setup::default(),
};

pub const JAVA_CALLER: Client = Client {
    id: "java_caller",
    runtime: Runtime::Java,
    title: "Java HttpURLConnection calling `http://127.0.0.1:4143/`",
    side: Side::Inbound,
    speaks: Speaks::PlainHttp,
    https: false,
    setup: |_| Setup {
        args: args(&["--library", "urlconnection"]),
        env: vec![],
    },
};

pub const CURL_SOCKS5_CALLER: Client = Client {
    id: "curl_socks5_caller",
    runtime: Runtime::Curl,
    title: "curl `--socks5-hostname 127.0.0.1:4143` calling the app by name",
    side: Side::Inbound,
    speaks: Speaks::Socks,
    https: false,
    setup: |port| Setup {
        args: vec!["--socks5-hostname".into(), format!("127.0.0.1:{port}")],
        env: vec![],
    },
};

pub const PYTHON_REQUESTS_SOCKS5H_CALLER: Client = Client {
    id: "python_requests_socks5h_caller",
    runtime: Runtime::Python,
    title:
        "Python requests + PySocks, `HTTP_PROXY=socks5h://127.0.0.1:4143`, calling the app by name",
    side: Side::Inbound,
    speaks: Speaks::Socks,
    https: false,
    setup: |port| Setup {
        args: args(&["--library", "requests"]),
        env: proxy_env(&["HTTP_PROXY"], format!("socks5h://127.0.0.1:{port}")),
    },
};

pub const INBOUND: &[Client] = &[
    CURL_CALLER,
    GO_CALLER,
    PYTHON_REQUESTS_CALLER,
    NODE_CALLER,
    JAVA_CALLER,
    CURL_SOCKS5_CALLER,
    PYTHON_REQUESTS_SOCKS5H_CALLER,
];

/// Transparent mode's rows: the app's own requests with no proxy setting of any kind (the Node client
/// imports global-agent, which does nothing without its variables).
const fn transparent_app(
    id: &'static str,
    runtime: Runtime,
    title: &'static str,
    setup: fn(u16) -> Setup,
) -> Client {
    Client {
        id,
        runtime,
        title,
        side: Side::Outbound,
        speaks: Speaks::Nothing,
        https: true,
        setup,
    }
}

/// Transparent mode's callers: in a container of their own on the test network, calling the pod by
/// name (its address), at the app's port.
const fn transparent_caller(
    id: &'static str,
    runtime: Runtime,
    title: &'static str,
    setup: fn(u16) -> Setup,
) -> Client {
    Client {
        id,
        runtime,
        title,
        side: Side::Inbound,
        speaks: Speaks::Nothing,
        https: false,
        setup,
    }
}

fn library(name: &str) -> Setup {
    Setup {
        args: args(&["--library", name]),
        env: vec![],
    }
}

pub const TRANSPARENT_CURL: Client =
    transparent_app("transparent_curl", Runtime::Curl, "curl", |_| {
        Setup::default()
    });
pub const TRANSPARENT_GO: Client =
    transparent_app("transparent_go", Runtime::Go, "Go net/http", |_| {
        Setup::default()
    });
pub const TRANSPARENT_PYTHON_URLLIB: Client = transparent_app(
    "transparent_python_urllib",
    Runtime::Python,
    "Python urllib.request",
    |_| library("urllib"),
);
pub const TRANSPARENT_PYTHON_REQUESTS: Client = transparent_app(
    "transparent_python_requests",
    Runtime::Python,
    "Python requests",
    |_| library("requests"),
);
pub const TRANSPARENT_NODE: Client =
    transparent_app("transparent_node", Runtime::Node, "Node http/https", |_| {
        Setup::default()
    });
pub const TRANSPARENT_JAVA_URLCONNECTION: Client = transparent_app(
    "transparent_java_urlconnection",
    Runtime::Java,
    "Java HttpURLConnection",
    |_| library("urlconnection"),
);
pub const TRANSPARENT_JAVA_HTTPCLIENT: Client = transparent_app(
    "transparent_java_httpclient",
    Runtime::Java,
    "Java java.net.http.HttpClient",
    |_| library("httpclient"),
);

pub const TRANSPARENT_OUTBOUND: &[Client] = &[
    TRANSPARENT_CURL,
    TRANSPARENT_GO,
    TRANSPARENT_PYTHON_URLLIB,
    TRANSPARENT_PYTHON_REQUESTS,
    TRANSPARENT_NODE,
    TRANSPARENT_JAVA_URLCONNECTION,
    TRANSPARENT_JAVA_HTTPCLIENT,
];

pub const TRANSPARENT_CURL_CALLER: Client = transparent_caller(
    "transparent_curl_caller",
    Runtime::Curl,
    "curl calling `http://<pod>/`",
    |_| Setup::default(),
);
pub const TRANSPARENT_GO_CALLER: Client = transparent_caller(
    "transparent_go_caller",
    Runtime::Go,
    "Go net/http calling `http://<pod>/`",
    |_| Setup::default(),
);
pub const TRANSPARENT_PYTHON_URLLIB_CALLER: Client = transparent_caller(
    "transparent_python_urllib_caller",
    Runtime::Python,
    "Python urllib.request calling `http://<pod>/`",
    |_| library("urllib"),
);
pub const TRANSPARENT_PYTHON_REQUESTS_CALLER: Client = transparent_caller(
    "transparent_python_requests_caller",
    Runtime::Python,
    "Python requests calling `http://<pod>/`",
    |_| library("requests"),
);
pub const TRANSPARENT_NODE_CALLER: Client = transparent_caller(
    "transparent_node_caller",
    Runtime::Node,
    "Node http calling `http://<pod>/`",
    |_| Setup::default(),
);
pub const TRANSPARENT_JAVA_URLCONNECTION_CALLER: Client = transparent_caller(
    "transparent_java_urlconnection_caller",
    Runtime::Java,
    "Java HttpURLConnection calling `http://<pod>/`",
    |_| library("urlconnection"),
);
pub const TRANSPARENT_JAVA_HTTPCLIENT_CALLER: Client = transparent_caller(
    "transparent_java_httpclient_caller",
    Runtime::Java,
    "Java java.net.http.HttpClient calling `http://<pod>/`",
    |_| library("httpclient"),
);
/// A probe or a scraper calling the sidecar's admin port on the pod's address: never redirected, never
/// recorded.
pub const TRANSPARENT_ADMIN_CALLER: Client = Client {
    id: "transparent_curl_admin_port",
    runtime: Runtime::Curl,
    title: "curl calling the sidecar's admin port, `http://<pod>:4191/healthz` and `/readyz`",
    side: Side::Inbound,
    speaks: Speaks::SidecarAdmin,
    https: false,
    setup: |_| Setup::default(),
};

pub const TRANSPARENT_INBOUND: &[Client] = &[
    TRANSPARENT_CURL_CALLER,
    TRANSPARENT_GO_CALLER,
    TRANSPARENT_PYTHON_URLLIB_CALLER,
    TRANSPARENT_PYTHON_REQUESTS_CALLER,
    TRANSPARENT_NODE_CALLER,
    TRANSPARENT_JAVA_URLCONNECTION_CALLER,
    TRANSPARENT_JAVA_HTTPCLIENT_CALLER,
    TRANSPARENT_ADMIN_CALLER,
];

/// Apps whose proxy settings come from the injector's `configure-app: "true"` (the patched app
/// container's environment), with nothing set by hand: not matrix rows, used by the injected-pod tests.
pub const GO_CONFIGURED_BY_INJECTOR: Client = Client {
    id: "go_configured_by_injector",
    runtime: Runtime::Go,
    title: "Go net/http, settings from configure-app",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |_| Setup::default(),
};

pub const NODE_CONFIGURED_BY_INJECTOR: Client = Client {
    id: "node_configured_by_injector",
    runtime: Runtime::Node,
    title: "Node http/https + global-agent, settings from configure-app",
    side: Side::Outbound,
    speaks: Speaks::HttpProxy,
    https: true,
    setup: |_| Setup::default(),
};

pub const JAVA_CONFIGURED_BY_INJECTOR: Client = Client {
    id: "java_configured_by_injector",
    runtime: Runtime::Java,
    title: "Java HttpURLConnection, JAVA_TOOL_OPTIONS from configure-app",
    side: Side::Outbound,
    // Either: the injector writes the flags for the pod's forward protocol.
    speaks: Speaks::Socks,
    https: true,
    setup: |_| Setup {
        args: args(&["--library", "urlconnection"]),
        env: vec![],
    },
};

/// Every row, outbound first, in table order.
pub fn all() -> impl Iterator<Item = &'static Client> {
    OUTBOUND
        .iter()
        .chain(INBOUND.iter())
        .chain(TRANSPARENT_OUTBOUND.iter())
        .chain(TRANSPARENT_INBOUND.iter())
}

pub fn by_id(id: &str) -> Option<&'static Client> {
    all().find(|client| client.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let ids: Vec<_> = all().map(|client| client.id).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id}");
        }
    }

    #[test]
    fn with_tls_out_the_client_trusts_only_the_sidecars_trust_files() {
        let setup = GO_ENV_HTTP.setup(4140, Trust::CaptureCa);
        let trust: Vec<_> = setup
            .env
            .iter()
            .filter(|(name, _)| !name.ends_with("_PROXY"))
            .collect();
        assert_eq!(trust.len(), 5, "{trust:?}");
        for (name, value) in trust {
            assert!(
                value.contains("/var/run/sidecar/trust/") && !value.contains("/conformance/"),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn settings_follow_the_column_port() {
        let setup = by_id("go_env_socks5").unwrap().setup(10001, Trust::TestCa);
        assert!(setup
            .env
            .contains(&("HTTPS_PROXY".into(), "socks5://127.0.0.1:10001".into())));
        let setup = by_id("java_urlconnection_socks_properties")
            .unwrap()
            .setup(4140, Trust::TestCa);
        assert_eq!(
            setup.args[..2],
            ["-DsocksProxyHost=127.0.0.1", "-DsocksProxyPort=4140"]
        );
    }
}
