//! The Cargo workspace the harness runs in (where the report and the venv go), and the release build of
//! sidecar-proxy that is measured.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::process::stdout_of;

#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    /// `target/` or wherever CARGO_TARGET_DIR (or Cargo's configuration) puts it.
    pub target_dir: PathBuf,
}

#[derive(Deserialize)]
struct Metadata {
    workspace_root: PathBuf,
    target_directory: PathBuf,
}

/// Every release build of the harnesses selects these packages, as scripts/test.sh does, and so does the
/// soak's build of the proxy (it calls [`Workspace::build_proxy`]): Cargo resolves dependency features
/// per selection, so `-p sidecar-proxy` alone after the selection would build about a hundred shared
/// dependencies (tokio, serde, rustls…) a second time with other features.
pub const RELEASE_SELECTION: &str = "-p sidecar-proxy -p sidecar-bench -p sidecar-soak";

/// The harness this library runs in (`sidecar-bench` or `sidecar-soak`), for the lines it prints.
fn program_name() -> String {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&arg0)
        .file_name()
        .map(|name| name.to_string_lossy());
    name.map_or_else(|| "sidecar-bench".to_owned(), |name| name.into_owned())
}

/// The cargo that runs us (`cargo run` sets CARGO), else the one on PATH.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

impl Workspace {
    /// Asks Cargo, which knows CARGO_TARGET_DIR and `.cargo/config.toml` alike.
    pub fn locate() -> anyhow::Result<Workspace> {
        let mut metadata = cargo();
        metadata.args(["metadata", "--format-version", "1"]);
        let output = stdout_of(metadata.args(["--no-deps", "--offline"])).with_context(|| {
            let program = program_name();
            format!("cannot locate the workspace (run {program} inside the repository)")
        })?;
        let metadata: Metadata =
            serde_json::from_str(&output).context("cannot read cargo metadata's output")?;
        Ok(Workspace {
            root: metadata.workspace_root,
            target_dir: metadata.target_directory,
        })
    }

    /// The proxy's release binary, built with [`RELEASE_SELECTION`].
    pub fn build_proxy(&self) -> anyhow::Result<PathBuf> {
        self.build_release("sidecar-proxy")
    }

    /// `cargo build --release <RELEASE_SELECTION> --locked`, and `binary` from the release directory
    /// (the minimal relay is built so, with the same profile as the proxy it is measured next to).
    pub fn build_release(&self, binary: &str) -> anyhow::Result<PathBuf> {
        let shown = format!("cargo build --release {RELEASE_SELECTION} --locked");
        eprintln!("{}: {shown}", program_name());
        let status = cargo()
            .current_dir(&self.root)
            .args(["build", "--release"])
            .args(RELEASE_SELECTION.split(' '))
            .arg("--locked")
            .status()
            .context("cannot run cargo build")?;
        if !status.success() {
            bail!("{shown} failed ({status})");
        }
        let path = self.target_dir.join("release").join(binary);
        if !path.is_file() {
            bail!("{} is missing after the build", path.display());
        }
        Ok(path)
    }

    /// Short commit of HEAD, and whether proxy/ has uncommitted changes (the numbers are then of code
    /// no commit holds).
    pub fn proxy_revision(&self) -> String {
        let git = |args: &[&str]| stdout_of(Command::new("git").current_dir(&self.root).args(args));
        let Ok(head) = git(&["rev-parse", "--short", "HEAD"]) else {
            return "unknown (no git)".to_owned();
        };
        let head = head.trim().to_owned();
        let clean = git(&["status", "--porcelain", "--", "proxy"]).is_ok_and(|out| out.is_empty());
        if clean {
            head
        } else {
            format!("{head} with uncommitted changes in proxy/")
        }
    }
}

/// A binary given by `flag` (--proxy-bin, --relay-bin) must exist before anything starts.
pub fn check_given_bin(flag: &str, path: &Path) -> anyhow::Result<PathBuf> {
    let path = path
        .canonicalize()
        .with_context(|| format!("{flag} {}", path.display()))?;
    if !path.is_file() {
        bail!("{flag} {} is not a file", path.display());
    }
    Ok(path)
}
