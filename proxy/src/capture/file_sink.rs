//! The file sink: records as JSON lines in a capture file (rotated by size) or on stdout. A record counts
//! as captured once it is flushed whole, and as dropped when writing it failed.

use std::io::{self, BufWriter, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::error;

use super::jsonl_file::JsonlFile;
use super::output::{RecordKind, RecordOutput, WrittenRecord};
use crate::metrics::{Metrics, RecordLabels};

/// How often, at most, write failures are logged.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) struct FileOutput {
    output: Output,
    unflushed: Unflushed,
    failures: WriteFailures,
    metrics: Arc<Metrics>,
}

pub(crate) enum Output {
    Stdout(BufWriter<io::Stdout>),
    File(JsonlFile),
}

impl FileOutput {
    pub(crate) fn new(output: Output, metrics: Arc<Metrics>) -> FileOutput {
        FileOutput {
            output,
            unflushed: Unflushed::default(),
            failures: WriteFailures::default(),
            metrics,
        }
    }

    /// Flushes the output, counting the records that were waiting in its buffer as captured or dropped.
    fn flush(&mut self) {
        let Unflushed { http, stream } = std::mem::take(&mut self.unflushed);
        match self.output.flush() {
            Ok(()) => {
                for (kind, count) in [("http", http), ("stream", stream)] {
                    if count > 0 {
                        self.metrics
                            .records_captured
                            .get_or_create(&RecordLabels { kind })
                            .inc_by(count);
                    }
                }
            }
            Err(e) => {
                self.metrics.records_dropped.inc_by(http + stream);
                self.output.discard_buffered();
                self.failures.failed(&e, http + stream);
            }
        }
    }
}

impl RecordOutput for FileOutput {
    /// Puts one record's line into the output's buffer (counted once flushed).
    fn write(&mut self, record: &WrittenRecord<'_>, line: &[u8]) {
        match self.output.write_line(line) {
            Ok(()) => match record.kind {
                RecordKind::Http => self.unflushed.http += 1,
                RecordKind::Stream => self.unflushed.stream += 1,
            },
            Err(e) => {
                self.metrics.records_dropped.inc();
                self.failures.failed(&e, 1);
            }
        }
        if self.output.wants_flush() {
            self.flush();
        }
    }

    fn end_batch(&mut self) {
        self.flush();
    }

    fn finish(mut self: Box<Self>, _deadline: Instant) {
        self.flush();
        self.failures.report_remaining();
    }
}

/// Records in the output's buffer, not yet flushed to the destination. They count as captured once a flush
/// succeeds, and as dropped when it fails (their bytes are then discarded, so a later flush cannot write
/// them after they were counted).
#[derive(Default)]
struct Unflushed {
    http: u64,
    stream: u64,
}

/// Write failures since the last error logged: on a full disk every record fails, and one line per record
/// would flood the log.
#[derive(Default)]
struct WriteFailures {
    last_logged: Option<Instant>,
    dropped: u64,
}

impl WriteFailures {
    fn failed(&mut self, error: &io::Error, dropped: u64) {
        self.dropped += dropped;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL)
        {
            self.last_logged = Some(now);
            error!(
                error = %error,
                dropped = std::mem::take(&mut self.dropped),
                "cannot write capture records: dropped (traffic is not affected; at most one message every 10s)"
            );
        }
    }

    /// At shutdown: the drops since the last message, which would otherwise never be told.
    fn report_remaining(&mut self) {
        let dropped = std::mem::take(&mut self.dropped);
        if dropped > 0 {
            error!(
                dropped,
                "capture records dropped since the last message, for failed writes"
            );
        }
    }
}

impl Output {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.write_all(line),
            Output::File(file) => {
                file.push_line(line);
                Ok(())
            }
        }
    }

    /// Whether the records gathered so far should be written before the next one.
    fn wants_flush(&self) -> bool {
        match self {
            Output::Stdout(_) => false,
            Output::File(file) => file.wants_flush(),
        }
    }

    /// Throws away what the buffer holds, without writing it (a failed flush's records, counted dropped).
    fn discard_buffered(&mut self) {
        match self {
            Output::Stdout(out) => {
                let _ = std::mem::replace(out, BufWriter::new(io::stdout())).into_parts();
            }
            // A failed batch is already gone, and cut back off the file.
            Output::File(_) => {}
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.flush(),
            Output::File(file) => file.flush(),
        }
    }
}
