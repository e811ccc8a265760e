//! Slowloris: a client that sends its request head or SOCKS handshake a byte at a time, each byte well
//! within the handshake timeout, and never finishes. The handshake timeout bounds the whole head, not the
//! gap between bytes, so the sidecar closes it once the timeout has passed since the connection opened.
//!
//! Raw TCP listeners have no head to wait for: a `tcp` reverse proxy and transparent mode relay whatever
//! arrives (detection waits at most a second after the first byte, then relays it as it is), so a slow
//! client there is only as slow to the app as it would be without the sidecar. With capture on, a stream
//! that opens with an HTTP request line is served as HTTP inside the stream, and there the app's own
//! timeout is what ends a trickled head: the last case here.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rstest::rstest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::proxy::start_proxy_with;
use crate::support::{panics, start_app};
use crate::{PATIENCE, SHORT_TIMEOUT};

/// The gap between two trickled bytes: a sixth of the handshake timeout, so no single wait is long.
const TRICKLE_GAP: Duration = Duration::from_millis(50);

/// A head that, at one byte per [`TRICKLE_GAP`], would take far longer than the test to finish.
fn endless_http_head(target: &str) -> Vec<u8> {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: a\r\nX-Slow: ").into_bytes();
    head.extend(std::iter::repeat_n(b'a', 2000));
    head
}

/// After the HTTP/2 preface (sent at once), a valid first frame that takes too long to end: a SETTINGS
/// frame of 40 entries (240 bytes), each an unknown setting that a server must ignore.
fn endless_h2_frame() -> Vec<u8> {
    let mut frame = vec![0x00, 0x00, 0xf0, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00];
    frame.extend(std::iter::repeat_n(0u8, 240));
    frame
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A SOCKS5 greeting offering all 255 methods (257 bytes): it only ends after the test would.
fn endless_socks5_greeting() -> Vec<u8> {
    let mut greeting = vec![0x05, 0xff];
    greeting.extend(0..=254u8);
    greeting
}

/// A SOCKS4 CONNECT whose user id goes on for 250 bytes before its NUL would come.
fn endless_socks4_request() -> Vec<u8> {
    let mut request = vec![0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1];
    request.extend(std::iter::repeat_n(b'u', 250));
    request
}

#[derive(Clone, Copy, Debug)]
enum Trickled {
    ReverseHttp,
    ReverseHttp2,
    ForwardHttp,
    ForwardSocks5,
    ForwardSocks4,
    ReverseSocks5,
    ReverseSocks4,
}

#[rstest]
#[case::reverse_http(Trickled::ReverseHttp)]
#[case::reverse_http2_prior_knowledge(Trickled::ReverseHttp2)]
#[case::forward_http(Trickled::ForwardHttp)]
#[case::forward_socks5(Trickled::ForwardSocks5)]
#[case::forward_socks4(Trickled::ForwardSocks4)]
#[case::reverse_socks5(Trickled::ReverseSocks5)]
#[case::reverse_socks4(Trickled::ReverseSocks4)]
#[tokio::test]
async fn a_trickled_handshake_is_closed_at_the_handshake_timeout(#[case] trickled: Trickled) {
    panics::watch();
    let app = start_app().await;
    let (proxy_type, protocol) = match trickled {
        Trickled::ReverseHttp | Trickled::ReverseHttp2 => ("reverse", "http"),
        Trickled::ForwardHttp => ("forward", "http"),
        Trickled::ForwardSocks5 | Trickled::ForwardSocks4 => ("forward", "socks"),
        Trickled::ReverseSocks5 | Trickled::ReverseSocks4 => ("reverse", "socks"),
    };
    let proxy = start_proxy_with(proxy_type, protocol, Some(app.addr), |o| {
        o.handshake_timeout = SHORT_TIMEOUT;
    })
    .await;
    let (addr, bytes) = match trickled {
        Trickled::ReverseHttp => (proxy.inbound(), endless_http_head("/")),
        Trickled::ReverseHttp2 => (proxy.inbound(), endless_h2_frame()),
        Trickled::ForwardHttp => (
            proxy.outbound(),
            endless_http_head(&format!("http://{}/", app.addr)),
        ),
        Trickled::ForwardSocks5 => (proxy.outbound(), endless_socks5_greeting()),
        Trickled::ForwardSocks4 => (proxy.outbound(), endless_socks4_request()),
        Trickled::ReverseSocks5 => (proxy.inbound(), endless_socks5_greeting()),
        Trickled::ReverseSocks4 => (proxy.inbound(), endless_socks4_request()),
    };

    let at_once = match trickled {
        Trickled::ReverseHttp2 => H2_PREFACE,
        _ => b"",
    };
    let (closed_after, sent, answer) = trickle_until_closed(addr, at_once, &bytes).await;
    assert!(
        closed_after >= SHORT_TIMEOUT.mul_f32(0.9),
        "closed after {closed_after:?}, before the {SHORT_TIMEOUT:?} handshake timeout"
    );
    assert!(
        sent >= 2 && sent < bytes.len(),
        "{sent} of {} bytes trickled: the case must outlast the timeout",
        bytes.len()
    );
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 408") || is_h2_frames(&answer),
        "unexpected answer to a trickled handshake: {text:?}"
    );
    assert_eq!(app.connections(), 0, "a trickled handshake reached the app");
    assert_eq!(panics::outside_tests(), 0);
    proxy.stop().await;
}

