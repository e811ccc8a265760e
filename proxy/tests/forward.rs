//! The forward (outbound) proxy as the app's HTTP_PROXY / HTTPS_PROXY / socks proxy: absolute-form
//! requests, CONNECT tunnels, SOCKS4/4a/5, 100 MB transfers checked by hash, and dual mode.
//!
//! Every client is a real one (hyper's low-level HTTP/1 client, tokio-socks) or exact bytes where a
//! library would hide what is checked; every address is on loopback.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rstest::rstest;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};

use support::data::{hex, pattern_sha256};
use support::{pattern_body, start_app, start_proxy, App};

type ClientBody = BoxBody<Bytes, Infallible>;

/// 100 MiB: large enough that buffering a whole body anywhere would show.
const LARGE: u64 = 100 * 1024 * 1024;

/// Generous bound for one test, so a stalled proxy fails the test instead of hanging the run.
const DEADLINE: Duration = Duration::from_secs(120);

fn large_sha256() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| pattern_sha256(LARGE))
}

fn empty() -> ClientBody {
    Empty::new().boxed()
}

fn full(body: &'static str) -> ClientBody {
    Full::new(Bytes::from_static(body.as_bytes())).boxed()
}

/// An HTTP/1 client connection over any stream (a TCP socket, a tunnel, a SOCKS stream).
async fn http1_over<S>(stream: S) -> SendRequest<ClientBody>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake");
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    sender
}

/// An HTTP/1 client connection to the proxy's outbound listener.
async fn proxy_client(proxy: SocketAddr) -> SendRequest<ClientBody> {
    http1_over(TcpStream::connect(proxy).await.unwrap()).await
}

async fn send(
    sender: &mut SendRequest<ClientBody>,
    request: Request<ClientBody>,
) -> Response<Incoming> {
    sender.ready().await.expect("client connection usable");
    sender.send_request(request).await.expect("response")
}

async fn read_text(response: Response<Incoming>) -> String {
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Streams a body into SHA-256, returning `(length, hex digest)`; never holds the body.
async fn hash_body(response: Response<Incoming>) -> (u64, String) {
    let mut body = response.into_body();
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            length += data.len() as u64;
            hasher.update(&data);
        }
    }
    (length, hex(&hasher.finalize()))
}

/// The header names the app reports having received, lowercased.
fn header_names(echo: &str) -> Vec<String> {
    echo.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_ascii_lowercase())
        .collect()
}

/// GET `path` with `Host: host` over an already-open stream to the app; returns status and body.
async fn get_over<S>(stream: S, host: &str, path: &str) -> (StatusCode, String)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut sender = http1_over(stream).await;
    let request = Request::get(path)
        .header("host", host)
        .body(empty())
        .unwrap();
    let response = send(&mut sender, request).await;
    let status = response.status();
    (status, read_text(response).await)
}

// ---------------------------------------------------------------------------------------------------
// forward http: absolute-form
// ---------------------------------------------------------------------------------------------------

#[rstest]
#[case::get(Method::GET, None)]
#[case::post_with_body(Method::POST, Some("hello proxy"))]
#[case::put_with_body(Method::PUT, Some("replacement"))]
#[case::delete(Method::DELETE, None)]
#[case::head(Method::HEAD, None)]
#[tokio::test]
async fn absolute_form_request_reaches_the_app_in_origin_form(
    #[case] method: Method,
    #[case] body: Option<&'static str>,
) {
    let app = start_app().await;
    let proxy = start_proxy("forward", "http", None).await;
    let host = format!("localhost:{}", app.addr.port());
    let mut client = proxy_client(proxy.outbound()).await;

    let request = Request::builder()
        .method(method.clone())
        .uri(format!("http://{host}/items/7?q=1"))
        .header("host", &host)
        .header("x-end-to-end", "kept")
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic dXNlcjpwYXNz")
        .header("keep-alive", "timeout=5")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "only for the proxy")
        .body(body.map(full).unwrap_or_else(empty))
        .unwrap();
    let response = send(&mut client, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo = read_text(response).await;

    if method == Method::HEAD {
        assert_eq!(echo, "", "a HEAD response has no body");
        return;
    }
    let mut lines = echo.lines();
    assert_eq!(
        lines.next(),
        Some(format!("{method} /items/7?q=1 HTTP/1.1").as_str()),
        "{echo}"
    );
    assert!(
        echo.lines().any(|l| l == format!("host: {host}")),
        "the client's Host must reach the app: {echo}"
    );
    assert!(echo.lines().any(|l| l == "x-end-to-end: kept"), "{echo}");
    if let Some(body) = body {
        assert!(
            echo.lines()
                .any(|l| l == format!("content-length: {}", body.len())),
            "{echo}"
        );
    }
    let names = header_names(&echo);
    for hop in [
        "proxy-connection",
        "proxy-authorization",
        "keep-alive",
        "x-hop",
    ] {
        assert!(
            !names.iter().any(|n| n == hop),
            "hop-by-hop header {hop} reached the app: {echo}"
        );
    }
    if let Some(connection) = echo.lines().find(|l| l.starts_with("connection:")) {
        assert!(
            !connection.contains("x-hop"),
            "the client's Connection header reached the app: {echo}"
        );
    }
}

