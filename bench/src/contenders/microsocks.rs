//! microsocks: a minimal SOCKS5 server, a thread per connection.

use std::process::Command;

use super::Context;
use crate::process::ServerProcess;

pub fn spawn(ctx: &Context, name: &str, stem: &str, port: u16) -> anyhow::Result<ServerProcess> {
    let mut command = Command::new(&ctx.tools.microsocks);
    command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    ServerProcess::spawn(name, command, &ctx.workdir.file(&format!("{stem}.log")))
}
