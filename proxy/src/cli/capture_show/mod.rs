//! `sidecar-proxy capture show` and `capture tail`: capture records as readable blocks, filtered, or
//! passed through unchanged as JSON lines (`--json`).
//!
//! - `filter`: which records are printed.
//! - `format`: one record as a block of text; `body_view` decodes and lays out a body.
//! - `follow`: a growing file followed across rotation (`tail`).
//!
//! Records are read by the one capture reader ([`crate::capture::har::visit_capture`] and
//! [`CaptureLines`]), so a torn line is skipped and named here as it is by `capture export`.

mod body_view;
mod filter;
mod follow;
mod format;

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::capture::har::{visit_capture, CaptureLines, ExportError, UnreadableLines};
use crate::capture::record::Record;

use super::skipped_lines::SkippedLineReporter;
use filter::{RecordFilter, StatusFilter};
use follow::{Followed, FollowedFile};
use format::{record_block, Colours};

/// How often `capture tail` looks for new lines.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only records of this direction
    #[arg(long, value_name = "DIRECTION", value_parser = ["inbound", "outbound"])]
    pub direction: Option<String>,

    /// Only records about this host: the URL's host, the target, where it was delivered or the TLS server
    /// name (no port; any case)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,

    /// Only HTTP exchanges answered with this status (404) or status class (5xx)
    #[arg(long, value_name = "N|Nxx", value_parser = StatusFilter::parse)]
    pub status: Option<StatusFilter>,

    /// Only records holding TEXT (case matters) in the URL, the target, a header, the error or a body
    /// (decoded)
    #[arg(long, value_name = "TEXT")]
    pub grep: Option<String>,

    /// Only the outbound calls the app made for the inbound request UID (its `uid`; dual and transparent
    /// modes link them)
    #[arg(long, value_name = "UID")]
    pub caused_by: Option<String>,

    /// Print the matching records as they are in the file, one JSON line each (for jq and scripts)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub filters: FilterArgs,

    /// Refuse the input at its first line that is not a capture record (exit 2) instead of skipping it
    #[arg(long)]
    pub strict: bool,

    /// Capture files, JSON lines, shown in the order given; `-` reads stdin
    #[arg(value_name = "FILE", required = true)]
    pub inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub filters: FilterArgs,

    /// Print the records the file already holds first (by default only records appended from now on)
    #[arg(long)]
    pub from_start: bool,

    /// The capture file to follow (followed across rotation: when it is renamed away and created anew,
    /// the new file is read)
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
}

/// Where matching records go: blocks of text, or their lines unchanged.
struct Printer {
    filter: RecordFilter,
    json: bool,
    colours: Colours,
    out: io::BufWriter<io::Stdout>,
    seen: usize,
    printed: usize,
}

impl Printer {
    fn new(filters: FilterArgs) -> Printer {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        let colours = if io::stdout().is_terminal() && !no_color && !filters.json {
            Colours::On
        } else {
            Colours::Off
        };
        Printer {
            filter: RecordFilter {
                direction: filters.direction,
                host: filters.host,
                status: filters.status,
                grep: filters.grep,
                caused_by: filters.caused_by,
            },
            json: filters.json,
            colours,
            out: io::BufWriter::new(io::stdout()),
            seen: 0,
            printed: 0,
        }
    }

    /// Prints the record if it matches: `line` is the record as the file holds it.
    fn print(&mut self, record: &Record, line: &[u8]) -> io::Result<()> {
        self.seen += 1;
        if !self.filter.matches(record) {
            return Ok(());
        }
        self.printed += 1;
        if self.json {
            self.out.write_all(line)?;
            if !line.ends_with(b"\n") {
                self.out.write_all(b"\n")?;
            }
            Ok(())
        } else {
            self.out
                .write_all(record_block(record, self.colours).as_bytes())
        }
    }
}

/// A failure to write stdout: a reader that went away (`| head`) ends the command quietly.
fn write_failed(error: &io::Error) -> ExitCode {
    if error.kind() == io::ErrorKind::BrokenPipe {
        ExitCode::SUCCESS
    } else {
        eprintln!("sidecar-proxy: cannot write stdout: {error}");
        ExitCode::from(1)
    }
}

