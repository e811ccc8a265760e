//! What a run leaves behind: every sample as CSV, the markdown summary (figures, bounds, verdict), and
//! the progress lines printed while it runs.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use super::load::{Tally, TallyTotals};
use super::sampler::{Metric, Phase, Sample};
use super::sidecars::{Fleet, REVERSE_HTTP, SOCKS, TCP_HTTP};
use super::verdict::{Bounds, Check, CheckKind, Timeline};
use super::SoakOptions;
use sidecar_bench::markdown;
use sidecar_bench::stats::median;

const SIDECARS: [&str; 3] = [TCP_HTTP, SOCKS, REVERSE_HTTP];

pub struct RunContext<'a> {
    pub options: &'a SoakOptions,
    pub proxy_bin: &'a Path,
    pub revision: &'a str,
    pub timeline: &'a Timeline,
    pub bounds: &'a Bounds,
    pub fleet: &'a Fleet,
}

pub fn write_csv(path: &Path, samples: &[Sample]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "elapsed_s,phase,sidecar,rss_kib,open_fds,tasks_alive,connections_open,capture_records_dropped\n",
    );
    for s in samples {
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{},{},{},{}",
            s.elapsed,
            s.phase.name(),
            s.sidecar,
            s.rss_kib,
            s.fds,
            s.tasks,
            s.connections_open,
            s.records_dropped
        );
    }
    std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads back what [`write_csv`] wrote (for `--replot`).
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate().skip(1) {
        let at = || format!("{} line {}", path.display(), index + 1);
        let fields: Vec<&str> = line.split(',').collect();
        let [elapsed, phase, sidecar, rss_kib, fds, tasks, connections_open, records_dropped] =
            fields[..]
        else {
            anyhow::bail!("{}: expected 8 fields, found {}", at(), fields.len());
        };
        let phase = match phase {
            "rest" => Phase::Rest,
            "load" => Phase::Load,
            "settle" => Phase::Settle,
            other => anyhow::bail!("{}: unknown phase {other:?}", at()),
        };
        let sidecar = SIDECARS
            .into_iter()
            .find(|known| *known == sidecar)
            .with_context(|| format!("{}: unknown sidecar {sidecar:?}", at()))?;
        let number = |field: &str| -> anyhow::Result<u64> {
            field
                .parse()
                .with_context(|| format!("{}: bad number {field:?}", at()))
        };
        samples.push(Sample {
            elapsed: elapsed
                .parse()
                .with_context(|| format!("{}: bad time {elapsed:?}", at()))?,
            phase,
            sidecar,
            rss_kib: number(rss_kib)?,
            fds: number(fds)?,
            tasks: number(tasks)?,
            connections_open: number(connections_open)?,
            records_dropped: number(records_dropped)?,
        });
    }
    Ok(samples)
}

/// The load's span as the samples show it: the first load sample is taken as the load starts, the
/// last one as it ends.
pub fn timeline_of(samples: &[Sample]) -> Option<Timeline> {
    let mut load = samples.iter().filter(|s| s.phase == Phase::Load);
    let first = load.next()?;
    let last = load.next_back().unwrap_or(first);
    Some(Timeline {
        load_start: first.elapsed,
        load_end: last.elapsed,
    })
}

/// One line per sample batch, so a long run shows it is alive and how it trends.
pub fn print_progress(batch: &[Sample], tallies: &[Arc<Tally>]) {
    let Some(first) = batch.first() else { return };
    let (ok, errors) = tallies
        .iter()
        .map(|t| t.totals())
        .fold((0, 0), |(ok, errors), t| (ok + t.ok, errors + t.errors));
    let sidecars: Vec<String> = batch
        .iter()
        .map(|s| {
            format!(
                "{} rss {:.1}MiB fds {} tasks {} conns {}",
                s.sidecar,
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.tasks,
                s.connections_open
            )
        })
        .collect();
    eprintln!(
        "[{:>6.0}s] {} | ops {ok} errors {errors}",
        first.elapsed,
        sidecars.join(" | ")
    );
}

