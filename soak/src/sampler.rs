//! One sample of one sidecar: resident memory and open descriptors from /proc, alive tasks and open
//! client connections from its admin port's /metrics (OpenMetrics text).

use std::net::SocketAddr;

use anyhow::{bail, Context as _};

use sidecar_bench::admin_port;
use sidecar_bench::rss::parse_kib_field;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Started, before any load: the levels the sidecar must return to.
    Rest,
    Load,
    /// After the load stopped and the origin closed its idle connections.
    Settle,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Rest => "rest",
            Phase::Load => "load",
            Phase::Settle => "settle",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Seconds since the run's clock started (just before the resting samples).
    pub elapsed: f64,
    pub phase: Phase,
    pub sidecar: &'static str,
    pub rss_kib: u64,
    pub fds: u64,
    pub tasks: u64,
    /// Client connections open, summed over the sidecar's listeners.
    pub connections_open: u64,
    /// Capture records dropped so far (shown, not judged: a full queue is a documented behaviour).
    pub records_dropped: u64,
}

/// The sampled quantities the verdict and the charts look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Rss,
    Fds,
    Tasks,
    ConnectionsOpen,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::Rss,
        Metric::Fds,
        Metric::Tasks,
        Metric::ConnectionsOpen,
    ];

    pub fn of(self, sample: &Sample) -> u64 {
        match self {
            Metric::Rss => sample.rss_kib,
            Metric::Fds => sample.fds,
            Metric::Tasks => sample.tasks,
            Metric::ConnectionsOpen => sample.connections_open,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Rss => "RSS",
            Metric::Fds => "open fds",
            Metric::Tasks => "tasks alive",
            Metric::ConnectionsOpen => "connections open",
        }
    }

    pub fn file_stem(self) -> &'static str {
        match self {
            Metric::Rss => "rss",
            Metric::Fds => "fds",
            Metric::Tasks => "tasks",
            Metric::ConnectionsOpen => "connections",
        }
    }

    /// A value as a reader wants it: RSS in MiB, the rest as counts.
    pub fn display(self, value: f64) -> String {
        match self {
            Metric::Rss => format!("{:.1} MiB", value / 1024.0),
            _ => format!("{value:.0}"),
        }
    }
}

pub async fn sample(
    sidecar: &'static str,
    pid: u32,
    admin: SocketAddr,
    phase: Phase,
    elapsed: f64,
) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let rss_kib = parse_kib_field(&status, "VmRSS:")
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("cannot list /proc/{pid}/fd"))?
        .count() as u64;
    let scraped = admin_port::scrape(admin, ScrapedGauges::parse).await?;
    Ok(Sample {
        elapsed,
        phase,
        sidecar,
        rss_kib,
        fds,
        tasks: scraped.tasks_alive,
        connections_open: scraped.connections_open,
        records_dropped: scraped.records_dropped,
    })
}

/// The values the soak reads from the sidecar's metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScrapedGauges {
    pub tasks_alive: u64,
    pub connections_open: u64,
    pub records_dropped: u64,
}

impl ScrapedGauges {
    /// Reads `sidecar_runtime_tasks_alive`, every `sidecar_connections_open{...}` series (summed) and
    /// `sidecar_capture_records_dropped_total` from the exposition text.
    pub fn parse(text: &str) -> anyhow::Result<ScrapedGauges> {
        let mut gauges = ScrapedGauges::default();
        let mut saw_tasks = false;
        for series in admin_port::parse(text)? {
            let value = series.value.max(0.0) as u64;
            match series.name {
                "sidecar_runtime_tasks_alive" => {
                    gauges.tasks_alive = value;
                    saw_tasks = true;
                }
                "sidecar_connections_open" => gauges.connections_open += value,
                "sidecar_capture_records_dropped_total" => gauges.records_dropped = value,
                _ => {}
            }
        }
        if !saw_tasks {
            bail!("no sidecar_runtime_tasks_alive gauge (a sidecar-proxy older than the soak?)");
        }
        Ok(gauges)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_read_from_openmetrics_text() {
        let text =
            "# HELP sidecar_connections_open Client connections currently open, per listener\n\
                    # TYPE sidecar_connections_open gauge\n\
                    sidecar_connections_open{direction=\"inbound\",protocol=\"tcp\"} 3\n\
                    sidecar_connections_open{direction=\"outbound\",protocol=\"http\"} 4\n\
                    # TYPE sidecar_runtime_tasks_alive gauge\n\
                    sidecar_runtime_tasks_alive 17\n\
                    sidecar_capture_records_dropped_total 2\n\
                    # EOF\n";
        assert_eq!(
            ScrapedGauges::parse(text).unwrap(),
            ScrapedGauges {
                tasks_alive: 17,
                connections_open: 7,
                records_dropped: 2
            }
        );
    }

    #[test]
    fn a_sidecar_without_the_tasks_gauge_is_refused() {
        assert!(ScrapedGauges::parse("sidecar_connections_open{a=\"b\"} 1\n# EOF\n").is_err());
    }
}
