//! The NATS JetStream sink (`--capture-sink nats://HOST:PORT/SUBJECT`): records leave the pod.
//!
//! - [`address`]: the address and the subject template.
//! - [`connect`]: TLS, credentials, reconnection (shared with `capture pull`).
//! - [`spool`]: the bounded on-disk spool every record goes through until it is acknowledged, where
//!   records are cut into messages (runs of JSON lines, [`frame`]).
//! - [`publisher`]: sending from the spool, acknowledged, in order, re-sent after failures.
//!
//! The writer thread only appends to the spool (local file I/O, like the file sink); the publisher runs on
//! a thread of its own with its own small runtime, so neither NATS nor the network can hold up the writer,
//! let alone traffic.

pub mod address;
pub mod connect;
mod frame;
mod publisher;
mod spool;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::{error, warn};

pub use address::NatsAddress;
pub use connect::NatsAccess;
pub use spool::MESSAGE_RECORDS;

use super::output::{RecordOutput, WrittenRecord};
use crate::metrics::Metrics;
use spool::{Appended, Flushed, SpoolWriter};

/// The spool's budget unless `--capture-spool-size` says otherwise.
pub const DEFAULT_SPOOL_SIZE: u64 = 64 * 1024 * 1024;
/// How often, at most, dropped records are logged.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSinkOptions {
    pub address: NatsAddress,
    pub access: NatsAccess,
    /// The spool directory (created if missing; what a previous run left there is sent first).
    pub spool_dir: PathBuf,
    /// Bytes the spool may hold.
    pub spool_size: u64,
    /// The most records one JetStream message carries (1 to [`MESSAGE_RECORDS`]).
    pub records_per_message: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NatsSinkError {
    #[error("cannot open the capture spool {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] connect::CredentialsError),
    #[error("cannot read the NATS CA file {path}: {source}")]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the NATS publisher thread: {0}")]
    Thread(std::io::Error),
}

/// The writer thread's side of the sink: appends to the spool, and stops the publisher at the end.
pub(crate) struct NatsOutput {
    spool: SpoolWriter,
    stop: oneshot::Sender<Instant>,
    publisher: JoinHandle<()>,
    metrics: Arc<Metrics>,
    drops: DropLog,
}

impl NatsOutput {
    pub(crate) fn start(
        options: &NatsSinkOptions,
        metrics: Arc<Metrics>,
    ) -> Result<NatsOutput, NatsSinkError> {
        if let Some(ca) = &options.access.ca {
            std::fs::metadata(ca).map_err(|source| NatsSinkError::Ca {
                path: ca.clone(),
                source,
            })?;
        }
        let connect_options = options
            .access
            .options(&options.address, "sidecar-proxy", true)?;
        let (spool, reader) = spool::open(
            &options.spool_dir,
            options.spool_size,
            options.records_per_message,
        )
        .map_err(|source| NatsSinkError::Spool {
            path: options.spool_dir.clone(),
            source,
        })?;
        let url = options.address.url();
        let subject = options.address.subject_for_this_pod();
        let (stop, stopped) = oneshot::channel();
        let publisher_metrics = metrics.clone();
        let publisher = std::thread::Builder::new()
            .name("capture-nats".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        error!(error = %e, "cannot start the NATS publisher: records stay in the spool");
                        return;
                    }
                };
                runtime.block_on(async move {
                    // Connects in the background and reconnects for ever: records wait in the spool meanwhile.
                    let client = match connect_options.connect(url.as_str()).await {
                        Ok(client) => client,
                        Err(e) => {
                            error!(error = %e, server = %url, "cannot connect to NATS: records stay in the spool");
                            return;
                        }
                    };
                    publisher::Publisher {
                        reader,
                        client,
                        subject,
                        metrics: publisher_metrics,
                    }
                    .run(stopped)
                    .await;
                });
            })
            .map_err(NatsSinkError::Thread)?;
        Ok(NatsOutput {
            spool,
            stop,
            publisher,
            metrics,
            drops: DropLog::default(),
        })
    }
}

impl NatsOutput {
    /// Counts a written batch's frames as spooled or dropped, each exactly once.
    fn count(metrics: &Metrics, drops: &mut DropLog, flushed: Flushed) {
        let nats = &metrics.nats_sink;
        nats.spooled.inc_by(flushed.spooled);
        if flushed.dropped > 0 {
            nats.dropped.inc_by(flushed.dropped);
            let error = flushed
                .error
                .map_or_else(String::new, |e| format!(" ({e})"));
            drops.dropped(
                flushed.dropped,
                &format!("cannot write to the capture spool{error}: records dropped (traffic is not affected)"),
            );
        }
    }

    /// The writer's round is over: its last message ends, and the spool file gets what it has.
    fn flush(&mut self) {
        let flushed = self.spool.flush();
        Self::count(&self.metrics, &mut self.drops, flushed);
    }
}

impl RecordOutput for NatsOutput {
    fn write(&mut self, record: &WrittenRecord<'_>, line: &[u8]) {
        match self.spool.append(&record.uid(), line) {
            Appended::Batched => {
                if self.spool.wants_flush() {
                    // A long round: its whole messages go to the spool file now, the open one goes on.
                    let flushed = self.spool.write_frames();
                    Self::count(&self.metrics, &mut self.drops, flushed);
                }
            }
            Appended::OverBudget => {
                self.metrics.nats_sink.dropped.inc();
                self.drops.dropped(1, "the capture spool is full (--capture-spool-size): records dropped until NATS acknowledges what it holds (traffic is not affected)");
            }
        }
    }

    fn end_batch(&mut self) {
        self.flush();
    }

    fn finish(self: Box<Self>, deadline: Instant) {
        let NatsOutput {
            spool,
            stop,
            publisher,
            metrics,
            mut drops,
        } = *self;
        let flushed = spool.close();
        if let Some(e) = &flushed.error {
            error!(error = %e, "cannot flush the capture spool");
        }
        Self::count(&metrics, &mut drops, flushed);
        let _ = stop.send(deadline);
        // The publisher returns by the deadline (it checks it at least every 100 ms).
        let _ = publisher.join();
        drops.report_remaining();
    }
}

/// Dropped records, logged at most every [`DROP_LOG_INTERVAL`] with how many since the last message.
#[derive(Default)]
struct DropLog {
    last_logged: Option<Instant>,
    unreported: u64,
}

impl DropLog {
    fn dropped(&mut self, records: u64, message: &str) {
        self.unreported += records;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= DROP_LOG_INTERVAL)
        {
            self.last_logged = Some(now);
            warn!(
                dropped = std::mem::take(&mut self.unreported),
                "{message} (at most one message every 10s)"
            );
        }
    }

    fn report_remaining(&mut self) {
        let dropped = std::mem::take(&mut self.unreported);
        if dropped > 0 {
            warn!(
                dropped,
                "capture records not sent to NATS since the last message (spool full or failing)"
            );
        }
    }
}
