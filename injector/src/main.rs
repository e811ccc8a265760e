//! `sidecar-injector`: the admission webhook (`serve`), offline injection (`inject`) and certificate
//! minting (`certs`). Logs go to stderr; stdout carries only a command's output.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use sidecar_injector::cli::{Cli, Command, ServeArgs, EXIT_BAD_CONFIG};
use sidecar_injector::server::{Server, ServerError};
use tokio_util::sync::CancellationToken;
use tracing::info;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Bad flags: clap's own message and status 2.
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Inject(args) => args.run(),
        Command::Certs(args) => args.run(),
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: container log collectors store them verbatim.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sidecar-injector: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = runtime.block_on(async {
        let server = match Server::bind(args.settings()).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("sidecar-injector: {e}");
                // A certificate that cannot be served is configuration; a busy port is not.
                return match e {
                    ServerError::Tls(_) | ServerError::TlsConfig(_) => {
                        ExitCode::from(EXIT_BAD_CONFIG)
                    }
                    ServerError::Bind { .. } => ExitCode::FAILURE,
                };
            }
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        server.run(shutdown).await;
        info!("stopped");
        ExitCode::SUCCESS
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    status
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let name = match signal(SignalKind::terminate()) {
        Ok(mut terminate) => tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; only SIGINT will stop the injector");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    };
    info!(signal = name, "shutting down");
    shutdown.cancel();
}
