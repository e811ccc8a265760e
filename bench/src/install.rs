//! The tools the run needs: Debian's packages (installed with apt-get when a command is missing) and
//! mitmproxy from PyPI, in a virtual environment of the harness's own under the target directory.
//!
//! Debian's maintainer scripts start a daemon right after installing it (squid on 3128, tinyproxy on
//! 8888, ...) wherever an init system answers. Those would share the cores with the measurement, so
//! while apt-get runs, a `policy-rc.d` that forbids starts is put in place (Debian's documented hook,
//! the one container images use), and removed afterwards. The run starts its own instances anyway,
//! with its own configs and ports.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::process;

/// The Debian package that provides each command the run calls.
pub const DEBIAN_COMMANDS: &[(&str, &str)] = &[
    ("wrk", "wrk"),
    ("iperf3", "iperf3"),
    ("proxychains4", "proxychains4"),
    ("nginx", "nginx-light"),
    ("haproxy", "haproxy"),
    ("squid", "squid"),
    ("tinyproxy", "tinyproxy"),
    ("danted", "dante-server"),
    ("microsocks", "microsocks"),
    ("curl", "curl"),
    ("python3", "python3"),
    // HTTP/2 load for the h2c rows (scenario 8).
    ("h2load", "nghttp2-client"),
    // The JetStream server the NATS sink rows publish to (issue #21).
    ("nats-server", "nats-server"),
];

/// `python3 -m venv` needs ensurepip, which Debian ships separately.
const VENV_PACKAGE: &str = "python3-venv";

/// Pinned so that runs compare like with like; the newest mitmproxy that supports Debian 12's Python 3.11.
pub const MITMPROXY_VERSION: &str = "11.0.2";

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Absolute paths of every program the run starts.
#[derive(Debug, Clone)]
pub struct Tools {
    pub wrk: PathBuf,
    pub iperf3: PathBuf,
    pub proxychains4: PathBuf,
    pub nginx: PathBuf,
    pub haproxy: PathBuf,
    pub squid: PathBuf,
    pub tinyproxy: PathBuf,
    pub danted: PathBuf,
    pub microsocks: PathBuf,
    pub curl: PathBuf,
    pub mitmdump: PathBuf,
    pub h2load: PathBuf,
    pub nats_server: PathBuf,
    /// Set by the caller once the proxy is built or given.
    pub sidecar_proxy: PathBuf,
    /// The relay limit (bench/src/bin/minimal-relay.rs), built or given like the proxy.
    pub minimal_relay: PathBuf,
}

/// Installs whatever is missing and returns where everything is.
pub fn ensure(
    venv: &Path,
    sidecar_proxy: PathBuf,
    minimal_relay: PathBuf,
) -> anyhow::Result<Tools> {
    let mut packages: Vec<&str> = DEBIAN_COMMANDS
        .iter()
        .filter(|(command, _)| find_command(command).is_none())
        .map(|(_, package)| *package)
        .collect();
    if !venv.join("bin/python3").exists() && !dpkg_installed(VENV_PACKAGE) {
        packages.push(VENV_PACKAGE);
    }
    if !packages.is_empty() {
        apt_install(&packages)?;
    }
    let mitmdump = ensure_mitmproxy(venv)?;
    let path = |name: &str| {
        find_command(name)
            .with_context(|| format!("{name} is still missing after installing its package"))
    };
    Ok(Tools {
        wrk: path("wrk")?,
        iperf3: path("iperf3")?,
        proxychains4: path("proxychains4")?,
        nginx: path("nginx")?,
        haproxy: path("haproxy")?,
        squid: path("squid")?,
        tinyproxy: path("tinyproxy")?,
        danted: path("danted")?,
        microsocks: path("microsocks")?,
        curl: path("curl")?,
        mitmdump,
        h2load: path("h2load")?,
        nats_server: path("nats-server")?,
        sidecar_proxy,
        minimal_relay,
    })
}

