//! The contenders configured by their command line alone, with no config file: microsocks (a minimal
//! SOCKS5 server, a thread per connection), mitmproxy's mitmdump in regular (forward proxy) mode, and
//! the relay limit, bench/src/bin/minimal-relay.rs (a tokio program that accepts, connects to its
//! target and runs `tokio::io::copy_bidirectional`, nothing else: no proxy can relay tcp for less here,
//! so its rows are the ceiling our relays are measured against).

use std::process::Command;

use super::{Context, Launch};

/// `microsocks -i 127.0.0.1 -p PORT`.
pub fn microsocks(ctx: &Context, stem: &str, port: u16) -> anyhow::Result<Launch> {
    let mut command = Command::new(&ctx.tools.microsocks);
    command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
    Ok((command, ctx.workdir.file(&format!("{stem}.log"))))
}

/// mitmdump's CA and settings live in the directory `<stem>`, not in ~/.mitmproxy.
pub fn mitmdump(ctx: &Context, stem: &str, port: u16) -> anyhow::Result<Launch> {
    let confdir = ctx.workdir.subdir(stem, 0o755)?;
    let mut command = Command::new(&ctx.tools.mitmdump);
    command
        .args(["--mode", "regular", "--listen-host", "127.0.0.1"])
        .args(["--listen-port", &port.to_string()])
        .arg("--set")
        .arg(format!("confdir={}", confdir.display()))
        // Quiet: printing every flow would measure the terminal, not the proxy.
        .arg("--quiet");
    Ok((command, confdir.join("mitmdump.log")))
}

/// `minimal-relay LISTEN TARGET`, both on loopback.
pub fn minimal_relay(
    ctx: &Context,
    stem: &str,
    target_port: u16,
    port: u16,
) -> anyhow::Result<Launch> {
    let mut command = Command::new(&ctx.tools.minimal_relay);
    command.args(minimal_relay_args(port, target_port));
    Ok((command, ctx.workdir.file(&format!("{stem}.log"))))
}

fn minimal_relay_args(port: u16, target_port: u16) -> [String; 2] {
    [
        format!("127.0.0.1:{port}"),
        format!("127.0.0.1:{target_port}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimal_relay_listens_and_connects_on_loopback() {
        assert_eq!(
            minimal_relay_args(9000, 8080),
            ["127.0.0.1:9000", "127.0.0.1:8080"]
        );
    }
}
