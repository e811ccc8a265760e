//! Listeners per direction, the accept loops, and graceful shutdown.
//!
//! One listener per direction the configuration asks for, each with its protocol handler. Every
//! connection runs in its own task inside a span naming direction, protocol and peer; on shutdown the
//! listeners close at once and open connections get the grace period to finish.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::capture::{CaptureContext, CaptureSettings, CaptureSink};
use crate::config::{InboundProtocol, OutboundProtocol, ProxyConfig, ProxyType};
use crate::http::connection::{self, ServeOptions};
use crate::inbound::http::ReverseHttp;
use crate::io::MeteredIo;
use crate::metrics::{
    DirectionLabels, FlowLabels, GaugeGuard, HandshakeErrorLabels, ListenerLabels, Metrics,
    RecordLabels,
};
use crate::net::Target;
use crate::options::RuntimeOptions;
use crate::outbound::http::ForwardHttp;
use crate::socks::{self, Timeouts};
use crate::transparent::{self, redirected_destination, Redirect};

/// What every connection shares besides the configuration: where records go and what is counted.
#[derive(Clone)]
pub struct Services {
    pub capture: CaptureSink,
    pub capture_settings: Arc<CaptureSettings>,
    pub metrics: Arc<Metrics>,
}

impl Default for Services {
    /// Capture off, default capture settings, fresh metrics.
    fn default() -> Self {
        Services {
            capture: CaptureSink::disabled(),
            capture_settings: Arc::new(CaptureSettings::default()),
            metrics: Arc::new(Metrics::new()),
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

/// The protocol handler behind one listener.
enum Handler {
    ReverseTcp(Target),
    ReverseHttp(Arc<ReverseHttp>),
    ReverseSocks(Target),
    ForwardHttp(Arc<ForwardHttp>),
    ForwardSocks,
    /// iptables-redirected connections, relayed to their original destination.
    Transparent,
}

struct Listener {
    socket: TcpListener,
    direction: &'static str,
    protocol: &'static str,
    handler: Arc<Handler>,
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
                listeners: bind_transparent(&options).await?,
                options,
                services,
                proxy_type: config.proxy_type.as_str(),
                stop_now: CancellationToken::new(),
            });
        }
        let app = Target::from(&config.app);
        let mut listeners = Vec::new();
        if let Some(protocol) = config.inbound() {
            let handler = match protocol {
                InboundProtocol::Tcp => Handler::ReverseTcp(app.clone()),
                InboundProtocol::Http => Handler::ReverseHttp(Arc::new(ReverseHttp::new(
                    app.clone(),
                    options.connect_timeout,
                ))),
                InboundProtocol::Socks => Handler::ReverseSocks(app.clone()),
            };
            let socket = bind(options.inbound_listen, "inbound").await?;
            info!(
                address = %socket.local_addr().unwrap_or(options.inbound_listen),
                direction = "inbound",
                protocol = protocol.as_str(),
                target = %app,
                "listening"
            );
            listeners.push(Listener {
                socket,
                direction: "inbound",
                protocol: protocol.as_str(),
                handler: Arc::new(handler),
            });
        }
        if let Some(protocol) = config.outbound() {
            let handler = match protocol {
                OutboundProtocol::Http => {
                    Handler::ForwardHttp(Arc::new(ForwardHttp::new(options.connect_timeout)))
                }
                OutboundProtocol::Socks => Handler::ForwardSocks,
            };
            let socket = bind(options.outbound_listen, "outbound").await?;
            info!(
                address = %socket.local_addr().unwrap_or(options.outbound_listen),
                direction = "outbound",
                protocol = protocol.as_str(),
                target = "as requested by the client",
                "listening"
            );
            listeners.push(Listener {
                socket,
                direction: "outbound",
                protocol: protocol.as_str(),
                handler: Arc::new(handler),
            });
        }
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

