//! `sidecar-soak --duration 3m --out DIR`: sustained mixed load through real sidecars, with their
//! memory, descriptors and tasks sampled over time and a verdict on growth (docs/soak.md).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sidecar_soak::SoakOptions;

#[derive(Debug, Parser)]
#[command(name = "sidecar-soak", version, about)]
struct Cli {
    /// How long the load runs (a few seconds of rest before it and up to 30 s of settle after it come
    /// on top): `3m` in CI, `60m` by hand.
    #[arg(long, value_parser = humantime::parse_duration, required_unless_present = "replot")]
    duration: Option<Duration>,
    /// Directory for samples.csv, the SVG charts, summary.md, the sidecars' logs and capture files.
    #[arg(long, required_unless_present = "replot")]
    out: Option<PathBuf>,
    /// Run nothing: redraw the SVG charts in DIR from DIR/samples.csv.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["duration", "out", "proxy_bin"])]
    replot: Option<PathBuf>,
    /// The sidecar-proxy binary to soak; by default `cargo build --release -p sidecar-proxy -p
    /// sidecar-bench -p sidecar-soak --locked` builds it (honouring CARGO_TARGET_DIR).
    #[arg(long)]
    proxy_bin: Option<PathBuf>,
    /// Interval between samples of each sidecar.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    sample_every: Duration,
    /// Multiplies the rate of every load generator (1 is the documented load).
    #[arg(long, default_value_t = 1.0)]
    rate_scale: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = cli.replot {
        return match sidecar_soak::replot(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("sidecar-soak: error: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    // clap requires both unless --replot was given.
    let (Some(duration), Some(out)) = (cli.duration, cli.out) else {
        eprintln!("sidecar-soak: --duration and --out are required");
        return ExitCode::from(2);
    };
    let options = SoakOptions {
        duration,
        out,
        proxy_bin: cli.proxy_bin,
        sample_every: cli.sample_every,
        rate_scale: cli.rate_scale,
    };
    match sidecar_soak::run(options).await {
        Ok(result) if result.failures.is_empty() => {
            eprintln!("sidecar-soak: PASS ({})", result.summary_path.display());
            ExitCode::SUCCESS
        }
        Ok(result) => {
            eprintln!("sidecar-soak: FAIL ({})", result.summary_path.display());
            for failure in &result.failures {
                eprintln!("sidecar-soak: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("sidecar-soak: error: {error:#}");
            ExitCode::from(2)
        }
    }
}