/// The exact bytes on the wire: origin-form request line, no hop-by-hop headers.
#[tokio::test]
async fn absolute_form_is_rewritten_to_origin_form_on_the_wire() {
    let (upstream, mut heads) = support::raw::start_head_recorder().await;
    let proxy = start_proxy("forward", "http", None).await;
    let host = format!("127.0.0.1:{}", upstream.port());
    let mut client = proxy_client(proxy.outbound()).await;
    let request = Request::get(format!("http://{host}/a/b?c=d"))
        .header("host", &host)
        .header("proxy-connection", "keep-alive")
        .header("proxy-authorization", "Basic dXNlcjpwYXNz")
        .header("keep-alive", "timeout=5")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let response = send(&mut client, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(read_text(response).await, "ok");

    let head = tokio::time::timeout(Duration::from_secs(5), heads.recv())
        .await
        .unwrap()
        .unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("GET /a/b?c=d HTTP/1.1"), "{head}");
    let names: Vec<String> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    assert!(names.contains(&"host".to_owned()), "{head}");
    assert!(names.contains(&"x-end-to-end".to_owned()), "{head}");
    for hop in [
        "proxy-connection",
        "proxy-authorization",
        "keep-alive",
        "x-hop",
    ] {
        assert!(
            !names.iter().any(|n| n == hop),
            "{hop} reached upstream: {head}"
        );
    }
    assert_eq!(
        names.iter().filter(|n| *n == "host").count(),
        1,
        "exactly one Host: {head}"
    );
}

