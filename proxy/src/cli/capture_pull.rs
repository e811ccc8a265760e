//! `sidecar-proxy capture pull nats://HOST:PORT/SUBJECT`: records a cluster's sidecars published to
//! JetStream, read back as JSON lines (a file or stdout), so `capture show`, `capture export`, replay and
//! mock work on them as on a pod's capture file. A message is a run of records (JSON lines); each is
//! written as a line of its own.
//!
//! Without `--durable` the consumer is ephemeral and reads from the start of the stream (or `--since`);
//! with it, the server remembers what was acknowledged, and the next pull with the same name goes on from
//! there. Without `--follow` the pull ends once the consumer has nothing pending.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use clap::Args;
use futures_util::StreamExt;

use crate::capture::jsonl_file::JsonlFile;
use crate::capture::nats::connect::REQUEST_TIMEOUT;
use crate::capture::nats::{NatsAccess, NatsAddress};
use crate::capture::record::Record;
use crate::config::{excerpt, Quoted};

/// Messages asked for at a time.
const BATCH: usize = 512;
/// How long one fetch waits for messages before the pull looks whether anything is still pending.
const FETCH_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct PullArgs {
    /// nats://HOST:PORT/SUBJECT or tls://HOST:PORT/SUBJECT; the subject may use the wildcards * and >
    /// (capture.shop.> for every pod of namespace shop)
    #[arg(value_name = "URL")]
    pub source: String,

    /// A durable consumer of this name: the next pull with the same name goes on where this one stopped
    #[arg(long, value_name = "NAME")]
    pub durable: Option<String>,

    /// Only records stored since T: a time (2026-12-07T10:00:00Z) or a duration ago (15m, 2h)
    #[arg(long, value_name = "T")]
    pub since: Option<String>,

    /// Keep writing records as they arrive, until interrupted
    #[arg(long)]
    pub follow: bool,

    /// The JSON-lines file to append to [default: stdout]
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// NATS credentials: a .creds file (user JWT and nkey seed) or a file holding a token
    #[arg(long, env = "PROXY_CAPTURE_SINK_CREDENTIALS", value_name = "FILE")]
    pub credentials: Option<PathBuf>,

    /// PEM certificates the NATS server's certificate may chain to, besides the system's (implies TLS)
    #[arg(long, env = "PROXY_CAPTURE_SINK_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum PullError {
    /// Bad arguments: exit 2.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Nats(String),
    #[error("cannot write {0}: {1}")]
    Write(String, io::Error),
}

impl PullArgs {
    pub fn run(self) -> ExitCode {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("sidecar-proxy: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(self.pull()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sidecar-proxy: {e}");
                match e {
                    PullError::Usage(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                }
            }
        }
    }

    async fn pull(self) -> Result<(), PullError> {
        let address = NatsAddress::parse(&self.source, true)
            .map_err(|e| PullError::Usage(format!("capture pull: {e}")))?;
        let deliver_policy = match &self.since {
            None => DeliverPolicy::All,
            Some(text) => DeliverPolicy::ByStartTime {
                start_time: parse_since(text)?.into(),
            },
        };
        if let Some(name) = &self.durable {
            if name.is_empty() || name.contains(['.', '*', '>', ' ', '\t']) {
                return Err(PullError::Usage(format!(
                    "invalid --durable {}: allowed: a name without dots, spaces, * or >",
                    Quoted(name)
                )));
            }
        }
        let mut output = Output::open(self.output.as_ref())?;
        let access = NatsAccess {
            credentials: self.credentials.clone(),
            ca: self.ca.clone(),
        };
        let options = access
            .options(&address, "sidecar-proxy capture pull", false)
            .map_err(|e| PullError::Usage(e.to_string()))?;
        let server = address.url();
        let client = options
            .connect(server.as_str())
            .await
            .map_err(|e| PullError::Nats(format!("cannot connect to NATS at {server}: {e}")))?;
        let jetstream = async_nats::jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client);
        // A reader's subject is a filter: the publishers' `{namespace}` and `{pod}` placeholders (the
        // default subject, when none is given) stand for any one token, so `nats://HOST:PORT` alone pulls
        // every pod's records.
        let subject = address
            .subject
            .replace("{namespace}", "*")
            .replace("{pod}", "*");
        let stream_name = jetstream
            .stream_by_subject(subject.clone())
            .await
            .map_err(|e| {
                PullError::Nats(format!(
                "no JetStream stream holds {subject} ({e}); see docs/capture.md for setting one up"
            ))
            })?;
        let stream = jetstream
            .get_stream(&stream_name)
            .await
            .map_err(|e| PullError::Nats(format!("cannot open stream {stream_name}: {e}")))?;
        let config = pull::Config {
            durable_name: self.durable.clone(),
            filter_subject: subject.clone(),
            deliver_policy,
            // A durable consumer remembers what was written; an ephemeral one needs no acknowledgements.
            ack_policy: if self.durable.is_some() {
                AckPolicy::Explicit
            } else {
                AckPolicy::None
            },
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        };
        let mut consumer: Consumer<pull::Config> = match &self.durable {
            Some(name) => stream.get_or_create_consumer(name, config).await,
            None => stream.create_consumer(config).await,
        }
        .map_err(|e| PullError::Nats(format!("cannot create a consumer on {stream_name}: {e}")))?;
        let acknowledge = self.durable.is_some();
        let mut pulled = Pulled::default();
        loop {
            let batch = consumer
                .fetch()
                .max_messages(BATCH)
                .expires(FETCH_WAIT)
                .messages()
                .await
                .map_err(|e| PullError::Nats(format!("cannot fetch from {stream_name}: {e}")))?;
            let mut batch = std::pin::pin!(batch);
            let mut received = 0;
            while let Some(message) = batch.next().await {
                let message = message.map_err(|e| {
                    PullError::Nats(format!("cannot fetch from {stream_name}: {e}"))
                })?;
                received += 1;
                pulled.take(&message.payload, &mut output)?;
                if acknowledge {
                    // Written before acknowledged: a pull cut short repeats records rather than loses them.
                    output.flush()?;
                    message.ack().await.map_err(|e| {
                        PullError::Nats(format!("cannot acknowledge to {stream_name}: {e}"))
                    })?;
                }
            }
            output.flush()?;
            if received == 0 && !self.follow {
                let info = consumer.info().await.map_err(|e| {
                    PullError::Nats(format!("cannot read the consumer's state: {e}"))
                })?;
                if info.num_pending == 0 && info.num_ack_pending == 0 {
                    break;
                }
            }
        }
        pulled.report(&subject, self.output.as_ref());
        Ok(())
    }
}

