//! `sidecar-soak`: sustained mixed load through real sidecars, with their memory, descriptors and tasks
//! sampled over time, and a verdict on growth (issue #9, docs/soak.md).
//!
//! One run, top to bottom: an in-process [`origin`] (HTTP/1.1 and a TCP echo) on 127.0.0.1; three
//! [`sidecars`] covering the listener kinds (tcp relay + HTTP forward proxy, SOCKS both ways, reverse
//! HTTP), capture on; a resting baseline; the [`load`] for the whole duration while the [`sampler`]
//! reads each sidecar's /proc and /metrics; the load stops and the origin closes its idle keep-alive
//! connections, and the sidecars must settle back to rest; then the [`verdict`] and the
//! [`report`] (CSV, [`chart`] SVGs, markdown summary).
//!
//! A crate of its own beside the benchmark (issue #22): what both harnesses need (processes and their
//! ports, /proc readings, the admin port, the readiness probe, the HTTP client, the sidecar's flags, the
//! markdown table, medians, the workspace's release build) comes from `sidecar_bench`'s library; what is
//! here is the soak's alone.
#![forbid(unsafe_code)]

pub mod chart;
pub mod load;
pub mod origin;
pub mod report;
pub mod sampler;
pub mod sidecars;
pub mod verdict;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use sampler::{Phase, Sample};
use sidecar_bench::workspace::{check_given_bin, Workspace};
use verdict::{Bounds, Timeline};

/// Samples of the resting sidecars taken before the load; their median is the resting level.
const REST_SAMPLES: usize = 3;
/// How long the load generators have to finish their operation in flight once told to stop.
const LOAD_STOP_GRACE: Duration = Duration::from_secs(30);
/// How long the sidecars have, after the load stopped, to return to their resting levels.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const SETTLE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// How long the load runs (the rest before and the settle after come on top).
    pub duration: Duration,
    pub out: PathBuf,
    /// The sidecar-proxy to soak; None builds the workspace's release binary.
    pub proxy_bin: Option<PathBuf>,
    pub sample_every: Duration,
    /// Multiplies every generator's rate; 1.0 is the documented load.
    pub rate_scale: f64,
}

/// What a finished run found. A run whose load saw errors or whose checks failed is still reported in
/// full (the files are written) before [`run`] turns it into an error.
pub struct SoakResult {
    pub summary_path: PathBuf,
    pub failures: Vec<String>,
}

