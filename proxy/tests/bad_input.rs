//! Hostile and broken clients: every bad input gets its protocol's answer (an HTTP 400, a SOCKS failure
//! reply, a close, a close after the handshake timeout) and nothing else is disturbed. Each case runs next to
//! a stalled connection on the same listener, then checks that a well-behaved request through that listener
//! still succeeds, and that nothing panicked.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rstest::rstest;
use support::{panics, start_app, App, RunningProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The handshake timeout of the timeout cases: short, so a stall ends quickly.
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);
/// How long any answer or close may take before the test calls it missing (liveness, not speed).
const PATIENCE: Duration = Duration::from_secs(10);

/// The listener a case attacks.
#[derive(Clone, Copy, Debug)]
enum Port {
    ForwardHttp,
    ForwardSocks,
    ReverseHttp,
    ReverseSocks,
}

impl Port {
    fn config(self) -> (&'static str, &'static str) {
        match self {
            Port::ForwardHttp => ("forward", "http"),
            Port::ForwardSocks => ("forward", "socks"),
            Port::ReverseHttp => ("reverse", "http"),
            Port::ReverseSocks => ("reverse", "socks"),
        }
    }

    fn addr(self, proxy: &RunningProxy) -> SocketAddr {
        match self {
            Port::ForwardHttp | Port::ForwardSocks => proxy.outbound(),
            Port::ReverseHttp | Port::ReverseSocks => proxy.inbound(),
        }
    }

    fn is_socks(self) -> bool {
        matches!(self, Port::ForwardSocks | Port::ReverseSocks)
    }
}

/// What the sidecar must answer.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// An HTTP 400 whose body mentions `mentions`; with `then_close`, the connection closes after it.
    Http400 {
        mentions: &'static str,
        then_close: bool,
    },
    /// Not a byte: the connection is closed.
    Closed,
    /// These bytes, then the connection closes.
    Exactly(&'static [u8]),
    /// `prefix`, then one byte of `codes` (a SOCKS reply code), `len` bytes in all, then the connection
    /// closes.
    SocksFailure {
        prefix: &'static [u8],
        codes: &'static [u8],
        len: usize,
    },
    /// Nothing but `prefix` (or an HTTP 408 when `http_408_ok`) until the handshake timeout closes the
    /// connection, and not before it.
    ClosedAfterTimeout {
        prefix: &'static [u8],
        http_408_ok: bool,
    },
}

/// The bytes a hostile client sends; `{app}` is replaced by the app's `127.0.0.1:port`.
#[derive(Clone, Copy, Debug)]
struct Hostile(&'static [u8]);

const TLS_CLIENT_HELLO_START: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03, 0x5a, 0x21, 0x9c,
];
/// A fatal TLS alert, handshake_failure (40): what a TLS client gets from an HTTP listener.
const TLS_HANDSHAKE_FAILURE_ALERT: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 40];
const RANDOM_BYTES: &[u8] = &[
    0xc7, 0x3e, 0x91, 0x00, 0xfe, 0x12, 0x8b, 0x6d, 0x44, 0x0a, 0xd3, 0x77, 0x2f, 0xe8, 0x05, 0x19,
];

/// A SOCKS4 CONNECT whose user id never ends (300 bytes, no NUL).
const ENDLESS_SOCKS4_USER_ID: [u8; 308] = {
    let mut request = [b'u'; 308];
    let head = [0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1];
    let mut i = 0;
    while i < head.len() {
        request[i] = head[i];
        i += 1;
    }
    request
};

