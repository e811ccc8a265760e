//! `sidecar-proxy`: validate the configuration, bind the listeners, serve until SIGTERM or SIGINT.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use std::sync::Arc;
use std::time::Duration;

use sidecar_proxy::admin::{AdminServer, Readiness};
use sidecar_proxy::capture::CaptureSink;
use sidecar_proxy::cli::Invocation;
use sidecar_proxy::config::ProxyType;
use sidecar_proxy::metrics::Metrics;
use sidecar_proxy::server::{Server, Services};
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::EnvFilter;

/// jemalloc, with its background threads purging freed pages (after its 10 s decay): after a flood, glibc's
/// malloc kept every page it had grown to (105 MB above rest, tuned or not) and mimalloc too, where jemalloc
/// was back within 30 MB of rest in 7 s (proxy/tests/hostile_peers/memory_returns.rs; figures in
/// docs/slow-and-abusive-peers.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for a configuration the sidecar refuses: nothing was started.
const EXIT_BAD_CONFIG: u8 = 2;
/// How long the final capture flush may take before the sidecar exits anyway.
const CAPTURE_FLUSH_LIMIT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let mut invocation = match Invocation::parse_from(std::env::args_os()) {
        Ok(invocation) => invocation,
        // clap's message, with a huge bad value cut to its beginning.
        Err(e) => sidecar_proxy::cli::exit_on_clap_error(e),
    };
    // A tool subcommand (`capture export`) runs instead of the proxy.
    if let Some(command) = invocation.cli.command.take() {
        return command.run();
    }
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: container log collectors store them verbatim.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let config = match invocation.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("sidecar-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    // Every setting is checked before anything is said about the ones that are ignored.
    let drain_duration = match invocation.drain_duration() {
        Ok(duration) => duration,
        Err(e) => {
            eprintln!("sidecar-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    for ignored in invocation.ignored_settings(&config) {
        tracing::warn!("{ignored}");
    }
    if let Err(e) = invocation.check_admin_port(&config) {
        eprintln!("sidecar-proxy: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let tls_out = match invocation.tls_out_settings(&config) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("sidecar-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if config.proxy_type == ProxyType::Transparent {
        if let Err(message) = check_transparent_uid(invocation.cli.proxy_uid) {
            eprintln!("sidecar-proxy: {message}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    }
    let mut options = invocation.runtime_options(&config);
    options.drain_duration = drain_duration;
    let directions = [
        config.inbound_listener_port(),
        config.outbound_listener_port(),
    ]
    .iter()
    .flatten()
    .count();
    sidecar_proxy::server::fd_limit::raise_to_hard_limit(options.max_connections, directions);
    if let Some(bytes) = invocation.memory_budget() {
        sidecar_proxy::budget::process().set_limit(bytes);
    }
    let capture_settings = match invocation.capture_settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("sidecar-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let sink_options = match invocation.sink_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("sidecar-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let mock = match invocation.mock() {
        Ok(mock) => mock.map(Arc::new),
        Err(e) => {
            eprintln!("sidecar-proxy: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if mock.is_some()
        && config.proxy_type != ProxyType::Transparent
        && config.outbound_listener_port().is_none()
    {
        eprintln!("sidecar-proxy: --mock answers the app's outbound HTTP, so it needs an outbound listener: use --proxy-type forward, dual or transparent");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let tls_out_files = invocation.tls_out_files();
    let admin_addr = invocation.admin_addr();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sidecar-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (status, capture_writer) = runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let (capture, capture_writer) = match CaptureSink::start(&sink_options, metrics.clone()) {
            Ok(started) => started,
            Err(e) => {
                eprintln!("sidecar-proxy: {e}");
                return (ExitCode::FAILURE, None);
            }
        };
        log_capture_destination(&sink_options);
        let tls_out = match sidecar_proxy::tls_out::startup::start(
            tls_out,
            &tls_out_files,
            capture.is_enabled(),
            options.handshake_timeout,
            metrics.clone(),
        ) {
            Ok(interceptor) => interceptor,
            Err(e) => {
                eprintln!("sidecar-proxy: {e}");
                return (ExitCode::FAILURE, capture_writer);
            }
        };
        let services = Services {
            capture,
            capture_settings: Arc::new(capture_settings),
            metrics,
            tls_out,
            mock,
        };
        let readiness = Readiness::new();
        let admin = match AdminServer::bind(admin_addr, services.metrics.clone(), readiness.clone())
            .await
        {
            Ok(admin) => admin,
            Err(e) => {
                eprintln!("sidecar-proxy: {e}");
                return (ExitCode::FAILURE, capture_writer);
            }
        };
        let stop_timing = (options.drain_duration, options.shutdown_grace);
        let server = match Server::bind_with(&config, options, services).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("sidecar-proxy: {e}");
                return (ExitCode::FAILURE, capture_writer);
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(
            shutdown.clone(),
            server.stop_now_token(),
            readiness.clone(),
            stop_timing,
        ));
        let admin_stop = CancellationToken::new();
        let admin_task = tokio::spawn(admin.run(admin_stop.clone()));
        // Every proxy listener is bound: the pod may receive traffic.
        readiness.set_ready(true);
        info!("ready: every listener is bound");
        server.run(shutdown).await;
        // Health and metrics stay up while connections drain, then stop last.
        admin_stop.cancel();
        let _ = admin_task.await;
        (ExitCode::SUCCESS, capture_writer)
    });
    // Connections still open past the grace period are dropped here, so none can finish an exchange after
    // the writer's final flush. Blocking-pool work (a name lookup stuck on DNS) gets a second at most.
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Events of connections that ended only as the runtime stopped.
    sidecar_proxy::peer_warnings::report_remaining();
    if let Some(writer) = capture_writer {
        // Every record of every exchange that completed is written before the process exits.
        if !writer.finish_blocking(CAPTURE_FLUSH_LIMIT) {
            eprintln!("sidecar-proxy: capture records could not be flushed within {CAPTURE_FLUSH_LIMIT:?}");
        }
    }
    info!("stopped");
    status
}

/// `RUST_LOG`, else `info`. The SOCKS library logs each request's target at debug level as the peer sent
/// it, where a domain name with CR or LF would forge log lines (the sidecar's own lines escape it, see
/// `log_escape`): its debug lines stay off unless `RUST_LOG` names the library itself.
fn log_filter() -> EnvFilter {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    match "fast_socks5=info".parse() {
        Ok(quiet) if !directives.contains("fast_socks5") => filter.add_directive(quiet),
        _ => filter,
    }
}

/// In transparent mode the sidecar's own connections escape the redirect only because they come from the
/// uid init-iptables exempts; under any other uid each upstream connection would be redirected back into
/// the sidecar, again and again. Refuse to start instead.
/// One line at start saying where records go, and how to read them: a newcomer's first question.
fn log_capture_destination(options: &sidecar_proxy::capture::SinkOptions) {
    use sidecar_proxy::capture::Destination;
    if let Some(nats) = &options.nats {
        let subject = nats.address.subject_for_this_pod();
        info!(
            server = %nats.address.url(),
            subject = %subject,
            spool = %nats.spool_dir.display(),
            "publishing records to NATS JetStream; read them with: sidecar-proxy capture pull {}/{subject}",
            nats.address.url()
        );
    }
    match &options.destination {
        Destination::Off if options.nats.is_some() => {}
        Destination::Off => info!("capture off: nothing is recorded (--capture FILE records)"),
        Destination::Stdout => info!("capturing to standard output, one JSON record per line"),
        Destination::File(path) => {
            let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            match &options.rotation {
                Some(rotation) => info!(
                    path = %path.display(),
                    rotate_at_bytes = rotation.max_bytes,
                    keep = rotation.keep,
                    "capturing to a file; read it with: sidecar-proxy capture show {}",
                    path.display()
                ),
                None => info!(
                    path = %path.display(),
                    "capturing to a file; read it with: sidecar-proxy capture show {}",
                    path.display()
                ),
            }
        }
    }
}

fn check_transparent_uid(expected: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective uid: no libc call needed.
    let running_as = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot tell which uid the sidecar runs as (/proc/self: {e})"))?;
    if running_as == expected {
        Ok(())
    } else {
        Err(format!(
            "transparent mode must run as uid {expected} (--proxy-uid / PROXY_UID), the uid init-iptables exempts, but runs as uid {running_as}; its own connections would be redirected back into it. Transparent mode is for a pod whose init container set up iptables (sidecar-injector adds both); to try the sidecar here without root, run an inline mode, e.g. sidecar-proxy --proxy-type dual --proxy-protocol tcp:http --proxy-port 8080"
        ))
    }
}

async fn stop_on_signal(
    shutdown: CancellationToken,
    stop_now: CancellationToken,
    readiness: Readiness,
    (drain, grace): (Duration, Duration),
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the sidecar");
            let _ = tokio::signal::ctrl_c().await;
            readiness.set_ready(false);
            shutdown.cancel();
            return;
        }
    };
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    // Says how long the stop may take and how to cut it short: an idle keep-alive client otherwise kept
    // the sidecar waiting the whole grace period without a word.
    info!(
        signal = name,
        "shutting down: not ready from now; serving on for up to {} (--drain-duration), then open connections get up to {} to finish (--shutdown-grace); a second {name} exits at once",
        humantime::format_duration(drain),
        humantime::format_duration(grace)
    );
    // Not ready from the first moment, so the pod leaves Service endpoints while connections drain.
    readiness.set_ready(false);
    shutdown.cancel();
    // A second signal means "now": skip the rest of the grace period.
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::warn!("second signal: not waiting for open connections");
    stop_now.cancel();
}
