//! Upstreams that accept and never answer, and upstreams whose connect never completes.
//!
//! - HTTP (reverse, and forward absolute-form): the upstream gets `--upstream-timeout` to begin its
//!   response once the whole request reached it; then the client gets a 504 and the upstream connection
//!   is closed. The clock covers only that wait: a slow upload before it and a slow body after the head
//!   are never cut.
//! - A connect that never completes (a listener whose backlog is full, so the kernel drops the SYN) ends
//!   at `--connect-timeout` with the protocol's failure: 504 for HTTP and CONNECT, the SOCKS failure reply,
//!   a close for raw TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rstest::rstest;
use sidecar_proxy::metrics::{ListenerLabels, Metrics};
use sidecar_proxy::server::Services;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::support::capture::RawHttp;
use crate::support::data::pattern_sha256;
use crate::support::proxy::start_proxy_with;
use crate::support::{pattern_body, start_app};
use crate::{within, HttpProxy, PATIENCE, SHORT_TIMEOUT};

/// An upstream that accepts, reads what it is sent, and never answers. Reports on the channel when the
/// sidecar closes a connection (EOF).
async fn start_silent_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, closes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut sink = [0u8; 4096];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        let _ = closed.send(());
                        return;
                    }
                }
            });
        }
    });
    (addr, closes)
}

#[rstest]
#[tokio::test]
async fn an_upstream_that_never_answers_gets_the_client_a_504(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    let (upstream, mut closes) = start_silent_upstream().await;
    let metrics = Arc::new(Metrics::new());
    let services = Services {
        metrics: metrics.clone(),
        ..Services::default()
    };
    let front = proxy
        .start(upstream, services, |o| o.upstream_timeout = SHORT_TIMEOUT)
        .await;
    let mut client = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());
    let started = Instant::now();
    let request = format!(
        "POST {}/never HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        front.target_prefix
    );
    let answer = within("the 504", client.exchange(request.as_bytes()))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.status, 504, "{answer:?}");
    let body = String::from_utf8_lossy(&answer.body);
    assert!(body.contains("--upstream-timeout"), "{body}");
    assert!(
        waited >= SHORT_TIMEOUT.mul_f32(0.9),
        "504 after {waited:?}, before the {SHORT_TIMEOUT:?} upstream timeout"
    );
    within("the upstream connection closed", closes.recv())
        .await
        .expect("the sidecar closed its connection to the silent upstream");
    let (direction, protocol) = match proxy {
        HttpProxy::Reverse => ("inbound", "http"),
        HttpProxy::Forward => ("outbound", "http"),
    };
    let timeouts = metrics
        .upstream_timeouts
        .get_or_create(&ListenerLabels {
            direction,
            protocol,
        })
        .get();
    assert_eq!(timeouts, 1);
}

/// An HTTP upstream that answers at once with a head, then sends its body in `pieces` chunks, `gap`
/// apart.
async fn start_slow_body_upstream(pieces: usize, gap: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let length = pieces * 5;
                let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                for _ in 0..pieces {
                    tokio::time::sleep(gap).await;
                    if stream.write_all(b"slow.").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[rstest]
#[tokio::test]
async fn a_slow_body_after_a_timely_head_is_never_cut(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    // Ten pieces 100 ms apart: the body takes over three times the upstream timeout.
    let upstream = start_slow_body_upstream(10, Duration::from_millis(100)).await;
    let front = proxy
        .start(upstream, Services::default(), |o| {
            o.upstream_timeout = SHORT_TIMEOUT
        })
        .await;
    let mut client = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());
    let started = Instant::now();
    let request = format!(
        "GET {}/slow HTTP/1.1\r\nHost: a\r\n\r\n",
        front.target_prefix
    );
    let answer = within("the slow body", client.exchange(request.as_bytes()))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "slow.".repeat(10).as_bytes());
    assert!(started.elapsed() > SHORT_TIMEOUT * 3);
}

#[rstest]
#[tokio::test]
async fn a_slow_upload_does_not_start_the_upstream_timeout(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    use futures_util::StreamExt;
    let app = start_app().await;
    let front = proxy
        .start(app.addr, Services::default(), |o| {
            o.upstream_timeout = SHORT_TIMEOUT
        })
        .await;
    let len: u64 = 10 * 64 * 1024;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    let head = format!(
        "POST {}/sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n",
        front.target_prefix
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // Ten 64 KiB chunks 100 ms apart: the upload takes over three times the upstream timeout.
    let mut body = Box::pin(pattern_body(len));
    while let Some(chunk) = body.next().await {
        client.write_all(&chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() > SHORT_TIMEOUT * 3);
    let answer = within("the answer", RawHttp::new(client).read_response())
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        String::from_utf8_lossy(&answer.body),
        format!("{len} {}", pattern_sha256(len))
    );
}

/// A listener whose accept queue is full and never drained: the kernel drops further SYNs, so a connect
/// to it neither succeeds nor fails until the connecting side gives up. Keep it (and the connections
/// filling it) alive while it is used.
struct Unanswerable {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

impl Unanswerable {
    async fn start() -> Unanswerable {
        let listener = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        listener
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        // Connect until one hangs: the queue is full from then on.
        for _ in 0..64 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(e)) => panic!("connect to the filling listener failed: {e}"),
                Err(_) => {
                    return Unanswerable {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    }
                }
            }
        }
        panic!("the listen backlog never filled up");
    }
}

