//! One replay: the plan sent to the target at the chosen pace, every answer compared with the recording.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::record::Record;
use crate::compare::{
    body_differences, header_differences, trailer_differences, Difference, Message, Noise,
};

use super::answer::Answer;
use super::client::{TargetClient, WorkerConnection};
use super::learned::{LearnedField, LearnedNoise};
use super::pace::Pace;
use super::plan::{path_and_query, plan, request_for, Planned, Target};
use crate::capture::causes::REPLAY_OF;

pub struct ReplayOptions {
    pub target: Target,
    pub target_ca: Option<std::path::PathBuf>,
    pub noise: Noise,
    pub concurrency: usize,
    pub pace: Pace,
    pub timeout: Duration,
    /// Print a progress line on stderr (when it is a terminal).
    pub progress: bool,
    /// `--mock-from`: each request names the recorded one it replays (`sidecar-replay-of`).
    pub mark_replays: bool,
}

/// How one exchange went.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayedExchange {
    /// The record replayed (its `uid` when it has one, else its `id`).
    pub record: String,
    pub method: String,
    /// The recorded path and query.
    pub path: String,
    /// `matched`, `differed` or `failed`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    /// Why no answer could be compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub recorded_status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The recorded exchange's duration.
    pub recorded_ms: f64,
    /// This replay's, request sent to whole answer read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_ms: Option<f64>,
}

/// The whole replay.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub target: String,
    pub replayed: usize,
    pub matched: usize,
    pub differed: usize,
    pub failed: usize,
    /// Inbound exchanges left out: no response was recorded, or the connection was upgraded.
    pub skipped: usize,
    pub learned_noise: Vec<LearnedField>,
    pub exchanges: Vec<ReplayedExchange>,
    pub elapsed_ms: f64,
}

impl Outcome {
    pub fn all_matched(&self) -> bool {
        self.differed == 0 && self.failed == 0
    }
}

/// Replays `records` as `options` say. Fails (before sending anything) only when the target cannot be
/// used at all or nothing is there to replay.
pub async fn replay(records: Vec<Record>, options: ReplayOptions) -> Result<Outcome, String> {
    let plan = plan(records);
    if plan.exchanges.is_empty() {
        return Err(format!(
            "the capture holds no inbound HTTP exchange with a response to replay ({} without a response, {} upgraded); record the app's inbound traffic (reverse, dual or transparent mode) first",
            plan.without_response, plan.upgraded
        ));
    }
    let client = TargetClient::new(
        options.target.clone(),
        options.target_ca.as_deref(),
        options.timeout,
    )?;
    let learned = LearnedNoise::learn(&plan.exchanges, &options.noise);
    let total = plan.exchanges.len();
    let progress = options.progress && std::io::stderr().is_terminal();
    let noise = Arc::new(options.noise);
    let learned = Arc::new(learned);
    let planned = Arc::new(plan.exchanges);
    // `--concurrency` workers, each taking the next exchange in recorded order as soon as it is free: no
    // task per exchange and no dispatcher to wake between one answer and the next request, which is
    // what kept `--rate max` at half of wrk's rate.
    let next = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let workers: Vec<_> = (0..options.concurrency.clamp(1, total))
        .map(|_| {
            let (client, noise, learned) = (client.clone(), noise.clone(), learned.clone());
            let (planned, next) = (planned.clone(), next.clone());
            let target = options.target.clone();
            let pace = options.pace;
            let mark_replays = options.mark_replays;
            tokio::spawn(async move {
                let mut done = Vec::new();
                let mut connection = WorkerConnection::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(exchange) = planned.get(index) else {
                        break done;
                    };
                    if let Some(after) = pace.start_after(index, exchange.offset_ms) {
                        tokio::time::sleep_until((began + after).into()).await;
                    }
                    if progress {
                        eprint!("\rsidecar-proxy: replaying {}/{total}", index + 1);
                    }
                    let to = Destination {
                        target: &target,
                        client: &client,
                        connection: &mut connection,
                    };
                    let replayed = replay_one(exchange, to, &noise, &learned, mark_replays).await;
                    done.push((index, replayed));
                }
            })
        })
        .collect();
    let mut numbered = Vec::with_capacity(total);
    for worker in workers {
        numbered.extend(
            worker
                .await
                .map_err(|e| format!("a replay task failed: {e}"))?,
        );
    }
    let elapsed = began.elapsed();
    numbered.sort_unstable_by_key(|(index, _)| *index);
    let exchanges: Vec<ReplayedExchange> = numbered.into_iter().map(|(_, e)| e).collect();
    if progress {
        eprint!("\r\x1b[2K");
    }
    let count = |outcome: &str| exchanges.iter().filter(|e| e.outcome == outcome).count();
    Ok(Outcome {
        target: format!(
            "{}://{}{}",
            options.target.scheme, options.target.authority, options.target.base_path
        ),
        replayed: exchanges.len(),
        matched: count("matched"),
        differed: count("differed"),
        failed: count("failed"),
        skipped: plan.without_response + plan.upgraded,
        learned_noise: learned.listed(),
        elapsed_ms: elapsed.as_secs_f64() * 1000.0,
        exchanges,
    })
}

/// Where a worker sends its exchanges.
struct Destination<'a> {
    target: &'a Target,
    client: &'a TargetClient,
    /// The worker's own connection.
    connection: &'a mut WorkerConnection,
}

async fn replay_one(
    planned: &Planned,
    to: Destination<'_>,
    noise: &Noise,
    learned: &LearnedNoise,
    mark_replays: bool,
) -> ReplayedExchange {
    let recorded = &planned.response;
    let path = path_and_query(&planned.request.url);
    let answer = match request_for(planned, &path, to.target) {
        Ok(mut request) => {
            if mark_replays {
                if let Ok(name) = http::HeaderValue::from_str(&planned.record_name) {
                    request.headers_mut().insert(REPLAY_OF, name);
                }
            }
            to.client.send(to.connection, request).await
        }
        Err(reason) => Err(reason),
    };
    let mut replayed = ReplayedExchange {
        record: planned.record_name.clone(),
        method: planned.request.method.clone(),
        path,
        outcome: "failed",
        differences: Vec::new(),
        error: None,
        recorded_status: recorded.status,
        status: None,
        recorded_ms: planned.duration_ms,
        replayed_ms: None,
    };
    let answer: Answer = match answer {
        Ok(answer) => answer,
        Err(reason) => {
            replayed.error = Some(reason);
            return replayed;
        }
    };
    let noise = learned.noise_for(planned, noise);
    let mut differences = Vec::new();
    if answer.status != recorded.status {
        differences.push(Difference {
            field: "status".to_owned(),
            recorded: recorded.status.to_string(),
            actual: answer.status.to_string(),
        });
    }
    differences.extend(header_differences(
        &recorded.headers,
        &answer.headers,
        &noise,
    ));
    differences.extend(trailer_differences(
        &recorded.trailers,
        &answer.trailers,
        &noise,
    ));
    differences.extend(body_differences(
        Message {
            headers: &recorded.headers,
            body: &recorded.body.base64,
            truncated: recorded.body.truncated,
        },
        Message {
            headers: &answer.headers,
            body: &answer.body,
            truncated: false,
        },
        &noise,
    ));
    replayed.status = Some(answer.status);
    replayed.replayed_ms = Some(answer.elapsed.as_secs_f64() * 1000.0);
    replayed.outcome = if differences.is_empty() {
        "matched"
    } else {
        "differed"
    };
    replayed.differences = differences;
    replayed
}
