//! Issue #21's NATS sink rows. The keep-alive rows through a sidecar capturing to NATS are wrk rows like
//! the others; after each, the harness waits until JetStream has acknowledged every record the sidecar
//! spooled, so a publisher still catching up never shares the cores with the next row, and a row whose
//! records do not reach JetStream has no result. The sink's own figure ([`crate::results::Tool::SinkDrain`]) runs the same
//! wrk load, then waits the same way, and divides the records acknowledged by the time from the first
//! request to the last acknowledgement and by the CPU time the sidecar used meanwhile: its publisher
//! thread's (the sink's own cost per core) and the whole process's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::http_load;
use super::Bench;
use crate::admin_port;
use crate::clients::wrk::ReadErrors;
use crate::clients::Invalid;
use crate::contenders::ServerSpec;
use crate::results::{Figure, Outcome};
use crate::route::Route;

/// How long the publisher may take to catch up after the load stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);
/// How long the counters must agree, with nothing new spooled, before the sink counts as drained: five
/// of the publisher's 100 ms polls.
const SETTLE: Duration = Duration::from_millis(500);
/// The sidecar's publisher thread (proxy/src/capture/nats/mod.rs names it).
const PUBLISHER_THREAD: &str = "capture-nats";
/// /proc's clock ticks per second (USER_HZ, 100 on every Linux architecture).
const TICKS_PER_SEC: f64 = 100.0;

/// The NATS sink's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SinkCounters {
    pub spooled: f64,
    pub acknowledged: f64,
    pub dropped: f64,
}

impl SinkCounters {
    /// Reads `sidecar_capture_nats_{spooled,acknowledged,dropped}_total` from the exposition text.
    pub fn parse(text: &str) -> anyhow::Result<SinkCounters> {
        let mut counters = SinkCounters::default();
        for series in admin_port::parse(text)? {
            let slot = match series.name {
                "sidecar_capture_nats_spooled_total" => &mut counters.spooled,
                "sidecar_capture_nats_acknowledged_total" => &mut counters.acknowledged,
                "sidecar_capture_nats_dropped_total" => &mut counters.dropped,
                _ => continue,
            };
            *slot = series.value;
        }
        Ok(counters)
    }

    /// Every record spooled is acknowledged.
    fn drained(&self) -> bool {
        self.acknowledged >= self.spooled
    }
}

/// Waits until JetStream has acknowledged every record spooled, and the spool has taken nothing new for
/// [`SETTLE`]: the last exchanges' records may still be on their way to the spool (the capture writer
/// batches) when the counters first agree. The counters then, or why not.
async fn until_drained(admin: SocketAddr) -> anyhow::Result<Result<SinkCounters, Invalid>> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut agreed_since: Option<(f64, Instant)> = None;
    loop {
        let counters = admin_port::scrape(admin, SinkCounters::parse).await?;
        if counters.drained() {
            match agreed_since {
                Some((spooled, since)) if spooled == counters.spooled => {
                    if since.elapsed() >= SETTLE {
                        return Ok(Ok(counters));
                    }
                }
                _ => agreed_since = Some((counters.spooled, Instant::now())),
            }
        } else {
            agreed_since = None;
        }
        if Instant::now() >= deadline {
            return Ok(Err(Invalid(format!(
                "JetStream had acknowledged {} of {} records spooled {DRAIN_LIMIT:?} after the load",
                counters.acknowledged, counters.spooled
            ))));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// utime + stime of a /proc stat line, in seconds (the fields after the parenthesised name).
fn cpu_seconds(stat: &str) -> Option<f64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// CPU seconds of the process and of its publisher thread.
fn cpu(pid: u32) -> anyhow::Result<(f64, f64)> {
    let process = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| cpu_seconds(&stat))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let mut publisher = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if name.trim() == PUBLISHER_THREAD {
            publisher = std::fs::read_to_string(task.join("stat"))
                .ok()
                .and_then(|stat| cpu_seconds(&stat));
        }
    }
    let publisher =
        publisher.with_context(|| format!("process {pid} has no {PUBLISHER_THREAD} thread"))?;
    Ok((process, publisher))
}

/// A wrk row through a sidecar capturing to NATS: the request rate, valid only once every record of it
/// is acknowledged.
pub async fn wrk_row(
    bench: &Bench<'_>,
    route: Route,
    spec: ServerSpec,
    connection_close: bool,
) -> anyhow::Result<Outcome> {
    let admin = bench.fleet.admin(&spec)?;
    let measured =
        http_load::measure(bench, route, connection_close, ReadErrors::NoneAllowed).await?;
    Ok(match until_drained(admin).await? {
        Ok(_) => measured,
        Err(invalid) => Err(invalid),
    })
}

/// [`crate::results::Tool::SinkDrain`]'s figure.
pub async fn drain(bench: &Bench<'_>, route: Route, spec: ServerSpec) -> anyhow::Result<Outcome> {
    let server = bench
        .fleet
        .server(&spec)
        .with_context(|| format!("{} was not started", spec.describe()))?;
    let admin = bench.fleet.admin(&spec)?;
    let pid = server.process.pid();
    let before = admin_port::scrape(admin, SinkCounters::parse).await?;
    let (process_before, publisher_before) = cpu(pid)?;
    let started = Instant::now();
    let summary =
        match http_load::run_wrk(bench, route, false, None, ReadErrors::NoneAllowed).await? {
            Ok(summary) => summary,
            Err(invalid) => return Ok(Err(invalid)),
        };
    let after = match until_drained(admin).await? {
        Ok(after) => after,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let (process_after, publisher_after) = cpu(pid)?;
    let records = after.acknowledged - before.acknowledged;
    let dropped = after.dropped - before.dropped;
    if records + dropped < summary.requests as f64 {
        return Ok(Err(Invalid(format!(
            "{} requests but only {records} records acknowledged and {dropped} dropped",
            summary.requests
        ))));
    }
    let per_cpu = |seconds: f64| {
        if seconds > 0.0 {
            records / seconds
        } else {
            f64::NAN
        }
    };
    Ok(Ok(Figure::SinkRate {
        per_sec: records / elapsed,
        per_publisher_cpu_sec: per_cpu(publisher_after - publisher_before),
        per_process_cpu_sec: per_cpu(process_after - process_before),
        dropped: dropped as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_counters_are_read_and_others_ignored() {
        let text = "# TYPE sidecar_capture_nats_spooled counter\n\
                    sidecar_capture_nats_spooled_total 120\n\
                    sidecar_capture_nats_acknowledged_total 118\n\
                    sidecar_capture_nats_dropped_total 2\n\
                    sidecar_capture_nats_lag_records 2\n\
                    sidecar_capture_records_dropped_total 9\n# EOF\n";
        let counters = SinkCounters::parse(text).unwrap();
        assert_eq!(
            counters,
            SinkCounters {
                spooled: 120.0,
                acknowledged: 118.0,
                dropped: 2.0
            }
        );
        assert!(!counters.drained());
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks_after_the_name() {
        // A thread name with a space and a parenthesis: fields are counted after the last ')'.
        let stat = "4242 (capture (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(3.0));
    }
}
