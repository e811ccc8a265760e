//! The verdict: did any sidecar grow, and did it return to rest? Pure functions over the samples, so
//! the bounds are unit-tested on synthetic series.
//!
//! - Growth during the load, judged after a warm-up (the first 20% of the load, at least 30 s, at most
//!   half): the median of the first window after the warm-up against the median of the last window of
//!   the load (medians, so one noisy sample neither passes nor fails a run).
//!   RSS may grow by max(25%, 8 MiB); open fds and alive tasks by 25% + a small constant.
//! - Return after the load: once the clients have closed and the origin has closed its idle
//!   keep-alive connections, open fds, alive tasks and open client connections must come back to
//!   within a small constant of their resting values before the load. This is the precise leak test:
//!   one descriptor or task kept per ten thousand connections is invisible in the curve but not here.

use std::collections::BTreeMap;

use anyhow::bail;

use super::sampler::{Metric, Phase, Sample};
use sidecar_bench::stats::median;

/// The stated bounds (docs/soak.md explains each).
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    /// RSS may grow by this fraction of its post-warm-up level ...
    pub rss_growth_fraction: f64,
    /// ... or by this many KiB, whichever is larger (allocator arenas settle in steps of MiBs).
    pub rss_growth_floor_kib: f64,
    /// Open fds and tasks may grow by this factor plus the slack below.
    pub trend_factor: f64,
    pub fds_trend_slack: f64,
    pub tasks_trend_slack: f64,
    /// After the settle: how far above its resting value each may stay.
    pub fds_rest_slack: f64,
    pub tasks_rest_slack: f64,
    pub connections_rest_slack: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            rss_growth_fraction: 0.25,
            rss_growth_floor_kib: 8.0 * 1024.0,
            trend_factor: 1.25,
            fds_trend_slack: 8.0,
            tasks_trend_slack: 16.0,
            // A pool's housekeeping task, a rotated capture file's descriptor: things a sidecar keeps
            // once it has served traffic at all, never per connection.
            fds_rest_slack: 4.0,
            tasks_rest_slack: 4.0,
            connections_rest_slack: 0.0,
        }
    }
}

/// When the load ran, in seconds on the run's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeline {
    pub load_start: f64,
    pub load_end: f64,
}

/// The spans the growth checks compare, in seconds on the run's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Windows {
    pub warmup_end: f64,
    pub first: (f64, f64),
    pub last: (f64, f64),
}

impl Timeline {
    pub fn load_len(&self) -> f64 {
        self.load_end - self.load_start
    }

    /// Warm-up: 20% of the load, at least 30 s, at most half of it. Windows: 10% of the load, at least
    /// 15 s, the first right after the warm-up, the last at the end of the load; never overlapping.
    pub fn windows(&self) -> Windows {
        let len = self.load_len();
        let warmup = (len * 0.2).max(30.0).min(len * 0.5);
        let warmup_end = self.load_start + warmup;
        let window = (len * 0.1)
            .max(15.0)
            .min((self.load_end - warmup_end) / 2.0);
        Windows {
            warmup_end,
            first: (warmup_end, warmup_end + window),
            last: (self.load_end - window, self.load_end),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// Last window of the load against the first window after the warm-up.
    Growth,
    /// After the settle against rest before the load.
    Return,
}

/// One bound applied to one metric of one sidecar, with its figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub sidecar: &'static str,
    pub metric: Metric,
    pub kind: CheckKind,
    /// The reference: first-window median (growth) or resting median (return).
    pub from: f64,
    /// The value judged: last-window median (growth) or the value after the settle (return).
    pub to: f64,
    pub limit: f64,
    /// The bound as a formula.
    pub bound: String,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.to <= self.limit
    }

    /// One line naming the sidecar, metric and figures.
    pub fn describe(&self) -> String {
        let show = |value| self.metric.display(value);
        let (what, from, to) = match self.kind {
            CheckKind::Growth => ("grew during the load", "after warm-up", "at the end"),
            CheckKind::Return => ("did not return to rest", "at rest", "after the settle"),
        };
        let verdict = if self.passed() { "within" } else { "above" };
        let headline = if self.passed() {
            format!("{} {} ok", self.sidecar, self.metric.name())
        } else {
            format!("{} {} {what}", self.sidecar, self.metric.name())
        };
        format!(
            "{headline}: {} {from}, {} {to}, {verdict} the bound {} ({})",
            show(self.from),
            show(self.to),
            show(self.limit),
            self.bound
        )
    }
}