impl ShowArgs {
    pub fn run(self) -> ExitCode {
        let unreadable = if self.strict {
            UnreadableLines::Refuse
        } else {
            UnreadableLines::Skip
        };
        let mut printer = Printer::new(self.filters);
        let mut skipped = SkippedLineReporter::default();
        let mut write_error = None;
        for input in &self.inputs {
            let mut on_record = |record: Record, line: &[u8]| match printer.print(&record, line) {
                Ok(()) => ControlFlow::Continue(()),
                Err(error) => {
                    write_error = Some(error);
                    ControlFlow::Break(())
                }
            };
            let mut on_skipped = |error: &ExportError| skipped.report(error);
            let read = if input.as_os_str() == "-" {
                visit_capture(
                    io::stdin().lock(),
                    "<stdin>",
                    unreadable,
                    &mut on_skipped,
                    &mut on_record,
                )
            } else {
                let source_name = input.display().to_string();
                File::open(input)
                    .map_err(|error| ExportError::Open {
                        source_name: source_name.clone(),
                        error,
                    })
                    .and_then(|file| {
                        visit_capture(
                            BufReader::new(file),
                            &source_name,
                            unreadable,
                            &mut on_skipped,
                            &mut on_record,
                        )
                    })
            };
            if let Some(error) = write_error.take() {
                return write_failed(&error);
            }
            if let Err(error) = read {
                let _ = printer.out.flush();
                eprintln!("sidecar-proxy: {error}");
                return ExitCode::from(error.exit_code());
            }
        }
        if let Err(error) = printer.out.flush() {
            return write_failed(&error);
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let skipped_lines = match skipped.skipped() {
            0 => String::new(),
            n => format!("; skipped {n} unreadable line{}", plural(n)),
        };
        eprintln!(
            "sidecar-proxy: {} of {} record{} matched{skipped_lines}",
            printer.printed,
            printer.seen,
            plural(printer.seen)
        );
        ExitCode::SUCCESS
    }
}

impl TailArgs {
    /// Runs until interrupted (or until stdout's reader goes away).
    pub fn run(self) -> ExitCode {
        let source_name = self.input.display().to_string();
        let (mut followed, lines_before) = match FollowedFile::open(&self.input, self.from_start) {
            Ok(opened) => opened,
            Err(error) => {
                eprintln!("sidecar-proxy: cannot read {source_name}: {error}");
                return ExitCode::from(2);
            }
        };
        let mut printer = Printer::new(self.filters);
        let mut skipped = SkippedLineReporter::default();
        let mut lines =
            CaptureLines::new(&source_name, UnreadableLines::Skip).after_lines(lines_before);
        eprintln!(
            "sidecar-proxy: following {source_name} from {} (across rotation); Ctrl-C stops",
            if self.from_start {
                "its start"
            } else {
                "its end"
            }
        );
        loop {
            let gained = match followed.poll() {
                Ok(gained) => gained,
                Err(error) => {
                    eprintln!("sidecar-proxy: cannot read {source_name}: {error}");
                    return ExitCode::from(1);
                }
            };
            if gained.is_empty() {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            }
            for event in gained {
                let line = match event {
                    Followed::Line(line) => line,
                    Followed::Reopened { path, torn } => {
                        if let Some(torn) = torn {
                            // The old file ended inside a line: it can only be an unreadable one.
                            let _ = lines.next_line(&torn, &mut |e| skipped.report(e));
                        }
                        let reading = path.display().to_string();
                        if reading == source_name {
                            eprintln!(
                                "sidecar-proxy: {source_name} was rotated; following the new file"
                            );
                        } else {
                            eprintln!("sidecar-proxy: {source_name} was rotated more than once; reading {reading} on the way");
                        }
                        lines = CaptureLines::new(&reading, UnreadableLines::Skip);
                        continue;
                    }
                    Followed::Truncated => {
                        eprintln!(
                            "sidecar-proxy: {source_name} was truncated; reading it from its start"
                        );
                        lines = CaptureLines::new(&source_name, UnreadableLines::Skip);
                        continue;
                    }
                };
                let record = lines
                    .next_line(&line, &mut |e| skipped.report(e))
                    .ok()
                    .flatten();
                if let Some(record) = record {
                    if let Err(error) = printer.print(&record, &line) {
                        return write_failed(&error);
                    }
                }
            }
            if let Err(error) = printer.out.flush() {
                return write_failed(&error);
            }
        }
    }
}
