//! Running iptables binaries: the one place that spawns processes, behind a trait so the apply and backend
//! logic can be tested against a fake.

use std::process::{Command, Stdio};

/// What one command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ran {
    pub success: bool,
    /// `exit status 1`, or the signal that ended it.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

pub trait Runner {
    /// Runs `binary args...`; an `Err` means it could not be started at all (e.g. not installed).
    fn run(&mut self, binary: &str, args: &[String]) -> std::io::Result<Ran>;
}

/// Runs commands for real, with nothing on stdin.
#[derive(Debug, Default)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&mut self, binary: &str, args: &[String]) -> std::io::Result<Ran> {
        let output = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        Ok(Ran {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// Multi-line tool output folded onto one line, for one-line error messages.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
