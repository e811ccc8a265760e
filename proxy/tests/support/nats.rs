//! A real `nats-server` with JetStream on loopback, started by the test (Debian's `nats-server` package,
//! installed by scripts/test.sh), and what a test reads back from it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use sidecar_proxy::capture::record::Record;

use super::capture::free_port;

/// The stream the tests publish into: every subject under `capture.`.
pub const STREAM: &str = "CAPTURE";

/// A nats-server process, killed when dropped. Its store directory outlives a kill, so a restart finds the
/// stream and its messages again.
pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
    access: Access,
}

/// What a server asks of its clients: TLS (its certificate, key, and the CA file clients trust), a token,
/// or credentials (a config file trusting an operator, and the `.creds` text the test's own client uses).
#[derive(Clone, Default)]
pub struct Access {
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub token: Option<String>,
    pub config: Option<PathBuf>,
    pub creds: Option<String>,
}

fn binary() -> PathBuf {
    for candidate in ["/usr/sbin/nats-server", "/usr/bin/nats-server"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("nats-server")
}

impl NatsServer {
    /// Starts a server storing in `store`, on a free loopback port, and waits until JetStream answers.
    pub async fn start(store: &Path) -> NatsServer {
        NatsServer::start_with(store, Access::default()).await
    }

    /// Starts a server that requires `access` of its clients.
    pub async fn start_with(store: &Path, access: Access) -> NatsServer {
        let mut server = NatsServer::not_started(store);
        server.access = access;
        server.restart().await;
        server
    }

    /// A server's port and store, reserved but not started yet: a sidecar can be pointed at it while NATS
    /// is down.
    pub fn not_started(store: &Path) -> NatsServer {
        NatsServer {
            port: free_port(),
            store: store.to_owned(),
            child: None,
            access: Access::default(),
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.access.tls.is_some() {
            "tls"
        } else {
            "nats"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and store, and waits until JetStream answers with the
    /// capture stream (created if missing).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let mut command = Command::new(binary());
        command
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store);
        if let Some((cert, key, _)) = &self.access.tls {
            command
                .args(["--tls", "--tlscert"])
                .arg(cert)
                .arg("--tlskey")
                .arg(key);
        }
        if let Some(token) = &self.access.token {
            command.args(["--auth", token]);
        }
        if let Some(config) = &self.access.config {
            command.arg("-c").arg(config);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (apt-get install nats-server; scripts/test.sh does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(2), self.try_capture_stream()).await
            {
                drop(stream);
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nats-server exited: {status}");
            }
            assert!(Instant::now() < deadline, "nats-server never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server at once (SIGKILL): no goodbye to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn try_capture_stream(&self) -> Result<stream::Stream, async_nats::Error> {
        let mut options =
            async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(1));
        if let Some((_, _, ca)) = &self.access.tls {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        if let Some(token) = &self.access.token {
            options = options.token(token.clone());
        }
        if let Some(creds) = &self.access.creds {
            options = options.credentials(creds)?;
        }
        let client = options.connect(self.url()).await?;
        let jetstream = jetstream::new(client);
        Ok(jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec!["capture.>".to_owned()],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await?)
    }

    /// Every record in the capture stream, in stream order (a message holds a run of them).
    pub async fn messages(&self) -> Vec<Stored> {
        let stream = self.try_capture_stream().await.expect("the capture stream");
        let mut info = stream.clone();
        let state = info.info().await.expect("stream info").state.clone();
        let mut stored = Vec::new();
        if state.messages == 0 {
            return stored;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = stream
                .get_raw_message(sequence)
                .await
                .unwrap_or_else(|e| panic!("message {sequence}: {e}"));
            stored.extend(Stored::split(
                sequence,
                message.subject.as_str(),
                Some(&message.headers),
                &message.payload,
            ));
        }
        stored
    }

    /// Every record in the capture stream as a JetStream consumer receives it (an ephemeral pull
    /// consumer from the start, fetching in batches, each message split into its records): the way a
    /// reader of the stream counts records.
    pub async fn consumed(&self) -> Vec<Stored> {
        use async_nats::jetstream::consumer::{pull, AckPolicy};
        use futures_util::StreamExt;
        let stream = self.try_capture_stream().await.expect("the capture stream");
        let mut consumer = stream
            .create_consumer(pull::Config {
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .expect("a consumer");
        let mut stored = Vec::new();
        loop {
            let batch = consumer
                .fetch()
                .max_messages(1000)
                .expires(Duration::from_millis(500))
                .messages()
                .await
                .expect("fetch");
            let mut batch = std::pin::pin!(batch);
            let mut received = 0;
            while let Some(message) = batch.next().await {
                let message = message.expect("a message");
                received += 1;
                let sequence = message.info().expect("message info").stream_sequence;
                stored.extend(Stored::split(
                    sequence,
                    message.subject.as_str(),
                    message.headers.as_ref(),
                    &message.payload,
                ));
            }
            if received == 0 && consumer.info().await.expect("consumer info").num_pending == 0 {
                return stored;
            }
        }
    }

    /// Publishes `payload` on `subject` into the capture stream and waits for JetStream to store it (what
    /// another publisher, say an older sidecar, would have put there).
    pub async fn publish(&self, subject: &str, payload: Vec<u8>) {
        let stream = self.try_capture_stream().await.expect("the capture stream");
        drop(stream);
        let client = async_nats::connect(self.url()).await.expect("connect");
        jetstream::new(client)
            .publish(subject.to_owned(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    /// The stream's message count.
    pub async fn count(&self) -> u64 {
        let mut stream = self.try_capture_stream().await.expect("the capture stream");
        stream.info().await.expect("stream info").state.messages
    }

    /// Waits until the stream holds `expected` messages (a bound far above the expected time).
    pub async fn wait_for(&self, expected: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let count = self.count().await;
            if count >= expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stream holds {count} of {expected} messages"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One record as JetStream stored it, and the message that carries it.
#[derive(Debug)]
pub struct Stored {
    /// The stream sequence of its message.
    pub sequence: u64,
    pub subject: String,
    /// Its message's `Nats-Msg-Id`.
    pub message_id: Option<String>,
    /// Its message's `Sidecar-Records` (the records the message carries).
    pub message_records: Option<String>,
    /// Whether its message is whole JSON lines (its last ends in a line feed).
    pub message_ends_in_line_feed: bool,
    /// The record's JSON line, without the line feed.
    pub payload: Vec<u8>,
    pub record: Record,
}

impl Stored {
    /// The records of one message: its payload's JSON lines, each ending in a line feed.
    fn split(
        sequence: u64,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: &[u8],
    ) -> Vec<Stored> {
        let header = |name: &str| {
            headers
                .and_then(|headers| headers.get(name))
                .map(|value| value.as_str().to_owned())
        };
        let text = std::str::from_utf8(payload).expect("a UTF-8 message");
        text.lines()
            .map(|line| Stored {
                sequence,
                subject: subject.to_owned(),
                message_id: header("Nats-Msg-Id"),
                message_records: header("Sidecar-Records"),
                message_ends_in_line_feed: text.ends_with('\n'),
                payload: line.as_bytes().to_vec(),
                record: serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("a line of message {sequence} is not a record ({e}): {line}")
                }),
            })
            .collect()
    }
}

/// How many records each message carries, in stream order (from records as [`NatsServer::messages`]
/// returns them).
pub fn records_per_message(stored: &[Stored]) -> Vec<usize> {
    let mut sizes: Vec<(u64, usize)> = Vec::new();
    for record in stored {
        match sizes.last_mut() {
            Some((sequence, n)) if *sequence == record.sequence => *n += 1,
            _ => sizes.push((record.sequence, 1)),
        }
    }
    sizes.into_iter().map(|(_, n)| n).collect()
}

/// Checks the sidecar's message rules on records as [`NatsServer::messages`] returns them: a message is
/// whole JSON lines, its `Nats-Msg-Id` is the uid of its first record, `Sidecar-Records` says how many it
/// carries, and no two messages share an id.
pub fn assert_message_rules(stored: &[Stored]) {
    let mut ids = std::collections::BTreeSet::new();
    let mut at = 0;
    for size in records_per_message(stored) {
        let first = &stored[at];
        assert!(!first.record.uid.is_empty());
        assert!(
            first.message_ends_in_line_feed,
            "message {} does not end in a line feed",
            first.sequence
        );
        assert_eq!(
            first.message_id.as_deref(),
            Some(first.record.uid.as_str()),
            "message {}: its id is its first record's uid",
            first.sequence
        );
        assert_eq!(
            first.message_records.as_deref(),
            Some(size.to_string().as_str()),
            "message {}: Sidecar-Records",
            first.sequence
        );
        assert!(
            ids.insert(first.message_id.clone()),
            "message id {:?} twice",
            first.message_id
        );
        at += size;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