/// A client that sends no Host header still gets one upstream, taken from the absolute URI.
#[tokio::test]
async fn absolute_form_without_host_gets_host_from_the_uri() {
    let app = start_app().await;
    let proxy = start_proxy("forward", "http", None).await;
    let authority = format!("localhost:{}", app.addr.port());
    let mut client = proxy_client(proxy.outbound()).await;
    let request = Request::get(format!("http://{authority}/no-host"))
        .body(empty())
        .unwrap();
    let response = send(&mut client, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo = read_text(response).await;
    assert!(echo.starts_with("GET /no-host HTTP/1.1\n"), "{echo}");
    assert!(
        echo.lines().any(|l| l == format!("host: {authority}")),
        "{echo}"
    );
}

#[tokio::test]
async fn keep_alive_requests_share_one_pooled_upstream_connection() {
    let app = start_app().await;
    let proxy = start_proxy("forward", "http", None).await;
    let host = format!("localhost:{}", app.addr.port());
    let mut client = proxy_client(proxy.outbound()).await;
    // A HEAD in the middle: its response has a content-length but no body, which must not stall the
    // connection or leave bytes behind for the next response.
    for (i, method) in [
        Method::GET,
        Method::POST,
        Method::HEAD,
        Method::PUT,
        Method::GET,
    ]
    .into_iter()
    .enumerate()
    {
        let body = if method == Method::POST || method == Method::PUT {
            full("some body")
        } else {
            empty()
        };
        let request = Request::builder()
            .method(method.clone())
            .uri(format!("http://{host}/round/{i}"))
            .header("host", &host)
            .body(body)
            .unwrap();
        let response = send(&mut client, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let echo = read_text(response).await;
        if method == Method::HEAD {
            assert_eq!(echo, "", "request {i}");
            continue;
        }
        assert!(
            echo.starts_with(&format!("{method} /round/{i} HTTP/1.1\n")),
            "request {i}: {echo}"
        );
    }
    assert_eq!(
        app.connections(),
        1,
        "five keep-alive requests must reuse one upstream connection"
    );
}

/// A streamed body both ways at once: the app echoes a chunked upload while it is still arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_echo_through_absolute_form() {
    const LEN: u64 = 8 * 1024 * 1024;
    tokio::time::timeout(DEADLINE, async {
        let app = start_app().await;
        let proxy = start_proxy("forward", "http", None).await;
        let host = format!("localhost:{}", app.addr.port());
        let mut client = proxy_client(proxy.outbound()).await;
        let stream = pattern_body(LEN).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
        let request = Request::post(format!("http://{host}/echo"))
            .header("host", &host)
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap();
        let response = send(&mut client, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(hash_body(response).await, (LEN, pattern_sha256(LEN)));
    })
    .await
    .expect("echo finished in time");
}

/// A websocket upgrade sent in absolute-form (ws:// through HTTP_PROXY) is proxied and then relayed.
#[tokio::test]
async fn websocket_upgrade_through_absolute_form() {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;

    let app = start_app().await;
    let proxy = start_proxy("forward", "http", None).await;
    let host = format!("localhost:{}", app.addr.port());
    let mut client = proxy_client(proxy.outbound()).await;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = Request::get(format!("http://{host}/ws"))
        .header("host", &host)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", key)
        .body(empty())
        .unwrap();
    let response = send(&mut client, request).await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response.headers()["sec-websocket-accept"],
        derive_accept_key(key.as_bytes()).as_str()
    );
    let upgraded = hyper::upgrade::on(response).await.expect("client upgrade");
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    for text in ["first", "second"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("stream open")
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    let binary: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("stream open")
        .unwrap();
    assert_eq!(echoed.into_data().as_ref(), binary.as_slice());
}

// ---------------------------------------------------------------------------------------------------
// forward http: CONNECT and errors
// ---------------------------------------------------------------------------------------------------

/// Sends CONNECT `authority` on a fresh connection to the proxy; returns the response.
async fn connect_request(proxy: SocketAddr, authority: &str) -> Response<Incoming> {
    let mut client = proxy_client(proxy).await;
    let request = Request::connect(authority)
        .header("host", authority)
        .body(empty())
        .unwrap();
    send(&mut client, request).await
}

/// Opens a CONNECT tunnel to `authority` and returns the raw tunnel stream.
async fn open_tunnel(proxy: SocketAddr, authority: &str) -> TokioIo<hyper::upgrade::Upgraded> {
    let response = connect_request(proxy, authority).await;
    assert_eq!(response.status(), StatusCode::OK, "CONNECT {authority}");
    TokioIo::new(hyper::upgrade::on(response).await.expect("tunnel upgrade"))
}

#[tokio::test]
async fn connect_tunnel_carries_http_to_the_app() {
    let app = start_app().await;
    let proxy = start_proxy("forward", "http", None).await;
    let authority = format!("localhost:{}", app.addr.port());
    let tunnel = open_tunnel(proxy.outbound(), &authority).await;

    let mut inner = http1_over(tunnel).await;
    for path in ["/first", "/second"] {
        let request = Request::get(path)
            .header("host", &authority)
            .header("x-inside", "tunnel")
            .body(empty())
            .unwrap();
        let response = send(&mut inner, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let echo = read_text(response).await;
        assert!(
            echo.starts_with(&format!("GET {path} HTTP/1.1\n")),
            "{echo}"
        );
        assert!(echo.lines().any(|l| l == "x-inside: tunnel"), "{echo}");
        assert!(
            echo.lines().any(|l| l == format!("host: {authority}")),
            "{echo}"
        );
    }
    assert_eq!(app.connections(), 1, "one tunnel is one app connection");
}

/// IPv6 literal targets (`[::1]:port`) work in both absolute-form and CONNECT.
#[tokio::test]
async fn ipv6_literal_targets_in_absolute_form_and_connect() {
    let app = support::app::start_app_on("[::1]:0").await;
    let proxy = start_proxy("forward", "http", None).await;
    let authority = format!("[::1]:{}", app.addr.port());

    let mut client = proxy_client(proxy.outbound()).await;
    let request = Request::get(format!("http://{authority}/v6"))
        .header("host", &authority)
        .body(empty())
        .unwrap();
    let response = send(&mut client, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let echo = read_text(response).await;
    assert!(echo.starts_with("GET /v6 HTTP/1.1\n"), "{echo}");
    assert!(
        echo.lines().any(|l| l == format!("host: {authority}")),
        "{echo}"
    );

    let tunnel = open_tunnel(proxy.outbound(), &authority).await;
    let (status, echo) = get_over(tunnel, &authority, "/v6/tunnel").await;
    assert_eq!(status, StatusCode::OK);
    assert!(echo.starts_with("GET /v6/tunnel HTTP/1.1\n"), "{echo}");
    assert_eq!(app.connections(), 2);
}

/// A tunnel is opaque bytes both ways, including half-close.
#[tokio::test]
async fn connect_tunnel_is_an_opaque_byte_stream() {
    let echo = support::start_tcp_echo().await;
    let proxy = start_proxy("forward", "http", None).await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    let authority = format!("127.0.0.1:{}", echo.port());
    stream
        .write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "head cut short");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");

    let payload: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    stream.write_all(&payload).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut back))
        .await
        .expect("the echo's half-close comes back through the tunnel")
        .unwrap();
    assert_eq!(back, payload);
}

#[rstest]
#[case::ip("127.0.0.1")]
#[case::name("localhost")]
#[tokio::test]
async fn connect_to_a_closed_port_is_502_naming_the_target(#[case] host: &str) {
    let closed = support::closed_port::closed_port();
    let port = closed.port;
    let proxy = start_proxy("forward", "http", None).await;
    let authority = format!("{host}:{port}");
    let response = connect_request(proxy.outbound(), &authority).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = read_text(response).await;
    assert!(
        body.contains(&authority),
        "502 must name {authority}: {body}"
    );
}

#[rstest]
#[case::ip("127.0.0.1")]
#[case::name("localhost")]
#[tokio::test]
async fn absolute_form_to_a_closed_port_is_502_naming_the_target(#[case] host: &str) {
    let closed = support::closed_port::closed_port();
    let port = closed.port;
    let proxy = start_proxy("forward", "http", None).await;
    let authority = format!("{host}:{port}");
    let mut client = proxy_client(proxy.outbound()).await;
    let request = Request::get(format!("http://{authority}/x"))
        .header("host", &authority)
        .body(empty())
        .unwrap();
    let response = send(&mut client, request).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = read_text(response).await;
    assert!(
        body.contains(&authority),
        "502 must name {authority}: {body}"
    );
}

/// One client connection, requests to two origins in turn: each reaches the origin its URL names, never
/// one kept open for the other.
#[tokio::test]
async fn requests_to_two_origins_on_one_client_connection_each_reach_their_own() {
    let first = support::raw::RecordingUpstream::start().await;
    let second = support::raw::RecordingUpstream::start().await;
    let proxy = start_proxy("forward", "http", None).await;
    let mut client = proxy_client(proxy.outbound()).await;
    for (upstream, path) in [
        (&first, "/1"),
        (&second, "/2"),
        (&first, "/3"),
        (&first, "/4"),
        (&second, "/5"),
    ] {
        let request = Request::post(format!("http://{}{path}", upstream.addr))
            .body(full("body"))
            .unwrap();
        let response = send(&mut client, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(read_text(response).await, "ok 4", "{path}");
    }
    assert_eq!(
        first.requests(),
        [
            "POST /1 (4 body bytes)",
            "POST /3 (4 body bytes)",
            "POST /4 (4 body bytes)"
        ]
    );
    assert_eq!(
        second.requests(),
        ["POST /2 (4 body bytes)", "POST /5 (4 body bytes)"]
    );
}

/// Reads from `stream` into `received` until it ends with `end` (a bounded wait).
async fn read_until_ends_with(stream: &mut TcpStream, received: &mut Vec<u8>, end: &[u8]) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !received.ends_with(end) {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(received));
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stalled: {}", String::from_utf8_lossy(received)));
}

/// An absolute-form request, then on the same connection a CONNECT, sent in one write with the tunnel's
/// first bytes right behind it: the request is answered, the tunnel granted, and the bytes that came
/// early reach the target first, before what follows.
#[tokio::test]
async fn a_connect_after_an_absolute_form_request_on_one_connection_opens_its_tunnel() {
    let origin = support::raw::RecordingUpstream::start().await;
    let echo = support::start_tcp_echo().await;
    let proxy = start_proxy("forward", "http", None).await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    let sent = format!(
        "GET http://{origin}/before HTTP/1.1\r\nHost: {origin}\r\n\r\nCONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\nearly bytes",
        origin = origin.addr
    );
    stream.write_all(sent.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    read_until_ends_with(&mut stream, &mut received, b"early bytes").await;
    let text = String::from_utf8_lossy(&received);
    let (answer, tunnel) = text
        .split_once("ok 0")
        .unwrap_or_else(|| panic!("the request's answer: {text}"));
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(tunnel, "HTTP/1.1 200 OK\r\n\r\nearly bytes", "{text}");
    assert_eq!(origin.requests(), ["GET /before (0 body bytes)"]);

    stream.write_all(b" and later ones").await.unwrap();
    let mut later = Vec::new();
    read_until_ends_with(&mut stream, &mut later, b" and later ones").await;
    assert_eq!(later, b" and later ones");
}

/// HTTP/2 with prior knowledge on the forward listener, which serves HTTP/1 only: closed without an
/// answer, as hyper's HTTP/1 server closed it.
#[tokio::test]
async fn an_http2_preface_on_the_outbound_port_is_closed_without_an_answer() {
    let proxy = start_proxy("forward", "http", None).await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut reply = Vec::new();
    // Closed, or reset (the frame after the preface is left unread): either way without a byte.
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .expect("the connection is closed");
    assert!(
        read.is_ok() || read.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection is closed"
    );
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
}

#[tokio::test]
async fn origin_form_on_the_outbound_port_is_400() {
    let proxy = start_proxy("forward", "http", None).await;
    let reply = support::raw::exchange(
        proxy.outbound(),
        b"GET /x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
}

// ---------------------------------------------------------------------------------------------------
// 100 MB transfers
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_chunked_upload_through_absolute_form() {
    tokio::time::timeout(DEADLINE, async {
        let app = start_app().await;
        let proxy = start_proxy("forward", "http", None).await;
        let host = format!("localhost:{}", app.addr.port());
        let mut client = proxy_client(proxy.outbound()).await;
        let stream = pattern_body(LARGE).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
        // No content-length: hyper sends the stream chunked.
        let request = Request::post(format!("http://{host}/sha256"))
            .header("host", &host)
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap();
        let response = send(&mut client, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            read_text(response).await,
            format!("{LARGE} {}", large_sha256())
        );
    })
    .await
    .expect("upload finished in time");
}

/// GET /bytes/LARGE over `sender` and checks the streamed body by length and hash.
async fn download_and_check(sender: &mut SendRequest<ClientBody>, uri: String, host: &str) {
    let request = Request::get(uri)
        .header("host", host)
        .body(empty())
        .unwrap();
    let response = send(sender, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-length"].to_str().unwrap(),
        LARGE.to_string()
    );
    let (length, digest) = hash_body(response).await;
    assert_eq!(length, LARGE);
    assert_eq!(digest, large_sha256());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_through_absolute_form() {
    tokio::time::timeout(DEADLINE, async {
        let app = start_app().await;
        let proxy = start_proxy("forward", "http", None).await;
        let host = format!("localhost:{}", app.addr.port());
        let mut client = proxy_client(proxy.outbound()).await;
        download_and_check(&mut client, format!("http://{host}/bytes/{LARGE}"), &host).await;
    })
    .await
    .expect("download finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_through_connect() {
    tokio::time::timeout(DEADLINE, async {
        let app = start_app().await;
        let proxy = start_proxy("forward", "http", None).await;
        let authority = format!("localhost:{}", app.addr.port());
        let tunnel = open_tunnel(proxy.outbound(), &authority).await;
        let mut inner = http1_over(tunnel).await;
        download_and_check(&mut inner, format!("/bytes/{LARGE}"), &authority).await;
    })
    .await
    .expect("download finished in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_download_through_socks5() {
    tokio::time::timeout(DEADLINE, async {
        let app = start_app().await;
        let proxy = start_proxy("forward", "socks", None).await;
        let stream = Socks5Stream::connect(proxy.outbound(), app.addr)
            .await
            .expect("SOCKS5 CONNECT");
        let mut inner = http1_over(stream).await;
        let host = app.addr.to_string();
        download_and_check(&mut inner, format!("/bytes/{LARGE}"), &host).await;
    })
    .await
    .expect("download finished in time");
}

// ---------------------------------------------------------------------------------------------------
// forward socks
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum SocksClient {
    Socks4Ipv4,
    Socks4aDomain,
    Socks5Ipv4,
    Socks5Ipv6,
    Socks5Domain,
    /// tokio-socks offers no-auth and username/password; see the raw test for password-only.
    Socks5WithPassword,
}

#[rstest]
#[case::socks4_ipv4(SocksClient::Socks4Ipv4)]
#[case::socks4a_domain(SocksClient::Socks4aDomain)]
#[case::socks5_ipv4(SocksClient::Socks5Ipv4)]
#[case::socks5_ipv6(SocksClient::Socks5Ipv6)]
#[case::socks5_domain(SocksClient::Socks5Domain)]
#[case::socks5_with_password(SocksClient::Socks5WithPassword)]
#[tokio::test]
async fn socks_connect_reaches_the_app(#[case] client: SocksClient) {
    let app: App = match client {
        SocksClient::Socks5Ipv6 => support::app::start_app_on("[::1]:0").await,
        _ => start_app().await,
    };
    let proxy = start_proxy("forward", "socks", None).await;
    let port = app.addr.port();
    let stream: TcpStream = match client {
        SocksClient::Socks4Ipv4 => Socks4Stream::connect(proxy.outbound(), app.addr)
            .await
            .map(Socks4Stream::into_inner),
        SocksClient::Socks4aDomain => Socks4Stream::connect(proxy.outbound(), ("localhost", port))
            .await
            .map(Socks4Stream::into_inner),
        SocksClient::Socks5Ipv4 | SocksClient::Socks5Ipv6 => {
            Socks5Stream::connect(proxy.outbound(), app.addr)
                .await
                .map(Socks5Stream::into_inner)
        }
        SocksClient::Socks5Domain => Socks5Stream::connect(proxy.outbound(), ("localhost", port))
            .await
            .map(Socks5Stream::into_inner),
        SocksClient::Socks5WithPassword => Socks5Stream::connect_with_password(
            proxy.outbound(),
            app.addr,
            "any-user",
            "any-password",
        )
        .await
        .map(Socks5Stream::into_inner),
    }
    .unwrap_or_else(|e| panic!("{client:?} CONNECT: {e}"));

    let host = format!("app.test:{port}");
    let (status, echo) = get_over(stream, &host, "/via/socks").await;
    assert_eq!(status, StatusCode::OK);
    assert!(echo.starts_with("GET /via/socks HTTP/1.1\n"), "{echo}");
    assert!(echo.lines().any(|l| l == format!("host: {host}")), "{echo}");
    assert_eq!(app.connections(), 1);
}

/// A client offering only username/password (method 0x02) is authenticated whatever it sends.
#[rstest]
#[case::plausible("app", "s3cret")]
#[case::nonsense("x", "definitely-not-checked")]
#[case::long(&"u".repeat(255), &"p".repeat(255))]
#[tokio::test]
async fn socks5_password_only_is_accepted_whatever_credentials(
    #[case] user: &str,
    #[case] password: &str,
) {
    let app = start_app().await;
    let proxy = start_proxy("forward", "socks", None).await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    stream.write_all(&[5, 1, 2]).await.unwrap();
    assert_eq!(
        read_reply(&mut stream, 2).await,
        [5, 2],
        "username/password chosen"
    );
    let mut auth = vec![1, user.len() as u8];
    auth.extend_from_slice(user.as_bytes());
    auth.push(password.len() as u8);
    auth.extend_from_slice(password.as_bytes());
    stream.write_all(&auth).await.unwrap();
    assert_eq!(
        read_reply(&mut stream, 2).await,
        [1, 0],
        "credentials accepted"
    );
    let [hi, lo] = app.addr.port().to_be_bytes();
    stream
        .write_all(&[5, 1, 0, 1, 127, 0, 0, 1, hi, lo])
        .await
        .unwrap();
    let reply = read_reply(&mut stream, 10).await;
    assert_eq!(reply[..4], [5, 0, 0, 1], "{reply:?}");

    let (status, echo) = get_over(stream, "app.test", "/after/auth").await;
    assert_eq!(status, StatusCode::OK);
    assert!(echo.starts_with("GET /after/auth HTTP/1.1\n"), "{echo}");
}

/// Reads exactly `n` bytes of a reply, failing the test if the proxy closes or stalls first.
async fn read_reply(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut reply = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut reply))
        .await
        .expect("reply in time")
        .expect("complete reply");
    reply
}

/// Greets a SOCKS5 proxy offering no authentication and sends `command` for 127.0.0.1:`port`;
/// returns the reply's code.
async fn socks5_raw_command(proxy: SocketAddr, command: u8, port: u16) -> u8 {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(&[5, 1, 0]).await.unwrap();
    assert_eq!(read_reply(&mut stream, 2).await, [5, 0], "no-auth accepted");
    let [hi, lo] = port.to_be_bytes();
    stream
        .write_all(&[5, command, 0, 1, 127, 0, 0, 1, hi, lo])
        .await
        .unwrap();
    let head = read_reply(&mut stream, 4).await;
    assert_eq!(head[0], 5, "reply version: {head:?}");
    assert_eq!(head[2], 0, "reserved byte: {head:?}");
    // The bound address follows; its length depends on the address type.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => read_reply(&mut stream, 1).await[0] as usize + 2,
        other => panic!("bad address type {other} in {head:?}"),
    };
    read_reply(&mut stream, rest).await;
    head[1]
}

#[tokio::test]
async fn socks5_bind_is_refused_as_command_not_supported() {
    let app = start_app().await;
    let proxy = start_proxy("forward", "socks", None).await;
    let code = socks5_raw_command(proxy.outbound(), 2, app.addr.port()).await;
    assert_eq!(code, 0x07, "BIND must be answered 'command not supported'");
    assert_eq!(app.connections(), 0);
}

#[tokio::test]
async fn socks5_connect_to_a_closed_port_is_connection_refused() {
    let closed = support::closed_port::closed_port();
    let port = closed.port;
    let proxy = start_proxy("forward", "socks", None).await;
    let code = socks5_raw_command(proxy.outbound(), 1, port).await;
    assert_eq!(
        code, 0x05,
        "a refused dial must be reported as 'connection refused'"
    );
}

#[tokio::test]
async fn socks4_connect_to_a_closed_port_is_rejected() {
    let closed = support::closed_port::closed_port();
    let port = closed.port;
    let proxy = start_proxy("forward", "socks", None).await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    let [hi, lo] = port.to_be_bytes();
    stream
        .write_all(&[4, 1, hi, lo, 127, 0, 0, 1, b'u', 0])
        .await
        .unwrap();
    let reply = read_reply(&mut stream, 8).await;
    assert_eq!(reply[..2], [0, 0x5B], "{reply:?}");
}

#[tokio::test]
async fn socks5_raw_connect_is_granted_and_relays() {
    let echo = support::start_tcp_echo().await;
    let proxy = start_proxy("forward", "socks", None).await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.unwrap();
    stream.write_all(&[5, 1, 0]).await.unwrap();
    assert_eq!(read_reply(&mut stream, 2).await, [5, 0]);
    let [hi, lo] = echo.port().to_be_bytes();
    stream
        .write_all(&[5, 1, 0, 1, 127, 0, 0, 1, hi, lo])
        .await
        .unwrap();
    let reply = read_reply(&mut stream, 10).await;
    assert_eq!(reply[..4], [5, 0, 0, 1], "{reply:?}");
    stream.write_all(b"ping through socks").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back, b"ping through socks");
}

// ---------------------------------------------------------------------------------------------------
// dual mode
// ---------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Speaks {
    Http,
    Socks,
    Tcp,
}

#[rstest]
#[case::http("http", Speaks::Http, Speaks::Http)]
#[case::socks("socks", Speaks::Socks, Speaks::Socks)]
#[case::tcp_http("tcp:http", Speaks::Tcp, Speaks::Http)]
#[case::tcp_socks("tcp:socks", Speaks::Tcp, Speaks::Socks)]
#[tokio::test]
async fn dual_mode_outbound_speaks_its_protocol(
    #[case] protocol: &str,
    #[case] inbound: Speaks,
    #[case] outbound: Speaks,
) {
    let app = start_app().await;
    let other = start_app().await;
    let proxy = start_proxy("dual", protocol, Some(app.addr)).await;
    assert_ne!(proxy.inbound(), proxy.outbound());

    // Outbound: reaches whichever destination the client names (here `other`, not the app).
    let authority = format!("localhost:{}", other.addr.port());
    match outbound {
        Speaks::Http => {
            let mut client = proxy_client(proxy.outbound()).await;
            let request = Request::get(format!("http://{authority}/out"))
                .header("host", &authority)
                .body(empty())
                .unwrap();
            let response = send(&mut client, request).await;
            assert_eq!(response.status(), StatusCode::OK);
            let echo = read_text(response).await;
            assert!(echo.starts_with("GET /out HTTP/1.1\n"), "{echo}");

            // The outbound http port does not speak SOCKS.
            let mut stream = TcpStream::connect(proxy.outbound()).await.unwrap();
            stream.write_all(&[5, 1, 0]).await.unwrap();
            let mut reply = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
            assert!(
                !reply.starts_with(&[5, 0]),
                "http port granted SOCKS5: {reply:?}"
            );
        }
        Speaks::Socks => {
            let stream = Socks5Stream::connect(proxy.outbound(), ("localhost", other.addr.port()))
                .await
                .expect("SOCKS5 CONNECT on the outbound port")
                .into_inner();
            let (status, echo) = get_over(stream, &authority, "/out").await;
            assert_eq!(status, StatusCode::OK);
            assert!(echo.starts_with("GET /out HTTP/1.1\n"), "{echo}");

            // The outbound socks port answers an HTTP client with a 400 that says so.
            let reply = support::raw::exchange(
                proxy.outbound(),
                format!("GET http://{authority}/out HTTP/1.1\r\nhost: {authority}\r\n\r\n")
                    .as_bytes(),
                Duration::from_secs(5),
            )
            .await;
            let reply = String::from_utf8_lossy(&reply);
            assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
            assert!(reply.contains("SOCKS"), "{reply}");
        }
        Speaks::Tcp => unreachable!("forward proxies never speak plain tcp"),
    }
    assert_eq!(other.connections(), 1, "outbound reached the named target");
    assert_eq!(
        app.connections(),
        0,
        "outbound traffic must not go to the app"
    );

    // Inbound: still delivers to the app with its own protocol.
    let (status, echo) = match inbound {
        Speaks::Http | Speaks::Tcp => {
            let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
            get_over(stream, "app.test", "/in").await
        }
        Speaks::Socks => {
            let stream = Socks5Stream::connect(proxy.inbound(), other.addr)
                .await
                .expect("SOCKS5 CONNECT on the inbound port")
                .into_inner();
            get_over(stream, "app.test", "/in").await
        }
    };
    assert_eq!(status, StatusCode::OK);
    assert!(echo.starts_with("GET /in HTTP/1.1\n"), "{echo}");
    assert_eq!(app.connections(), 1, "inbound traffic goes to the app");
}

/// RFC 9112 §3.2.2: a proxy replaces Host with the host of the absolute URL, so the upstream never sees a
/// host the connection was not made to, and never sees userinfo from the URL.
#[rstest]
#[case::conflicting_host("GET http://localhost:{port}/v HTTP/1.1\r\nhost: elsewhere.test\r\n\r\n")]
#[case::userinfo_in_the_url(
    "GET http://user:pw@localhost:{port}/v HTTP/1.1\r\nhost: localhost:{port}\r\n\r\n"
)]
#[tokio::test]
async fn host_comes_from_the_absolute_url(#[case] request: &str) {
    let (upstream, mut heads) = support::raw::start_head_recorder().await;
    let proxy = start_proxy("forward", "http", None).await;
    let request = request.replace("{port}", &upstream.port().to_string());
    let reply =
        support::raw::exchange(proxy.outbound(), request.as_bytes(), Duration::from_secs(2)).await;
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let head = heads.recv().await.expect("the upstream got the request");
    let hosts: Vec<&str> = head
        .lines()
        .filter(|line| line.to_ascii_lowercase().starts_with("host:"))
        .collect();
    assert_eq!(
        hosts,
        [format!("host: localhost:{}", upstream.port())],
        "{head}"
    );
    assert!(!head.contains("user:pw"), "{head}");
}

