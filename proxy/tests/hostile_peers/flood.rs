//! A connection flood against the connection limit (`--max-connections`, per direction): filled to the
//! limit with connections that are busy relaying, the next one is refused in its listener's protocol (an
//! HTTP 503 naming the limit, the SOCKS failure reply, a close for raw TCP) and counted; the open ones keep
//! flowing; once some close, new ones are served again.

use std::net::SocketAddr;
use std::sync::Arc;

use rstest::rstest;
use sidecar_proxy::metrics::{ListenerLabels, Metrics};
use sidecar_proxy::server::Services;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::capture::RawHttp;
use crate::support::proxy::start_proxy_serving;
use crate::support::{panics, start_app, start_tcp_echo, RunningProxy};
use crate::{within, PATIENCE};

const LIMIT: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Listener {
    ReverseTcp,
    ReverseHttp,
    ForwardHttp,
    ForwardSocks5,
    ForwardSocks4,
    ReverseSocks5,
}

impl Listener {
    fn config(self) -> (&'static str, &'static str) {
        match self {
            Listener::ReverseTcp => ("reverse", "tcp"),
            Listener::ReverseHttp => ("reverse", "http"),
            Listener::ForwardHttp => ("forward", "http"),
            Listener::ForwardSocks5 | Listener::ForwardSocks4 => ("forward", "socks"),
            Listener::ReverseSocks5 => ("reverse", "socks"),
        }
    }

    fn addr(self, proxy: &RunningProxy) -> SocketAddr {
        match self {
            Listener::ReverseTcp | Listener::ReverseHttp | Listener::ReverseSocks5 => {
                proxy.inbound()
            }
            _ => proxy.outbound(),
        }
    }

    fn is_http(self) -> bool {
        matches!(self, Listener::ReverseHttp | Listener::ForwardHttp)
    }
}

/// Where traffic goes: an HTTP app for the HTTP listeners, a TCP echo for the others.
struct Upstream {
    addr: SocketAddr,
}

/// One client connection that relays: a keep-alive HTTP connection, or an echoed stream.
struct Busy {
    stream: TcpStream,
}

impl Busy {
    /// Opens a connection through `listener` and relays once; `None` if the sidecar refused it.
    async fn open(listener: Listener, addr: SocketAddr, upstream: &Upstream) -> Option<Busy> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if !socks_handshake(listener, &mut stream, upstream.addr).await {
            return None;
        }
        let mut busy = Busy { stream };
        busy.relay_once(listener, upstream).await.then_some(busy)
    }

    /// Sends one request (HTTP) or message (streams) and checks the answer; false if the connection was
    /// refused or closed instead.
    async fn relay_once(&mut self, listener: Listener, upstream: &Upstream) -> bool {
        if listener.is_http() {
            let target = match listener {
                Listener::ForwardHttp => format!("http://{}/busy", upstream.addr),
                _ => "/busy".to_owned(),
            };
            let request = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let mut http = RawHttp::new(&mut self.stream);
            match within("an answer", http.exchange(request.as_bytes())).await {
                Ok(answer) => answer.status == 200,
                Err(_) => false,
            }
        } else {
            if self.stream.write_all(b"echo me").await.is_err() {
                return false;
            }
            let mut echoed = [0u8; 7];
            let read = within("the echo", self.stream.read_exact(&mut echoed)).await;
            read.is_ok() && &echoed == b"echo me"
        }
    }
}

/// Runs the SOCKS handshake for `listener` (nothing for the others); false if the sidecar refused it with
/// the protocol's failure reply, which the test then checks was the one expected.
async fn socks_handshake(listener: Listener, stream: &mut TcpStream, target: SocketAddr) -> bool {
    let ip = match target.ip() {
        std::net::IpAddr::V4(ip) => ip.octets(),
        std::net::IpAddr::V6(_) => unreachable!("upstreams listen on 127.0.0.1"),
    };
    let port = target.port().to_be_bytes();
    match listener {
        Listener::ForwardSocks5 | Listener::ReverseSocks5 => {
            stream.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
            let mut method = [0u8; 2];
            within("the SOCKS5 method", stream.read_exact(&mut method))
                .await
                .unwrap();
            assert_eq!(method, [0x05, 0x00]);
            let mut request = vec![0x05, 0x01, 0x00, 0x01];
            request.extend_from_slice(&ip);
            request.extend_from_slice(&port);
            stream.write_all(&request).await.unwrap();
            let mut reply = [0u8; 10];
            within("the SOCKS5 reply", stream.read_exact(&mut reply))
                .await
                .unwrap();
            match reply[1] {
                0x00 => true,
                // 0x01: general SOCKS server failure, the refusal at the limit.
                0x01 => false,
                other => panic!("unexpected SOCKS5 reply 0x{other:02x}"),
            }
        }
        Listener::ForwardSocks4 => {
            let mut request = vec![0x04, 0x01, port[0], port[1]];
            request.extend_from_slice(&ip);
            request.push(0);
            stream.write_all(&request).await.unwrap();
            let mut reply = [0u8; 8];
            within("the SOCKS4 reply", stream.read_exact(&mut reply))
                .await
                .unwrap();
            match reply[1] {
                0x5a => true,
                0x5b => false,
                other => panic!("unexpected SOCKS4 reply 0x{other:02x}"),
            }
        }
        _ => true,
    }
}

