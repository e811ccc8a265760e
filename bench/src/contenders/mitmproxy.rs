//! mitmproxy's mitmdump in regular (forward proxy) mode, used with absolute-form requests. Its CA and
//! settings live in the work directory, not in ~/.mitmproxy.

use std::process::Command;

use super::Context;
use crate::process::ServerProcess;

pub fn args(port: u16, confdir: &std::path::Path) -> Vec<String> {
    vec![
        "--mode".into(),
        "regular".into(),
        "--listen-host".into(),
        "127.0.0.1".into(),
        "--listen-port".into(),
        port.to_string(),
        "--set".into(),
        format!("confdir={}", confdir.display()),
        // Quiet: printing every flow would measure the terminal, not the proxy.
        "--quiet".into(),
    ]
}

pub fn spawn(ctx: &Context, name: &str, stem: &str, port: u16) -> anyhow::Result<ServerProcess> {
    let confdir = ctx.workdir.subdir(stem, 0o755)?;
    let mut command = Command::new(&ctx.tools.mitmdump);
    command.args(args(port, &confdir));
    ServerProcess::spawn(name, command, &confdir.join("mitmdump.log"))
}
