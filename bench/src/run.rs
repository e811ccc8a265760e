//! One run from start to report: tools, proxy binary, descriptor limit, the run's certificates, the
//! origin and the contenders (each proven ready), the proxychains check, then every scenario round by round (A B C, A B C, ...),
//! the report, and every server stopped (by the guards, whatever happens).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

use crate::clients::wrk::Load;
use crate::contenders::fleet::Fleet;
use crate::contenders::{Context, OriginEndpoints};
use crate::ports::PortAllocator;
use crate::report::{self, document, machine, Meta};
use crate::results::Scenario;
use crate::scenarios::{self, http_load, plan, Bench};
use crate::settings::Settings;
use crate::tls::TlsMaterial;
use crate::workdir::Workdir;
use crate::workspace::{self, Workspace};
use crate::{install, process};

/// wrk's connections, as in the issue.
const WRK_CONNECTIONS: u32 = 50;

/// Descriptors a relay keeps for itself (listeners, logs, capture file, its pools) beyond two per held
/// connection.
const FD_RESERVE: u64 = 256;

/// Returns the rows that produced no valid result, named (none: every row did).
pub async fn run(mut settings: Settings, command_line: String) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let workspace = Workspace::locate()?;
    let proxy = match &settings.proxy_bin {
        Some(path) => workspace::check_given_bin("--proxy-bin", path)?,
        None => workspace.build_proxy()?,
    };
    let relay = match &settings.relay_bin {
        Some(path) => workspace::check_given_bin("--relay-bin", path)?,
        None => workspace.build_release("minimal-relay")?,
    };
    let venv = workspace.target_dir.join("bench-venv");
    let tools = install::ensure(&venv, proxy, relay)?;
    let fd_limit = process::raise_fd_limit()?;
    let idle_note = fit_idle_connections(&mut settings, fd_limit);
    if let Some(note) = &idle_note {
        eprintln!("sidecar-bench: {note}");
    }

    let ports = PortAllocator::default();
    let origin = OriginEndpoints {
        http_port: ports.next()?,
        https_port: ports.next()?,
        h2c_port: ports.next()?,
        iperf_port: ports.next()?,
        nats_port: ports.next()?,
        large_file_bytes: settings.large_file_bytes,
    };
    let workdir = Workdir::create(settings.keep_workdir)?;
    let tls = TlsMaterial::create(&workdir, &tools.sidecar_proxy)?;
    let ctx = Context {
        workdir,
        ports,
        tools,
        origin,
        fd_limit,
        tls,
    };
    eprintln!(
        "sidecar-bench: work directory {}",
        ctx.workdir.path().display()
    );

    let mut scenarios = plan::plan();
    scenarios.retain(|scenario| settings.measures(scenario.kind));
    let mut fleet = Fleet::start(&ctx, &plan::fleet_specs(&scenarios)).await?;
    let machine = machine::describe();
    let threads = u32::try_from(machine.cores)
        .unwrap_or(u32::MAX)
        .clamp(1, WRK_CONNECTIONS);
    let load = Load {
        connections: WRK_CONNECTIONS,
        threads,
        duration: settings.measure_for,
    };
    let bench = Bench {
        ctx: &ctx,
        fleet: &fleet,
        settings: &settings,
        load,
    };
    http_load::check_proxychains(&bench).await?;

    let load_before = machine::load_average();
    for round in 1..=settings.rounds {
        let bench = Bench {
            ctx: &ctx,
            fleet: &fleet,
            settings: &settings,
            load,
        };
        measure_round(&bench, &mut scenarios, round).await?;
        fleet.ensure_running()?;
    }

    let load_after = machine::load_average();
    let versions = machine::versions(&ctx.tools, &workspace, settings.proxy_bin.is_some());
    drop(fleet);
    let meta = Meta {
        date,
        cores: machine.cores,
        load_before,
        load_after,
        cpu: machine.cpu,
        kernel: machine.kernel,
        command: command_line,
        smoke: settings.smoke,
        rounds: settings.rounds,
        seconds: settings.measure_for.as_secs(),
        wall_time: started.elapsed(),
        wrk_threads: load.threads,
        wrk_connections: load.connections,
        pace_ms: http_load::PACE.as_millis() as u64,
        idle_connections: settings.idle_connections,
        idle_note,
        large_file_mib: settings.large_file_bytes / (1024 * 1024),
        versions,
    };
    let generated = report::render(&meta, &scenarios);
    println!("{generated}");
    let out = report_path(&settings, &workspace, &ctx.workdir);
    let existing = std::fs::read_to_string(&out).ok();
    std::fs::write(&out, document::splice(existing.as_deref(), &generated))
        .with_context(|| format!("cannot write the report to {}", out.display()))?;
    eprintln!("sidecar-bench: report written to {}", out.display());
    Ok(invalid_rows(&scenarios))
}

