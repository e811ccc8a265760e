//! The servers of a run: the origin and every contender, one module per kind of server configuration
//! ([`command_line`] for those configured by their command line alone).
//! A [`ServerSpec`] says what to start; [`ServerSpec::start`] writes its config, starts it, and proves it
//! ready (its port answers and a real request through each route it serves returns the origin's exact
//! body, over TLS too where a TLS row goes through it) before anything is measured through it.

pub mod command_line;
pub mod dante;
pub mod fleet;
pub mod haproxy;
pub mod nats;
pub mod nginx;
pub mod origin;
pub mod sidecar;
pub mod squid;
pub mod tinyproxy;

use std::fmt;
use std::path::PathBuf;
use std::process::Command;

use crate::install::Tools;
use crate::ports::PortAllocator;
use crate::probe;
use crate::process::ServerProcess;
use crate::route::Route;
use crate::tls::{TlsMaterial, Trust};
use crate::workdir::Workdir;

pub use origin::{OriginEndpoints, LARGE_PATH, SMALL_BODY, SMALL_PATH};

/// What every server start needs.
#[derive(Debug)]
pub struct Context {
    pub workdir: Workdir,
    pub ports: PortAllocator,
    pub tools: Tools,
    pub origin: OriginEndpoints,
    /// The open-file limit every server inherits; their own connection limits are sized by it.
    pub fd_limit: u64,
    /// The run's certificates: the origin's HTTPS, the capture CA of tls-out.
    pub tls: TlsMaterial,
}

/// A contender's command line, and the file its output goes to.
pub type Launch = (Command, PathBuf);

/// A started, verified server.
#[derive(Debug)]
pub struct Server {
    pub spec: ServerSpec,
    pub port: u16,
    /// sidecar-proxy's admin port (/metrics), on 127.0.0.1.
    pub admin_port: Option<u16>,
    pub process: ServerProcess,
}

/// Whether sidecar-proxy records every exchange (to a file in the work directory, or to the run's NATS
/// JetStream server instead: issue #21) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capture {
    On,
    Off,
    /// Records published to JetStream through the sidecar's spool, no capture file.
    Nats,
}

impl fmt::Display for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capture::On => "capture on",
            Capture::Off => "capture off",
            Capture::Nats => "capture to NATS",
        })
    }
}

/// Which of the origin's services a reverse proxy relays to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// nginx: the small response and the download file.
    Http,
    /// The iperf3 server, for the bulk tcp relay.
    Iperf3,
    /// nginx's HTTP/2 cleartext server (prior knowledge, no upgrade), for the h2c rows.
    H2c,
}

