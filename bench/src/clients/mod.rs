//! The programs that put load on a path, and what their output says: wrk (alone, or inside proxychains4
//! for CONNECT and SOCKS5), iperf3, curl, h2load (HTTP/2 cleartext); the harness's own holder of idle connections and its own TLS
//! handshake load generator.

pub mod curl;
pub mod h2load;
pub mod idle;
pub mod iperf3;
pub mod proxychains;
pub mod tls_handshakes;
pub mod wrk;

use std::process::Output;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::Command;

/// A measurement that ran but cannot be used: nothing got through, or errors did. It is reported as
/// such and never enters a median.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// No result when anything is wrong with a run: every problem found, in one message.
    pub fn unless_none(problems: Vec<String>) -> Result<(), Invalid> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Invalid(problems.join("; ")))
        }
    }
}

/// Runs a load generator to completion, killing it if it overruns `timeout` (or if the run is
/// interrupted: the future is dropped and kill_on_drop ends it).
pub async fn output(mut command: Command, timeout: Duration) -> anyhow::Result<Output> {
    let shown = format!("{:?}", command.as_std());
    command
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let child = command.output();
    tokio::time::timeout(timeout, child)
        .await
        .with_context(|| format!("{shown} ran longer than {timeout:?}"))?
        .with_context(|| format!("cannot run {shown}"))
}
