//! The sidecars of scenario 9, started outside the fleet and fresh each round: one that records a capture
//! the way users record one (capture on, real requests through it, then stopped so that the capture is
//! complete), and the forward sidecar that answers from such a capture with `--mock`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::contenders::sidecar;
use crate::contenders::{Capture, Context, SidecarMode};
use crate::probe;
use crate::process::ServerProcess;

/// A recording must not rotate: the replay and the mock read one file.
const NO_ROTATION: &str = "1GiB";

/// A started sidecar with capture on, and the file it records to.
pub struct CapturingSidecar {
    pub process: ServerProcess,
    pub port: u16,
    pub capture: PathBuf,
}

impl CapturingSidecar {
    /// Starts sidecar-proxy in `mode` with capture on to `<stem>-<port>.jsonl`, plus `extra` flags, and
    /// waits until it listens.
    pub async fn start(
        ctx: &Context,
        stem: &str,
        mode: SidecarMode,
        extra: &[&str],
    ) -> anyhow::Result<CapturingSidecar> {
        let port = ctx.ports.next()?;
        let stem = format!("{stem}-{port}");
        let name = format!("sidecar-proxy ({stem})");
        let admin_port = ctx.ports.next()?;
        let (command, log) =
            sidecar::launch(ctx, &stem, mode, Capture::On, port, admin_port, |args| {
                if let Some(at) = args.iter().position(|arg| arg == "--capture-rotate-size") {
                    args[at + 1] = NO_ROTATION.to_owned();
                }
                args.extend(extra.iter().map(|arg| arg.to_string()));
            })?;
        let mut process = ServerProcess::spawn(&name, command, &log)?;
        probe::until_listening(&mut process, port, probe::LISTEN_TIMEOUT).await?;
        Ok(CapturingSidecar {
            process,
            port,
            capture: ctx.workdir.file(&format!("{stem}.jsonl")),
        })
    }

    /// Stops the sidecar (SIGTERM: it writes out every record before it exits) and returns its capture
    /// and how many records it holds.
    pub fn finish(mut self) -> anyhow::Result<(PathBuf, usize)> {
        self.process.stop();
        let records = count_records(&self.capture)?;
        Ok((self.capture, records))
    }
}

/// The records of a JSON Lines capture: its non-empty lines.
pub fn count_records(capture: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(capture)
        .with_context(|| format!("cannot read the capture {}", capture.display()))?;
    Ok(text.lines().filter(|line| !line.trim().is_empty()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_the_non_empty_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.jsonl");
        std::fs::write(&file, "{\"id\":1}\n{\"id\":2}\n\n{\"id\":3}\n").unwrap();
        assert_eq!(count_records(&file).unwrap(), 3);
    }
}