/// A CONNECT tunnel nothing reads (capture off, or capture on and a stream recorded only as a stream) is
/// spliced like any other stream: the client side is taken back from the HTTP server as its socket, bulk
/// data goes through pipes that go back once idle, and the record counts every byte.
#[rstest]
#[case::capture_off(false)]
#[case::capture_on_opaque_stream(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_tunnel_nothing_reads_is_spliced(#[case] capture: bool) {
    let echo = support::start_tcp_echo().await;
    let dir = support::capture::TempDir::new("splice-connect");
    let capture_file = dir.0.join("capture.jsonl");
    let capture_arg = if capture {
        capture_file.to_str().unwrap()
    } else {
        "off"
    };
    let sidecar =
        support::capture::Sidecar::forward("http", &["--capture", capture_arg], &dir.0).await;
    let stream = support::capture::connect_tunnel(sidecar.outbound, &echo.to_string()).await;
    let sent = support::spliced::bulk_data_goes_through_pipes(sidecar.pid(), stream).await;
    if capture {
        let summary = support::spliced::the_stream_with_bytes(sidecar, &capture_file).await;
        assert_eq!(summary.protocol_seen, "opaque");
        assert_eq!(summary.bytes_client_to_target, sent);
        assert_eq!(summary.bytes_target_to_client, sent);
        assert_eq!(summary.end, "closed");
    }
}

