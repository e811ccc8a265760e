//! Listeners per direction, the accept loops, and graceful shutdown.
//!
//! One listener per direction the configuration asks for, each with its protocol handler. Every
//! connection runs in its own task inside a span naming direction, protocol and peer; on shutdown the
//! listeners close at once and open connections get the grace period to finish.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{InboundProtocol, OutboundProtocol, ProxyConfig, ProxyType};
use crate::http::connection::{self, ServeOptions};
use crate::inbound::http::ReverseHttp;
use crate::net::Target;
use crate::options::RuntimeOptions;
use crate::outbound::http::ForwardHttp;
use crate::socks::{self, Timeouts};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "proxy-type transparent (the default) is not available in this build yet; set --proxy-type / PROXY_TYPE / sidecar.speedscale.com/proxy-type to reverse, forward or dual"
    )]
    TransparentUnavailable,
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
}

impl Server {
    /// Binds a listener for each direction the configuration has.
    pub async fn bind(
        config: &ProxyConfig,
        options: RuntimeOptions,
    ) -> Result<Server, ServerError> {
        if config.proxy_type == ProxyType::Transparent {
            return Err(ServerError::TransparentUnavailable);
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
        Ok(Server { listeners, options })
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
        let accept_loops: Vec<_> = self
            .listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept_loop(
                    listener,
                    options.clone(),
                    tasks.clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        for accept_loop in accept_loops {
            let _ = accept_loop.await;
        }
        tasks.close();
        if tasks.is_empty() {
            return;
        }
        info!(open = tasks.len(), grace = ?options.shutdown_grace, "stopped accepting; waiting for open connections");
        if tokio::time::timeout(options.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            warn!(
                open = tasks.len(),
                "grace period over; closing the remaining connections"
            );
        }
    }
}

async fn bind(address: SocketAddr, direction: &'static str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Bind {
            address,
            direction,
            source,
        })
}

async fn accept_loop(
    listener: Listener,
    options: Arc<RuntimeOptions>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let span = info_span!("conn", direction = listener.direction, protocol = listener.protocol, %peer);
                let handler = listener.handler.clone();
                let connection = serve_connection(
                    handler,
                    stream,
                    peer,
                    options.clone(),
                    tasks.clone(),
                    shutdown.clone(),
                );
                tasks.spawn(connection.instrument(span));
            }
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: keep serving the others.
                warn!(direction = listener.direction, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    handler: Arc<Handler>,
    stream: TcpStream,
    peer: SocketAddr,
    options: Arc<RuntimeOptions>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    debug!("accepted");
    let socks_timeouts = Timeouts {
        handshake: options.handshake_timeout,
        connect: options.connect_timeout,
    };
    match &*handler {
        Handler::ReverseTcp(app) => {
            crate::inbound::tcp::serve(stream, app, options.connect_timeout).await
        }
        Handler::ReverseSocks(app) => socks::serve(stream, Some(app), &socks_timeouts).await,
        Handler::ForwardSocks => socks::serve(stream, None, &socks_timeouts).await,
        Handler::ReverseHttp(reverse) => {
            let reverse = reverse.clone();
            let serve_options = ServeOptions {
                handshake_timeout: options.handshake_timeout,
                accept_h2: true,
            };
            connection::serve(stream, serve_options, shutdown, move |request| {
                reverse.clone().handle(request, peer, tasks.clone())
            })
            .await
        }
        Handler::ForwardHttp(forward) => {
            let forward = forward.clone();
            let serve_options = ServeOptions {
                handshake_timeout: options.handshake_timeout,
                accept_h2: false,
            };
            connection::serve(stream, serve_options, shutdown, move |request| {
                forward.clone().handle(request, tasks.clone())
            })
            .await
        }
    }
}
