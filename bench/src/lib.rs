//! sidecar-bench: measures sidecar-proxy next to the proxies users already know (haproxy, nginx, squid,
//! tinyproxy, dante, microsocks, mitmproxy) on one machine, in one run, and writes the comparison as
//! markdown (docs/benchmarks.md; issue #8).
//!
//! The library is also what the soak (the `sidecar-soak` crate in soak/, docs/soak.md) is built on:
//! it uses the process, port, /proc, admin-port, probe, HTTP-client, markdown, stats and workspace
//! modules, and the sidecar's [`contenders::sidecar::Flags`].
//!
//! - [`cli`] and [`run`]: the flags and the run from start to report; [`settings`]: what the flags
//!   amount to, read by the run and the scenarios;
//! - [`install`] and [`workspace`]: the tools from Debian's packages and PyPI, the proxy's release binary;
//! - [`process`], [`ports`], [`workdir`]: the servers the harness starts, their ports and their files;
//! - [`route`], [`http_client`], [`probe`]: one real request through any contender, to prove it ready;
//! - [`contenders`]: one module per kind of server configuration;
//! - [`clients`]: the load generators (wrk, proxychains4, iperf3, curl, h2load, and our own for TLS
//!   handshakes) and the idle-connection holder; [`admin_port`]: a sidecar's /readyz and /metrics, read
//!   by the benchmark (tls-out's and the NATS sink's counters) and the soak;
//! - [`markdown`]: the table head and cell escaping both reports (benchmark and soak) write with;
//! - [`tls`]: the run's certificates for the HTTPS rows (the origin's test CA, the capture CA);
//! - [`scenarios`]: what is measured, round by round; [`results`]: the rows and figures it gives;
//!   [`stats`], [`targets`], [`report`]: what is made of them.
#![forbid(unsafe_code)]

pub mod admin_port;
pub mod cli;
pub mod clients;
pub mod contenders;
#[cfg(test)]
mod golden;
pub mod http_client;
pub mod install;
pub mod markdown;
pub mod ports;
pub mod probe;
pub mod process;
pub mod report;
pub mod results;
pub mod route;
pub mod rss;
pub mod run;
pub mod scenarios;
pub mod settings;
pub mod stats;
pub mod targets;
pub mod tls;
pub mod workdir;
pub mod workspace;