/// Writes `at_once`, then `bytes` one at a time, [`TRICKLE_GAP`] apart, until the sidecar closes the
/// connection. Returns how long after connecting that was, how many of `bytes` had been written, and what
/// the sidecar sent.
async fn trickle_until_closed(
    addr: SocketAddr,
    at_once: &[u8],
    bytes: &[u8],
) -> (Duration, usize, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let opened = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(at_once).await.unwrap();
    let bytes = bytes.to_vec();
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let trickler = tokio::spawn(async move {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(TRICKLE_GAP).await;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut answer)).await;
    let closed_after = opened.elapsed();
    trickler.abort();
    assert!(read.is_ok(), "still open after {PATIENCE:?} of trickling");
    let sent = sent.load(Ordering::SeqCst);
    (closed_after, sent, answer)
}

/// Whether `bytes` are HTTP/2 frames (the server's SETTINGS, a PING, a GOAWAY), which an HTTP/2 server
/// sends before it closes.
fn is_h2_frames(bytes: &[u8]) -> bool {
    bytes.len() >= 9 && bytes[0] == 0 && matches!(bytes[3], 0x04 | 0x06 | 0x07)
}

/// An app that closes every connection 300 ms after accepting it, having read nothing: an app's own
/// header timeout, as it fires when the sidecar holds back a head that never completes.
async fn start_impatient_app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(SHORT_TIMEOUT).await;
                drop(stream);
            });
        }
    });
    addr
}

/// Inside a stream (here a `tcp` reverse proxy with capture on), HTTP is served without a head timeout of
/// the sidecar's own: the app decides. When the app gives up on the connection, the trickling client must
/// be closed too, as it would be without the sidecar in between.
#[tokio::test]
async fn a_head_trickled_inside_a_stream_is_closed_once_the_app_gives_up() {
    let app = start_impatient_app().await;
    let (proxy, _log) =
        crate::support::capture::start_capturing_proxy("reverse", "tcp", Some(app), |_| {}).await;
    let head = endless_http_head("/");
    // The request line at once, so detection sees HTTP; the rest a byte at a time.
    let line_end = head.iter().position(|&b| b == b'\n').unwrap() + 1;
    let (closed_after, _, answer) =
        trickle_until_closed(proxy.inbound(), &head[..line_end], &head[line_end..]).await;
    assert!(closed_after >= SHORT_TIMEOUT.mul_f32(0.9));
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
}
