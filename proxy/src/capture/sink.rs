//! Getting records off the data path: relays hand finished records to a bounded queue, and a dedicated
//! writer thread serializes them to JSON lines and does the file I/O.
//!
//! A full queue never holds traffic: the record is dropped and counted, with a warning at most every
//! few seconds. Shutdown sends a `Finish` marker behind every queued record and waits for the writer to
//! flush, so every exchange that completed before exit is on disk.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{error, warn};

use super::jsonl_file::{JsonlFile, Rotation};
use super::record::{Detail, Record};
use crate::metrics::{Metrics, RecordLabels};

/// How often, at most, a "records dropped" warning is logged.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// How long the writer rests after each batch (see `write_records`).
const WRITER_REST: Duration = Duration::from_millis(5);

/// Where records go: `--capture PATH`, `--capture -` (stdout) or `--capture off`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    File(PathBuf),
}

impl Destination {
    pub fn parse(text: &str) -> Destination {
        match text {
            "off" => Destination::Off,
            "-" => Destination::Stdout,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkOptions {
    pub destination: Destination,
    /// Records that may wait for the writer before new ones are dropped.
    pub queue_capacity: usize,
    pub rotation: Option<Rotation>,
}

enum Message {
    Record(Box<Record>),
    /// Raw material of a record, turned into one on the writer thread (see [`BuildRecord`]).
    Build(Box<dyn BuildRecord>),
    /// Flush, acknowledge, stop. Sent behind every record already queued.
    Finish(std::sync::mpsc::Sender<()>),
}

/// What a relay hands over when turning what it saw into a record is too much work for the connection's
/// task (parsing heads again into named fields, redaction, URLs): the writer thread builds the record just
/// before serializing it. `None` when there turned out to be nothing to record.
pub trait BuildRecord: Send {
    fn build(self: Box<Self>) -> Option<Record>;
}

/// The relays' handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct CaptureSink {
    inner: Option<Arc<SinkInner>>,
}

struct SinkInner {
    queue: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
    dropped_unreported: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// Owned by `main`: flushes and stops the writer at shutdown.
pub struct CaptureWriter {
    queue: mpsc::Sender<Message>,
    thread: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open capture file {path}: {source}")]
pub struct SinkError {
    path: PathBuf,
    source: io::Error,
}

impl CaptureSink {
    /// A sink that records nothing (`--capture off`, and tests that do not look at records).
    pub fn disabled() -> Self {
        CaptureSink { inner: None }
    }

    /// Opens the destination (so a bad path fails at start, not at the first record) and starts the writer.
    pub fn start(
        options: &SinkOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(CaptureSink, Option<CaptureWriter>), SinkError> {
        let output = match &options.destination {
            Destination::Off => return Ok((CaptureSink::disabled(), None)),
            Destination::Stdout => Output::Stdout(BufWriter::new(io::stdout())),
            Destination::File(path) => {
                Output::File(JsonlFile::open(path, options.rotation).map_err(|source| {
                    SinkError {
                        path: path.clone(),
                        source,
                    }
                })?)
            }
        };
        let (queue, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let writer_metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("capture-writer".into())
            .spawn(move || write_records(receiver, output, &writer_metrics))
            .map_err(|source| SinkError {
                path: PathBuf::from("<writer thread>"),
                source,
            })?;
        let sink = CaptureSink {
            inner: Some(Arc::new(SinkInner {
                queue: queue.clone(),
                metrics,
                dropped_unreported: AtomicU64::new(0),
                last_warning: Mutex::new(None),
            })),
        };
        Ok((sink, Some(CaptureWriter { queue, thread })))
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Hands a finished record to the writer, or drops and counts it if the queue is full.
    pub fn submit(&self, record: Record) {
        let Some(inner) = &self.inner else { return };
        if inner
            .queue
            .try_send(Message::Record(Box::new(record)))
            .is_err()
        {
            inner.record_dropped();
        }
    }

    /// Hands the makings of a record to the writer, which builds it off the data path; dropped and
    /// counted like a record when the queue is full.
    pub fn submit_to_build(&self, makings: Box<dyn BuildRecord>) {
        let Some(inner) = &self.inner else { return };
        if inner.queue.try_send(Message::Build(makings)).is_err() {
            inner.record_dropped();
        }
    }
}

impl SinkInner {
    fn record_dropped(&self) {
        self.metrics.records_dropped.inc();
        let unreported = self.dropped_unreported.fetch_add(1, Ordering::Relaxed) + 1;
        // try_lock: a contended lock means another task is warning right now; never wait on the data path.
        let Ok(mut last) = self.last_warning.try_lock() else {
            return;
        };
        let now = Instant::now();
        if last.is_none_or(|at| now.duration_since(at) >= DROP_WARNING_INTERVAL) {
            *last = Some(now);
            self.dropped_unreported
                .fetch_sub(unreported, Ordering::Relaxed);
            warn!(
                dropped = unreported,
                "capture queue full: records dropped (traffic is not affected)"
            );
        }
    }
}

impl CaptureWriter {
    /// Waits until every record queued so far is written and flushed, then stops the writer. Gives up
    /// after `timeout` (a hung disk must not keep a terminating pod alive); returns whether it finished.
    ///
    /// Blocking: call it outside the async runtime, once no connection task can submit records any more.
    pub fn finish_blocking(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, flushed) = std::sync::mpsc::channel();
        let mut message = Message::Finish(done);
        loop {
            match self.queue.try_send(message) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Full(again)) if Instant::now() < deadline => {
                    message = again;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        let finished = flushed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok();
        if finished {
            let _ = self.thread.join();
        }
        finished
    }

    /// [`CaptureWriter::finish_blocking`] for async callers (tests, embedders), with a 30 s limit.
    pub async fn finish(self) {
        let _ = tokio::task::spawn_blocking(move || self.finish_blocking(Duration::from_secs(30)))
            .await;
    }
}

fn write_records(mut queue: mpsc::Receiver<Message>, mut output: Output, metrics: &Metrics) {
    let mut line = Vec::with_capacity(4096);
    let mut unflushed = Unflushed::default();
    let mut failures = WriteFailures::default();
    while let Some(mut message) = queue.blocking_recv() {
        // Everything already queued is written as one batch, then flushed once.
        loop {
            match message {
                Message::Record(record) => write_record(
                    &record,
                    &mut line,
                    &mut output,
                    &mut unflushed,
                    &mut failures,
                    metrics,
                ),
                Message::Build(makings) => {
                    if let Some(record) = makings.build() {
                        write_record(
                            &record,
                            &mut line,
                            &mut output,
                            &mut unflushed,
                            &mut failures,
                            metrics,
                        );
                    }
                }
                Message::Finish(done) => {
                    flush(&mut output, &mut unflushed, &mut failures, metrics);
                    failures.report_remaining();
                    let _ = done.send(());
                    return;
                }
            }
            match queue.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        flush(&mut output, &mut unflushed, &mut failures, metrics);
        // A writer that is not waiting on the queue costs the relays nothing to hand it a record; one that
        // is parked costs each of them a futex wake-up. Resting briefly between batches turns one wake-up
        // per record into one per batch under load, and delays a record by at most this much when idle.
        std::thread::sleep(WRITER_REST);
    }
    flush(&mut output, &mut unflushed, &mut failures, metrics);
    failures.report_remaining();
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
            .is_none_or(|at| now.duration_since(at) >= DROP_WARNING_INTERVAL)
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

/// Flushes the output, counting the records that were waiting in its buffer as captured or dropped.
fn flush(
    output: &mut Output,
    unflushed: &mut Unflushed,
    failures: &mut WriteFailures,
    metrics: &Metrics,
) {
    let Unflushed { http, stream } = std::mem::take(unflushed);
    match output.flush() {
        Ok(()) => {
            for (kind, count) in [("http", http), ("stream", stream)] {
                if count > 0 {
                    metrics
                        .records_captured
                        .get_or_create(&RecordLabels { kind })
                        .inc_by(count);
                }
            }
        }
        Err(e) => {
            metrics.records_dropped.inc_by(http + stream);
            output.discard_buffered();
            failures.failed(&e, http + stream);
        }
    }
}

/// Encodes one record as a JSON line and writes it into the output's buffer (counted once flushed).
fn write_record(
    record: &Record,
    line: &mut Vec<u8>,
    output: &mut Output,
    unflushed: &mut Unflushed,
    failures: &mut WriteFailures,
    metrics: &Metrics,
) {
    line.clear();
    if let Err(e) = serde_json::to_writer(&mut *line, record) {
        error!(error = %e, "cannot encode a capture record");
        metrics.records_dropped.inc();
        return;
    }
    line.push(b'\n');
    match output.write_line(line) {
        Ok(()) => match record.detail {
            Detail::Http(_) => unflushed.http += 1,
            Detail::Stream(_) => unflushed.stream += 1,
        },
        Err(e) => {
            metrics.records_dropped.inc();
            failures.failed(&e, 1);
        }
    }
    if output.wants_flush() {
        flush(output, unflushed, failures, metrics);
    }
}

enum Output {
    Stdout(BufWriter<io::Stdout>),
    File(JsonlFile),
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
