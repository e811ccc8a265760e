//! The sidecar in-process, configured through the same config model the binary uses.

use std::net::SocketAddr;
use std::time::Duration;

use sidecar_proxy::config::{ProxyConfig, RawSettings, Setting, Source};
use sidecar_proxy::options::RuntimeOptions;
use sidecar_proxy::server::{Server, Services};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct RunningProxy {
    pub inbound: Option<SocketAddr>,
    pub outbound: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<()>>,
}

impl RunningProxy {
    pub fn inbound(&self) -> SocketAddr {
        self.inbound.expect("this proxy has an inbound listener")
    }

    pub fn outbound(&self) -> SocketAddr {
        self.outbound.expect("this proxy has an outbound listener")
    }

    /// Cancels and waits for the server to finish its graceful shutdown.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the sidecar with `proxy-type`/`proxy-protocol` as a user would write them, delivering reverse
/// traffic to `app` (or an unused port when there is none), with short timeouts so stalls end quickly.
pub async fn start_proxy(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
) -> RunningProxy {
    start_proxy_with(proxy_type, protocol, app, |_| {}).await
}

pub async fn start_proxy_with(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    adjust: impl FnOnce(&mut RuntimeOptions),
) -> RunningProxy {
    start_proxy_serving(proxy_type, protocol, app, Services::default(), adjust).await
}

/// Starts the sidecar with the given services (capture sink, metrics), like [`start_proxy`] otherwise.
pub async fn start_proxy_with_services(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    services: Services,
) -> RunningProxy {
    start_proxy_serving(proxy_type, protocol, app, services, |_| {}).await
}

/// The one place test proxies are built: the config through the real model, loopback listeners on
/// OS-chosen ports, short timeouts; `services` and `adjust` as the test needs them.
pub async fn start_proxy_serving(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    services: Services,
    adjust: impl FnOnce(&mut RuntimeOptions),
) -> RunningProxy {
    let mut raw = RawSettings::default();
    raw.offer(Setting::ProxyType, proxy_type, Source::Flag);
    raw.offer(Setting::ProxyProtocol, protocol, Source::Flag);
    let app = app.unwrap_or_else(|| "127.0.0.1:9".parse().unwrap());
    raw.offer(Setting::ProxyHost, app.ip().to_string(), Source::Flag);
    raw.offer(Setting::ProxyPort, app.port().to_string(), Source::Flag);
    let config = ProxyConfig::from_settings(&raw).expect("valid test configuration");

    let mut options = RuntimeOptions::for_config(&config);
    options.inbound_listen = "127.0.0.1:0".parse().unwrap();
    options.outbound_listen = "127.0.0.1:0".parse().unwrap();
    options.handshake_timeout = Duration::from_secs(2);
    options.connect_timeout = Duration::from_secs(2);
    options.shutdown_grace = Duration::from_secs(2);
    // In-process tests stop their proxy at once; the drain is tested with the real binary.
    options.drain_duration = Duration::ZERO;
    adjust(&mut options);

    let server = Server::bind_with(&config, options, services)
        .await
        .expect("bind test listeners");
    let inbound = server.inbound_addr();
    let outbound = server.outbound_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    RunningProxy {
        inbound,
        outbound,
        shutdown,
        task: Some(task),
    }
}