/// A relay holds two descriptors per idle connection (client side and origin side), and every process
/// inherits our limit; without the right to raise the hard limit (CAP_SYS_RESOURCE), fewer idle
/// connections than asked may fit. Then the run uses as many as fit and the report says so.
fn fit_idle_connections(settings: &mut Settings, fd_limit: u64) -> Option<String> {
    let fit = u32::try_from(fd_limit.saturating_sub(FD_RESERVE) / 2).unwrap_or(u32::MAX);
    if settings.idle_connections <= fit {
        return None;
    }
    let note = format!(
        "{} idle connections instead of {}: the open-file limit here is {fd_limit} and cannot be raised \
         (no CAP_SYS_RESOURCE), and a relay needs two descriptors per connection",
        fit, settings.idle_connections
    );
    settings.idle_connections = fit;
    Some(note)
}

async fn measure_round(
    bench: &Bench<'_>,
    scenarios: &mut [Scenario],
    round: u32,
) -> anyhow::Result<()> {
    for scenario in scenarios.iter_mut() {
        for section in &mut scenario.sections {
            for row in &mut section.rows {
                eprint!(
                    "sidecar-bench: round {round}/{}: {}. {}: {} ({}) ... ",
                    bench.settings.rounds,
                    scenario.kind.number(),
                    section.title,
                    row.label(),
                    row.group,
                );
                let outcome =
                    scenarios::measure(bench, scenario.kind, section.tool, row.group, row.server)
                        .await?;
                match &outcome {
                    Ok(figure) => eprintln!("{figure:?}"),
                    Err(invalid) => eprintln!("INVALID: {invalid}"),
                }
                row.outcomes.push(outcome);
            }
        }
    }
    Ok(())
}

/// --out, else the workspace's docs/benchmarks.md; a smoke or partial (`--scenario`) run without --out
/// writes next to its temporary files' parent so that CI never touches the committed report, and a
/// partial run never replaces it with a part.
fn report_path(settings: &Settings, workspace: &Workspace, workdir: &Workdir) -> PathBuf {
    if let Some(out) = &settings.out {
        return out.clone();
    }
    if !settings.smoke && settings.only.is_empty() {
        return workspace.root.join("docs/benchmarks.md");
    }
    let name = workdir.path().file_name().and_then(|n| n.to_str());
    std::env::temp_dir().join(format!(
        "sidecar-bench-smoke-{}.md",
        name.unwrap_or("report")
    ))
}

fn invalid_rows(scenarios: &[Scenario]) -> Vec<String> {
    let mut invalid = Vec::new();
    for scenario in scenarios {
        for section in &scenario.sections {
            for row in &section.rows {
                // A row with no valid round at all is what a broken harness or contender looks like; one bad
                // round among good ones (a connect error under a loaded machine) shows as ✗ in the table and
                // stays out of the median.
                let failed = row.outcomes.iter().filter(|o| o.is_err()).count();
                if failed == row.outcomes.len() {
                    invalid.push(format!(
                        "{}. {} / {} ({}): {failed} of {} rounds invalid",
                        scenario.kind.number(),
                        section.title,
                        row.label(),
                        row.group,
                        row.outcomes.len()
                    ));
                }
            }
        }
    }
    invalid
}