#[rstest]
#[case::forward_http_gets_socks5_greeting(
    Port::ForwardHttp,
    Hostile(&[0x05, 0x01, 0x00]),
    // SOCKS5's own refusal: no acceptable method.
    Answer::SocksFailure { prefix: &[0x05], codes: &[0xff], len: 2 }
)]
#[case::forward_http_gets_socks4_connect(
    Port::ForwardHttp,
    Hostile(&[0x04, 0x01, 0x00, 0x50, 127, 0, 0, 1, 0]),
    // SOCKS4's own refusal: request rejected.
    Answer::SocksFailure { prefix: &[0x00], codes: &[0x5b], len: 8 }
)]
#[case::forward_http_gets_tls_client_hello(
    Port::ForwardHttp,
    Hostile(TLS_CLIENT_HELLO_START),
    Answer::Exactly(TLS_HANDSHAKE_FAILURE_ALERT)
)]
#[case::forward_http_gets_random_bytes(
    Port::ForwardHttp,
    Hostile(RANDOM_BYTES),
    Answer::Http400 { mentions: "", then_close: true }
)]
#[case::forward_http_gets_origin_form_request(
    Port::ForwardHttp,
    Hostile(b"GET /direct HTTP/1.1\r\nHost: {app}\r\n\r\n"),
    Answer::Http400 { mentions: "absolute-form", then_close: false }
)]
#[case::forward_http_gets_connect_without_port(
    Port::ForwardHttp,
    Hostile(b"CONNECT localhost HTTP/1.1\r\nHost: localhost\r\n\r\n"),
    Answer::Http400 { mentions: "host:port", then_close: false }
)]
#[case::forward_http_gets_nothing(
    Port::ForwardHttp,
    Hostile(b""),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: true }
)]
#[case::forward_http_gets_half_a_head(
    Port::ForwardHttp,
    Hostile(b"GET http://{app}/half HTTP/1.1\r\nHost: {app}\r\nAcc"),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: true }
)]
#[case::reverse_http_gets_nothing(
    Port::ReverseHttp,
    Hostile(b""),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: true }
)]
#[case::reverse_http_gets_half_a_head(
    Port::ReverseHttp,
    Hostile(b"GET /half HTTP/1.1\r\nHost: app\r\nAcc"),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: true }
)]
#[case::reverse_http_gets_half_an_h2_preface(
    Port::ReverseHttp,
    Hostile(b"PRI * HTTP/2.0\r\n"),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: true }
)]
#[case::reverse_http_gets_socks5_greeting(
    Port::ReverseHttp,
    Hostile(&[0x05, 0x01, 0x00]),
    Answer::SocksFailure { prefix: &[0x05], codes: &[0xff], len: 2 }
)]
#[case::reverse_http_gets_tls_client_hello(
    Port::ReverseHttp,
    Hostile(TLS_CLIENT_HELLO_START),
    Answer::Exactly(TLS_HANDSHAKE_FAILURE_ALERT)
)]
#[case::forward_socks_gets_http_get(
    Port::ForwardSocks,
    Hostile(b"GET / HTTP/1.1\r\nHost: {app}\r\n\r\n"),
    Answer::Http400 { mentions: "SOCKS", then_close: true }
)]
#[case::forward_socks_gets_http_connect(
    Port::ForwardSocks,
    Hostile(b"CONNECT {app} HTTP/1.1\r\nHost: {app}\r\n\r\n"),
    Answer::Http400 { mentions: "SOCKS", then_close: true }
)]
#[case::reverse_socks_gets_http_get(
    Port::ReverseSocks,
    Hostile(b"GET / HTTP/1.1\r\nHost: {app}\r\n\r\n"),
    Answer::Http400 { mentions: "SOCKS", then_close: true }
)]
#[case::forward_socks_gets_tls_client_hello(
    Port::ForwardSocks,
    Hostile(TLS_CLIENT_HELLO_START),
    Answer::Closed
)]
#[case::forward_socks_gets_random_bytes(Port::ForwardSocks, Hostile(RANDOM_BYTES), Answer::Closed)]
#[case::reverse_socks_gets_random_bytes(Port::ReverseSocks, Hostile(RANDOM_BYTES), Answer::Closed)]
#[case::forward_socks_gets_truncated_socks5_greeting(
    Port::ForwardSocks,
    Hostile(&[0x05]),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: false }
)]
#[case::reverse_socks_gets_truncated_socks5_greeting(
    Port::ReverseSocks,
    Hostile(&[0x05]),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: false }
)]
#[case::forward_socks_gets_greeting_but_no_request(
    Port::ForwardSocks,
    Hostile(&[0x05, 0x01, 0x00]),
    Answer::ClosedAfterTimeout { prefix: &[0x05, 0x00], http_408_ok: false }
)]
#[case::forward_socks_gets_truncated_socks4_request(
    Port::ForwardSocks,
    Hostile(&[0x04, 0x01, 0x00, 0x50, 127, 0]),
    Answer::ClosedAfterTimeout { prefix: b"", http_408_ok: false }
)]
#[case::forward_socks_gets_socks5_unknown_address_type(
    Port::ForwardSocks,
    Hostile(&[0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x07, 127, 0, 0, 1, 0x00, 0x50]),
    // 0x08 address type not supported, or 0x01 general failure.
    Answer::SocksFailure { prefix: &[0x05, 0x00, 0x05], codes: &[0x08, 0x01], len: 12 }
)]
#[case::reverse_socks_gets_socks5_unknown_address_type(
    Port::ReverseSocks,
    Hostile(&[0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x07, 127, 0, 0, 1, 0x00, 0x50]),
    Answer::SocksFailure { prefix: &[0x05, 0x00, 0x05], codes: &[0x08, 0x01], len: 12 }
)]
#[case::forward_socks_gets_socks5_bind(
    Port::ForwardSocks,
    Hostile(&[0x05, 0x01, 0x00, 0x05, 0x02, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50]),
    // 0x07 command not supported.
    Answer::SocksFailure { prefix: &[0x05, 0x00, 0x05], codes: &[0x07], len: 12 }
)]
#[case::forward_socks_gets_socks5_unknown_command(
    Port::ForwardSocks,
    Hostile(&[0x05, 0x01, 0x00, 0x05, 0x09, 0x00, 0x01, 127, 0, 0, 1, 0x00, 0x50]),
    Answer::SocksFailure { prefix: &[0x05, 0x00, 0x05], codes: &[0x07, 0x01], len: 12 }
)]
#[case::forward_socks_gets_socks5_without_acceptable_method(
    Port::ForwardSocks,
    // GSSAPI only.
    Hostile(&[0x05, 0x01, 0x01]),
    Answer::SocksFailure { prefix: &[0x05], codes: &[0xff], len: 2 }
)]
#[case::forward_socks_gets_socks4_bind(
    Port::ForwardSocks,
    Hostile(&[0x04, 0x02, 0x00, 0x50, 127, 0, 0, 1, b'u', 0x00]),
    // 0x5B request rejected.
    Answer::SocksFailure { prefix: &[0x00], codes: &[0x5b], len: 8 }
)]
#[case::reverse_socks_gets_socks4_bind(
    Port::ReverseSocks,
    Hostile(&[0x04, 0x02, 0x00, 0x50, 127, 0, 0, 1, b'u', 0x00]),
    Answer::SocksFailure { prefix: &[0x00], codes: &[0x5b], len: 8 }
)]
#[case::forward_socks_gets_endless_socks4_user_id(
    Port::ForwardSocks,
    Hostile(&ENDLESS_SOCKS4_USER_ID),
    Answer::Closed
)]
#[tokio::test]
async fn bad_input_gets_the_protocols_answer(
    #[case] port: Port,
    #[case] hostile: Hostile,
    #[case] answer: Answer,
) {
    panics::watch();
    let app = start_app().await;
    let (proxy_type, protocol) = port.config();
    let timeout_case = matches!(answer, Answer::ClosedAfterTimeout { .. });
    let proxy = support::proxy::start_proxy_with(proxy_type, protocol, Some(app.addr), |o| {
        if timeout_case {
            o.handshake_timeout = SHORT_TIMEOUT;
        }
    })
    .await;
    let addr = port.addr(&proxy);
    let request = String::from_utf8_lossy(hostile.0)
        .replace("{app}", &app.addr.to_string())
        .into_bytes();
    // Keep the raw bytes when there is no placeholder (not all hostile input is UTF-8).
    let request = if hostile.0.windows(5).any(|w| w == b"{app}") {
        request
    } else {
        hostile.0.to_vec()
    };

    // A connection stalled mid-handshake on the same listener, for the whole case (the non-timeout cases
    // run under the harness's 2 s handshake timeout, far longer than they take).
    let mut stall = open_stall(port, addr).await;

    let mut hostile_conn = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    hostile_conn.write_all(&request).await.unwrap();

    if timeout_case {
        // While the hostile client is still stalled, a normal client is served.
        assert_normal_request_succeeds(port, addr, &app).await;
    }

    let (received, closed) = read_until_close(&mut hostile_conn, answer).await;
    let elapsed = started.elapsed();
    check_answer(answer, &received, closed, elapsed);

    // After the hostile connection, the same listener still serves, and the stalled client was left alone.
    assert_normal_request_succeeds(port, addr, &app).await;
    if !timeout_case {
        assert_still_open(&mut stall, "stalled connection");
    }
    assert_eq!(
        panics::outside_tests(),
        0,
        "a panic happened outside the tests"
    );
    assert!(
        !proxy.task.as_ref().unwrap().is_finished(),
        "the sidecar stopped serving"
    );
    drop((stall, hostile_conn));
    proxy.stop().await;
}

