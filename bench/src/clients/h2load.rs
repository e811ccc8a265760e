//! h2load (nghttp2's HTTP/2 load generator): the h2c rows. HTTP/2 over cleartext with prior knowledge
//! (`http://` URLs: h2load sends the connection preface at once, no Upgrade), straight to the origin's
//! h2c server or through a tcp relay in front of it. And curl with `--http2-prior-knowledge` for the
//! readiness check, which h2load cannot do: it counts status codes but never looks at a body.

use std::time::Duration;

use anyhow::Context as _;
use tokio::process::Command;

use super::Invalid;
use crate::install::Tools;

/// Connections and streams: a few connections each carrying many streams at once, the way HTTP/2
/// clients (gRPC channels among them) use a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Load {
    pub clients: u32,
    /// Concurrent streams per connection.
    pub streams: u32,
    pub threads: u32,
    pub duration: Duration,
}

/// 10 connections × 10 concurrent streams: 100 requests in flight, as wrk's 50 connections keep 50.
pub const CLIENTS: u32 = 10;
pub const STREAMS: u32 = 10;

/// What h2load's closing report says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub per_sec: f64,
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub errored: u64,
    pub timeout: u64,
    /// Responses with a 3xx, 4xx or 5xx status.
    pub not_2xx: u64,
}

/// Reads `finished in 1.00s, 57772.50 req/s, 4.41MB/s`, `requests: ... done, ... succeeded, ...
/// failed, ... errored, ... timeout` and `status codes: ... 2xx, ... 3xx, ... 4xx, ... 5xx`.
pub fn parse(stdout: &str) -> Result<Summary, Invalid> {
    let line = |prefix: &str| {
        stdout
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .ok_or_else(|| Invalid(format!("h2load printed no `{prefix}` line")))
    };
    // `N word` pairs of a comma-separated line, looked up by word.
    let count = |text: &str, word: &str| -> Result<u64, Invalid> {
        text.split(',')
            .find_map(|part| {
                let mut words = part.split_whitespace();
                let number = words.next()?;
                (words.next()? == word).then(|| number.parse().ok())?
            })
            .ok_or_else(|| Invalid(format!("h2load's report has no count of `{word}`")))
    };
    let finished = line("finished in")?;
    let per_sec = finished
        .split(',')
        .find_map(|part| part.trim().strip_suffix(" req/s")?.parse::<f64>().ok())
        .ok_or_else(|| Invalid("h2load's `finished in` line has no req/s".to_owned()))?;
    let requests = line("requests:")?;
    let statuses = line("status codes:")?;
    Ok(Summary {
        per_sec,
        done: count(requests, "done")?,
        succeeded: count(requests, "succeeded")?,
        failed: count(requests, "failed")?,
        errored: count(requests, "errored")?,
        timeout: count(requests, "timeout")?,
        not_2xx: count(statuses, "3xx")? + count(statuses, "4xx")? + count(statuses, "5xx")?,
    })
}

impl Summary {
    /// Nothing through, failed or errored requests, or error statuses make the run no result.
    pub fn check(&self) -> Result<(), Invalid> {
        let mut problems = Vec::new();
        if self.succeeded == 0 || self.per_sec <= 0.0 {
            problems.push("no request succeeded".to_owned());
        }
        if self.failed + self.errored + self.timeout > 0 {
            problems.push(format!(
                "{} failed, {} errored, {} timed out of {} done",
                self.failed, self.errored, self.timeout, self.done
            ));
        }
        if self.not_2xx > 0 {
            problems.push(format!("{} non-2xx responses", self.not_2xx));
        }
        Invalid::unless_none(problems)
    }
}

/// The arguments of a timed run against 127.0.0.1:`port`.
pub fn args(load: H2Load, port: u16, path: &str) -> Vec<String> {
    vec![
        "--duration".into(),
        load.duration.as_secs().max(1).to_string(),
        "--clients".into(),
        load.clients.to_string(),
        "--max-concurrent-streams".into(),
        load.streams.to_string(),
        "--threads".into(),
        load.threads.to_string(),
        format!("http://127.0.0.1:{port}{path}"),
    ]
}

/// A timed run through 127.0.0.1:`port`: requests per second, or why it is no result.
pub async fn run(
    tools: &Tools,
    port: u16,
    path: &str,
    load: H2Load,
) -> anyhow::Result<Result<Summary, Invalid>> {
    let mut command = Command::new(&tools.h2load);
    command.args(args(load, port, path));
    let output = super::output(command, load.duration + Duration::from_secs(30))
        .await
        .context("h2load")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(parse(&stdout)
        .and_then(|summary| summary.check().map(|()| summary))
        .map_err(|invalid| {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = stderr.trim();
            if output.status.success() && stderr.is_empty() {
                invalid
            } else {
                Invalid(format!(
                    "{invalid} (h2load exited with {}: {stderr})",
                    output.status
                ))
            }
        }))
}