fn median_of<'a>(samples: impl Iterator<Item = &'a Sample>, metric: Metric) -> Option<f64> {
    let values: Vec<f64> = samples.map(|s| metric.of(s) as f64).collect();
    median(&values)
}

fn in_span(sample: &Sample, (start, end): (f64, f64)) -> bool {
    sample.phase == Phase::Load && sample.elapsed >= start && sample.elapsed <= end
}

/// Every check for every sidecar in the samples, in the order the sidecars were first sampled.
pub fn judge(
    samples: &[Sample],
    timeline: &Timeline,
    bounds: &Bounds,
) -> anyhow::Result<Vec<Check>> {
    let windows = timeline.windows();
    let mut sidecars: Vec<&'static str> = Vec::new();
    for sample in samples {
        if !sidecars.contains(&sample.sidecar) {
            sidecars.push(sample.sidecar);
        }
    }
    let mut checks = Vec::new();
    for sidecar in sidecars {
        let own = || samples.iter().filter(move |s| s.sidecar == sidecar);
        for (metric, limit_of, bound) in growth_bounds(bounds) {
            let first = median_of(own().filter(|s| in_span(s, windows.first)), metric);
            let last = median_of(own().filter(|s| in_span(s, windows.last)), metric);
            let (Some(from), Some(to)) = (first, last) else {
                bail!(
                    "{sidecar}: no samples in the first or last window (the load ran {:.0}s; sample more often or run longer)",
                    timeline.load_len()
                );
            };
            checks.push(Check {
                sidecar,
                metric,
                kind: CheckKind::Growth,
                from,
                to,
                limit: limit_of(from),
                bound,
            });
        }
        let Some(rest) = rest_levels(own()) else {
            bail!("{sidecar}: no resting samples before the load");
        };
        let Some(settled) = own().rfind(|s| s.phase == Phase::Settle) else {
            bail!("{sidecar}: no samples after the load");
        };
        for (metric, slack) in return_bounds(bounds) {
            let from = rest.get(metric);
            checks.push(Check {
                sidecar,
                metric,
                kind: CheckKind::Return,
                from,
                to: metric.of(settled) as f64,
                limit: from + slack,
                bound: format!("rest + {slack}"),
            });
        }
    }
    Ok(checks)
}

type LimitOf = Box<dyn Fn(f64) -> f64>;

fn growth_bounds(bounds: &Bounds) -> [(Metric, LimitOf, String); 3] {
    let b = bounds.clone();
    let (factor, fds_slack, tasks_slack) = (b.trend_factor, b.fds_trend_slack, b.tasks_trend_slack);
    [
        (
            Metric::Rss,
            Box::new(move |from| from + (from * b.rss_growth_fraction).max(b.rss_growth_floor_kib)),
            format!(
                "after warm-up + max({:.0}%, {:.0} MiB)",
                bounds.rss_growth_fraction * 100.0,
                bounds.rss_growth_floor_kib / 1024.0
            ),
        ),
        (
            Metric::Fds,
            Box::new(move |from| from * factor + fds_slack),
            format!("after warm-up × {factor} + {fds_slack}"),
        ),
        (
            Metric::Tasks,
            Box::new(move |from| from * factor + tasks_slack),
            format!("after warm-up × {factor} + {tasks_slack}"),
        ),
    ]
}

fn return_bounds(bounds: &Bounds) -> [(Metric, f64); 3] {
    [
        (Metric::Fds, bounds.fds_rest_slack),
        (Metric::Tasks, bounds.tasks_rest_slack),
        (Metric::ConnectionsOpen, bounds.connections_rest_slack),
    ]
}

