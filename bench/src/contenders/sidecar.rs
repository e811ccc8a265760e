//! Our sidecar-proxy in each mode the benchmark compares, with capture on (records to a file in the
//! work directory), to NATS (records published to the run's JetStream server through a spool in the work
//! directory, no file) or off (`--capture off`), and with tls-out for the intercepted HTTPS rows.
//! Everything binds 127.0.0.1, the admin port included.

use std::path::Path;
use std::process::Command;

use super::{Capture, Context, Launch, OriginEndpoints, SidecarMode};

/// A capture file rotates at this size and one old file is kept; rotation is what a production
/// sidecar would run with, too.
const CAPTURE_ROTATE_SIZE: &str = "64MiB";

/// A sidecar-proxy command line, flag by flag: the benchmark's sidecars and the soak's are written
/// with it, every listener and the admin port on 127.0.0.1.
#[derive(Debug)]
pub struct Flags(pub Vec<String>);

impl Flags {
    pub fn new(proxy_type: &str, protocol: &str) -> Flags {
        Flags(Vec::new()).push(&["--proxy-type", proxy_type, "--proxy-protocol", protocol])
    }

    pub fn push(mut self, items: &[&str]) -> Flags {
        self.0.extend(items.iter().map(|item| item.to_string()));
        self
    }

    /// The inbound listener on `port`, delivering to the app on 127.0.0.1:`app_port`.
    pub fn inbound(self, port: u16, app_port: u16) -> Flags {
        let (port, app_port) = (port.to_string(), app_port.to_string());
        self.push(&["--proxy-host", "127.0.0.1", "--proxy-port", &app_port])
            .push(&["--proxy-in-port", &port, "--proxy-in-bind", "127.0.0.1"])
    }

    /// The outbound (forward proxy) listener on `port`.
    pub fn outbound(self, port: u16) -> Flags {
        let port = port.to_string();
        self.push(&["--proxy-out-port", &port, "--proxy-out-bind", "127.0.0.1"])
    }

    pub fn admin(self, port: u16) -> Flags {
        let port = port.to_string();
        self.push(&["--admin-port", &port, "--admin-bind", "127.0.0.1"])
    }

    /// Capture to `file`, rotated at `rotate_size` with `keep` old files kept, so a long run cannot
    /// fill the disk.
    pub fn capture_file(self, file: &Path, rotate_size: &str, keep: &str) -> Flags {
        self.push(&["--capture", &file.display().to_string()])
            .push(&["--capture-rotate-size", rotate_size])
            .push(&["--capture-rotate-keep", keep])
    }
}

/// The command line of one instance (without the program). `tls_out` names tls-out's files: the
/// capture CA's directory (tls.crt, tls.key) and the CA the origin's certificate chains to.
pub fn args(
    mode: SidecarMode,
    capture: Capture,
    port: u16,
    admin_port: u16,
    origin: &OriginEndpoints,
    capture_file: &Path,
    [ca_dir, upstream_ca]: [&Path; 2],
) -> Vec<String> {
    let mut flags = match mode {
        SidecarMode::ReverseTcp(upstream) => {
            Flags::new("reverse", "tcp").inbound(port, upstream.port(origin))
        }
        SidecarMode::ReverseHttp => Flags::new("reverse", "http").inbound(port, origin.http_port),
        SidecarMode::ForwardHttp | SidecarMode::ForwardHttpTlsOut => {
            Flags::new("forward", "http").outbound(port)
        }
        SidecarMode::ForwardSocks => Flags::new("forward", "socks").outbound(port),
    };
    if mode == SidecarMode::ForwardHttpTlsOut {
        let ca_dir = ca_dir.display().to_string();
        let upstream_ca = upstream_ca.display().to_string();
        flags = flags
            .push(&["--tls-out", "true", "--tls-ca-dir", &ca_dir])
            .push(&["--tls-upstream-ca", &upstream_ca]);
    }
    flags = flags.admin(admin_port).push(&["--shutdown-grace", "1s"]);
    let flags = match capture {
        Capture::On => flags.capture_file(capture_file, CAPTURE_ROTATE_SIZE, "1"),
        Capture::Off => flags.push(&["--capture", "off"]),
        Capture::Nats => {
            // The subject is the capture file's stem: one per instance, all in the run's stream.
            let stem = capture_file
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or("sidecar");
            let sink = format!(
                "nats://127.0.0.1:{}/{}.{stem}",
                origin.nats_port,
                super::nats::SUBJECT_PREFIX
            );
            let spool = capture_file.with_extension("spool").display().to_string();
            flags
                .push(&["--capture", "off", "--capture-sink", &sink])
                .push(&["--capture-spool-dir", &spool])
        }
    };
    flags.0
}

