//! The sidecar's listeners and their lifecycle: bound from a validated configuration, served until
//! shutdown, then given the grace period to finish.
//!
//! - [`listeners`]: which listener speaks which protocol, and binding them (inline modes, transparent).
//! - [`accept`]: the accept loops and the per-connection task (metrics, the [`crate::connection::Connection`], handler).
//! - [`drain`]: after SIGTERM, serving on until the pod has left its Services' endpoints.
//! - [`limit`]: the connection limit per direction, and refusing politely beyond it.
//! - [`admission`]: each connection's fixed cost in the memory budget, and pausing the accepts without room.
//! - [`fd_limit`]: raising the process's file-descriptor limit at startup.

mod accept;
mod admission;
mod drain;
pub mod fd_limit;
mod limit;
mod listeners;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::capture::{Capture, CaptureSettings, CaptureSink};
use crate::config::{ProxyConfig, ProxyType};
use crate::metrics::Metrics;
use crate::options::RuntimeOptions;
use crate::tls_out::TlsInterceptor;
use accept::{accept_loop, Shared};
use listeners::{bind_inline, bind_transparent, Listener};

/// What every connection shares besides the configuration: where records go and what is counted.
#[derive(Clone)]
pub struct Services {
    pub capture: CaptureSink,
    pub capture_settings: Arc<CaptureSettings>,
    pub metrics: Arc<Metrics>,
    /// tls-out's interceptor, when it is on: outbound TLS streams are terminated and their HTTP recorded.
    pub tls_out: Option<Arc<TlsInterceptor>>,
    /// Mock mode: the forward HTTP listener answers from a capture instead of the network.
    pub mock: Option<Arc<crate::mock::Mock>>,
}

impl Default for Services {
    /// Capture off, default capture settings, fresh metrics.
    fn default() -> Self {
        Services {
            capture: CaptureSink::disabled(),
            capture_settings: Arc::new(CaptureSettings::default()),
            metrics: Arc::new(Metrics::new()),
            tls_out: None,
            mock: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {address} ({direction}): {source}")]
    Bind {
        address: SocketAddr,
        direction: &'static str,
        source: io::Error,
    },
}

/// The sidecar's listeners, bound and ready to serve.
pub struct Server {
    listeners: Vec<Listener>,
    options: RuntimeOptions,
    services: Services,
    proxy_type: &'static str,
    /// Cancelled to end the grace period early (a second signal).
    stop_now: CancellationToken,
}

impl Server {
    /// Binds a listener for each direction the configuration has, with capture off.
    pub async fn bind(
        config: &ProxyConfig,
        options: RuntimeOptions,
    ) -> Result<Server, ServerError> {
        Server::bind_with(config, options, Services::default()).await
    }

    /// Binds a listener for each direction the configuration has.
    pub async fn bind_with(
        config: &ProxyConfig,
        options: RuntimeOptions,
        services: Services,
    ) -> Result<Server, ServerError> {
        if config.proxy_type == ProxyType::Transparent {
            return Ok(Server {
                listeners: bind_transparent(&options, services.mock.clone()).await?,
                options,
                services,
                proxy_type: config.proxy_type.as_str(),
                stop_now: CancellationToken::new(),
            });
        }
        let listeners = bind_inline(config, &options, services.mock.clone()).await?;
        Ok(Server {
            listeners,
            options,
            services,
            proxy_type: config.proxy_type.as_str(),
            stop_now: CancellationToken::new(),
        })
    }

    /// A token that, once cancelled during shutdown, ends the grace period at once.
    pub fn stop_now_token(&self) -> CancellationToken {
        self.stop_now.clone()
    }

    /// The bound address of the inbound listener, if there is one.
    pub fn inbound_addr(&self) -> Option<SocketAddr> {
        self.local_addr("inbound")
    }

    /// The bound address of the outbound listener, if there is one.
    pub fn outbound_addr(&self) -> Option<SocketAddr> {
        self.local_addr("outbound")
    }

    fn local_addr(&self, direction: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.direction == direction)
            .and_then(|l| l.socket.local_addr().ok())
    }

    /// Serves until `shutdown` is cancelled, drains (serves on for the drain duration, less once no
    /// connection has been open for a second), then stops accepting and gives open connections the grace
    /// period to finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        // Cancelled once the drain is over: the accept loops end, HTTP connections finish their requests.
        let stop_accepting = CancellationToken::new();
        let accepted = Arc::new(drain::Accepted::default());
        let options = Arc::new(self.options);
        // Outbound calls are linked to the inbound requests they were made for where the sidecar sees both.
        let sees_both = matches!(self.proxy_type, "dual" | "transparent");
        let capture = self.services.capture.is_enabled().then(|| Capture {
            sink: self.services.capture.clone(),
            settings: self.services.capture_settings.clone(),
            causes: sees_both.then(Default::default),
        });
        let shared = Arc::new(Shared {
            options: options.clone(),
            capture,
            services: self.services,
            proxy_type: self.proxy_type,
            tasks: tasks.clone(),
            shutdown: stop_accepting.clone(),
            accepted: accepted.clone(),
        });
        // Per-connection warnings (handshake timeouts, bad heads) are counted between lines; this tells
        // the count of a burst once its interval is over rather than at the next event.
        let warnings_stop = CancellationToken::new();
        let warnings = tokio::spawn(crate::peer_warnings::report_periodically(
            warnings_stop.clone(),
        ));
        let accept_loops: Vec<_> = self
            .listeners
            .into_iter()
            .map(|listener| tokio::spawn(accept_loop(listener, shared.clone())))
            .collect();
        shutdown.cancelled().await;
        let drained =
            drain::until_drained(options.drain_duration, &tasks, &accepted, &self.stop_now).await;
        info!(open = tasks.len(), why = ?drained, "drain over: closing the listeners");
        stop_accepting.cancel();
        for accept_loop in accept_loops {
            let _ = accept_loop.await;
        }
        tasks.close();
        if !tasks.is_empty() {
            info!(open = tasks.len(), grace = ?options.shutdown_grace, "stopped accepting; waiting for open connections");
            tokio::select! {
                _ = tasks.wait() => {}
                _ = tokio::time::sleep(options.shutdown_grace) => {
                    warn!(open = tasks.len(), "grace period over; closing the remaining connections");
                }
                _ = self.stop_now.cancelled() => {
                    warn!(open = tasks.len(), "told to stop now; closing the remaining connections");
                }
            }
        }
        warnings_stop.cancel();
        let _ = warnings.await;
        // The last interval's counts, which no later event or tick will report.
        crate::peer_warnings::report_remaining();
    }
}
