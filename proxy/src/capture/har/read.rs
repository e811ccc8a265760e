//! The export command around [`to_har`]: capture JSON lines in (files or stdin), one HAR document out.
//! A line that is not a record (a crash or a full disk can cut one short) is reported by file and line
//! number and skipped, or, with `--strict`, refuses the export.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::capture::record::{Record, SCHEMA};
use crate::config::{excerpt, Quoted};

use super::entry::to_har;
use super::model::Har;

/// Why an export failed; [`ExportError::exit_code`] tells bad input (2) from a failure to write (1).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read {source_name}: {error}")]
    Open {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name} line {line}: cannot read: {error}")]
    Read {
        source_name: String,
        line: usize,
        error: std::io::Error,
    },
    #[error("{source_name} line {line}: not a {SCHEMA} record: {message}")]
    Malformed {
        source_name: String,
        line: usize,
        message: String,
    },
    #[error("cannot write {destination}: {error}")]
    Write {
        destination: String,
        error: std::io::Error,
    },
}

impl ExportError {
    /// 2 for input the command refuses (nothing is written), 1 when the HAR could not be written.
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Write { .. } => 1,
            _ => 2,
        }
    }
}

/// What a reader does with a line that is not a record (cut short by a crash or a full disk, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnreadableLines {
    /// Skip it, tell `on_skipped`, and read on: one torn line must not cost the records around it.
    Skip,
    /// Refuse the whole input with that line's error (`capture export --strict`).
    Refuse,
}

/// The records of one input, and how many unreadable lines were skipped to get them.
#[derive(Debug, Default)]
pub struct ReadRecords {
    pub records: Vec<Record>,
    pub skipped_lines: usize,
}

/// Parses capture JSON lines, refusing the input at its first unreadable line; blank lines are ignored.
/// `source_name` names the input in errors.
pub fn read_records<R: BufRead>(reader: R, source_name: &str) -> Result<Vec<Record>, ExportError> {
    read_capture(reader, source_name, UnreadableLines::Refuse, &mut |_| {}).map(|read| read.records)
}

/// The one reader of capture files: JSON lines in, records out, blank lines ignored. A line that is not a
/// record ([`ExportError::Malformed`], naming `source_name` and the line number) is skipped and handed to
/// `on_skipped`, or refuses the input, as `unreadable` says. A failure to read the input is always an
/// error: what follows it is unknown.
pub fn read_capture<R: BufRead>(
    reader: R,
    source_name: &str,
    unreadable: UnreadableLines,
    on_skipped: &mut dyn FnMut(&ExportError),
) -> Result<ReadRecords, ExportError> {
    let mut records = Vec::new();
    let skipped_lines = visit_capture(
        reader,
        source_name,
        unreadable,
        on_skipped,
        &mut |record, _| {
            records.push(record);
            ControlFlow::Continue(())
        },
    )?;
    Ok(ReadRecords {
        records,
        skipped_lines,
    })
}

/// [`read_capture`] one record at a time: `on_record` gets each record with its line as written (newline
/// included), and may stop the reading (`capture show` stops when its reader went away). Returns how many
/// unreadable lines were skipped.
pub fn visit_capture<R: BufRead>(
    mut reader: R,
    source_name: &str,
    unreadable: UnreadableLines,
    on_skipped: &mut dyn FnMut(&ExportError),
    on_record: &mut dyn FnMut(Record, &[u8]) -> ControlFlow<()>,
) -> Result<usize, ExportError> {
    let mut lines = CaptureLines::new(source_name, unreadable);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bytes, not `lines()`: a line that is not UTF-8 is an unreadable line, not a failed read.
        let length = reader
            .read_until(b'\n', &mut line)
            .map_err(|error| ExportError::Read {
                source_name: source_name.to_owned(),
                line: lines.line_number() + 1,
                error,
            })?;
        if length == 0 {
            return Ok(lines.skipped_lines());
        }
        if let Some(record) = lines.next_line(&line, on_skipped)? {
            if on_record(record, &line).is_break() {
                return Ok(lines.skipped_lines());
            }
        }
    }
}

/// The lines of one capture input, numbered as they come, each turned into a record or judged
/// unreadable. [`visit_capture`] feeds it from a reader; `capture tail` feeds it the lines a growing file
/// gains, so both read records the same way.
#[derive(Debug)]
pub struct CaptureLines {
    source_name: String,
    unreadable: UnreadableLines,
    line_number: usize,
    skipped_lines: usize,
}

impl CaptureLines {
    pub fn new(source_name: &str, unreadable: UnreadableLines) -> CaptureLines {
        CaptureLines {
            source_name: source_name.to_owned(),
            unreadable,
            line_number: 0,
            skipped_lines: 0,
        }
    }