    /// Serves until `shutdown` is cancelled, then stops accepting and gives open connections the grace
    /// period to finish.
    pub async fn run(self, shutdown: CancellationToken) {
        let tasks = TaskTracker::new();
        let options = Arc::new(self.options);
        let shared = Arc::new(Shared {
            options: options.clone(),
            services: self.services,
            proxy_type: self.proxy_type,
            tasks: tasks.clone(),
            shutdown: shutdown.clone(),
        });
        let accept_loops: Vec<_> = self
            .listeners
            .into_iter()
            .map(|listener| tokio::spawn(accept_loop(listener, shared.clone())))
            .collect();
        for accept_loop in accept_loops {
            let _ = accept_loop.await;
        }
        tasks.close();
        if tasks.is_empty() {
            return;
        }
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
}

/// Transparent mode: one listener per direction for redirected connections, both speaking whatever the
/// connection carries.
async fn bind_transparent(options: &RuntimeOptions) -> Result<Vec<Listener>, ServerError> {
    let mut listeners = Vec::new();
    for (address, direction) in [
        (options.inbound_listen, "inbound"),
        (options.outbound_listen, "outbound"),
    ] {
        let socket = bind(address, direction).await?;
        listeners.push(Listener {
            socket,
            direction,
            protocol: TRANSPARENT,
            handler: Arc::new(Handler::Transparent),
        });
        // init-iptables redirects IPv6 too where the pod has it; an IPv6 listener must be there to take it.
        if let Some(v6) = ipv6_counterpart(address) {
            match bind_v6_only(v6) {
                Ok(socket) => listeners.push(Listener {
                    socket,
                    direction,
                    protocol: TRANSPARENT,
                    handler: Arc::new(Handler::Transparent),
                }),
                Err(e) => {
                    debug!(address = %v6, error = %e, "no IPv6 listener (the pod has no IPv6)")
                }
            }
        }
    }
    // Announced only once all are bound, so the log never names a listener that failed to start.
    for listener in &listeners {
        info!(
            address = %listener.socket.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            direction = listener.direction,
            protocol = TRANSPARENT,
            target = "the original destination (iptables redirect)",
            "listening"
        );
    }
    Ok(listeners)
}

/// The IPv6 address matching an IPv4 listen address: any → `[::]`, loopback → `[::1]`.
fn ipv6_counterpart(address: SocketAddr) -> Option<SocketAddr> {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Some(SocketAddr::new(
            Ipv6Addr::UNSPECIFIED.into(),
            address.port(),
        )),
        IpAddr::V4(ip) if ip.is_loopback() => {
            Some(SocketAddr::new(Ipv6Addr::LOCALHOST.into(), address.port()))
        }
        _ => None,
    }
}

/// An IPv6-only socket, so it can share the port with the IPv4 listener.
fn bind_v6_only(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_only_v6(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// The listener protocol label of transparent mode: the protocol is detected per connection.
const TRANSPARENT: &str = "transparent";

async fn bind(address: SocketAddr, direction: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            address,
            direction,
            source,
        })
}

