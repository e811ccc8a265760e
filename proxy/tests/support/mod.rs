//! Test support: the sidecar running in-process on loopback, and the real servers it proxies to, so each
//! test reads as the behaviour it checks. Every address is 127.0.0.1 / ::1 with an OS-chosen port.
#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod app;
pub mod calling_app;
pub mod capture;
pub mod closed_port;
pub mod data;
pub mod env;
pub mod nats;
pub mod nats_creds;
pub mod netns;
pub mod panics;
pub mod proxy;
pub mod py_service;
pub mod raw;
pub mod spliced;
pub mod tiny_disk;
pub mod tls;

pub use app::{start_app, start_tcp_echo, App};
pub use data::{pattern_body, sha256_hex};
pub use proxy::{start_proxy, RunningProxy};