/// Several hostile clients at once, each stalled differently, do not keep a normal one from being served,
/// and each is closed by the handshake timeout.
#[rstest]
#[case::forward_http(Port::ForwardHttp)]
#[case::forward_socks(Port::ForwardSocks)]
#[case::reverse_http(Port::ReverseHttp)]
#[case::reverse_socks(Port::ReverseSocks)]
#[tokio::test]
async fn many_stalled_clients_do_not_block_a_normal_one(#[case] port: Port) {
    panics::watch();
    let app = start_app().await;
    let (proxy_type, protocol) = port.config();
    let proxy = support::proxy::start_proxy_with(proxy_type, protocol, Some(app.addr), |o| {
        o.handshake_timeout = SHORT_TIMEOUT;
    })
    .await;
    let addr = port.addr(&proxy);
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..20 {
        stalled.push(open_stall(port, addr).await);
        stalled.push(TcpStream::connect(addr).await.unwrap());
    }
    assert_normal_request_succeeds(port, addr, &app).await;
    for stream in &mut stalled {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a stalled client was never closed");
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "unexpected answer to a stalled client: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    assert!(started.elapsed() >= SHORT_TIMEOUT.mul_f32(0.9));
    assert_normal_request_succeeds(port, addr, &app).await;
    assert_eq!(panics::outside_tests(), 0);
    drop(stalled);
    proxy.stop().await;
}

/// Connects and sends the first bytes of a handshake, then nothing.
async fn open_stall(port: Port, addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let partial: &[u8] = if port.is_socks() {
        &[0x05]
    } else {
        b"GET /stall HT"
    };
    stream.write_all(partial).await.unwrap();
    stream
}

/// A connection that has neither been answered nor closed.
fn assert_still_open(stream: &mut TcpStream, what: &str) {
    let mut byte = [0u8; 1];
    match stream.try_read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok(0) => panic!("{what} was closed"),
        Ok(_) => panic!("{what} was answered: {:?}", byte),
        Err(e) => panic!("{what} failed: {e}"),
    }
}