/// `command -v`, plus the sbin directories a non-root PATH may lack (nginx, haproxy, squid, danted
/// live there).
pub fn find_command(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn dpkg_installed(package: &str) -> bool {
    dpkg_query(package, "${Status}").is_some_and(|status| status.contains("install ok installed"))
}

/// `dpkg-query -W -f=FORMAT PACKAGE`, trimmed, if dpkg knows the package.
pub fn dpkg_query(package: &str, format: &str) -> Option<String> {
    let query = ["-W", &format!("-f={format}"), package];
    let out = process::stdout_of(Command::new("dpkg-query").args(query)).ok()?;
    Some(out.trim().to_owned())
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "missing packages: {}; run as root, or install them first: apt-get install -y {}",
            packages.join(" "),
            packages.join(" ")
        );
    }
    eprintln!("sidecar-bench: installing {}", packages.join(" "));
    let _no_daemon_starts = NoDaemonStarts::install()?;
    run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
    run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages),
    )
}

/// While alive, `invoke-rc.d` refuses to start services (exit 101 of policy-rc.d means "forbidden").
/// Only put in place when no policy exists; an existing one is the machine's and stays untouched.
struct NoDaemonStarts {
    created: bool,
}

impl NoDaemonStarts {
    fn install() -> anyhow::Result<NoDaemonStarts> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(NoDaemonStarts { created: false });
        }
        std::fs::write(
            path,
            "#!/bin/sh\n# sidecar-bench: no daemon starts while it installs packages\nexit 101\n",
        )
        .with_context(|| format!("cannot write {POLICY_RC_D}"))?;
        crate::workdir::set_mode(path, 0o755)?;
        Ok(NoDaemonStarts { created: true })
    }
}

impl Drop for NoDaemonStarts {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// mitmdump from the harness's venv, created and filled on first use.
fn ensure_mitmproxy(venv: &Path) -> anyhow::Result<PathBuf> {
    let mitmdump = venv.join("bin/mitmdump");
    let pip = venv.join("bin/pip");
    if mitmdump.exists() && installed_mitmproxy(&pip).as_deref() == Some(MITMPROXY_VERSION) {
        return Ok(mitmdump);
    }
    if !venv.join("bin/python3").exists() {
        // Debian's interpreter, the one python3-venv belongs to (a pyenv shim earlier on PATH may lack venv).
        let python = if Path::new("/usr/bin/python3").exists() {
            PathBuf::from("/usr/bin/python3")
        } else {
            find_command("python3").context("python3 is missing")?
        };
        eprintln!("sidecar-bench: creating {}", venv.display());
        run_checked(Command::new(python).args(["-m", "venv"]).arg(venv))?;
    }
    eprintln!("sidecar-bench: installing mitmproxy {MITMPROXY_VERSION} from PyPI");
    run_checked(
        Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("mitmproxy=={MITMPROXY_VERSION}")),
    )?;
    if !mitmdump.exists() {
        bail!(
            "{} is missing after pip install mitmproxy",
            mitmdump.display()
        );
    }
    Ok(mitmdump)
}

fn installed_mitmproxy(pip: &Path) -> Option<String> {
    process::stdout_of(Command::new(pip).args(["show", "mitmproxy"]))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("Version:").map(|v| v.trim().to_owned()))
}

/// Runs a command to completion; its output goes to ours (installs are rare and worth seeing).
fn run_checked(command: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{command:?}");
    let status = command
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_names_one_package() {
        let mut commands: Vec<_> = DEBIAN_COMMANDS.iter().map(|(c, _)| c).collect();
        commands.sort();
        commands.dedup();
        assert_eq!(commands.len(), DEBIAN_COMMANDS.len());
    }

    #[test]
    fn find_command_finds_sh_and_not_nonsense() {
        assert!(find_command("sh").is_some());
        assert!(find_command("no-such-command-sidecar-bench").is_none());
    }
}
