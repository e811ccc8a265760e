//! Facts about the machine and the exact versions of every program in the run, for the report.

use std::path::Path;
use std::process::Command;

use crate::install::{self, Tools};
use crate::workspace::Workspace;

pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
}

pub fn describe() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        kernel,
    }
}

/// (program, version) for every program the run started or ran. `proxy_given`: the proxy binary came
/// from --proxy-bin, so the repository's revision says nothing certain about what it was built from.
pub fn versions(tools: &Tools, workspace: &Workspace, proxy_given: bool) -> Vec<(String, String)> {
    let version = first_line(&tools.sidecar_proxy, "--version");
    let revision = workspace.proxy_revision();
    let proxy = if proxy_given {
        format!(
            "{version}, given as --proxy-bin {} (the repository is at {revision})",
            tools.sidecar_proxy.display()
        )
    } else {
        format!("{version}, built from {revision}")
    };
    vec![
        ("sidecar-proxy".into(), proxy),
        ("haproxy".into(), first_line(&tools.haproxy, "-v")),
        ("nginx".into(), first_line(&tools.nginx, "-v")),
        ("squid".into(), first_line(&tools.squid, "-v")),
        ("tinyproxy".into(), first_line(&tools.tinyproxy, "-v")),
        ("dante".into(), first_line(&tools.danted, "-v")),
        ("microsocks".into(), debian_version("microsocks")),
        ("mitmproxy".into(), first_line(&tools.mitmdump, "--version")),
        ("wrk".into(), first_line(&tools.wrk, "-v")),
        ("proxychains4".into(), debian_version("proxychains4")),
        ("iperf3".into(), first_line(&tools.iperf3, "-v")),
        (
            "curl".into(),
            curl_version(&first_line(&tools.curl, "--version")),
        ),
        ("h2load".into(), first_line(&tools.h2load, "--version")),
        (
            "nats-server".into(),
            first_line(&tools.nats_server, "--version"),
        ),
        (
            "TLS load generator".into(),
            "sidecar-bench's own (tokio-rustls with ring; versions in Cargo.lock)".into(),
        ),
        (
            "minimal relay".into(),
            "sidecar-bench's own (bench/src/bin/minimal-relay.rs: tokio's copy_bidirectional, \
             release build; versions in Cargo.lock)"
                .into(),
        ),
    ]
}

/// The first non-empty line a program prints (on stdout or stderr: nginx and wrk use stderr), without
/// copyright notices. Some exit non-zero after printing their version (wrk); that is fine here.
fn first_line(program: &Path, flag: &str) -> String {
    match Command::new(program).arg(flag).output() {
        Ok(output) => {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|line| !line.is_empty())
                .map(|line| clean_version_line(line).to_owned())
                .unwrap_or_else(|| "unknown (printed nothing)".to_owned())
        }
        Err(error) => format!("unknown ({error})"),
    }
}

/// The load average over the last minute, from /proc/loadavg: how busy the machine was with other
/// work (on a shared machine, other builds) around the measurements.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// curl lists every library it links after its version; the version and its TLS library (which does
/// the work in the HTTPS download rows) are enough.
fn curl_version(line: &str) -> String {
    let version = line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let tls = line.split_whitespace().find(|word| {
        ["SSL/", "TLS/", "rustls", "mbedTLS"]
            .iter()
            .any(|lib| word.contains(lib))
    });
    match tls {
        Some(tls) => format!("{version} ({tls})"),
        None => version,
    }
}

fn clean_version_line(line: &str) -> &str {
    line.split(" Copyright")
        .next()
        .unwrap_or(line)
        .trim()
        .trim_end_matches('.')
}

fn debian_version(package: &str) -> String {
    match install::dpkg_query(package, "${Version}") {
        Some(version) => format!("{version} (Debian package)"),
        None => "unknown (not a Debian package here)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[test]
    fn curl_keeps_its_version_and_tls_library() {
        assert_eq!(
            curl_version(
                "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.19 zlib/1.2.13 nghttp2/1.52.0"
            ),
            "curl 7.88.1 (OpenSSL/3.0.19)"
        );
        assert_eq!(
            curl_version("curl 8.0.0 (x86_64-pc-linux-gnu)"),
            "curl 8.0.0"
        );
    }

    #[rstest]
    #[case(
        "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer",
        "wrk debian/4.1.0-3+b2 [epoll]"
    )]
    #[case(
        "Dante v1.4.2.  Copyright (c) 1997 - 2014 Inferno Nettverk A/S, Norway",
        "Dante v1.4.2"
    )]
    #[case("nginx version: nginx/1.22.1", "nginx version: nginx/1.22.1")]
    fn version_lines_lose_their_copyright(#[case] line: &str, #[case] expected: &str) {
        assert_eq!(clean_version_line(line), expected);
    }
}
