//! `sidecar-bench run`: see docs/benchmarks.md.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sidecar_bench::cli::Cli::parse();
    sidecar_bench::cli::main(cli)
}
