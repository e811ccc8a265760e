//! sidecar-proxy: the traffic-capture sidecar's proxy, as a library so the injector can share its
//! configuration model and tests can run it in-process.
//!
//! - [`config`]: the spec's annotations/flags/environment → one validated [`config::ProxyConfig`] (pure).
//! - [`server`]: listeners per direction built from that value; [`inbound`] and [`outbound`] hold the
//!   protocol handlers, [`socks`] and [`http`] the protocol machinery they share.
//! - [`connection`]: one accepted client connection, built at accept and shared by everything serving it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod budget;
pub mod capture;
pub mod cli;
pub mod compare;
pub mod config;
pub mod connection;
pub mod detect;
pub mod http;
pub mod inbound;
pub mod io;
pub mod iptables;
pub mod log_escape;
pub mod metrics;
pub mod mock;
pub mod net;
pub mod options;
pub mod outbound;
pub mod peer_warnings;
pub mod relay;
pub mod replay;
pub mod server;
pub mod setting_sources;
pub mod socks;
pub mod tap;
pub mod tls_out;
pub mod transparent;
