//! The command line: `sidecar-bench run [--smoke] [--rounds N] [--seconds S] [--out PATH] [--proxy-bin PATH]
//! [--relay-bin PATH]`,
//! and the settings a full run and a smoke run differ in.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::results::ScenarioKind;
use crate::run;
use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "sidecar-bench",
    version,
    about = "Benchmarks sidecar-proxy side by side with haproxy, nginx, squid, tinyproxy, dante, microsocks and mitmproxy"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install what is missing, start every server on 127.0.0.1, measure every scenario round by round,
    /// and write the markdown report
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// CI-sized run: one round, about a second per measurement, 1,000 idle connections; writes to a
    /// temporary file unless --out is given, and fails if any row has no valid result
    #[arg(long)]
    pub smoke: bool,

    /// Rounds; every contender is measured once per round, interleaved (default 3, smoke 1)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,

    /// Seconds per measurement (default 5, smoke 1)
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: Option<u64>,

    /// Idle client connections held open in the memory scenario (default 10000, smoke 1000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub idle_connections: Option<u32>,

    /// Where the markdown report goes (default docs/benchmarks.md of the workspace; smoke: a
    /// temporary file). An existing file keeps everything outside its generated markers.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// A sidecar-proxy binary to measure instead of building `cargo build --release -p sidecar-proxy -p
    /// sidecar-bench -p sidecar-soak`
    #[arg(long, value_name = "PATH")]
    pub proxy_bin: Option<PathBuf>,

    /// A minimal-relay binary (the relay limit) to measure instead of building it with the proxy
    #[arg(long, value_name = "PATH")]
    pub relay_bin: Option<PathBuf>,

    /// Keep the directory of generated configs, logs and capture files (its path is printed)
    #[arg(long)]
    pub keep_workdir: bool,

    /// Measure only this scenario, by its number in the report (1 keep-alive, 2 new connections, 3 bulk,
    /// 4 latency, 5 memory, 7 tls-out, 8 HTTP/2, 9 replay and mock); repeat for several. A partial run
    /// writes to a temporary file unless --out is given, so the committed report stays whole
    #[arg(long, value_name = "N", value_parser = ScenarioKind::from_number)]
    pub scenario: Vec<ScenarioKind>,
}

const MIB: u64 = 1024 * 1024;

/// The flags, with the smoke and full defaults applied. [`Settings`] lives in [`crate::settings`], below
/// the scenarios that read it, so that they need nothing of the command line.
impl Settings {
    pub fn from_args(args: &RunArgs) -> Settings {
        let smoke = args.smoke;
        Settings {
            smoke,
            rounds: args.rounds.unwrap_or(if smoke { 1 } else { 3 }),
            measure_for: Duration::from_secs(args.seconds.unwrap_or(if smoke { 1 } else { 5 })),
            idle_connections: args
                .idle_connections
                .unwrap_or(if smoke { 1_000 } else { 10_000 }),
            large_file_bytes: if smoke { 256 * MIB } else { 1024 * MIB },
            out: args.out.clone(),
            proxy_bin: args.proxy_bin.clone(),
            relay_bin: args.relay_bin.clone(),
            keep_workdir: args.keep_workdir,
            only: args.scenario.clone(),
        }
    }
}

/// Runs the command on a tokio runtime. Ctrl-C or SIGTERM drops the run, and with it every server's
/// guard, so nothing the harness started outlives it.
pub fn main(cli: Cli) -> ExitCode {
    let Command::Run(args) = cli.command;
    let settings = Settings::from_args(&args);
    let command_line = shell_words(std::env::args());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime");
    let outcome = runtime.and_then(|runtime| {
        runtime.block_on(async {
            tokio::select! {
                outcome = run::run(settings, command_line) => outcome,
                signal = stop_signal() => Err(anyhow::anyhow!("stopped by {signal}; every server started was stopped")),
            }
        })
    });
    match outcome {
        Ok(rows) if rows.is_empty() => ExitCode::SUCCESS,
        Ok(rows) => {
            eprintln!(
                "sidecar-bench: {} row(s) produced no valid result: {}",
                rows.len(),
                rows.join("; ")
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("sidecar-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
            _ = terminate.recv() => "SIGTERM",
        },
        Err(_) => {
            // Without a SIGTERM handler Ctrl-C still stops the run cleanly.
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// The command line as one could paste it into a shell (for the report).
pub fn shell_words(words: impl IntoIterator<Item = String>) -> String {
    words
        .into_iter()
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
            if plain {
                word
            } else {
                format!("'{}'", word.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(&["sidecar-bench", "run", "--smoke"], "sidecar-bench run --smoke")]
    #[case(&["x", "--out", "a b"], "x --out 'a b'")]
    #[case(&["x", "it's"], r"x 'it'\''s'")]
    #[case(&["x", ""], "x ''")]
    fn shell_words_quotes_only_what_needs_it(#[case] words: &[&str], #[case] expected: &str) {
        assert_eq!(shell_words(words.iter().map(|w| w.to_string())), expected);
    }

    #[rstest]
    #[case(&["sidecar-bench", "run"], 3, 5, 10_000)]
    #[case(&["sidecar-bench", "run", "--smoke"], 1, 1, 1_000)]
    #[case(&["sidecar-bench", "run", "--smoke", "--rounds", "2", "--seconds", "3"], 2, 3, 1_000)]
    fn smoke_and_full_defaults(
        #[case] argv: &[&str],
        #[case] rounds: u32,
        #[case] seconds: u64,
        #[case] idle: u32,
    ) {
        let Command::Run(args) = Cli::parse_from(argv).command;
        let settings = Settings::from_args(&args);
        assert_eq!(settings.rounds, rounds);
        assert_eq!(settings.measure_for, Duration::from_secs(seconds));
        assert_eq!(settings.idle_connections, idle);
    }

    #[test]
    fn zero_rounds_is_refused() {
        assert!(Cli::try_parse_from(["sidecar-bench", "run", "--rounds", "0"]).is_err());
    }
}