/// A SOCKS5 client and a TLS client pointed at the HTTP proxy port (a proxy URL with the wrong scheme) each
/// get their own protocol's refusal, which their libraries name, and the sidecar's log says which setting
/// they probably wanted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks_and_tls_clients_on_the_http_port_are_refused_in_their_protocol_and_told_why() {
    let dir = support::capture::TempDir::new("wrong-protocol");
    let sidecar = support::capture::Sidecar::forward("http", &["--capture", "off"], &dir.0).await;

    let socks = Socks5Stream::connect(sidecar.outbound, "app.test:80").await;
    assert!(
        matches!(socks, Err(tokio_socks::Error::NoAcceptableAuthMethods)),
        "{:?}",
        socks.err()
    );

    let tls = tokio_rustls::TlsConnector::from(support::tls::client_config(&[], &[]));
    let tcp = TcpStream::connect(sidecar.outbound).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("proxy.test").unwrap();
    let Err(error) = tls.connect(name, tcp).await else {
        panic!("a TLS handshake with the HTTP proxy port succeeded");
    };
    assert!(
        error.to_string().contains("HandshakeFailure"),
        "the client should report the alert: {error}"
    );

    let log = tokio::time::timeout(DEADLINE, async {
        loop {
            let log = sidecar.stderr();
            if log.contains("TLS clients connected") && log.contains("SOCKS clients connected") {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no warnings: {}", sidecar.stderr()));
    assert!(log.contains("http://HOST:PORT"), "{log}");
    assert!(log.contains("--proxy-protocol socks"), "{log}");
    assert!(log.contains("it must say http://"), "{log}");
}

/// A SOCKS5 stream nothing reads (capture off, or recorded only as an opaque stream) is spliced like a
/// CONNECT tunnel: after the handshake the client's socket goes on as accept made it.
#[rstest]
#[case::capture_off(false)]
#[case::capture_on_opaque_stream(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks5_stream_nothing_reads_is_spliced(#[case] capture: bool) {
    let echo = support::start_tcp_echo().await;
    let dir = support::capture::TempDir::new("splice-socks");
    let capture_file = dir.0.join("capture.jsonl");
    let capture_arg = if capture {
        capture_file.to_str().unwrap()
    } else {
        "off"
    };
    let sidecar =
        support::capture::Sidecar::forward("socks", &["--capture", capture_arg], &dir.0).await;
    let stream = Socks5Stream::connect(sidecar.outbound, echo)
        .await
        .expect("SOCKS5 CONNECT")
        .into_inner();
    let sent = support::spliced::bulk_data_goes_through_pipes(sidecar.pid(), stream).await;
    if capture {
        let summary = support::spliced::the_stream_with_bytes(sidecar, &capture_file).await;
        assert_eq!(summary.protocol_seen, "opaque");
        assert_eq!(summary.bytes_client_to_target, sent);
        assert_eq!(summary.bytes_target_to_client, sent);
        assert_eq!(summary.end, "closed");
    }
}