/// Checks that a connection to `listener` is refused the way its protocol refuses: returns once it was.
async fn assert_refused(listener: Listener, addr: SocketAddr, upstream: &Upstream) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    match listener {
        Listener::ReverseHttp | Listener::ForwardHttp => {
            let request = "GET /over-the-limit HTTP/1.1\r\nHost: a\r\n\r\n";
            let mut http = RawHttp::new(&mut stream);
            let answer = within("the refusal", http.exchange(request.as_bytes()))
                .await
                .unwrap();
            assert_eq!(answer.status, 503, "{answer:?}");
            assert_eq!(answer.header("connection"), Some("close"));
            let body = String::from_utf8_lossy(&answer.body);
            assert!(body.contains("--max-connections"), "{body}");
            assert!(body.contains(&LIMIT.to_string()), "{body}");
            assert!(
                within("the close", http.read_response()).await.is_err(),
                "the connection stays open after the 503"
            );
        }
        Listener::ReverseTcp => {
            let mut rest = Vec::new();
            let read = within("the close", stream.read_to_end(&mut rest)).await;
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "a refused tcp client got {rest:?}"
            );
        }
        Listener::ForwardSocks5 | Listener::ForwardSocks4 | Listener::ReverseSocks5 => {
            assert!(
                !socks_handshake(listener, &mut stream, upstream.addr).await,
                "the SOCKS CONNECT was granted over the limit"
            );
            let mut rest = Vec::new();
            let _ = within("the close", stream.read_to_end(&mut rest)).await;
            assert!(rest.is_empty(), "{rest:02x?}");
        }
    }
}

#[rstest]
#[case::reverse_tcp(Listener::ReverseTcp)]
#[case::reverse_http(Listener::ReverseHttp)]
#[case::forward_http(Listener::ForwardHttp)]
#[case::forward_socks5(Listener::ForwardSocks5)]
#[case::forward_socks4(Listener::ForwardSocks4)]
#[case::reverse_socks5(Listener::ReverseSocks5)]
#[tokio::test]
async fn the_connection_limit_refuses_politely_while_open_connections_flow(
    #[case] listener: Listener,
) {
    panics::watch();
    let upstream = if listener.is_http() {
        Upstream {
            addr: start_app().await.addr,
        }
    } else {
        Upstream {
            addr: start_tcp_echo().await,
        }
    };
    let metrics = Arc::new(Metrics::new());
    let services = Services {
        metrics: metrics.clone(),
        ..Services::default()
    };
    let (proxy_type, protocol) = listener.config();
    let proxy = start_proxy_serving(proxy_type, protocol, Some(upstream.addr), services, |o| {
        o.max_connections = LIMIT;
    })
    .await;
    let addr = listener.addr(&proxy);

    let mut open = Vec::new();
    for _ in 0..LIMIT {
        let busy = Busy::open(listener, addr, &upstream).await;
        open.push(busy.expect("a connection within the limit is served"));
    }
    for _ in 0..3 {
        assert_refused(listener, addr, &upstream).await;
    }
    for busy in &mut open {
        assert!(
            busy.relay_once(listener, &upstream).await,
            "an open connection stopped relaying at the limit"
        );
    }

    // Two leave; their places are free once the sidecar has seen them close.
    open.truncate(LIMIT - 2);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut admitted = 0;
    while admitted < 2 {
        match Busy::open(listener, addr, &upstream).await {
            Some(busy) => {
                open.push(busy);
                admitted += 1;
            }
            None => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no new connection served after two closed"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    for busy in &mut open {
        assert!(busy.relay_once(listener, &upstream).await);
    }

    let direction = if proxy.inbound == Some(addr) {
        "inbound"
    } else {
        "outbound"
    };
    let refused = metrics
        .connections_refused
        .get_or_create(&ListenerLabels {
            direction,
            protocol,
        })
        .get();
    assert!(refused >= 3, "{refused} refusals counted");
    assert_eq!(panics::outside_tests(), 0);
    drop(open);
    proxy.stop().await;
}
