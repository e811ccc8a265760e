//! Which listener speaks which protocol, and binding them: one per direction in the inline modes, and in
//! transparent mode one per direction and address family for iptables-redirected connections.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use socket2::SockRef;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::ServerError;
use crate::config::{InboundProtocol, OutboundProtocol, ProxyConfig};
use crate::inbound::http::ReverseHttp;
use crate::net::Target;
use crate::options::RuntimeOptions;
use crate::outbound::http::ForwardHttp;

/// The protocol handler behind one listener.
pub(super) enum Handler {
    ReverseTcp(Target),
    ReverseHttp(Arc<ReverseHttp>),
    ReverseSocks(Target),
    ForwardHttp(Arc<ForwardHttp>),
    ForwardSocks,
    /// iptables-redirected connections, relayed to their original destination; in mock mode the
    /// outbound ones are answered by this forward handler's mock instead.
    Transparent {
        mocked: Option<Arc<ForwardHttp>>,
    },
}

pub(super) struct Listener {
    pub(super) socket: TcpListener,
    pub(super) direction: &'static str,
    pub(super) protocol: &'static str,
    pub(super) handler: Arc<Handler>,
}

/// The inline modes: a listener for each direction the configuration has.
pub(super) async fn bind_inline(
    config: &ProxyConfig,
    options: &RuntimeOptions,
    mock: Option<Arc<crate::mock::Mock>>,
) -> Result<Vec<Listener>, ServerError> {
    let app = Target::from(&config.app);
    let mut listeners = Vec::new();
    if let Some(protocol) = config.inbound() {
        let handler = match protocol {
            InboundProtocol::Tcp => Handler::ReverseTcp(app.clone()),
            InboundProtocol::Http => {
                Handler::ReverseHttp(Arc::new(ReverseHttp::new(app.clone(), options)))
            }
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
                Handler::ForwardHttp(Arc::new(ForwardHttp::new(options, mock)))
            }
            OutboundProtocol::Socks => Handler::ForwardSocks,
        };
        let socket = bind(options.outbound_listen, "outbound").await?;
        let address = socket.local_addr().unwrap_or(options.outbound_listen);
        info!(
            %address,
            direction = "outbound",
            protocol = protocol.as_str(),
            target = "as requested by the client",
            "listening"
        );
        warn_if_open_proxy(address);
        listeners.push(Listener {
            socket,
            direction: "outbound",
            protocol: protocol.as_str(),
            handler: Arc::new(handler),
        });
    }
    Ok(listeners)
}

/// The forward proxy connects anywhere its client asks, with the pod's identity and from inside the pod's
/// network (its loopback, the cluster, whatever NetworkPolicy lets the pod reach). On loopback only the
/// pod's own containers can ask; on any other address, anything that can reach that address can. Allowed,
/// since a platform may have its reasons, but never silently. (Transparent mode's outbound listener
/// refuses every connection iptables did not redirect, so it is not a forward proxy whatever it binds.)
fn warn_if_open_proxy(address: SocketAddr) {
    // `::ffff:127.0.0.1` is loopback too.
    if address.ip().to_canonical().is_loopback() {
        return;
    }
    warn!(
        %address,
        "the outbound (forward proxy) listener is bound to {address}, which is not a loopback address: anything that can reach it can use this pod as an open proxy, to the pod's own loopback services and to everything the pod can reach; bind it to 127.0.0.1 (the default: remove --proxy-out-bind / PROXY_OUT_BIND) unless something else, such as a NetworkPolicy, limits who can connect"
    );
}

/// Transparent mode: one listener per direction for redirected connections, both speaking whatever the
/// connection carries.
pub(super) async fn bind_transparent(
    options: &RuntimeOptions,
    mock: Option<Arc<crate::mock::Mock>>,
) -> Result<Vec<Listener>, ServerError> {
    let mut listeners = Vec::new();
    // Only the app's own calls are mocked; callers of the app still reach it.
    let mocked = mock.map(|mock| Arc::new(ForwardHttp::new(options, Some(mock))));
    for (address, direction) in [
        (options.inbound_listen, "inbound"),
        (options.outbound_listen, "outbound"),
    ] {
        let socket = bind(address, direction).await?;
        let handler = Arc::new(Handler::Transparent {
            mocked: mocked.clone().filter(|_| direction == "outbound"),
        });
        listeners.push(Listener {
            socket,
            direction,
            protocol: TRANSPARENT,
            handler: handler.clone(),
        });
        // init-iptables redirects IPv6 too where the pod has it; an IPv6 listener must be there to take it.
        if let Some(v6) = ipv6_counterpart(address) {
            match bind_v6_only(v6) {
                Ok(socket) => listeners.push(Listener {
                    socket,
                    direction,
                    protocol: TRANSPARENT,
                    handler,
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
    socket.listen(LISTEN_BACKLOG as i32)?;
    crate::net::tune(SockRef::from(&socket));
    TcpListener::from_std(socket.into())
}

/// The listener protocol label of transparent mode: the protocol is detected per connection.
pub(super) const TRANSPARENT: &str = "transparent";

/// Connections the kernel may hold complete but not yet accepted, per listener (capped by
/// `net.core.somaxconn`, 4096 by default). tokio's `TcpListener::bind` asks for 128: a burst of a few
/// hundred connects while the sidecar was busy overflowed it, and with SYN cookies the kernel then dropped
/// handshakes the clients believed complete, leaving idle ones connected to nothing (seen in the flood
/// tests: 36 of 300).
const LISTEN_BACKLOG: u32 = 1024;

async fn bind(address: SocketAddr, direction: &'static str) -> Result<TcpListener, ServerError> {
    let listen = || -> io::Result<TcpListener> {
        let socket = if address.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As tokio's bind does: a restarted sidecar can bind while old connections are in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        crate::net::tune(SockRef::from(&listener));
        Ok(listener)
    };
    listen().map_err(|source| ServerError::Bind {
        address,
        direction,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::keepalive;

    /// The accept loop sets nothing on an accepted socket: no-delay and keepalive must come from the
    /// listener, as Linux passes them on.
    #[tokio::test]
    async fn accepted_sockets_come_with_no_delay_and_keepalive_from_their_listener() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "inbound")
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (_client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (accepted, _) = accepted.unwrap();
        let socket = SockRef::from(&accepted);
        assert!(socket.tcp_nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), keepalive::IDLE);
        assert_eq!(
            socket.tcp_keepalive_interval().unwrap(),
            keepalive::INTERVAL
        );
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), keepalive::RETRIES);
    }
}
