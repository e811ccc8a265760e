//! The relay limit: bench/src/bin/minimal-relay.rs, a tokio program that accepts, connects to its
//! target and runs `tokio::io::copy_bidirectional`, nothing else. No proxy can relay tcp for less
//! here, so its rows are the ceiling our relays are measured against.

use std::process::Command;

use super::Context;
use crate::process::ServerProcess;

/// `minimal-relay LISTEN TARGET`, both on loopback.
pub fn args(port: u16, target_port: u16) -> [String; 2] {
    [
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{target_port}"),
    ]
}

pub fn spawn(
    ctx: &Context,
    name: &str,
    stem: &str,
    target_port: u16,
    port: u16,
) -> anyhow::Result<ServerProcess> {
    let mut command = Command::new(&ctx.tools.minimal_relay);
    command.args(args(port, target_port));
    ServerProcess::spawn(name, command, &ctx.workdir.file(&format!("{stem}.log")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_listens_and_connects_on_loopback() {
        assert_eq!(args(9000, 8080), ["127.0.0.1:9000", "127.0.0.1:8080"]);
    }
}
