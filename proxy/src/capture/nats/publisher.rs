//! The publisher: sends the spool's messages (runs of records, cut when they were spooled) to JetStream in
//! order, a window of them awaiting acknowledgement at a time, each with its first record's uid as
//! `Nats-Msg-Id` and its record count as [`RECORDS_HEADER`]. When an acknowledgement fails (the server
//! went away, the stream is missing) it goes back to the oldest unacknowledged message and, once
//! connected, sends everything from there again: the same messages under the same ids, so JetStream drops
//! the copies it already has and a re-send never makes a duplicate within the stream's duplicate window.
//! Metrics count records: an acknowledgement acknowledges every record of its message.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::Client;
use futures_util::FutureExt;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::connect::REQUEST_TIMEOUT;
use super::spool::{Position, SpoolReader};
use crate::metrics::Metrics;

/// The header that says how many records a message carries (its payload's lines), for consumers and
/// their metrics.
pub(crate) const RECORDS_HEADER: &str = "Sidecar-Records";

/// Messages sent and awaiting their acknowledgement at most, and their bytes (records carry bodies: a
/// thousand large ones would hold gigabytes).
const WINDOW: usize = 1024;
const WINDOW_BYTES: usize = 8 * 1024 * 1024;
/// How often the publisher looks again without being woken (connection state, a missed wake-up).
const POLL: Duration = Duration::from_millis(100);
/// After a round that sent everything the spool held, the publisher lets new messages gather this long
/// before the next round, so they go out many to a write and their acknowledgements come back many to a
/// read. Sent one or two at a time as the writer spools them, each message costs a wake-up and a system
/// call or two on both ends; on the reference machine, where nats-server shares the cores with the
/// traffic, that cost was most of what publishing took from the traffic (docs/benchmarks.md). A backlog
/// (the window full, or a catch-up after an outage) is sent without a pause.
const LINGER: Duration = Duration::from_millis(10);
/// The pause after a failed acknowledgement while connected (a missing stream answers at once).
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How often, at most, a publishing failure is logged.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// At shutdown, how long the publisher waits for a lost connection to come back before leaving the rest
/// in the spool.
const SHUTDOWN_DISCONNECTED_LIMIT: Duration = Duration::from_secs(1);

type AckFuture = Pin<Box<dyn Future<Output = Result<Delivery, PublishError>> + Send>>;

/// What became of a message JetStream answered for.
enum Delivery {
    Stored,
    /// Larger than the server or the stream accepts: it can never be stored, so its records are dropped
    /// (counted) rather than retried for ever in front of every message behind it.
    TooLarge,
}

/// Whether a failed publish is the message's own size, which no retry can change.
fn too_large(error: &PublishError) -> bool {
    use async_nats::jetstream::context::PublishErrorKind;
    use async_nats::jetstream::ErrorCode;
    error.kind() == PublishErrorKind::MaxPayloadExceeded
        || std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>())
            .is_some_and(|api| api.error_code() == ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
}

fn delivery(ack: async_nats::jetstream::context::PublishAckFuture) -> AckFuture {
    Box::pin(async move {
        match ack.await {
            Ok(PublishAck { .. }) => Ok(Delivery::Stored),
            Err(e) if too_large(&e) => Ok(Delivery::TooLarge),
            Err(e) => Err(e),
        }
    })
}

struct InFlight {
    end: Position,
    records: u64,
    bytes: usize,
    ack: AckFuture,
}

pub(crate) struct Publisher {
    pub(crate) reader: SpoolReader,
    pub(crate) client: Client,
    pub(crate) subject: String,
    pub(crate) metrics: Arc<Metrics>,
}

