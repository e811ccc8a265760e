//! The servers the harness starts. Each runs in a process group of its own, so that stopping it also
//! stops whatever it forked (nginx's workers, dante's children, squid's helpers), and each is stopped
//! when its [`ServerProcess`] is dropped: after the report, on an error and on Ctrl-C alike. And
//! [`stdout_of`], for the short commands whose answer the harness reads (dpkg-query, git, `ca create`).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Lines of a server's log shown when it fails.
const LOG_TAIL_LINES: usize = 25;

/// How long a server has to exit after SIGTERM before its group gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A server failed to start, died, or answered wrongly; the message carries the end of its log.
#[derive(Debug, thiserror::Error)]
#[error("{server} {problem}\n--- last lines of {} ---\n{tail}", log.display())]
pub struct ServerFailed {
    pub server: String,
    pub problem: String,
    pub log: PathBuf,
    pub tail: String,
}

/// A running server and its log (its stdout and stderr both go there).
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl ServerProcess {
    /// Starts `command` in a new process group with stdin closed and its output in `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<ServerProcess> {
        let out = File::create(log).map_err(|error| {
            anyhow::anyhow!("cannot create the log {} of {name}: {error}", log.display())
        })?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Our own RUST_LOG must not change what the proxy logs while it is measured.
            .env_remove("RUST_LOG")
            .process_group(0);
        let child = command.spawn().map_err(|error| {
            anyhow::anyhow!(
                "cannot start {name} ({}): {error}",
                command.get_program().to_string_lossy()
            )
        })?;
        Ok(ServerProcess {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the server has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// An error naming this server, `problem` and the end of its log.
    pub fn failed(&self, problem: impl Into<String>) -> ServerFailed {
        ServerFailed {
            server: self.name.clone(),
            problem: problem.into(),
            log: self.log.clone(),
            tail: log_tail(&self.log, LOG_TAIL_LINES),
        }
    }

    /// Fails if the server has exited.
    pub fn ensure_running(&mut self) -> Result<(), ServerFailed> {
        match self.exited() {
            Some(status) => Err(self.failed(format!("exited ({status})"))),
            None => Ok(()),
        }
    }

    /// SIGTERM to the group, SIGKILL after [`STOP_GRACE`], then SIGKILL once more for any member that
    /// outlived the leader.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let group = Pid::from_raw(self.child.id() as i32);
        if self.exited().is_none() {
            let _ = killpg(group, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if self.exited().is_none() {
                let _ = killpg(group, Signal::SIGKILL);
                let _ = self.child.wait();
            }
        }
        // ESRCH (no member left) is the usual answer.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Raises this process's open-file limit as far as it may go; every server it starts inherits it.
/// As root with CAP_SYS_RESOURCE the hard limit is raised too (up to the kernel's fs.nr_open);
/// otherwise (a container without that capability, a normal user) the soft limit goes up to the hard
/// one. Returns the limit in force, which the caller sizes the memory scenario and the servers' own
/// settings by.
pub fn raise_fd_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    const WANTED: u64 = 1 << 18;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(WANTED);
    let wanted = WANTED.min(nr_open);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= wanted {
        return Ok(soft);
    }
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted.max(hard)).is_ok() {
        return Ok(wanted);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(hard)
}

/// Runs `command` to completion: its stdout, or an error naming it, its exit status and its stderr.
pub fn stdout_of(command: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last `lines` lines of a log file, or why it cannot be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => last_lines(&String::from_utf8_lossy(&bytes), lines),
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

fn last_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    if tail.trim().is_empty() {
        "(empty)".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("a\nb\nc\n", 2, "b\nc")]
    #[case("a\nb", 5, "a\nb")]
    #[case("", 3, "(empty)")]
    #[case("\n\n", 3, "(empty)")]
    fn last_lines_keeps_the_end(#[case] text: &str, #[case] lines: usize, #[case] expected: &str) {
        assert_eq!(last_lines(text, lines), expected);
    }

    #[test]
    fn dropping_a_server_stops_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sh.log");
        let mut command = Command::new("sh");
        // A child that ignores the leader's death, as a forked worker would; its pid goes to the log.
        command.args(["-c", "sleep 300 & echo $!; wait"]);
        let server = ServerProcess::spawn("sh", command, &log).unwrap();
        let pid = || {
            std::fs::read_to_string(&log)
                .ok()?
                .trim()
                .parse::<i32>()
                .ok()
        };
        let child = within_5s(pid, "the child never started");
        drop(server);
        // The grandchild is reparented and reaped by init; it is gone once /proc has no such live process.
        let gone = || (!process_alive(child)).then_some(());
        within_5s(gone, "the forked child outlived the guard");
    }

    fn within_5s<T>(mut done: impl FnMut() -> Option<T>, failure: &str) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(value) = done() {
                return value;
            }
            assert!(Instant::now() < deadline, "{failure}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn process_alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // A zombie waits only for its parent to reap it: it runs no more.
            Ok(stat) => !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }
}