fn duration(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// The markdown summary: what ran, the load's counts, each sidecar's levels, each check, the verdict.
pub fn summary(
    context: &RunContext<'_>,
    samples: &[Sample],
    tallies: &[TallyTotals],
    checks: &[Check],
    failures: &[String],
) -> String {
    let timeline = context.timeline;
    let windows = timeline.windows();
    let load_secs = timeline.load_len();
    let end = samples.last().map_or(timeline.load_end, |s| s.elapsed);
    let mut md = String::new();
    let _ = writeln!(md, "# sidecar-soak summary\n");
    if failures.is_empty() {
        let _ = writeln!(md, "**PASS**: no load errors, every bound held.\n");
    } else {
        let _ = writeln!(md, "**FAIL**:\n");
        for failure in failures {
            let _ = writeln!(md, "- {failure}");
        }
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "Load for {} (rest {} before it, settle {} after it), sampled every {}; warm-up until {}, \
         first window {}–{}, last window {}–{} (times since start). Rate scale {}.\n",
        duration(load_secs),
        duration(timeline.load_start),
        duration(end - timeline.load_end),
        humantime::format_duration(context.options.sample_every),
        duration(windows.warmup_end),
        duration(windows.first.0),
        duration(windows.first.1),
        duration(windows.last.0),
        duration(windows.last.1),
        context.options.rate_scale,
    );
    let _ = writeln!(
        md,
        "sidecar-proxy: `{}` ({}).\n",
        context.proxy_bin.display(),
        context.revision
    );

    let _ = writeln!(md, "## Sidecars\n");
    markdown::head(&mut md, "sidecar | mode | capture");
    for sidecar in &context.fleet.sidecars {
        let _ = writeln!(
            md,
            "| {} | `{}` | on, `capture-{}.jsonl`, rotated |",
            sidecar.name, sidecar.mode, sidecar.name
        );
    }

    let _ = writeln!(md, "\n## Load\n");
    markdown::head(
        &mut md,
        "load | operations: | errors: | per second: | MiB checked:",
    );
    for tally in tallies {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} |",
            tally.kind.name(),
            tally.ok + tally.errors,
            tally.errors,
            (tally.ok + tally.errors) as f64 / load_secs.max(1.0),
            tally.bytes as f64 / (1024.0 * 1024.0)
        );
    }
    let total: u64 = tallies.iter().map(|t| t.ok + t.errors).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    let _ = writeln!(
        md,
        "| **all** | {total} | {errors} | {:.1} | {:.1} |",
        total as f64 / load_secs.max(1.0),
        tallies.iter().map(|t| t.bytes).sum::<u64>() as f64 / (1024.0 * 1024.0)
    );
    for tally in tallies.iter().filter(|t| !t.first_errors.is_empty()) {
        for error in &tally.first_errors {
            let _ = writeln!(
                md,
                "\n- {}: `{}`",
                tally.kind.name(),
                error.replace('`', "'")
            );
        }
    }

    let _ = writeln!(
        md,
        "\n## Levels\n\nMedians of the resting samples and of each window; peak of the load; the last \
         sample of the settle.\n"
    );
    markdown::head(
        &mut md,
        "sidecar | metric | rest: | after warm-up: | end of load: | peak: | after settle:",
    );
    let sidecars: Vec<&str> = context.fleet.sidecars.iter().map(|s| s.name).collect();
    for sidecar in &sidecars {
        let own: Vec<&Sample> = samples.iter().filter(|s| s.sidecar == *sidecar).collect();
        for metric in Metric::ALL {
            let med = |keep: &dyn Fn(&Sample) -> bool| {
                let values: Vec<f64> = own
                    .iter()
                    .filter(|s| keep(s))
                    .map(|s| metric.of(s) as f64)
                    .collect();
                median(&values).map_or("–".to_owned(), |v| metric.display(v))
            };
            let in_window = |(from, to): (f64, f64)| {
                move |s: &Sample| s.phase == Phase::Load && s.elapsed >= from && s.elapsed <= to
            };
            let peak = own
                .iter()
                .filter(|s| s.phase == Phase::Load)
                .map(|s| metric.of(s))
                .max()
                .map_or("–".to_owned(), |v| metric.display(v as f64));
            let settled = own
                .iter()
                .rev()
                .find(|s| s.phase == Phase::Settle)
                .map_or("–".to_owned(), |s| metric.display(metric.of(s) as f64));
            let _ = writeln!(
                md,
                "| {sidecar} | {} | {} | {} | {} | {peak} | {settled} |",
                metric.name(),
                med(&|s| s.phase == Phase::Rest),
                med(&in_window(windows.first)),
                med(&in_window(windows.last)),
            );
        }
    }
    let dropped: Vec<String> = sidecars
        .iter()
        .filter_map(|sidecar| {
            let last = samples.iter().rev().find(|s| s.sidecar == *sidecar)?;
            (last.records_dropped > 0).then(|| format!("{sidecar}: {}", last.records_dropped))
        })
        .collect();
    let _ = writeln!(
        md,
        "\nCapture records dropped (queue full or write failed): {}.",
        if dropped.is_empty() {
            "none".to_owned()
        } else {
            dropped.join(", ")
        }
    );

    let bounds = context.bounds;
    let _ = writeln!(
        md,
        "\n## Checks\n\nGrowth: RSS ≤ after-warm-up × (1 + {:.0}%) or + {:.0} MiB, whichever is more; open fds ≤ \
         × {} + {}; tasks ≤ × {} + {}. Return after the settle: open fds ≤ rest + {}, tasks ≤ rest + {}, \
         connections ≤ rest + {}.\n",
        bounds.rss_growth_fraction * 100.0,
        bounds.rss_growth_floor_kib / 1024.0,
        bounds.trend_factor,
        bounds.fds_trend_slack,
        bounds.trend_factor,
        bounds.tasks_trend_slack,
        bounds.fds_rest_slack,
        bounds.tasks_rest_slack,
        bounds.connections_rest_slack,
    );
    markdown::head(
        &mut md,
        "sidecar | metric | check | from: | to: | limit: | result",
    );
    for check in checks {
        let kind = match check.kind {
            CheckKind::Growth => "growth during load",
            CheckKind::Return => "return to rest",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {kind} | {} | {} | {} | {} |",
            check.sidecar,
            check.metric.name(),
            check.metric.display(check.from),
            check.metric.display(check.to),
            check.metric.display(check.limit),
            if check.passed() { "ok" } else { "**FAIL**" }
        );
    }
    let _ = writeln!(
        md,
        "\nCharts: {}. Every sample: `samples.csv`.",
        Metric::ALL
            .iter()
            .map(|m| format!("`{}.svg`", m.file_stem()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_read_back_as_written() {
        let samples: Vec<Sample> = [
            (0.5, Phase::Rest),
            (3.0, Phase::Load),
            (9.0, Phase::Load),
            (12.5, Phase::Settle),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (elapsed, phase))| Sample {
            elapsed,
            phase,
            sidecar: SIDECARS[i % 3],
            rss_kib: 6000 + i as u64,
            fds: 15,
            tasks: 5,
            connections_open: i as u64,
            records_dropped: 0,
        })
        .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.csv");
        write_csv(&path, &samples).unwrap();
        assert_eq!(read_csv(&path).unwrap(), samples);
        assert_eq!(
            timeline_of(&samples),
            Some(Timeline {
                load_start: 3.0,
                load_end: 9.0
            })
        );
    }
}
