//! Turns the cells' result files into docs/conformance-matrix.md, and fails when any cell is neither
//! passing nor failing as documented, or did not run.
//!
//! `conformance-matrix [--results DIR] [--output FILE]`
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sidecar_conformance::report::render;
use sidecar_conformance::results::CellResult;
use sidecar_conformance::workspace;

#[derive(Parser)]
struct Args {
    /// Directory of cell results [default: target/conformance/results]
    #[arg(long)]
    results: Option<PathBuf>,
    /// Where to write the table [default: docs/conformance-matrix.md]
    #[arg(long)]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let results_dir = args.results.unwrap_or_else(workspace::results_dir);
    let output = args
        .output
        .unwrap_or_else(|| workspace::root().join("docs/conformance-matrix.md"));
    let results = match CellResult::read_all(&results_dir) {
        Ok(results) => results,
        Err(e) => {
            eprintln!("conformance-matrix: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let report = render(&results);
    if let Err(e) = std::fs::write(&output, &report.markdown) {
        eprintln!("conformance-matrix: cannot write {}: {e}", output.display());
        return ExitCode::FAILURE;
    }
    println!(
        "conformance-matrix: {} cells, written to {}",
        results.len(),
        output.display()
    );
    if report.not_as_documented.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "conformance-matrix: {} cells are not as documented:",
        report.not_as_documented.len()
    );
    for cell in &report.not_as_documented {
        eprintln!("  {cell}");
    }
    ExitCode::FAILURE
}