/// A sidecar's resting medians.
struct RestLevels(BTreeMap<&'static str, f64>);

impl RestLevels {
    fn get(&self, metric: Metric) -> f64 {
        self.0.get(metric.file_stem()).copied().unwrap_or(0.0)
    }
}

fn rest_levels<'a>(own: impl Iterator<Item = &'a Sample> + Clone) -> Option<RestLevels> {
    let rest = own.filter(|s| s.phase == Phase::Rest);
    let mut levels = BTreeMap::new();
    for metric in Metric::ALL {
        levels.insert(metric.file_stem(), median_of(rest.clone(), metric)?);
    }
    Some(RestLevels(levels))
}

/// Whether every sidecar in `batch` is back within the return bounds of its resting samples in `rest`
/// (the settle stops waiting as soon as this holds).
pub fn settled(rest: &[&Sample], batch: &[Sample], bounds: &Bounds) -> bool {
    batch.iter().all(|sample| {
        let Some(levels) =
            rest_levels(rest.iter().copied().filter(|s| s.sidecar == sample.sidecar))
        else {
            return false;
        };
        return_bounds(bounds)
            .iter()
            .all(|(metric, slack)| metric.of(sample) as f64 <= levels.get(*metric) + slack)
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const MIB: u64 = 1024;

    /// A run of `load_secs` seconds sampled every 5 s: 3 resting samples, the load series from
    /// `during(fraction of the load done)`, then `settle` samples.
    fn run(
        load_secs: u64,
        rest: (u64, u64, u64, u64),
        during: impl Fn(f64) -> (u64, u64, u64, u64),
        settle: (u64, u64, u64, u64),
    ) -> (Vec<Sample>, Timeline) {
        let sample =
            |elapsed: f64, phase, (rss_kib, fds, tasks, connections_open): (u64, u64, u64, u64)| {
                Sample {
                    elapsed,
                    phase,
                    sidecar: "dual-socks",
                    rss_kib,
                    fds,
                    tasks,
                    connections_open,
                    records_dropped: 0,
                }
            };
        let mut samples: Vec<Sample> = (0..3)
            .map(|i| sample(i as f64, Phase::Rest, rest))
            .collect();
        let load_start = 3.0;
        let mut t = 0;
        while t <= load_secs {
            samples.push(sample(
                load_start + t as f64,
                Phase::Load,
                during(t as f64 / load_secs as f64),
            ));
            t += 5;
        }
        let load_end = load_start + load_secs as f64;
        samples.push(sample(load_end + 2.0, Phase::Settle, settle));
        (
            samples,
            Timeline {
                load_start,
                load_end,
            },
        )
    }

    fn failed(samples: &[Sample], timeline: &Timeline) -> Vec<(Metric, CheckKind)> {
        judge(samples, timeline, &Bounds::default())
            .unwrap()
            .into_iter()
            .filter(|check| !check.passed())
            .map(|check| (check.metric, check.kind))
            .collect()
    }

    const REST: (u64, u64, u64, u64) = (10 * MIB, 20, 12, 0);

    #[rstest]
    #[case::flat(180)]
    #[case::flat_hour(3600)]
    #[case::one_minute(60)]
    fn a_steady_sidecar_passes(#[case] load_secs: u64) {
        let (samples, timeline) = run(load_secs, REST, |_| (30 * MIB, 60, 80, 40), REST);
        assert_eq!(failed(&samples, &timeline), vec![]);
    }

    #[test]
    fn noise_and_a_warm_up_ramp_pass() {
        // Climbs during the warm-up, then wobbles around a level: medians see no growth.
        let (samples, timeline) = run(
            180,
            REST,
            |f| {
                let wobble = if ((f * 100.0) as u64).is_multiple_of(2) {
                    3
                } else {
                    0
                };
                let ramp = (f.min(0.15) / 0.15 * 20.0) as u64;
                (
                    (20 + ramp) * MIB + wobble * MIB,
                    40 + ramp + wobble * 4,
                    60 + wobble * 10,
                    30,
                )
            },
            (41 * MIB, 23, 15, 0),
        );
        assert_eq!(failed(&samples, &timeline), vec![]);
    }

    #[test]
    fn small_rss_growth_within_the_8_mib_floor_passes() {
        // 6 MiB on 12 MiB is 50%, but under the 8 MiB floor.
        let (samples, timeline) = run(
            180,
            REST,
            |f| (12 * MIB + (f * 6.0 * 1024.0) as u64, 40, 60, 30),
            REST,
        );
        assert_eq!(failed(&samples, &timeline), vec![]);
    }

    #[rstest]
    #[case::rss_leak(|f: f64| (40 * MIB + (f * 40.0 * 1024.0) as u64, 40, 60, 30), Metric::Rss)]
    #[case::fd_leak(|f: f64| (40 * MIB, 40 + (f * 200.0) as u64, 60, 30), Metric::Fds)]
    #[case::task_leak(|f: f64| (40 * MIB, 40, 60 + (f * 300.0) as u64, 30), Metric::Tasks)]
    fn steady_growth_fails(
        #[case] during: fn(f64) -> (u64, u64, u64, u64),
        #[case] metric: Metric,
    ) {
        let (samples, timeline) = run(180, REST, during, REST);
        assert_eq!(
            failed(&samples, &timeline),
            vec![(metric, CheckKind::Growth)]
        );
    }

    #[rstest]
    #[case::fds_kept((10 * MIB, 30, 12, 0), Metric::Fds)]
    #[case::tasks_kept((10 * MIB, 20, 20, 0), Metric::Tasks)]
    #[case::a_connection_still_counted((10 * MIB, 20, 12, 1), Metric::ConnectionsOpen)]
    fn not_returning_to_rest_fails(#[case] settle: (u64, u64, u64, u64), #[case] metric: Metric) {
        let (samples, timeline) = run(180, REST, |_| (30 * MIB, 60, 80, 40), settle);
        assert_eq!(
            failed(&samples, &timeline),
            vec![(metric, CheckKind::Return)]
        );
    }

    #[test]
    fn returning_within_the_slack_passes_and_settled_agrees() {
        let near_rest = (50 * MIB, 24, 16, 0);
        let (samples, timeline) = run(180, REST, |_| (30 * MIB, 60, 80, 40), near_rest);
        assert_eq!(failed(&samples, &timeline), vec![]);
        let rest: Vec<&Sample> = samples.iter().filter(|s| s.phase == Phase::Rest).collect();
        let bounds = Bounds::default();
        assert!(settled(&rest, &samples[samples.len() - 1..], &bounds));
        let mut still_busy = samples[samples.len() - 1].clone();
        still_busy.connections_open = 3;
        assert!(!settled(&rest, &[still_busy], &bounds));
    }

    #[test]
    fn a_failure_names_the_sidecar_metric_and_figures() {
        let (samples, timeline) = run(180, REST, |_| (30 * MIB, 60, 80, 40), (10 * MIB, 31, 12, 0));
        let check = judge(&samples, &timeline, &Bounds::default())
            .unwrap()
            .into_iter()
            .find(|check| !check.passed())
            .unwrap();
        assert_eq!(
            check.describe(),
            "dual-socks open fds did not return to rest: 20 at rest, 31 after the settle, above the bound 24 (rest + 4)"
        );
    }

    #[rstest]
    #[case::three_minutes(180.0, 36.0, 18.0)]
    #[case::one_minute(60.0, 30.0, 15.0)]
    #[case::an_hour(3600.0, 720.0, 360.0)]
    fn windows_follow_the_load_length(#[case] len: f64, #[case] warmup: f64, #[case] window: f64) {
        let windows = Timeline {
            load_start: 10.0,
            load_end: 10.0 + len,
        }
        .windows();
        assert_eq!(windows.warmup_end, 10.0 + warmup);
        assert_eq!(windows.first, (10.0 + warmup, 10.0 + warmup + window));
        assert_eq!(windows.last, (10.0 + len - window, 10.0 + len));
    }

    #[test]
    fn too_short_a_run_is_an_error_not_a_pass() {
        let (samples, _) = run(180, REST, |_| (30 * MIB, 60, 80, 40), REST);
        let rest_only: Vec<Sample> = samples
            .into_iter()
            .filter(|s| s.phase != Phase::Load)
            .collect();
        assert!(judge(
            &rest_only,
            &Timeline {
                load_start: 3.0,
                load_end: 183.0
            },
            &Bounds::default()
        )
        .is_err());
    }
}
