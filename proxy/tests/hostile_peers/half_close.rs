//! A TCP half-close passes through every relay, in both directions: when one side shuts down writing, the
//! other side sees EOF, and keeps reading (and writing) until it is done. Capture on or off, since capture
//! adds the first-bytes detection in front of the relay.
//!
//! Transparent mode relays through the same code as the reverse `tcp` proxy; tests/transparent_netns.rs
//! shows its half-close through real iptables redirects.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use rstest::rstest;
use sidecar_proxy::metrics::Metrics;
use sidecar_proxy::server::Services;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};

use crate::support::admin::capture_to_temp_file;
use crate::support::capture::connect_tunnel;
use crate::support::data::pattern_sha256;
use crate::support::pattern_body;
use crate::support::proxy::start_proxy_serving;
use crate::support::sha256_hex;
use crate::within;

/// What the client sends, and what the upstream sends: different sizes, both beyond a socket buffer, so a
/// swapped direction or a cut-off shows.
const CLIENT_BYTES: u64 = 300 * 1024;
const UPSTREAM_BYTES: u64 = 700 * 1024;

/// The relays a stream can go through.
#[derive(Clone, Copy, Debug)]
enum Relay {
    ReverseTcp,
    ConnectTunnel,
    ForwardSocks5,
    ForwardSocks4,
    ReverseSocks5,
    ReverseSocks4,
}

/// Which side shuts down writing first.
#[derive(Clone, Copy, Debug, PartialEq)]
enum First {
    Client,
    Upstream,
}

#[derive(Clone, Copy, Debug)]
enum Capture {
    Off,
    On,
}

#[rstest]
#[tokio::test]
async fn a_half_close_passes_through_and_the_other_direction_flows_on(
    #[values(
        Relay::ReverseTcp,
        Relay::ConnectTunnel,
        Relay::ForwardSocks5,
        Relay::ForwardSocks4,
        Relay::ReverseSocks5,
        Relay::ReverseSocks4
    )]
    relay: Relay,
    #[values(First::Client, First::Upstream)] first: First,
    #[values(Capture::Off, Capture::On)] capture: Capture,
) {
    let (upstream, mut received) = start_half_closing_upstream(first).await;
    let metrics = Arc::new(Metrics::new());
    let (services, capture_writer, capture_file) = match capture {
        Capture::Off => (Services::default(), None, None),
        Capture::On => {
            let (sink, writer, path) = capture_to_temp_file(metrics.clone());
            let services = Services {
                capture: sink,
                metrics,
                ..Services::default()
            };
            (services, writer, Some(path))
        }
    };
    let (proxy_type, protocol) = match relay {
        Relay::ReverseTcp => ("reverse", "tcp"),
        Relay::ConnectTunnel => ("forward", "http"),
        Relay::ForwardSocks5 | Relay::ForwardSocks4 => ("forward", "socks"),
        Relay::ReverseSocks5 | Relay::ReverseSocks4 => ("reverse", "socks"),
    };
    let proxy = start_proxy_serving(proxy_type, protocol, Some(upstream), services, |_| {}).await;
    let mut client = within("the stream opens", open(relay, &proxy, upstream)).await;

    match first {
        First::Client => {
            send_all(&mut client, CLIENT_BYTES).await;
            // Only writing is shut: the upstream answers after it has seen EOF.
            client.shutdown().await.unwrap();
            let (len, sha) = within("the answer after the half-close", read_all(&mut client)).await;
            assert_eq!((len, sha), (UPSTREAM_BYTES, pattern_sha256(UPSTREAM_BYTES)));
        }
        First::Upstream => {
            // The upstream sends everything and shuts its writing: EOF here, with our writing still open.
            let (len, sha) = within("the upstream's bytes and EOF", read_all(&mut client)).await;
            assert_eq!((len, sha), (UPSTREAM_BYTES, pattern_sha256(UPSTREAM_BYTES)));
            send_all(&mut client, CLIENT_BYTES).await;
            client.shutdown().await.unwrap();
        }
    }
    let (len, sha) = within("the upstream's count", received.recv())
        .await
        .expect("the upstream read to EOF");
    assert_eq!(
        (len, sha),
        (CLIENT_BYTES, pattern_sha256(CLIENT_BYTES)),
        "what the upstream read before EOF"
    );
    drop(client);
    proxy.stop().await;
    if let Some(writer) = capture_writer {
        writer.finish().await;
    }
    if let Some(path) = capture_file {
        let _ = std::fs::remove_file(path);
    }
}

/// An upstream that, per connection, either reads to EOF and then sends [`UPSTREAM_BYTES`] and closes
/// (the client shuts first), or sends them and shuts its writing first, then reads to EOF. Either way it
/// reports what it read (length, SHA-256) on the channel.
async fn start_half_closing_upstream(
    first: First,
) -> (SocketAddr, mpsc::UnboundedReceiver<(u64, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                if first == First::Upstream {
                    send_all(&mut stream, UPSTREAM_BYTES).await;
                    stream.shutdown().await.unwrap();
                }
                let mut got = Vec::new();
                if stream.read_to_end(&mut got).await.is_err() {
                    return;
                }
                let _ = report.send((got.len() as u64, sha256_hex(&got)));
                if first == First::Client {
                    send_all(&mut stream, UPSTREAM_BYTES).await;
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    (addr, received)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens a stream to `upstream` through `relay`.
async fn open(
    relay: Relay,
    proxy: &crate::support::RunningProxy,
    upstream: SocketAddr,
) -> Box<dyn Stream> {
    // A reverse SOCKS proxy delivers to the app whatever the client names.
    let anywhere: SocketAddr = "127.0.0.1:9".parse().unwrap();
    match relay {
        Relay::ReverseTcp => Box::new(TcpStream::connect(proxy.inbound()).await.unwrap()),
        Relay::ConnectTunnel => {
            Box::new(connect_tunnel(proxy.outbound(), &upstream.to_string()).await)
        }
        Relay::ForwardSocks5 => Box::new(
            Socks5Stream::connect(proxy.outbound(), upstream)
                .await
                .unwrap(),
        ),
        Relay::ForwardSocks4 => Box::new(
            Socks4Stream::connect(proxy.outbound(), upstream)
                .await
                .unwrap(),
        ),
        Relay::ReverseSocks5 => Box::new(
            Socks5Stream::connect(proxy.inbound(), anywhere)
                .await
                .unwrap(),
        ),
        Relay::ReverseSocks4 => Box::new(
            Socks4Stream::connect(proxy.inbound(), anywhere)
                .await
                .unwrap(),
        ),
    }
}

/// Writes `len` bytes of the test pattern.
async fn send_all<S: AsyncWrite + Unpin + ?Sized>(stream: &mut S, len: u64) {
    let mut body = Box::pin(pattern_body(len));
    while let Some(chunk) = body.next().await {
        stream.write_all(&chunk).await.unwrap();
    }
    stream.flush().await.unwrap();
}

/// Reads to EOF; returns the length and SHA-256 of what came.
async fn read_all<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> (u64, String) {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    (got.len() as u64, sha256_hex(&got))
}
