//! `sidecar-proxy replay CAPTURE --target URL`: the flags, read into [`crate::replay::ReplayOptions`],
//! and the exit status (0 all answers matched, 1 one differed or failed, 2 bad usage or input).

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::capture::har::{read_capture, UnreadableLines};
use crate::compare::{JsonPath, Noise};
use crate::replay::pace::Pace;
use crate::replay::plan::Target;
use crate::replay::{replay, report, ReplayOptions};

use super::skipped_lines::SkippedLineReporter;

const EXIT_DIFFERS: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The capture file (JSON lines) whose inbound HTTP exchanges are sent again
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,

    /// Where to send them: http://host:port or https://host:port, optionally with a base path
    #[arg(long, value_name = "URL")]
    pub target: String,

    /// A response header not compared (repeatable), besides the default list (date, server, etag, ...)
    #[arg(long = "ignore-header", value_name = "NAME")]
    pub ignore_headers: Vec<String>,

    /// A JSON body field not compared (repeatable), JSONPath-like: $.items[*].updated, $.meta, $..id
    #[arg(long = "ignore-json", value_name = "PATH")]
    pub ignore_json: Vec<String>,

    /// Requests in flight at once
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub concurrency: usize,

    /// Requests started per second, or `max`: each as soon as one of --concurrency slots is free (the
    /// default)
    #[arg(long, value_name = "N", conflicts_with = "pace", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// `recorded`: start each request after the gap the capture recorded before it
    #[arg(long, value_name = "recorded", value_parser = ["recorded"])]
    pub pace: Option<String>,

    /// With --pace recorded: play the gaps this many times faster (2 halves them)
    #[arg(long, value_name = "FACTOR", requires = "pace", value_parser = parse_speed)]
    pub speed: Option<f64>,

    /// Time each request has to be answered whole
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Duration,

    /// Extra CA certificates (PEM) an https target's certificate may chain to, besides the system roots
    #[arg(long, value_name = "FILE")]
    pub target_ca: Option<PathBuf>,

    /// Write the outcome as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Write the outcome as JUnit XML to FILE (one test case per exchange)
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// The target's sidecar mocks its app's calls from MOCK_CAPTURE (its --mock, recorded in dual or
    /// transparent mode): each replayed request names the recorded one (header sidecar-replay-of), so the
    /// calls it causes are answered from the calls that recorded request caused
    #[arg(long, value_name = "MOCK_CAPTURE")]
    pub mock_from: Option<PathBuf>,
}

/// A rate per second; `max` is infinity (no pacing).
fn parse_rate(text: &str) -> Result<f64, String> {
    if text.trim().eq_ignore_ascii_case("max") {
        return Ok(f64::INFINITY);
    }
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(
            "allowed: a number of requests per second above zero, like 50 or 0.5, or max".into(),
        ),
    }
}

fn parse_speed(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 => Ok(speed),
        _ => Err("allowed: a factor above zero, like 2 (twice as fast) or 0.5".into()),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(timeout) if !timeout.is_zero() => Ok(timeout),
        _ => Err("allowed: a duration above zero, like 30s or 500ms".into()),
    }
}

impl ReplayArgs {
    pub fn run(self) -> ExitCode {
        let usage = |message: String| {
            eprintln!("sidecar-proxy: {message}");
            ExitCode::from(EXIT_USAGE)
        };
        let target = match Target::parse(&self.target) {
            Ok(target) => target,
            Err(message) => return usage(message),
        };
        let json = match self
            .ignore_json
            .iter()
            .map(|path| JsonPath::parse(path))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(json) => json,
            Err(error) => return usage(format!("invalid --ignore-json: {error}")),
        };
        if let Some(bad) = self
            .ignore_headers
            .iter()
            .find(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).is_err())
        {
            return usage(format!(
                "invalid --ignore-header {bad:?}: allowed: a header name such as x-request-id"
            ));
        }
        let source_name = self.capture.display().to_string();
        let mut skipped = SkippedLineReporter::default();
        let records = match File::open(&self.capture) {
            Ok(file) => read_capture(
                BufReader::new(file),
                &source_name,
                UnreadableLines::Skip,
                &mut |error| skipped.report(error),
            ),
            Err(error) => return usage(format!("cannot read {source_name}: {error}")),
        };
        let records = match records {
            Ok(read) => read.records,
            Err(error) => return usage(error.to_string()),
        };
        if let Some(mock_capture) = &self.mock_from {
            match linked_requests(mock_capture) {
                Ok(linked) => {
                    let replayed = records
                        .iter()
                        .filter(|record| record.direction == "inbound")
                        .filter(|record| linked.contains(&record.name()))
                        .count();
                    if replayed == 0 {
                        eprintln!(
                            "sidecar-proxy: warning: {} links no outbound call to the requests of {source_name} (record in dual or transparent mode, where calls are linked to the request they were made for); the mock answers every call from the whole capture",
                            mock_capture.display()
                        );
                    }
                }
                Err(message) => return usage(message),
            }
        }
        let pace = match (self.rate, self.pace.as_deref()) {
            (Some(rate), _) if rate.is_infinite() => Pace::Free,
            (Some(rate), _) => Pace::Rate(rate),
            (None, Some(_)) => Pace::Recorded {
                speed: self.speed.unwrap_or(1.0),
            },
            (None, None) => Pace::Free,
        };
        let options = ReplayOptions {
            target,
            target_ca: self.target_ca,
            noise: Noise::new(&self.ignore_headers, json),
            concurrency: self.concurrency,
            pace,
            timeout: self.timeout,
            progress: true,
            mark_replays: self.mock_from.is_some(),
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("sidecar-proxy: cannot start the replay's runtime: {error}");
                return ExitCode::from(EXIT_DIFFERS);
            }
        };
        let outcome = match runtime.block_on(replay(records, options)) {
            Ok(outcome) => outcome,
            Err(message) => return usage(format!("{source_name}: {message}")),
        };
        print!("{}", report::summary(&outcome));
        for (path, text) in [
            (&self.report, report::json as fn(&_) -> String),
            (&self.junit, report::junit),
        ] {
            if let Some(path) = path {
                if let Err(error) = std::fs::write(path, text(&outcome)) {
                    eprintln!("sidecar-proxy: cannot write {}: {error}", path.display());
                    return ExitCode::from(EXIT_DIFFERS);
                }
            }
        }
        if outcome.all_matched() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_DIFFERS)
        }
    }
}

/// The inbound requests (their `uid`s) the calls recorded in `path` were made for.
fn linked_requests(path: &std::path::Path) -> Result<std::collections::HashSet<String>, String> {
    let name = path.display().to_string();
    let file =
        File::open(path).map_err(|error| format!("cannot read --mock-from {name}: {error}"))?;
    let read = read_capture(
        BufReader::new(file),
        &name,
        UnreadableLines::Skip,
        &mut |_| {},
    )
    .map_err(|error| format!("cannot read --mock-from: {error}"))?;
    Ok(read
        .records
        .into_iter()
        .filter_map(|record| record.caused_by)
        .collect())
}