/// The whole soak; Ok(result) even when bounds were broken (see [`SoakResult::failures`]), Err when the
/// run itself could not happen.
pub async fn run(options: SoakOptions) -> anyhow::Result<SoakResult> {
    if options.sample_every.is_zero() {
        bail!("--sample-every must be longer than zero");
    }
    if !(options.rate_scale > 0.0 && options.rate_scale.is_finite()) {
        bail!("--rate-scale must be a positive number");
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create --out {}", options.out.display()))?;
    let out = options
        .out
        .canonicalize()
        .with_context(|| format!("--out {}", options.out.display()))?;
    let (proxy_bin, revision) = proxy_binary(options.proxy_bin.as_deref())?;

    let origin = origin::Origin::start()
        .await
        .context("cannot start the origin")?;
    let mut fleet = sidecars::Fleet::start(&proxy_bin, &origin, &out).await?;
    eprintln!(
        "sidecar-soak: {} sidecars ready ({}); load for {}, sampling every {}",
        fleet.sidecars.len(),
        fleet.describe(),
        humantime::format_duration(options.duration),
        humantime::format_duration(options.sample_every),
    );

    let clock = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    // A moment for the sidecars' start-up work (the first scrape, the capture writer) to finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..REST_SAMPLES {
        samples.extend(sample_fleet(&mut fleet, Phase::Rest, clock).await?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let stop_load = CancellationToken::new();
    let routes = load::Routes::new(&origin, &fleet);
    let generators = load::start(&routes, options.rate_scale, &stop_load);
    let load_start = clock.elapsed();
    let load_deadline = Instant::now() + options.duration;
    let mut ticker = tokio::time::interval(options.sample_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = tokio::time::sleep_until(load_deadline.into()) => break,
        }
        let batch = match sample_fleet(&mut fleet, Phase::Load, clock).await {
            Ok(batch) => batch,
            Err(error) => {
                stop_load.cancel();
                return Err(error);
            }
        };
        report::print_progress(&batch, &generators.tallies);
        samples.extend(batch);
    }
    // The last sample of the load, taken at its very end, closes the last window.
    samples.extend(sample_fleet(&mut fleet, Phase::Load, clock).await?);
    let load_end = clock.elapsed();
    stop_load.cancel();
    let tallies = generators.finish(LOAD_STOP_GRACE).await;

    // The sidecars pool their upstream keep-alive connections for 90 s (hyper's default). The origin
    // closing its idle ones, as an app being scaled down would, lets them go now; what is still held
    // after that is held by the sidecar.
    origin.close_idle_connections();
    let settle_deadline = Instant::now() + SETTLE_TIMEOUT;
    let bounds = Bounds::default();
    loop {
        tokio::time::sleep(SETTLE_POLL).await;
        let batch = sample_fleet(&mut fleet, Phase::Settle, clock).await?;
        let rest: Vec<&Sample> = samples.iter().filter(|s| s.phase == Phase::Rest).collect();
        let settled = verdict::settled(&rest, &batch, &bounds);
        samples.extend(batch);
        if settled || Instant::now() >= settle_deadline {
            break;
        }
    }
    fleet.stop();
    origin.shutdown();

    let timeline = Timeline {
        load_start: load_start.as_secs_f64(),
        load_end: load_end.as_secs_f64(),
    };
    let checks = verdict::judge(&samples, &timeline, &bounds)?;
    let mut failures: Vec<String> = tallies
        .iter()
        .filter(|tally| tally.errors > 0)
        .map(|tally| {
            format!(
                "load {}: {} of {} operations failed; first: {}",
                tally.kind.name(),
                tally.errors,
                tally.ok + tally.errors,
                tally.first_errors.first().map_or("?", String::as_str)
            )
        })
        .collect();
    failures.extend(checks.iter().filter(|c| !c.passed()).map(|c| c.describe()));

    let context = report::RunContext {
        options: &options,
        proxy_bin: &proxy_bin,
        revision: &revision,
        timeline: &timeline,
        bounds: &bounds,
        fleet: &fleet,
    };
    report::write_csv(&out.join("samples.csv"), &samples)?;
    for metric in sampler::Metric::ALL {
        chart::write_svg(
            &out.join(format!("{}.svg", metric.file_stem())),
            metric,
            &samples,
            &timeline,
        )?;
    }
    let summary = report::summary(&context, &samples, &tallies, &checks, &failures);
    let summary_path = out.join("summary.md");
    std::fs::write(&summary_path, &summary)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!("{summary}");
    Ok(SoakResult {
        summary_path,
        failures,
    })
}

/// Redraws the charts of a finished run from its samples.csv (after a change to the charts, or for
/// docs/soak/).
pub fn replot(dir: &Path) -> anyhow::Result<()> {
    let samples = report::read_csv(&dir.join("samples.csv"))?;
    let timeline = report::timeline_of(&samples)
        .with_context(|| format!("{}/samples.csv has no load samples", dir.display()))?;
    for metric in sampler::Metric::ALL {
        chart::write_svg(
            &dir.join(format!("{}.svg", metric.file_stem())),
            metric,
            &samples,
            &timeline,
        )?;
    }
    Ok(())
}

/// The binary under test and a revision to name it by.
fn proxy_binary(given: Option<&Path>) -> anyhow::Result<(PathBuf, String)> {
    match given {
        Some(path) => Ok((
            check_given_bin("--proxy-bin", path)?,
            "given by --proxy-bin".to_owned(),
        )),
        None => {
            let workspace = Workspace::locate()?;
            let binary = workspace.build_proxy()?;
            Ok((binary, workspace.proxy_revision()))
        }
    }
}

/// One sample of every sidecar; fails if one of them has exited.
async fn sample_fleet(
    fleet: &mut sidecars::Fleet,
    phase: Phase,
    clock: Instant,
) -> anyhow::Result<Vec<Sample>> {
    let mut batch = Vec::with_capacity(fleet.sidecars.len());
    for sidecar in &mut fleet.sidecars {
        sidecar.process.ensure_running()?;
        let elapsed = clock.elapsed().as_secs_f64();
        let sample = sampler::sample(
            sidecar.name,
            sidecar.process.pid(),
            sidecar.admin,
            phase,
            elapsed,
        )
        .await
        .with_context(|| format!("cannot sample sidecar {}", sidecar.name))?;
        batch.push(sample);
    }
    Ok(batch)
}