impl Upstream {
    pub fn port(self, origin: &OriginEndpoints) -> u16 {
        match self {
            Upstream::Http => origin.http_port,
            Upstream::Iperf3 => origin.iperf_port,
            Upstream::H2c => origin.h2c_port,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SidecarMode {
    ReverseTcp(Upstream),
    ReverseHttp,
    /// Absolute-form and CONNECT on one listener.
    ForwardHttp,
    /// The same with tls-out: TLS inside CONNECT is terminated with leaves of the capture CA, and the
    /// origin is verified against the run's test CA (scenario 7; capture must be on, or tls-out is off).
    ForwardHttpTlsOut,
    ForwardSocks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaproxyMode {
    Tcp,
    Http,
}

/// One server to start, with everything that distinguishes it from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerSpec {
    Sidecar(SidecarMode, Capture),
    Haproxy(HaproxyMode, Upstream),
    NginxReverse,
    Squid,
    Tinyproxy,
    Mitmproxy,
    Dante,
    Microsocks,
    /// The relay limit: bench/src/bin/minimal-relay.rs, accept, connect, copy_bidirectional.
    MinimalRelay(Upstream),
}

impl ServerSpec {
    /// The forward http sidecar with capture on: the relay of the TLS and mock rows and, with
    /// `--mock`, the mock.
    pub const FORWARD_CAPTURING: ServerSpec =
        ServerSpec::Sidecar(SidecarMode::ForwardHttp, Capture::On);
    /// The reverse http sidecar with capture on, which records the capture the replay row sends again.
    pub const REVERSE_CAPTURING: ServerSpec =
        ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::On);

    /// The contender's name in the report.
    pub fn contender(&self) -> &'static str {
        match self {
            ServerSpec::Sidecar(..) => "sidecar-proxy",
            ServerSpec::Haproxy(HaproxyMode::Tcp, _) => "haproxy (mode tcp)",
            ServerSpec::Haproxy(HaproxyMode::Http, _) => "haproxy (mode http)",
            ServerSpec::NginxReverse => "nginx",
            ServerSpec::Squid => "squid",
            ServerSpec::Tinyproxy => "tinyproxy",
            ServerSpec::Mitmproxy => "mitmproxy",
            ServerSpec::Dante => "dante",
            ServerSpec::Microsocks => "microsocks",
            ServerSpec::MinimalRelay(_) => "minimal relay (the relay limit)",
        }
    }

    pub fn capture(&self) -> Option<Capture> {
        match self {
            ServerSpec::Sidecar(_, capture) => Some(*capture),
            _ => None,
        }
    }

    /// A short name for files and logs, e.g. `sidecar-reverse-tcp-iperf3-on`.
    pub fn slug(&self) -> String {
        let kind = match self {
            ServerSpec::Sidecar(SidecarMode::ReverseTcp(_), _) => "sidecar-reverse-tcp",
            ServerSpec::Sidecar(SidecarMode::ReverseHttp, _) => "sidecar-reverse-http",
            ServerSpec::Sidecar(SidecarMode::ForwardHttp, _) => "sidecar-forward-http",
            ServerSpec::Sidecar(SidecarMode::ForwardHttpTlsOut, _) => {
                "sidecar-forward-http-tls-out"
            }
            ServerSpec::Sidecar(SidecarMode::ForwardSocks, _) => "sidecar-forward-socks",
            ServerSpec::Haproxy(HaproxyMode::Tcp, _) => "haproxy-tcp",
            ServerSpec::Haproxy(HaproxyMode::Http, _) => "haproxy-http",
            ServerSpec::NginxReverse => "nginx-reverse",
            ServerSpec::Squid => "squid",
            ServerSpec::Tinyproxy => "tinyproxy",
            ServerSpec::Mitmproxy => "mitmproxy",
            ServerSpec::Dante => "dante",
            ServerSpec::Microsocks => "microsocks",
            ServerSpec::MinimalRelay(_) => "minimal-relay",
        };
        let upstream = match self.upstream() {
            Upstream::Http => "",
            Upstream::Iperf3 => "-iperf3",
            Upstream::H2c => "-h2c",
        };
        let capture = match self.capture() {
            Some(Capture::On) => "-on",
            Some(Capture::Off) => "-off",
            Some(Capture::Nats) => "-nats",
            None => "",
        };
        format!("{kind}{upstream}{capture}")
    }

    /// A human name for errors, e.g. `sidecar-proxy (sidecar-reverse-tcp-on)`.
    pub fn describe(&self) -> String {
        match self {
            ServerSpec::Sidecar(..) => format!("sidecar-proxy ({})", self.slug()),
            other => other.contender().to_owned(),
        }
    }

    /// tinyproxy closes every client connection after one response without saying so (no
    /// `Connection: close`, even when the request asked for it), so wrk counts each close as a read
    /// error. For such a server one read error per completed response is expected, not a failure.
    pub fn closes_client_connections(&self) -> bool {
        matches!(self, ServerSpec::Tinyproxy)
    }

    /// Which origin service it relays to; forward proxies reach whatever the client names.
    fn upstream(&self) -> Upstream {
        match self {
            ServerSpec::Sidecar(SidecarMode::ReverseTcp(upstream), _)
            | ServerSpec::Haproxy(_, upstream)
            | ServerSpec::MinimalRelay(upstream) => *upstream,
            _ => Upstream::Http,
        }
    }

    /// Every route a client takes through this server; readiness checks each.
    pub fn routes(&self, port: u16) -> Vec<Route> {
        let reverse = vec![Route::Reverse { port }];
        match self {
            ServerSpec::Sidecar(SidecarMode::ReverseTcp(_) | SidecarMode::ReverseHttp, _)
            | ServerSpec::Haproxy(..)
            | ServerSpec::NginxReverse
            | ServerSpec::MinimalRelay(_) => reverse,
            ServerSpec::Sidecar(SidecarMode::ForwardHttp | SidecarMode::ForwardHttpTlsOut, _)
            | ServerSpec::Squid => vec![
                Route::AbsoluteForm { proxy_port: port },
                Route::Connect { proxy_port: port },
            ],
            ServerSpec::Tinyproxy | ServerSpec::Mitmproxy => {
                vec![Route::AbsoluteForm { proxy_port: port }]
            }
            ServerSpec::Sidecar(SidecarMode::ForwardSocks, _)
            | ServerSpec::Dante
            | ServerSpec::Microsocks => vec![Route::Socks5 { proxy_port: port }],
        }
    }

    /// For the forward http sidecars, which carry the HTTPS rows: the CA a client must trust to get
    /// through, which is the origin's when TLS is relayed as bytes and the capture CA when tls-out
    /// intercepts it.
    pub fn https_trust(&self) -> Option<Trust> {
        match self {
            ServerSpec::Sidecar(SidecarMode::ForwardHttp, _) => Some(Trust::Origin),
            ServerSpec::Sidecar(SidecarMode::ForwardHttpTlsOut, _) => Some(Trust::Capture),
            _ => None,
        }
    }

    /// Starts the server on a free port and proves every route through it.
    pub async fn start(&self, ctx: &Context) -> anyhow::Result<Server> {
        let port = ctx.ports.next()?;
        let name = self.describe();
        // Files are named by slug and port: fresh instances of the memory scenario get new ports, so
        // nothing of an earlier instance is overwritten.
        let stem = format!("{}-{port}", self.slug());
        let upstream_port = self.upstream().port(&ctx.origin);
        let mut admin_port = None;
        let launch = match self {
            ServerSpec::Sidecar(mode, capture) => {
                let admin = ctx.ports.next()?;
                admin_port = Some(admin);
                sidecar::launch(ctx, &stem, *mode, *capture, port, admin, |_| {})
            }
            ServerSpec::Haproxy(mode, _) => haproxy::launch(ctx, &stem, *mode, upstream_port, port),
            ServerSpec::NginxReverse => nginx::launch_reverse(ctx, &stem, port),
            ServerSpec::Squid => squid::launch(ctx, &stem, port),
            ServerSpec::Tinyproxy => tinyproxy::launch(ctx, &stem, port),
            ServerSpec::Mitmproxy => command_line::mitmdump(ctx, &stem, port),
            ServerSpec::Dante => dante::launch(ctx, &stem, port),
            ServerSpec::Microsocks => command_line::microsocks(ctx, &stem, port),
            ServerSpec::MinimalRelay(_) => {
                command_line::minimal_relay(ctx, &stem, upstream_port, port)
            }
        };
        let (command, log) = launch?;
        let mut process = ServerProcess::spawn(&name, command, &log)?;
        probe::until_listening(&mut process, port, probe::LISTEN_TIMEOUT).await?;
        for route in self.routes(port) {
            match self.upstream() {
                Upstream::Http => {
                    probe::expect_body(
                        &mut process,
                        route,
                        ctx.origin.http_port,
                        SMALL_PATH,
                        SMALL_BODY,
                    )
                    .await?
                }
                Upstream::Iperf3 => crate::clients::iperf3::verify(&ctx.tools, port)
                    .await
                    .map_err(|error| {
                        process.failed(format!("relayed no iperf3 test: {error:#}"))
                    })?,
                Upstream::H2c => {
                    probe::expect_h2c_body(&mut process, &ctx.tools, port, SMALL_PATH, SMALL_BODY)
                        .await?
                }
            }
        }
        if let Some(trust) = self.https_trust() {
            let target = origin::https_target(ctx, Route::Connect { proxy_port: port }, trust);
            probe::expect_https_body(&mut process, &target).await?;
        }
        Ok(Server {
            spec: *self,
            port,
            admin_port,
            process,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::collections::HashSet;
    use std::path::Path;

    const ALL: [ServerSpec; 22] = [
        ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::Nats),
        ServerSpec::Sidecar(SidecarMode::ReverseTcp(Upstream::H2c), Capture::On),
        ServerSpec::MinimalRelay(Upstream::Http),
        ServerSpec::MinimalRelay(Upstream::Iperf3),
        ServerSpec::MinimalRelay(Upstream::H2c),
        ServerSpec::Sidecar(SidecarMode::ReverseTcp(Upstream::Http), Capture::On),
        ServerSpec::Sidecar(SidecarMode::ReverseTcp(Upstream::Iperf3), Capture::Off),
        ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::On),
        ServerSpec::Sidecar(SidecarMode::ReverseHttp, Capture::Off),
        ServerSpec::Sidecar(SidecarMode::ForwardHttp, Capture::On),
        ServerSpec::Sidecar(SidecarMode::ForwardHttpTlsOut, Capture::On),
        ServerSpec::Sidecar(SidecarMode::ForwardSocks, Capture::On),
        ServerSpec::Haproxy(HaproxyMode::Tcp, Upstream::Http),
        ServerSpec::Haproxy(HaproxyMode::Tcp, Upstream::Iperf3),
        ServerSpec::Haproxy(HaproxyMode::Http, Upstream::Http),
        ServerSpec::NginxReverse,
        ServerSpec::Squid,
        ServerSpec::Tinyproxy,
        ServerSpec::Mitmproxy,
        ServerSpec::Dante,
        ServerSpec::Microsocks,
        ServerSpec::Sidecar(SidecarMode::ForwardSocks, Capture::Off),
    ];

    #[test]
    fn slugs_tell_every_server_apart() {
        let slugs: HashSet<String> = ALL.iter().map(ServerSpec::slug).collect();
        assert_eq!(slugs.len(), ALL.len());
    }

    #[test]
    fn every_server_serves_at_least_one_route_on_its_port() {
        for spec in ALL {
            let routes = spec.routes(4000);
            assert!(!routes.is_empty(), "{spec:?}");
            assert!(
                routes.iter().all(|route| route.first_hop(1) == 4000),
                "{spec:?}"
            );
        }
    }

    /// What the generated configs must say (and, for dante as another user than root, must not).
    #[rstest]
    #[case::haproxy_tcp(
        haproxy::config(HaproxyMode::Tcp, 9000, 8080, 9_950),
        &["mode tcp", "bind 127.0.0.1:9000", "server origin 127.0.0.1:8080", "maxconn 9950\n"],
        &[]
    )]
    #[case::haproxy_http(haproxy::config(HaproxyMode::Http, 9000, 8080, 9_950), &["mode http"], &[])]
    #[case::nginx_reverse(
        nginx::reverse_config(Path::new("/w"), 9000, 8080, 20_000),
        &["server 127.0.0.1:8080;", "listen 127.0.0.1:9000", "proxy_http_version 1.1;", "keepalive 64;"],
        &[]
    )]
    #[case::squid_listens_on_loopback_and_caches_nothing(
        squid::config(Path::new("/w"), 3128, 20_000),
        &["http_port 127.0.0.1:3128\n", "cache deny all\n", "pid_filename /w/squid.pid\n"],
        &[]
    )]
    #[case::tinyproxy_listens_on_loopback_only(
        tinyproxy::config(Path::new("/w"), 8888),
        &["Port 8888\nListen 127.0.0.1\n", "Allow 127.0.0.1\n"],
        &[]
    )]
    #[case::dante_as_root(
        dante::config(Path::new("/w/d.log"), 1080, true),
        &["internal: 127.0.0.1 port = 1080\n", "user.unprivileged: nobody\n"],
        &[]
    )]
    #[case::dante_as_another_user(dante::config(Path::new("/w/d.log"), 1080, false), &[], &["user."])]
    fn generated_configs(#[case] config: String, #[case] has: &[&str], #[case] lacks: &[&str]) {
        for line in has {
            assert!(config.contains(line), "{line:?} missing from\n{config}");
        }
        for line in lacks {
            assert!(!config.contains(line), "{line:?} in\n{config}");
        }
        assert_eq!(config.matches('{').count(), config.matches('}').count());
    }
}