    /// The same, for an input whose first `lines` lines were passed over (`capture tail` starts at the
    /// end of a file): lines keep their numbers in the file.
    pub fn after_lines(mut self, lines: usize) -> CaptureLines {
        self.line_number = lines;
        self
    }

    /// The next line (with or without its newline): its record, or `None` for a blank line or one that
    /// was skipped (and handed to `on_skipped`); when refusing, an unreadable line is the error.
    pub fn next_line(
        &mut self,
        line: &[u8],
        on_skipped: &mut dyn FnMut(&ExportError),
    ) -> Result<Option<Record>, ExportError> {
        self.line_number += 1;
        if line.trim_ascii().is_empty() {
            return Ok(None);
        }
        match parse_line(line, &self.source_name, self.line_number) {
            Ok(record) => Ok(Some(record)),
            Err(error) if self.unreadable == UnreadableLines::Skip => {
                self.skipped_lines += 1;
                on_skipped(&error);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Lines taken so far.
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    /// Unreadable lines skipped so far.
    pub fn skipped_lines(&self) -> usize {
        self.skipped_lines
    }
}

/// One line as a record of this sidecar's schema.
fn parse_line(line: &[u8], source_name: &str, line_number: usize) -> Result<Record, ExportError> {
    let malformed = |message: String| ExportError::Malformed {
        source_name: source_name.to_owned(),
        line: line_number,
        message,
    };
    // The schema first: a record of another version should be named as such, not as a missing field.
    #[derive(serde::Deserialize)]
    struct SchemaOnly {
        schema: Option<String>,
    }
    if let Ok(SchemaOnly {
        schema: Some(schema),
    }) = serde_json::from_slice::<SchemaOnly>(line)
    {
        if schema != SCHEMA {
            return Err(malformed(format!(
                "schema is {}; this sidecar reads \"{SCHEMA}\"",
                Quoted(&schema)
            )));
        }
    }
    let record: Record = serde_json::from_slice(line).map_err(|e| {
        // serde_json's own "at line 1 column N" would read as a line of the file.
        let column = e.column();
        let text = e.to_string();
        let text = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(t, _)| t);
        // serde quotes a value it did not expect whole (escaped): a line can hold megabytes of one.
        malformed(format!("{} (column {column})", excerpt(text)))
    })?;
    if record.schema != SCHEMA {
        return Err(malformed(format!(
            "schema is {}; this sidecar reads \"{SCHEMA}\"",
            Quoted(&record.schema)
        )));
    }
    Ok(record)
}

/// What [`export_files`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub records: usize,
    pub entries: usize,
    pub skipped_streams: usize,
    /// Lines of the inputs that were not records and were skipped (always 0 when refusing them).
    pub skipped_lines: usize,
}

/// Reads every input (`-` is stdin), then writes one HAR document to `output` (`None` or `-`: stdout).
/// Unreadable lines are skipped (each handed to `on_skipped`) or refuse the export, as `unreadable` says.
/// A file output is written beside its final name and renamed into place, so a failed export never
/// leaves half a HAR file behind (and an input may be overwritten safely).
pub fn export_files(
    inputs: &[PathBuf],
    output: Option<&Path>,
    unreadable: UnreadableLines,
    on_skipped: &mut dyn FnMut(&ExportError),
) -> Result<ExportSummary, ExportError> {
    let mut records = Vec::new();
    let mut skipped_lines = 0;
    for input in inputs {
        let read = if input.as_os_str() == "-" {
            read_capture(std::io::stdin().lock(), "<stdin>", unreadable, on_skipped)?
        } else {
            let source_name = input.display().to_string();
            let file = File::open(input).map_err(|error| ExportError::Open {
                source_name: source_name.clone(),
                error,
            })?;
            read_capture(BufReader::new(file), &source_name, unreadable, on_skipped)?
        };
        records.extend(read.records);
        skipped_lines += read.skipped_lines;
    }
    let export = to_har(&records);
    let summary = ExportSummary {
        records: records.len(),
        entries: export.har.log.entries.len(),
        skipped_streams: export.skipped_streams,
        skipped_lines,
    };
    match output.filter(|path| path.as_os_str() != "-") {
        None => {
            let stdout = std::io::stdout().lock();
            write_har(&export.har, stdout).map_err(|error| ExportError::Write {
                destination: "stdout".into(),
                error,
            })?;
        }
        Some(path) => {
            let write_error = |error| ExportError::Write {
                destination: path.display().to_string(),
                error,
            };
            let mut temporary = path.as_os_str().to_owned();
            temporary.push(format!(".tmp-{}", std::process::id()));
            let temporary = PathBuf::from(temporary);
            // 0600 like the capture files it is made from: it holds the same headers and bodies.
            let written = crate::capture::jsonl_file::create_private(&temporary)
                .and_then(|file| write_har(&export.har, file))
                .and_then(|()| std::fs::rename(&temporary, path));
            if let Err(error) = written {
                let _ = std::fs::remove_file(&temporary);
                return Err(write_error(error));
            }
        }
    }
    Ok(summary)
}

fn write_har<W: Write>(har: &Har, writer: W) -> std::io::Result<()> {
    let mut writer = BufWriter::new(writer);
    serde_json::to_writer_pretty(&mut writer, har)?;
    writer.write_all(b"\n")?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::har::fixtures::{get, http_record};
    use crate::capture::record::HttpExchange;

    #[test]
    fn a_malformed_line_is_named_by_number() {
        let good = serde_json::to_string(&http_record(
            1,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request: get("http://api.test/"),
                response: None,
                error: Some("boom".into()),
                upgraded: None,
                mock: None,
            },
        ))
        .unwrap();
        let input = format!("{good}\n\n{good}\n{{\"schema\": 3\n");
        let err = read_records(input.as_bytes(), "cap.jsonl").unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("cap.jsonl line 4: not a sidecar.capture/v1 record: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(err.exit_code(), 2);

        let other = good.replace(SCHEMA, "sidecar.capture/v9");
        let err = read_records(format!("{good}\n{other}\n").as_bytes(), "cap.jsonl").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cap.jsonl line 2: not a sidecar.capture/v1 record: schema is \"sidecar.capture/v9\"; this sidecar reads \"sidecar.capture/v1\""
        );

        let records = read_records(format!("{good}\n\n{good}\n").as_bytes(), "x").unwrap();
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn unreadable_lines_are_skipped_and_named_when_skipping() {
        let good = serde_json::to_string(&http_record(
            1,
            "2026-11-26T10:00:00.000000Z",
            HttpExchange {
                request: get("http://api.test/"),
                response: None,
                error: Some("boom".into()),
                upgraded: None,
                mock: None,
            },
        ))
        .unwrap();
        // A torn line, a line that is not UTF-8, and a torn last line without its newline.
        let mut input = format!("{good}\n{}\n{good}\n", &good[..30]).into_bytes();
        input.extend_from_slice(b"\xff\xfe{\n");
        input.extend_from_slice(format!("{good}\n{}", &good[..50]).as_bytes());
        let mut named = Vec::new();
        let read = read_capture(
            &input[..],
            "cap.jsonl",
            UnreadableLines::Skip,
            &mut |error| named.push(error.to_string()),
        )
        .unwrap();
        assert_eq!(read.records.len(), 3);
        assert_eq!(read.skipped_lines, 3);
        let lines: Vec<_> = named
            .iter()
            .map(|message| message.split(':').next().unwrap())
            .collect();
        assert_eq!(
            lines,
            ["cap.jsonl line 2", "cap.jsonl line 4", "cap.jsonl line 6"]
        );

        let refused = read_capture(
            &input[..],
            "cap.jsonl",
            UnreadableLines::Refuse,
            &mut |_| panic!("nothing is skipped when refusing"),
        )
        .unwrap_err();
        assert!(
            refused.to_string().starts_with("cap.jsonl line 2: "),
            "{refused}"
        );
    }

    #[test]
    fn what_a_line_holds_is_quoted_short_and_escaped() {
        let huge = "x".repeat(1 << 20);
        let line = format!(r#"{{"schema":"{SCHEMA}","id":"{huge}"}}"#);
        let error = read_records(line.as_bytes(), "big.jsonl")
            .unwrap_err()
            .to_string();
        assert!(error.len() < 600, "{} bytes", error.len());
        assert!(error.contains("bytes in all"), "{error}");

        let line = r#"{"schema":"v9\n\u001b[31m","id":1}"#;
        let error = read_records(line.as_bytes(), "esc.jsonl")
            .unwrap_err()
            .to_string();
        assert!(error.contains(r#"schema is "v9\n\u{1b}[31m""#), "{error}");
        assert!(!error.contains(['\n', '\x1b']), "{error:?}");
    }

    #[test]
    fn another_schema_version_is_named_as_such() {
        let line = r#"{"schema":"sidecar.capture/v2","id":1,"kind":"http"}"#;
        let error = read_records(line.as_bytes(), "new.jsonl")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "schema is \"sidecar.capture/v2\"; this sidecar reads \"sidecar.capture/v1\""
            ),
            "{error}"
        );
    }
}
