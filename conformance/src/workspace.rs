//! Where the suite finds the workspace, keeps its per-run files, and gets the binaries it puts in images.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The Cargo workspace root (this package's parent).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the conformance package sits inside the workspace")
        .to_path_buf()
}

/// Per-run files: build contexts, the test PKI, each cell's logs and capture, the results. Kept after the
/// run so a failing cell can be read; `CONFORMANCE_DIR` moves it.
pub fn scratch_dir() -> PathBuf {
    std::env::var_os("CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/conformance"))
}

/// Empties `dir` (creating it): an old run's capture file must never satisfy a new run's checks.
pub fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot empty {}", dir.display())),
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// A cell's own directory under the scratch directory, emptied.
pub fn fresh_cell_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = scratch_dir().join("cells").join(name);
    fresh_dir(&dir)?;
    Ok(dir)
}

/// Where each cell writes its result, read by `conformance-matrix`.
pub fn results_dir() -> PathBuf {
    scratch_dir().join("results")
}

pub struct Binaries {
    pub sidecar_proxy: PathBuf,
    pub injector: PathBuf,
    pub upstream: PathBuf,
}

/// Builds `sidecar-proxy`, `sidecar-injector` and `conformance-upstream` with the profile of the running
/// test (so a stale binary can never be tested), and returns their paths. Under Bazel, which builds them
/// as the test's data, `CONFORMANCE_SIDECAR_PROXY_BIN`, `CONFORMANCE_SIDECAR_INJECTOR_BIN` and
/// `CONFORMANCE_UPSTREAM_BIN` name them instead.
pub fn binaries() -> anyhow::Result<Binaries> {
    // A build system that built them already (Bazel) names them; nothing is rebuilt then.
    if let (Some(sidecar_proxy), Some(injector), Some(upstream)) = (
        std::env::var_os("CONFORMANCE_SIDECAR_PROXY_BIN"),
        std::env::var_os("CONFORMANCE_SIDECAR_INJECTOR_BIN"),
        std::env::var_os("CONFORMANCE_UPSTREAM_BIN"),
    ) {
        return Ok(Binaries {
            sidecar_proxy: std::fs::canonicalize(sidecar_proxy)?,
            injector: std::fs::canonicalize(injector)?,
            upstream: std::fs::canonicalize(upstream)?,
        });
    }
    let exe = std::env::current_exe()?;
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot tell the target directory from the test binary's path")?
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("debug");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .current_dir(root())
        .args([
            "build",
            "--locked",
            "--bin",
            "sidecar-proxy",
            "--bin",
            "sidecar-injector",
            "--bin",
            "conformance-upstream",
        ])
        .env(
            "CARGO_TARGET_DIR",
            profile_dir.parent().unwrap_or(&profile_dir),
        );
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build of the binaries the images carry failed ({status})");
    }
    Ok(Binaries {
        sidecar_proxy: profile_dir.join("sidecar-proxy"),
        injector: profile_dir.join("sidecar-injector"),
        upstream: profile_dir.join("conformance-upstream"),
    })
}