/// `--since`: an RFC 3339 time, or a duration before now.
fn parse_since(text: &str) -> Result<SystemTime, PullError> {
    if let Ok(at) = humantime::parse_rfc3339_weak(text.trim()) {
        return Ok(at);
    }
    if let Ok(ago) = humantime::parse_duration(text.trim()) {
        return SystemTime::now().checked_sub(ago).ok_or_else(|| {
            PullError::Usage(format!("invalid --since {}: too long ago", Quoted(text)))
        });
    }
    Err(PullError::Usage(format!(
        "invalid --since {}: allowed: a time like 2026-12-07T10:00:00Z or a duration ago like 15m or 2h",
        Quoted(&excerpt(text))
    )))
}

#[derive(Default)]
struct Pulled {
    records: u64,
    skipped: u64,
}

impl Pulled {
    /// Writes the records of one message: a run of JSON lines, one record each (a sidecar's message, or
    /// an older sidecar's message of one record without its line feed). A line that is not a capture
    /// record (something else published on the subject) is skipped and counted.
    fn take(&mut self, payload: &[u8], output: &mut Output) -> Result<(), PullError> {
        let mut line = Vec::new();
        for text in payload.split(|&b| b == b'\n') {
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // Checked against the record model, written as published: the bytes the file sink writes.
            match serde_json::from_slice::<Record>(text) {
                Ok(_) => {
                    line.clear();
                    line.extend_from_slice(text);
                    line.push(b'\n');
                    output.write_line(&line)?;
                    self.records += 1;
                }
                Err(e) => {
                    if self.skipped == 0 {
                        eprintln!(
                            "sidecar-proxy: skipping a line that is not a capture record: {e}"
                        );
                    }
                    self.skipped += 1;
                }
            }
        }
        Ok(())
    }

    fn report(&self, subject: &str, output: Option<&PathBuf>) {
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let skipped = match self.skipped {
            0 => String::new(),
            n => format!(
                "; skipped {n} line{} that were not capture records",
                plural(n)
            ),
        };
        eprintln!(
            "sidecar-proxy: pulled {} record{} from {subject} to {}{skipped}",
            self.records,
            plural(self.records),
            output.map_or("stdout".into(), |path| path.display().to_string()),
        );
    }
}

/// Where pulled records go: a capture file, written like the file sink writes one (whole lines, private,
/// never through a link), or stdout.
enum Output {
    File(JsonlFile, PathBuf),
    Stdout(BufWriter<io::Stdout>),
}

impl Output {
    fn open(path: Option<&PathBuf>) -> Result<Output, PullError> {
        match path.filter(|path| path.as_os_str() != "-") {
            None => Ok(Output::Stdout(BufWriter::new(io::stdout()))),
            Some(path) => JsonlFile::open(path, None)
                .map(|file| Output::File(file, path.clone()))
                .map_err(|e| PullError::Write(path.display().to_string(), e)),
        }
    }

    fn write_line(&mut self, line: &[u8]) -> Result<(), PullError> {
        match self {
            Output::File(file, _) => {
                file.push_line(line);
                if file.wants_flush() {
                    self.flush()?;
                }
                Ok(())
            }
            Output::Stdout(out) => out
                .write_all(line)
                .map_err(|e| PullError::Write("stdout".into(), e)),
        }
    }

    fn flush(&mut self) -> Result<(), PullError> {
        match self {
            Output::File(file, path) => file
                .flush()
                .map_err(|e| PullError::Write(path.display().to_string(), e)),
            Output::Stdout(out) => out
                .flush()
                .map_err(|e| PullError::Write("stdout".into(), e)),
        }
    }
}