/// Reads what the sidecar answers. Returns the bytes and whether the connection was closed.
///
/// An HTTP 400 that does not close is read as one response (head plus content-length body).
async fn read_until_close(stream: &mut TcpStream, answer: Answer) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Answer::Http400 {
            then_close: false, ..
        } = answer
        {
            if complete_response(&received) {
                return (received, false);
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (received, false),
            Ok(Ok(0)) => return (received, true),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            // A reset after the answer is still a close.
            Ok(Err(_)) => return (received, true),
        }
    }
}

/// Whether `bytes` hold a whole HTTP/1.1 response with a content-length body.
fn complete_response(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

fn check_answer(answer: Answer, received: &[u8], closed: bool, elapsed: Duration) {
    let text = String::from_utf8_lossy(received);
    match answer {
        Answer::Http400 {
            mentions,
            then_close,
        } => {
            assert!(
                text.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "expected a 400, got {text:?}"
            );
            assert!(complete_response(received), "incomplete response {text:?}");
            let body_start = text.find("\r\n\r\n").unwrap() + 4;
            assert!(
                text[body_start..].contains(mentions),
                "the 400 should mention {mentions:?}: {text:?}"
            );
            if then_close {
                assert!(
                    closed,
                    "the connection should close after the 400: {text:?}"
                );
            }
        }
        Answer::Closed => {
            assert!(closed, "the connection should be closed");
            assert!(received.is_empty(), "expected no answer, got {received:?}");
        }
        Answer::Exactly(expected) => {
            assert_eq!(received, expected, "the answer");
            assert!(closed, "the connection should close after {expected:02x?}");
        }
        Answer::SocksFailure { prefix, codes, len } => {
            assert!(
                closed,
                "the connection should close after the SOCKS failure"
            );
            assert!(
                received.len() > prefix.len() && received.starts_with(prefix),
                "expected a reply starting {prefix:02x?}, got {received:02x?}"
            );
            let code = received[prefix.len()];
            assert!(
                codes.contains(&code),
                "reply code 0x{code:02x} is not one of {codes:02x?} (reply {received:02x?})"
            );
            // One whole reply and nothing after it.
            assert_eq!(received.len(), len, "not one reply: {received:02x?}");
        }
        Answer::ClosedAfterTimeout {
            prefix,
            http_408_ok,
        } => {
            assert!(
                closed,
                "a stalled client should be closed by the handshake timeout"
            );
            let only_prefix = received == prefix;
            let is_408 = http_408_ok && text.starts_with("HTTP/1.1 408");
            assert!(
                only_prefix || is_408,
                "expected only {prefix:02x?} before the close, got {text:?}"
            );
            assert!(
                elapsed >= SHORT_TIMEOUT.mul_f32(0.9),
                "closed after {elapsed:?}, before the {SHORT_TIMEOUT:?} handshake timeout"
            );
        }
    }
}

/// A well-behaved request through `port` reaches the app and comes back whole.
async fn assert_normal_request_succeeds(port: Port, addr: SocketAddr, app: &App) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = match port {
        Port::ForwardHttp => format!(
            "GET http://{app}/alive HTTP/1.1\r\nHost: {app}\r\nConnection: close\r\n\r\n",
            app = app.addr
        ),
        Port::ReverseHttp => {
            "GET /alive HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".to_owned()
        }
        Port::ForwardSocks | Port::ReverseSocks => {
            let ip = match app.addr.ip() {
                std::net::IpAddr::V4(ip) => ip.octets(),
                std::net::IpAddr::V6(_) => unreachable!("the app listens on 127.0.0.1"),
            };
            let port = app.addr.port().to_be_bytes();
            stream.write_all(&[0x05, 0x01, 0x00]).await.unwrap();
            let mut method = [0u8; 2];
            stream.read_exact(&mut method).await.unwrap();
            assert_eq!(method, [0x05, 0x00]);
            let mut connect = vec![0x05, 0x01, 0x00, 0x01];
            connect.extend_from_slice(&ip);
            connect.extend_from_slice(&port);
            stream.write_all(&connect).await.unwrap();
            let mut reply = [0u8; 10];
            stream.read_exact(&mut reply).await.unwrap();
            assert_eq!(
                reply[..2],
                [0x05, 0x00],
                "SOCKS5 CONNECT refused: {reply:02x?}"
            );
            "GET /alive HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n".to_owned()
        }
    };
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("the normal request was answered")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("\r\n\r\nGET /alive HTTP/1.1\n"),
        "{response}"
    );
}