#[derive(Clone, Copy, Debug)]
enum Via {
    ReverseHttp,
    ForwardHttp,
    Connect,
    ForwardSocks5,
    ForwardSocks4,
    ReverseSocks5,
    ReverseTcp,
}

/// What the client is told when the connect times out.
fn expected_failure(via: Via) -> &'static [u8] {
    match via {
        Via::ReverseHttp | Via::ForwardHttp | Via::Connect => b"HTTP/1.1 504",
        // 0x04 host unreachable: SOCKS5 has no code for a timeout.
        Via::ForwardSocks5 | Via::ReverseSocks5 => &[0x05, 0x04],
        // 0x5B request rejected or failed.
        Via::ForwardSocks4 => &[0x00, 0x5b],
        Via::ReverseTcp => b"",
    }
}

#[rstest]
#[case::reverse_http(Via::ReverseHttp)]
#[case::forward_http(Via::ForwardHttp)]
#[case::connect(Via::Connect)]
#[case::forward_socks5(Via::ForwardSocks5)]
#[case::forward_socks4(Via::ForwardSocks4)]
#[case::reverse_socks5(Via::ReverseSocks5)]
#[case::reverse_tcp(Via::ReverseTcp)]
#[tokio::test]
async fn a_connect_that_never_completes_fails_at_the_connect_timeout(#[case] via: Via) {
    let unanswerable = Unanswerable::start().await;
    let target = unanswerable.addr;
    let (proxy_type, protocol) = match via {
        Via::ReverseHttp => ("reverse", "http"),
        Via::ForwardHttp | Via::Connect => ("forward", "http"),
        Via::ForwardSocks5 | Via::ForwardSocks4 => ("forward", "socks"),
        Via::ReverseSocks5 => ("reverse", "socks"),
        Via::ReverseTcp => ("reverse", "tcp"),
    };
    let proxy = start_proxy_with(proxy_type, protocol, Some(target), |o| {
        o.connect_timeout = SHORT_TIMEOUT;
    })
    .await;
    let listener = match via {
        Via::ReverseHttp | Via::ReverseSocks5 | Via::ReverseTcp => proxy.inbound(),
        _ => proxy.outbound(),
    };
    let ip = match target.ip() {
        std::net::IpAddr::V4(ip) => ip.octets(),
        std::net::IpAddr::V6(_) => unreachable!("the listener is on 127.0.0.1"),
    };
    let port = target.port().to_be_bytes();
    let request: Vec<u8> = match via {
        Via::ReverseHttp => b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        Via::ForwardHttp => format!("GET http://{target}/ HTTP/1.1\r\nHost: a\r\n\r\n").into(),
        Via::Connect => format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into(),
        Via::ForwardSocks5 | Via::ReverseSocks5 => {
            let mut bytes = vec![0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01];
            bytes.extend_from_slice(&ip);
            bytes.extend_from_slice(&port);
            bytes
        }
        Via::ForwardSocks4 => {
            let mut bytes = vec![0x04, 0x01, port[0], port[1]];
            bytes.extend_from_slice(&ip);
            bytes.push(0);
            bytes
        }
        Via::ReverseTcp => b"hello?".to_vec(),
    };
    let mut client = TcpStream::connect(listener).await.unwrap();
    let started = Instant::now();
    client.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, client.read_to_end(&mut answer)).await;
    let waited = started.elapsed();
    assert!(closed.is_ok(), "not closed within {PATIENCE:?}");
    assert!(
        waited >= SHORT_TIMEOUT.mul_f32(0.9),
        "failed after {waited:?}, before the {SHORT_TIMEOUT:?} connect timeout"
    );
    // A SOCKS5 answer starts with the method choice (05 00), then the reply.
    let answer = match via {
        Via::ForwardSocks5 | Via::ReverseSocks5 => {
            assert_eq!(answer.get(..2), Some(&[0x05, 0x00][..]), "{answer:02x?}");
            answer[2..].to_vec()
        }
        _ => answer,
    };
    let expected = expected_failure(via);
    assert!(
        answer.starts_with(expected),
        "expected {:?}, got {:?}",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(&answer)
    );
    if expected.is_empty() {
        assert!(answer.is_empty(), "{answer:02x?}");
    }
}