impl Publisher {
    /// Publishes until stopped: `stop` gives the deadline by which to have delivered what the writer
    /// spooled before it closed. What is not acknowledged by then stays in the spool for the next start.
    pub(crate) async fn run(mut self, mut stop: oneshot::Receiver<Instant>) {
        let jetstream = async_nats::jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(self.client.clone());
        let shared = self.reader.shared().clone();
        let nats = &self.metrics.nats_sink;
        let mut acknowledged = self.reader.position();
        // The end of the furthest message ever sent: messages sent again before it count as re-sent.
        let mut sent_until = acknowledged;
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut inflight_bytes = 0;
        let mut deadline: Option<Instant> = None;
        let mut failures = FailureLog::default();
        let mut too_large_log = TooLargeLog::default();
        let mut disconnected_since: Option<Instant> = None;
        // Set after a round that emptied the spool: the next round waits until then.
        let mut linger_until: Option<Instant> = None;
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_connected = false;
        loop {
            let connected = self.client.connection_state() == State::Connected;
            if connected && !was_connected {
                // Messages cut from now on fit this server (0: it has not said).
                let max_payload = self.client.server_info().max_payload;
                if max_payload > 0 {
                    shared.limit_message_bytes(max_payload);
                }
            }
            was_connected = connected;
            if linger_until.is_some_and(|until| Instant::now() >= until) {
                linger_until = None;
            }
            if connected && linger_until.is_none() {
                disconnected_since = None;
                let mut sent = 0usize;
                let mut emptied = false;
                while inflight.len() < WINDOW && inflight_bytes < WINDOW_BYTES {
                    let frame = match self.reader.next_frame() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => {
                            emptied = true;
                            break;
                        }
                        Err(e) => {
                            failures.failed(&format!("cannot read the spool: {e}"));
                            break;
                        }
                    };
                    let bytes = frame.payload.len();
                    let publish = PublishMessage::build()
                        .payload(frame.payload)
                        .message_id(&frame.id)
                        .header(RECORDS_HEADER, frame.records.to_string());
                    match jetstream.send_publish(self.subject.clone(), publish).await {
                        Ok(ack) => {
                            sent += 1;
                            if frame.end <= sent_until {
                                nats.resent.inc_by(frame.records);
                            } else {
                                nats.published.inc_by(frame.records);
                                sent_until = frame.end;
                            }
                            inflight_bytes += bytes;
                            inflight.push_back(InFlight {
                                end: frame.end,
                                records: frame.records,
                                bytes,
                                ack: delivery(ack),
                            });
                        }
                        Err(e) if too_large(&e) => {
                            // Answered at once, in its place in the window.
                            inflight.push_back(InFlight {
                                end: frame.end,
                                records: frame.records,
                                bytes: 0,
                                ack: Box::pin(std::future::ready(Ok(Delivery::TooLarge))),
                            });
                            if frame.end > sent_until {
                                sent_until = frame.end;
                            }
                        }
                        Err(e) => {
                            failures.failed(&e.to_string());
                            inflight.clear();
                            inflight_bytes = 0;
                            self.reader.rewind(acknowledged);
                            break;
                        }
                    }
                }
                if sent > 0 && emptied {
                    linger_until = Some(Instant::now() + LINGER);
                }
            } else if !connected {
                disconnected_since.get_or_insert_with(Instant::now);
            }
            nats.lag
                .set(i64::try_from(shared.pending()).unwrap_or(i64::MAX));
            nats.spool_bytes
                .set(i64::try_from(shared.bytes()).unwrap_or(i64::MAX));
            if let Some(at) = deadline {
                // Delivered when the acknowledgements reach the end of what the writer wrote, a fact
                // about positions: "the reader found nothing more" is only known while connected, and
                // after an outage it would pass records spooled since as sent (and delete them).
                let delivered = inflight.is_empty()
                    && shared.closed_end().is_some_and(|end| acknowledged >= end);
                let given_up = Instant::now() >= at
                    || disconnected_since
                        .is_some_and(|since| since.elapsed() >= SHUTDOWN_DISCONNECTED_LIMIT);
                if delivered || given_up {
                    self.reader.release(acknowledged, delivered);
                    if delivered {
                        // Everything is acknowledged and the spool is empty: no position to keep.
                    } else if let Err(e) = self.reader.save_position(acknowledged) {
                        warn!(error = %e, "cannot save the capture spool's position: the next start sends some records again (JetStream drops the copies)");
                    }
                    let left = shared.pending();
                    if left > 0 {
                        warn!(records = left, "capture records not yet acknowledged by NATS stay in the spool; the next start sends them");
                    }
                    nats.lag.set(i64::try_from(left).unwrap_or(i64::MAX));
                    return;
                }
            }
            let window_open = inflight.len() < WINDOW && inflight_bytes < WINDOW_BYTES;
            let oldest_ack = async {
                match inflight.front_mut() {
                    Some(oldest) => (&mut oldest.ack).await,
                    None => std::future::pending().await,
                }
            };
            let linger = async {
                match linger_until {
                    Some(until) => tokio::time::sleep_until(until.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = oldest_ack => {
                    // This acknowledgement, then every one already in (they come back many to a read).
                    let mut next = Some(result);
                    while let Some(result) = next.take() {
                        match result {
                            Ok(delivery) => {
                                let mut records = 0;
                                if let Some(done) = inflight.pop_front() {
                                    acknowledged = done.end;
                                    inflight_bytes -= done.bytes;
                                    records = done.records;
                                }
                                match delivery {
                                    Delivery::Stored => {
                                        nats.acknowledged.inc_by(records);
                                        failures.recovered();
                                    }
                                    Delivery::TooLarge => {
                                        nats.dropped.inc_by(records);
                                        too_large_log.dropped(records);
                                    }
                                }
                                shared.acknowledged(records);
                                next = inflight
                                    .front_mut()
                                    .and_then(|oldest| (&mut oldest.ack).now_or_never());
                            }
                            Err(e) => {
                                failures.failed(&e.to_string());
                                // Everything from the oldest unacknowledged message on is sent again, in order.
                                inflight.clear();
                                inflight_bytes = 0;
                                self.reader.rewind(acknowledged);
                                linger_until = None;
                                if self.client.connection_state() == State::Connected {
                                    tokio::time::sleep(RETRY_PAUSE).await;
                                }
                            }
                        }
                    }
                    self.reader.release(acknowledged, false);
                },
                _ = shared.data.notified(), if window_open && linger_until.is_none() => {}
                _ = linger => {}
                at = &mut stop, if deadline.is_none() => {
                    deadline = Some(at.unwrap_or_else(|_| Instant::now()));
                }
                _ = poll.tick() => {}
            }
        }
    }
}

/// Records of messages too large for NATS, logged at most every [`FAILURE_LOG_INTERVAL`] with how many
/// since.
#[derive(Default)]
struct TooLargeLog {
    last_logged: Option<Instant>,
    unreported: u64,
}

impl TooLargeLog {
    fn dropped(&mut self, records: u64) {
        self.unreported += records;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL)
        {
            self.last_logged = Some(now);
            warn!(
                dropped = std::mem::take(&mut self.unreported),
                "capture records in messages larger than NATS accepts (the server's max_payload or the stream's max message size; a message holds up to 64 KiB of records, or one larger record alone) are not sent: raise that limit or lower --capture-body-limit (at most one message every 10s)"
            );
        }
    }
}

/// Publishing failures, logged at most every [`FAILURE_LOG_INTERVAL`], and the recovery once.
#[derive(Default)]
struct FailureLog {
    failing: bool,
    last_logged: Option<Instant>,
    since_logged: u64,
}

impl FailureLog {
    fn failed(&mut self, reason: &str) {
        self.failing = true;
        self.since_logged += 1;
        let now = Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= FAILURE_LOG_INTERVAL)
        {
            self.last_logged = Some(now);
            warn!(
                error = reason,
                failures = std::mem::take(&mut self.since_logged),
                "cannot publish capture records to NATS: they wait in the spool and are sent again (at most one message every 10s)"
            );
        }
    }

    fn recovered(&mut self) {
        if self.failing {
            self.failing = false;
            info!("publishing capture records to NATS again");
        }
    }
}