/// One GET over h2c with prior knowledge (curl): the HTTP version curl spoke, the status and the body.
pub async fn curl_get(
    tools: &Tools,
    port: u16,
    path: &str,
) -> anyhow::Result<(String, u16, Vec<u8>)> {
    let mut command = Command::new(&tools.curl);
    command
        .args(["--silent", "--show-error", "--noproxy", "*"])
        .args(["--http2-prior-knowledge", "--max-time", "10"])
        .args([
            "--output",
            "-",
            "--write-out",
            "\n%{http_version} %{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"));
    let output = super::output(command, Duration::from_secs(15)).await?;
    if !output.status.success() {
        anyhow::bail!(
            "curl --http2-prior-knowledge failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_curl(&output.stdout)
        .with_context(|| format!("curl printed {:?}", String::from_utf8_lossy(&output.stdout)))
}

/// The body, then a line `VERSION STATUS` that `--write-out` appended.
fn parse_curl(stdout: &[u8]) -> anyhow::Result<(String, u16, Vec<u8>)> {
    let split = stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .context("no --write-out line")?;
    let tail = String::from_utf8_lossy(&stdout[split + 1..]);
    let (version, status) = tail
        .trim()
        .split_once(' ')
        .context("no HTTP version and status")?;
    Ok((
        version.to_owned(),
        status.parse().context("bad status")?,
        stdout[..split].to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const REPORT: &str = "starting benchmark...
spawning thread #0: 5 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 2.00s, 57772.50 req/s, 4.41MB/s
requests: 115545 total, 115645 started, 115545 done, 115545 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 115546 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 8.82MB (9244148) total, 5.40MB (5661754) headers (space savings 50.51%), 1.43MB (1502085) data
";

    #[test]
    fn the_closing_report_is_read() {
        let summary = parse(REPORT).unwrap();
        assert_eq!(
            summary,
            Summary {
                per_sec: 57772.5,
                done: 115_545,
                succeeded: 115_545,
                failed: 0,
                errored: 0,
                timeout: 0,
                not_2xx: 0,
            }
        );
        assert_eq!(summary.check(), Ok(()));
    }

    #[rstest]
    #[case(
        "10.00",
        "requests: 10 total, 10 started, 10 done, 7 succeeded, 3 failed, 0 errored, 0 timeout",
        "status codes: 7 2xx, 0 3xx, 0 4xx, 0 5xx",
        "3 failed, 0 errored, 0 timed out of 10 done"
    )]
    #[case(
        "10.00",
        "requests: 10 total, 10 started, 10 done, 10 succeeded, 0 failed, 0 errored, 0 timeout",
        "status codes: 8 2xx, 0 3xx, 2 4xx, 0 5xx",
        "2 non-2xx responses"
    )]
    #[case(
        "0.00",
        "requests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout",
        "status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx",
        "no request succeeded"
    )]
    fn failures_and_error_statuses_are_no_result(
        #[case] per_sec: &str,
        #[case] requests: &str,
        #[case] statuses: &str,
        #[case] expected: &str,
    ) {
        let report = format!("finished in 1.00s, {per_sec} req/s, 1KB/s\n{requests}\n{statuses}\n");
        assert_eq!(
            parse(&report).and_then(|s| s.check()),
            Err(Invalid(expected.to_owned()))
        );
    }

    #[test]
    fn a_run_that_never_connected_is_no_result() {
        assert_eq!(
            parse("client could not connect to host\n"),
            Err(Invalid("h2load printed no `finished in` line".to_owned()))
        );
    }

    #[test]
    fn a_timed_run_uses_prior_knowledge_on_loopback() {
        let load = H2Load {
            clients: 10,
            streams: 10,
            threads: 2,
            duration: Duration::from_secs(5),
        };
        assert_eq!(
            args(load, 8082, "/").join(" "),
            "--duration 5 --clients 10 --max-concurrent-streams 10 --threads 2 http://127.0.0.1:8082/"
        );
    }

    #[test]
    fn curls_body_and_version_line_are_split() {
        let (version, status, body) = parse_curl(b"hello, world\n\n2 200").unwrap();
        assert_eq!((version.as_str(), status), ("2", 200));
        assert_eq!(body, b"hello, world\n");
        assert!(parse_curl(b"no newline").is_err());
    }
}
