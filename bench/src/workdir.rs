//! The run's directory of generated configs, logs, capture files and the origin's download file.
//! It is removed at the end unless `--keep-workdir` is given.
//!
//! It is world-readable (0755): nginx's workers and squid drop root for `nobody` / `proxy` and must
//! still read the files and write their logs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

#[derive(Debug)]
pub struct Workdir {
    dir: tempfile::TempDir,
    keep: bool,
}

impl Workdir {
    pub fn create(keep: bool) -> anyhow::Result<Workdir> {
        let dir = tempfile::Builder::new()
            .prefix("sidecar-bench-")
            .disable_cleanup(keep)
            .tempdir()
            .context("cannot create the run's temporary directory")?;
        set_mode(dir.path(), 0o755)?;
        Ok(Workdir { dir, keep })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `name` inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// A subdirectory with the given mode (created if needed).
    pub fn subdir(&self, name: &str, mode: u32) -> anyhow::Result<PathBuf> {
        let dir = self.file(name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        set_mode(&dir, mode)?;
        Ok(dir)
    }

    /// Writes a generated file and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let path = self.file(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        set_mode(&path, 0o644)?;
        Ok(path)
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if self.keep {
            let kept = self.path().display();
            eprintln!("sidecar-bench: kept the work directory {kept}");
        }
    }
}

pub fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {mode:o} {}", path.display()))
}
