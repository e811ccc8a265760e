//! How a client reaches the origin: directly, through a reverse proxy that stands in for it, or through
//! a forward proxy (HTTP absolute-form, HTTP CONNECT, SOCKS5). [`open`] does the proxy handshake, and
//! [`get`] one request after it, so the readiness probe and the idle-connection holder speak to every
//! contender the same way.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpStream;

use crate::http_client::{self, Response};

/// How long a connection and its proxy handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the origin.
    Direct,
    /// To a reverse proxy's listener, which relays to the origin.
    Reverse { port: u16 },
    /// To an HTTP forward proxy, with the origin's absolute URL in the request line.
    AbsoluteForm { proxy_port: u16 },
    /// Through an HTTP CONNECT tunnel.
    Connect { proxy_port: u16 },
    /// Through a SOCKS5 tunnel (no authentication).
    Socks5 { proxy_port: u16 },
}

impl Route {
    /// The port the client connects to.
    pub fn first_hop(&self, origin_port: u16) -> u16 {
        match *self {
            Route::Direct => origin_port,
            Route::Reverse { port } => port,
            Route::AbsoluteForm { proxy_port }
            | Route::Connect { proxy_port }
            | Route::Socks5 { proxy_port } => proxy_port,
        }
    }

    /// The request target of a GET for `path` on the origin: absolute-form for an HTTP forward proxy,
    /// origin-form otherwise.
    pub fn request_target(&self, origin_port: u16, path: &str) -> String {
        match self {
            Route::AbsoluteForm { .. } => format!("{}{path}", origin_url(origin_port)),
            _ => path.to_owned(),
        }
    }
}

/// `http://127.0.0.1:PORT` (no trailing slash).
pub fn origin_url(origin_port: u16) -> String {
    format!("http://127.0.0.1:{origin_port}")
}

/// A connection on which an HTTP request to the origin can be written: the proxy handshake, if any,
/// is done.
pub async fn open(route: Route, origin_port: u16) -> anyhow::Result<TcpStream> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, open_now(route, origin_port))
        .await
        .with_context(|| format!("no connection through {route:?} within {HANDSHAKE_TIMEOUT:?}"))?
}

/// One GET of `path` on the origin through `route`, answered within [`HANDSHAKE_TIMEOUT`] once the
/// connection is open; the connection is handed back (still open with `keep_alive`).
pub async fn get(
    route: Route,
    origin_port: u16,
    path: &str,
    keep_alive: bool,
) -> anyhow::Result<(Response, TcpStream)> {
    let stream = open(route, origin_port).await?;
    let target = route.request_target(origin_port, path);
    let host = format!("127.0.0.1:{origin_port}");
    answered_in_time(http_client::get(stream, &target, &host, keep_alive)).await
}

/// `exchange`'s result, or an error if it takes longer than [`HANDSHAKE_TIMEOUT`].
pub async fn answered_in_time<T>(
    exchange: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no response within {HANDSHAKE_TIMEOUT:?}"))?
}

async fn open_now(route: Route, origin_port: u16) -> anyhow::Result<TcpStream> {
    let first_hop = SocketAddr::from((Ipv4Addr::LOCALHOST, route.first_hop(origin_port)));
    let mut stream = TcpStream::connect(first_hop)
        .await
        .with_context(|| format!("cannot connect to {first_hop}"))?;
    stream.set_nodelay(true)?;
    match route {
        Route::Direct | Route::Reverse { .. } | Route::AbsoluteForm { .. } => {}
        Route::Connect { .. } => {
            http_client::connect_tunnel(&mut stream, &format!("127.0.0.1:{origin_port}")).await?
        }
        Route::Socks5 { .. } => {
            // No authentication; the origin named by its IPv4 address.
            let origin = SocketAddr::from((Ipv4Addr::LOCALHOST, origin_port));
            let tunnel = tokio_socks::tcp::Socks5Stream::connect_with_socket(stream, origin)
                .await
                .with_context(|| format!("SOCKS5 CONNECT to {origin} through {first_hop}"))?;
            return Ok(tunnel.into_inner());
        }
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Route::Direct, "/")]
    #[case(Route::Reverse { port: 2 }, "/")]
    #[case(Route::AbsoluteForm { proxy_port: 2 }, "http://127.0.0.1:1000/")]
    #[case(Route::Connect { proxy_port: 2 }, "/")]
    #[case(Route::Socks5 { proxy_port: 2 }, "/")]
    fn only_absolute_form_puts_the_origin_in_the_request_line(
        #[case] route: Route,
        #[case] expected: &str,
    ) {
        assert_eq!(route.request_target(1000, "/"), expected);
    }

    #[rstest]
    #[case(Route::Direct, 1000)]
    #[case(Route::Reverse { port: 2 }, 2)]
    #[case(Route::Socks5 { proxy_port: 3 }, 3)]
    fn first_hop_is_the_origin_only_when_direct(#[case] route: Route, #[case] expected: u16) {
        assert_eq!(route.first_hop(1000), expected);
    }
}