/// What the accept loops and their connections share.
struct Shared {
    options: Arc<RuntimeOptions>,
    services: Services,
    proxy_type: &'static str,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let metrics = &shared.services.metrics;
    let labels = ListenerLabels {
        direction: listener.direction,
        protocol: listener.protocol,
    };
    // Looked up once: per-connection counting is then plain atomic adds.
    let accepted_total = metrics.connections_accepted.get_or_create(&labels).clone();
    let open = metrics.connections_open.get_or_create(&labels).clone();
    let flow = |flow| {
        metrics
            .relayed_bytes
            .get_or_create(&FlowLabels {
                direction: listener.direction,
                flow,
            })
            .clone()
    };
    let (from_client, to_client) = (flow("client_to_target"), flow("target_to_client"));
    zero_series(metrics, &labels, shared.services.capture.is_enabled());
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                crate::net::tune(&stream);
                accepted_total.inc();
                // Read before the socket is wrapped: the kernel knows where a redirected connection was going.
                let redirect = match &*listener.handler {
                    Handler::Transparent => match redirected_destination(&stream) {
                        Ok(Redirect::To(destination)) => Some(destination),
                        Ok(Redirect::NotRedirected) | Err(_) => {
                            // Relaying it would make the sidecar connect to itself, forever.
                            warn!(%peer, direction = listener.direction, "refusing a connection that was not redirected by iptables (it would loop back into the sidecar)");
                            count_handshake_error(metrics, &labels, "not_redirected");
                            continue;
                        }
                    },
                    _ => None,
                };
                // Held by the context, which tunnels and upgraded connections keep past this task.
                let open = Arc::new(GaugeGuard::new(open.clone()));
                let stream = MeteredIo::new(stream, from_client.clone(), to_client.clone());
                let context = CaptureContext::new(
                    shared.services.capture.clone(),
                    shared.services.capture_settings.clone(),
                    shared.services.metrics.clone(),
                    listener.direction,
                    shared.proxy_type,
                    listener.protocol,
                    peer,
                )
                .holding(open);
                let span = info_span!("conn", direction = listener.direction, protocol = listener.protocol, %peer);
                let connection = serve_connection(
                    listener.handler.clone(),
                    stream,
                    peer,
                    redirect,
                    shared.clone(),
                    context,
                );
                shared.tasks.spawn(connection.instrument(span));
            }
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: keep serving the others.
                warn!(direction = listener.direction, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn count_handshake_error(metrics: &Metrics, listener: &ListenerLabels, reason: &'static str) {
    metrics
        .handshake_errors
        .get_or_create(&HandshakeErrorLabels {
            direction: listener.direction,
            protocol: listener.protocol,
            reason,
        })
        .inc();
}

/// Creates this listener's series at 0, so dashboards and alerts see "none yet" rather than "no data".
fn zero_series(metrics: &Metrics, labels: &ListenerLabels, capturing: bool) {
    let _ = metrics.upstream_connect_failures.get_or_create(labels);
    let reasons: &[&'static str] = match labels.protocol {
        "http" => &["timeout", "malformed"],
        "socks" => &[
            "timeout",
            "malformed",
            "not_socks",
            "unsupported_command",
            "truncated",
            "empty",
        ],
        TRANSPARENT => &["not_redirected"],
        _ => &[],
    };
    for &reason in reasons {
        let _ = metrics
            .handshake_errors
            .get_or_create(&HandshakeErrorLabels {
                direction: labels.direction,
                protocol: labels.protocol,
                reason,
            });
    }
    let _ = metrics.request_duration.get_or_create(&DirectionLabels {
        direction: labels.direction,
    });
    if capturing {
        for kind in ["http", "stream"] {
            let _ = metrics
                .records_captured
                .get_or_create(&RecordLabels { kind });
        }
    }
}

async fn serve_connection<S>(
    handler: Arc<Handler>,
    stream: S,
    peer: SocketAddr,
    redirect: Option<SocketAddr>,
    shared: Arc<Shared>,
    context: CaptureContext,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    debug!("accepted");
    let options = &shared.options;
    let socks_timeouts = Timeouts {
        handshake: options.handshake_timeout,
        connect: options.connect_timeout,
    };
    let tasks = shared.tasks.clone();
    let shutdown = shared.shutdown.clone();
    match &*handler {
        Handler::ReverseTcp(app) => {
            crate::inbound::tcp::serve(stream, app, options, context, &tasks).await
        }
        Handler::ReverseSocks(app) => {
            socks::serve(stream, Some(app), &socks_timeouts, context, &tasks).await
        }
        Handler::ForwardSocks => socks::serve(stream, None, &socks_timeouts, context, &tasks).await,
        Handler::Transparent => {
            if let Some(destination) = redirect {
                transparent::serve(stream, destination, options, context, &tasks).await
            }
        }
        Handler::ReverseHttp(reverse) => {
            let reverse = reverse.clone();
            let serve_options = ServeOptions {
                handshake_timeout: options.handshake_timeout,
                accept_h2: true,
            };
            let for_requests = context.clone();
            connection::serve(stream, serve_options, shutdown, &context, move |request| {
                reverse
                    .clone()
                    .handle(request, peer, tasks.clone(), for_requests.clone())
            })
            .await
        }
        Handler::ForwardHttp(forward) => {
            let forward = forward.clone();
            let serve_options = ServeOptions {
                handshake_timeout: options.handshake_timeout,
                accept_h2: false,
            };
            let for_requests = context.clone();
            connection::serve(stream, serve_options, shutdown, &context, move |request| {
                forward
                    .clone()
                    .handle(request, tasks.clone(), for_requests.clone())
            })
            .await
        }
    }
}