/// One instance with its files named `<stem>.log` and `<stem>.jsonl` (the capture), its command line
/// passed through `adjust` first (scenario 9's sidecars change it).
pub fn launch(
    ctx: &Context,
    stem: &str,
    mode: SidecarMode,
    capture: Capture,
    port: u16,
    admin_port: u16,
    adjust: impl FnOnce(&mut Vec<String>),
) -> anyhow::Result<Launch> {
    let capture_file = ctx.workdir.file(&format!("{stem}.jsonl"));
    let tls_out = [&*ctx.tls.capture_ca_dir, &ctx.tls.origin_ca_file];
    let mut args = args(
        mode,
        capture,
        port,
        admin_port,
        &ctx.origin,
        &capture_file,
        tls_out,
    );
    adjust(&mut args);
    let mut command = Command::new(&ctx.tools.sidecar_proxy);
    command.args(args);
    Ok((command, ctx.workdir.file(&format!("{stem}.log"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contenders::Upstream;
    use rstest::rstest;

    const ADMIN: &str = "--admin-port 4191 --admin-bind 127.0.0.1 --shutdown-grace 1s";
    const ON: &str = "--capture /w/c.jsonl --capture-rotate-size 64MiB --capture-rotate-keep 1";

    /// Every mode listens on loopback with its flags; only tls-out intercepts, trusting the run's origin
    /// CA; capture on writes a rotated file, off writes nothing, and NATS publishes to the run's server
    /// through a spool.
    #[rstest]
    #[case(
        SidecarMode::ReverseTcp(Upstream::Http),
        Capture::Off,
        "--proxy-type reverse --proxy-protocol tcp --proxy-host 127.0.0.1 --proxy-port 8080 --proxy-in-port 4143 --proxy-in-bind 127.0.0.1 {ADMIN} --capture off"
    )]
    #[case(
        SidecarMode::ReverseTcp(Upstream::Iperf3),
        Capture::On,
        "--proxy-type reverse --proxy-protocol tcp --proxy-host 127.0.0.1 --proxy-port 5201 --proxy-in-port 4143 --proxy-in-bind 127.0.0.1 {ADMIN} {ON}"
    )]
    #[case(
        SidecarMode::ReverseHttp,
        Capture::On,
        "--proxy-type reverse --proxy-protocol http --proxy-host 127.0.0.1 --proxy-port 8080 --proxy-in-port 4143 --proxy-in-bind 127.0.0.1 {ADMIN} {ON}"
    )]
    #[case(
        SidecarMode::ReverseHttp,
        Capture::Nats,
        "--proxy-type reverse --proxy-protocol http --proxy-host 127.0.0.1 --proxy-port 8080 --proxy-in-port 4143 --proxy-in-bind 127.0.0.1 {ADMIN} --capture off --capture-sink nats://127.0.0.1:4222/bench.c --capture-spool-dir /w/c.spool"
    )]
    #[case(
        SidecarMode::ForwardHttp,
        Capture::On,
        "--proxy-type forward --proxy-protocol http --proxy-out-port 4143 --proxy-out-bind 127.0.0.1 {ADMIN} {ON}"
    )]
    #[case(
        SidecarMode::ForwardHttpTlsOut,
        Capture::On,
        "--proxy-type forward --proxy-protocol http --proxy-out-port 4143 --proxy-out-bind 127.0.0.1 --tls-out true --tls-ca-dir /w/tls/capture-ca --tls-upstream-ca /w/tls/origin-ca.crt {ADMIN} {ON}"
    )]
    #[case(
        SidecarMode::ForwardSocks,
        Capture::On,
        "--proxy-type forward --proxy-protocol socks --proxy-out-port 4143 --proxy-out-bind 127.0.0.1 {ADMIN} {ON}"
    )]
    #[case(
        SidecarMode::ForwardSocks,
        Capture::Off,
        "--proxy-type forward --proxy-protocol socks --proxy-out-port 4143 --proxy-out-bind 127.0.0.1 {ADMIN} --capture off"
    )]
    fn the_command_line_of_each_mode_and_capture(
        #[case] mode: SidecarMode,
        #[case] capture: Capture,
        #[case] expected: &str,
    ) {
        let origin = crate::contenders::origin::TEST_ENDPOINTS;
        let tls_out = [
            Path::new("/w/tls/capture-ca"),
            Path::new("/w/tls/origin-ca.crt"),
        ];
        let capture_file = Path::new("/w/c.jsonl");
        let line = args(mode, capture, 4143, 4191, &origin, capture_file, tls_out).join(" ");
        let expected = expected.replace("{ADMIN}", ADMIN).replace("{ON}", ON);
        assert_eq!(line, expected);
    }
}
