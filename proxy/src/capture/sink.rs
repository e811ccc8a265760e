//! Getting records off the data path: relays hand finished records to a bounded queue, and a dedicated
//! writer thread serializes them to JSON lines and hands each line to every output ([`RecordOutput`]: the
//! capture file or stdout, NATS JetStream), which do their I/O there or further off.
//!
//! A full queue never holds traffic: the record is dropped and counted, with a warning at most every
//! few seconds. Shutdown sends a `Finish` marker behind every queued record and waits for the writer to
//! flush, so every exchange that completed before exit is on disk.

use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use super::file_sink::{FileOutput, Output};
use super::jsonl_file::{JsonlFile, Rotation};
use super::nats::{NatsOutput, NatsSinkOptions};
use super::output::{RecordKind, RecordOutput, WrittenRecord};
use super::record::{Detail, Record};
use crate::metrics::Metrics;

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
    /// Records also (or only, with `Destination::Off`) published to NATS JetStream.
    pub nats: Option<NatsSinkOptions>,
}

enum Message {
    Record(Makings),
    /// Flush, deliver until the deadline, acknowledge, stop. Sent behind every record already queued.
    Finish(std::sync::mpsc::Sender<()>, Instant),
}

/// One record as a relay hands it over.
pub(crate) enum Makings {
    Record(Box<Record>),
    /// Raw material of a record, encoded on the writer thread (see [`EncodeRecord`]).
    Encode(Box<dyn EncodeRecord>),
}

/// What a relay hands over when turning what it saw into a record is too much work for the connection's
/// task (parsing heads again into named fields, redaction, URLs): the writer thread encodes the record
/// straight from it, without building a [`Record`] first.
pub trait EncodeRecord: Send {
    /// Writes the record as JSON (without the line's `\n`) into `line`, and says what it was; `None`
    /// when there turned out to be nothing to record.
    fn encode(&self, line: &mut Vec<u8>) -> Option<WrittenRecord<'static>>;
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
pub enum SinkError {
    #[error("cannot open capture file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Nats(#[from] super::nats::NatsSinkError),
    #[error("cannot start the capture writer thread: {0}")]
    Thread(io::Error),
}

impl CaptureSink {
    /// A sink that records nothing (`--capture off`, and tests that do not look at records).
    pub fn disabled() -> Self {
        CaptureSink { inner: None }
    }

    /// Opens the destinations (so a bad path fails at start, not at the first record) and starts the writer.
    pub fn start(
        options: &SinkOptions,
        metrics: Arc<Metrics>,
    ) -> Result<(CaptureSink, Option<CaptureWriter>), SinkError> {
        let mut outputs: Vec<Box<dyn RecordOutput>> = Vec::new();
        match &options.destination {
            Destination::Off => {}
            Destination::Stdout => outputs.push(Box::new(FileOutput::new(
                Output::Stdout(BufWriter::new(io::stdout())),
                metrics.clone(),
            ))),
            Destination::File(path) => {
                let file =
                    JsonlFile::open(path, options.rotation).map_err(|source| SinkError::File {
                        path: path.clone(),
                        source,
                    })?;
                outputs.push(Box::new(FileOutput::new(
                    Output::File(file),
                    metrics.clone(),
                )));
            }
        }
        if let Some(nats) = &options.nats {
            outputs.push(Box::new(NatsOutput::start(nats, metrics.clone())?));
        }
        if outputs.is_empty() {
            return Ok((CaptureSink::disabled(), None));
        }
        let (queue, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("capture-writer".into())
            .spawn(move || write_records(receiver, outputs))
            .map_err(SinkError::Thread)?;
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
            .try_send(Message::Record(Makings::Record(Box::new(record))))
            .is_err()
        {
            inner.record_dropped();
        }
    }

    /// Hands the makings of a record to the writer, which encodes it off the data path; dropped and
    /// counted like a record when the queue is full.
    pub fn submit_to_encode(&self, makings: Box<dyn EncodeRecord>) {
        let Some(inner) = &self.inner else { return };
        if inner
            .queue
            .try_send(Message::Record(Makings::Encode(makings)))
            .is_err()
        {
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
        // The outputs get what is left once the queue is drained; a little is kept for the acknowledgement.
        let outputs_deadline = deadline - Duration::from_millis(100).min(timeout / 10);
        let mut message = Message::Finish(done, outputs_deadline);
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

fn write_records(mut queue: mpsc::Receiver<Message>, mut outputs: Vec<Box<dyn RecordOutput>>) {
    let mut line = Vec::with_capacity(4096);
    let mut write = |makings: Makings, outputs: &mut Vec<Box<dyn RecordOutput>>| {
        line.clear();
        encode(makings, &mut line, |record, line| {
            for output in outputs.iter_mut() {
                output.write(record, line);
            }
        });
    };
    let mut finished = None;
    'batches: while let Some(mut message) = queue.blocking_recv() {
        // Everything already queued is one batch, ended once.
        loop {
            match message {
                Message::Record(makings) => write(makings, &mut outputs),
                Message::Finish(done, deadline) => {
                    finished = Some((done, deadline));
                    break 'batches;
                }
            }
            match queue.try_recv() {
                Ok(next) => message = next,
                Err(_) => break,
            }
        }
        for output in outputs.iter_mut() {
            output.end_batch();
        }
        // A writer that is not waiting on the queue costs the relays nothing to hand it a record; one that
        // is parked costs each of them a futex wake-up. Resting briefly between batches turns one wake-up
        // per record into one per batch under load, and delays a record by at most this much when idle.
        std::thread::sleep(WRITER_REST);
    }
    // Finished, or every sender gone (the sink dropped without a finish): a short last chance.
    let deadline = finished
        .as_ref()
        .map_or_else(|| Instant::now() + Duration::from_secs(1), |(_, at)| *at);
    for output in outputs {
        output.finish(deadline);
    }
    if let Some((done, _)) = finished {
        let _ = done.send(());
    }
}

/// Encodes one record as its JSON line (ending in `\n`) into `line` and hands both to `deliver`; nothing
/// when there was nothing to record.
fn encode(makings: Makings, line: &mut Vec<u8>, deliver: impl FnOnce(&WrittenRecord<'_>, &[u8])) {
    let encoded = match &makings {
        Makings::Record(record) => {
            record.write_json(line);
            Some(WrittenRecord {
                kind: match record.detail {
                    Detail::Http(_) => RecordKind::Http,
                    Detail::Stream(_) => RecordKind::Stream,
                },
                id: record.id,
                uid: &record.uid,
            })
        }
        Makings::Encode(makings) => makings.encode(line),
    };
    if let Some(record) = encoded {
        line.push(b'\n');
        deliver(&record, line);
    }
}

/// The line the writer writes for `makings`, or `None` when it writes none.
#[cfg(test)]
pub(crate) fn encode_line(makings: Makings) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    let mut written = false;
    encode(makings, &mut line, |_, _| written = true);
    written.then_some(line)
}
