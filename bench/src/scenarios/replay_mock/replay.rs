//! Scenario 9's replay row: a capture recorded the way users record one (wrk's load through a reverse
//! http sidecar with capture on, for as long as a measurement lasts), then sent again to nginx by
//! `sidecar-proxy replay --rate max --concurrency C`, C being wrk's connections. The figure is the
//! exchanges replayed per second of the replay's own clock (first request to last answer, as its
//! `--report` gives it); every answer must match its recording.

use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::process::Command;

use super::recording::CapturingSidecar;
use crate::clients::wrk::ReadErrors;
use crate::clients::{self, Invalid};
use crate::contenders::SidecarMode;
use crate::results::{Figure, Outcome};
use crate::route::{origin_url, Route};
use crate::scenarios::{http_load, Bench};

/// Fewer exchanges than this would time connection setup more than replay.
pub const MIN_EXCHANGES: usize = 1_000;
/// How long the replay may take before the row is abandoned.
const REPLAY_LIMIT: Duration = Duration::from_secs(300);

/// The totals of `replay --report`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ReplayTotals {
    pub replayed: usize,
    pub matched: usize,
    pub differed: usize,
    pub failed: usize,
    /// Recorded without a response (wrk's last requests, cut off when it stopped) or upgraded.
    pub skipped: usize,
    pub elapsed_ms: f64,
}

impl ReplayTotals {
    /// Exchanges per second, if every one of the `recorded` exchanges was replayed (or left out for
    /// want of a response) and every answer matched.
    pub fn figure(&self, recorded: usize) -> Outcome {
        if self.differed > 0 || self.failed > 0 {
            return Err(Invalid(format!(
                "{} of {} answers differed and {} failed",
                self.differed, self.replayed, self.failed
            )));
        }
        if self.replayed + self.skipped != recorded || self.matched != self.replayed {
            return Err(Invalid(format!(
                "{} exchanges replayed, {} matched and {} left out of {recorded} recorded",
                self.replayed, self.matched, self.skipped
            )));
        }
        if self.elapsed_ms <= 0.0 {
            return Err(Invalid("the replay took no time".to_owned()));
        }
        Ok(Figure::RequestRate {
            per_sec: self.replayed as f64 * 1000.0 / self.elapsed_ms,
        })
    }
}

/// Records a capture and replays it; the figure, or why there is none.
pub async fn measure(bench: &Bench<'_>) -> anyhow::Result<Outcome> {
    let ctx = bench.ctx;
    let recorder =
        CapturingSidecar::start(ctx, "replay-recording", SidecarMode::ReverseHttp, &[]).await?;
    let route = Route::Reverse {
        port: recorder.port,
    };
    let recorded_load =
        http_load::run_wrk(bench, route, false, None, ReadErrors::NoneAllowed).await?;
    let (capture, records) = recorder.finish()?;
    let requests = match recorded_load {
        Ok(summary) => summary.requests,
        Err(Invalid(reason)) => {
            return Ok(Err(Invalid(format!("recording the capture: {reason}"))))
        }
    };
    // wrk counts the requests answered in time; the ones in flight at its end are recorded too.
    if records < MIN_EXCHANGES || (records as u64) < requests {
        return Ok(Err(Invalid(format!(
            "the capture holds {records} records after {requests} requests (at least {MIN_EXCHANGES} needed)"
        ))));
    }
    let report = capture.with_extension("replay.json");
    let mut command = Command::new(&ctx.tools.sidecar_proxy);
    command
        .arg("replay")
        .arg(&capture)
        .arg("--target")
        .arg(origin_url(ctx.origin.http_port))
        .arg("--rate")
        .arg("max")
        .arg("--concurrency")
        .arg(bench.load.connections.to_string())
        .arg("--report")
        .arg(&report);
    let output = clients::output(command, REPLAY_LIMIT).await?;
    // 0: every answer matched; 1: some differed or failed (the report says which); 2: bad usage.
    if !matches!(output.status.code(), Some(0 | 1)) {
        return Ok(Err(Invalid(format!(
            "sidecar-proxy replay exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))));
    }
    let text = std::fs::read_to_string(&report)
        .with_context(|| format!("sidecar-proxy replay wrote no report {}", report.display()))?;
    let totals: ReplayTotals = serde_json::from_str(&text)
        .with_context(|| format!("cannot read the replay report {}", report.display()))?;
    eprint!(
        "({records} exchanges recorded, replayed in {:.0} ms) ",
        totals.elapsed_ms
    );
    Ok(totals.figure(records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(replayed: usize, matched: usize, failed: usize) -> ReplayTotals {
        ReplayTotals {
            replayed,
            matched,
            differed: replayed - matched - failed,
            failed,
            skipped: 0,
            elapsed_ms: 500.0,
        }
    }

    #[test]
    fn the_rate_is_the_exchanges_over_the_replays_own_time() {
        assert_eq!(
            totals(20_000, 20_000, 0).figure(20_000),
            Ok(Figure::RequestRate { per_sec: 40_000.0 })
        );
    }

    #[test]
    fn a_replay_with_a_difference_a_failure_or_a_missing_exchange_has_no_figure() {
        assert!(totals(20_000, 19_999, 0).figure(20_000).is_err());
        assert!(totals(20_000, 19_999, 1).figure(20_000).is_err());
        assert!(totals(19_999, 19_999, 0).figure(20_000).is_err());
        let with_unanswered = ReplayTotals {
            skipped: 1,
            ..totals(19_999, 19_999, 0)
        };
        assert!(with_unanswered.figure(20_000).is_ok());
    }

    #[test]
    fn the_totals_are_read_from_replays_report() {
        let report = r#"{"target":"http://127.0.0.1:1","replayed":2,"matched":2,"differed":0,"failed":0,
            "skipped":0,"learned_noise":[],"exchanges":[],"elapsed_ms":12.5}"#;
        let totals: ReplayTotals = serde_json::from_str(report).unwrap();
        assert_eq!(totals.elapsed_ms, 12.5);
        assert_eq!(totals.figure(2), Ok(Figure::RequestRate { per_sec: 160.0 }));
    }
}
