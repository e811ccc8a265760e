//! The reverse (inbound) proxy end to end: real clients on 127.0.0.1 talk to the sidecar's inbound
//! listener, and real servers behind it show what arrived.
//!
//! - `tcp`: opaque bytes, half-close, an app that is down.
//! - `http`: HTTP/1.0 and 1.1 through hyper, keep-alive and upstream reuse, streamed bodies (100 MB each way),
//!   header rules (case, hop-by-hop, X-Forwarded-*), websockets, HTTP/2 prior knowledge, 502 for a dead app.
//! - `socks`: SOCKS4, 4a and 5 clients, whose requested target is never dialed: the stream goes to the app.
//! - `dual`: the inbound listener speaks the protocol the configuration names.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rstest::rstest;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};
use tokio_tungstenite::tungstenite::Message;

use support::capture::{Sidecar, TempDir};
use support::data::{hex, pattern_sha256};
use support::proxy::start_proxy_with;
use support::spliced;
use support::{pattern_body, raw, sha256_hex, start_app, start_proxy, start_tcp_echo};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Longest any single step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(30);
/// The big transfers: 100 MiB.
const BIG: u64 = 100 * 1024 * 1024;

// -------------------------------------------------------------------------------------------------
// helpers
// -------------------------------------------------------------------------------------------------

async fn within<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {limit:?}"))
}

/// A listener that must never be connected to; returns its address and how many connections it saw.
async fn start_decoy() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, accepted)
}

/// A TCP app that reads until the caller half-closes, then answers `got <n> bytes <sha256>` and closes.
/// It can only answer if the proxy passed the half-close on.
async fn start_reply_after_eof() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut received = Vec::new();
                if stream.read_to_end(&mut received).await.is_err() {
                    return;
                }
                let reply = format!("got {} bytes {}", received.len(), sha256_hex(&received));
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// `len` bytes of the test pattern, streamed, with no size known in advance (sent chunked on HTTP/1.1).
fn streamed(len: u64) -> Body {
    StreamBody::new(pattern_body(len).map(|chunk| Ok(Frame::data(chunk)))).boxed_unsync()
}

fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn url(proxy: SocketAddr, path: &str) -> String {
    format!("http://{proxy}{path}")
}

/// Sends `request` with the pooled hyper client and reads the whole (small) response.
async fn fetch(request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = within("response head", STEP, client().request(request))
        .await
        .expect("the proxy answers");
    read_text(response).await
}

async fn read_text(response: http::Response<Incoming>) -> (StatusCode, HeaderMap, String) {
    let (parts, body) = response.into_parts();
    let body = within("response body", STEP, body.collect())
        .await
        .expect("the response body arrives whole")
        .to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Length and SHA-256 of a response body, hashed frame by frame as it streams in.
async fn hash_body(mut body: Incoming) -> (u64, String) {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("the body streams without error");
        if let Some(data) = frame.data_ref() {
            length += data.len() as u64;
            hasher.update(data);
        }
    }
    (length, hex(&hasher.finalize()))
}

/// The header lines the app's default route echoed (`name: value`, names lower-case).
fn echoed_header<'a>(echo: &'a str, name: &str) -> Option<&'a str> {
    echo.lines()
        .skip(1)
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

/// Splits raw HTTP/1 response bytes into head and body.
fn split_response(bytes: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) => (head.to_owned(), body.to_owned()),
        None => (text, String::new()),
    }
}

/// The header names of a recorded request head, as they were on the wire.
fn head_names(head: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':').map(|(name, _)| name.to_owned()))
        .collect()
}

fn head_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Sends one HTTP/1.1 request over an already open stream (raw bytes) and reads until the app closes.
async fn http_over<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n");
    within("write request", STEP, stream.write_all(request.as_bytes()))
        .await
        .unwrap();
    let mut response = Vec::new();
    within("read response", STEP, stream.read_to_end(&mut response))
        .await
        .expect("the response arrives");
    String::from_utf8_lossy(&response).into_owned()
}

// -------------------------------------------------------------------------------------------------
// reverse tcp
// -------------------------------------------------------------------------------------------------

#[rstest]
#[case::one_byte(1)]
#[case::one_packet(1_000)]
#[case::several_megabytes(8 * 1024 * 1024 + 17)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_tcp_echoes_every_byte_then_eof(#[case] len: u64) {
    let echo = start_tcp_echo().await;
    let proxy = start_proxy("reverse", "tcp", Some(echo)).await;
    let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();

    // Write and read at once: a large payload would otherwise fill every buffer on the way and stall.
    let writing = tokio::spawn(async move {
        let mut body = std::pin::pin!(pattern_body(len));
        while let Some(chunk) = body.next().await {
            writer.write_all(&chunk).await.unwrap();
        }
        writer.shutdown().await.unwrap();
        writer
    });
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    within("echo and EOF", STEP, async {
        loop {
            let n = reader.read(&mut buf).await.expect("read echoed bytes");
            if n == 0 {
                break;
            }
            received += n as u64;
            hasher.update(&buf[..n]);
        }
    })
    .await;
    let _writer = writing.await.unwrap();
    assert_eq!(received, len, "every byte sent comes back, then EOF");
    assert_eq!(hex(&hasher.finalize()), pattern_sha256(len));
}

/// Where nothing reads a stream's bytes (capture off, or capture on and a stream recorded only as a stream,
/// without payload copies), bulk data goes socket → pipe → socket (splice(2)): every byte arrives in order,
/// the record counts them exactly, and the pipes go back once the stream carries small messages again,
/// so an idle connection holds no more descriptors than its two sockets.
#[rstest]
#[case::capture_off(false)]
#[case::capture_on_opaque_stream(true)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_tcp_splices_bulk_data_nothing_reads_and_gives_the_pipes_back(
    #[case] capture: bool,
) {
    let echo = start_tcp_echo().await;
    let dir = TempDir::new("splice");
    let capture_file = dir.0.join("capture.jsonl");
    let capture_arg = if capture {
        capture_file.to_str().unwrap()
    } else {
        "off"
    };
    let sidecar = Sidecar::reverse("tcp", echo, &["--capture", capture_arg], &dir.0).await;
    let stream = TcpStream::connect(sidecar.inbound).await.unwrap();
    let sent = spliced::bulk_data_goes_through_pipes(sidecar.pid(), stream).await;
    if capture {
        let summary = spliced::the_stream_with_bytes(sidecar, &capture_file).await;
        assert_eq!(summary.protocol_seen, "opaque");
        assert_eq!(summary.bytes_client_to_target, sent);
        assert_eq!(summary.bytes_target_to_client, sent);
        assert_eq!(summary.end, "closed");
    }
}

#[tokio::test]
async fn reverse_tcp_passes_a_half_close_on_and_keeps_the_other_direction_open() {
    let app = start_reply_after_eof().await;
    let proxy = start_proxy("reverse", "tcp", Some(app)).await;
    let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let payload = b"first part, second part";
    stream.write_all(payload).await.unwrap();
    // Only write is shut: the app answers after seeing EOF, and that answer must still reach us.
    stream.shutdown().await.unwrap();
    let mut reply = String::new();
    within(
        "reply after half-close",
        STEP,
        stream.read_to_string(&mut reply),
    )
    .await
    .expect("read the reply and then EOF");
    assert_eq!(
        reply,
        format!("got {} bytes {}", payload.len(), sha256_hex(payload))
    );
}

#[tokio::test]
async fn reverse_tcp_with_the_app_down_closes_the_connection_at_once() {
    let closed = support::closed_port::closed_port();
    let app = closed.addr();
    let proxy = start_proxy("reverse", "tcp", Some(app)).await;
    let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let started = Instant::now();
    let _ = stream.write_all(b"hello?").await;
    let mut buf = [0u8; 64];
    let read = within("close", Duration::from_secs(5), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected EOF or reset, got {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed only after {:?}",
        started.elapsed()
    );
}

// -------------------------------------------------------------------------------------------------
// reverse http: HTTP/1
// -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn reverse_http_get_reaches_the_app() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let request = Request::get(url(proxy.inbound(), "/hello?name=world"))
        .body(empty())
        .unwrap();
    let (status, _, body) = fetch(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body.lines().next(),
        Some("GET /hello?name=world HTTP/1.1"),
        "{body}"
    );
}

#[tokio::test]
async fn reverse_http_post_carries_the_body_both_ways() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let payload = "a small body\nwith two lines";

    let echo = Request::post(url(proxy.inbound(), "/echo"))
        .body(full(payload))
        .unwrap();
    let (status, _, body) = fetch(echo).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, payload);

    let digest = Request::post(url(proxy.inbound(), "/sha256"))
        .body(full(payload))
        .unwrap();
    let (status, _, body) = fetch(digest).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!("{} {}", payload.len(), sha256_hex(payload.as_bytes()))
    );
}

#[tokio::test]
async fn reverse_http_serves_an_http_1_0_request() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let received = raw::exchange(
        proxy.inbound(),
        b"GET /old?v=1 HTTP/1.0\r\nHost: legacy.example\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let (head, body) = split_response(&received);
    assert!(head.starts_with("HTTP/1."), "{head}");
    assert!(head.lines().next().unwrap().contains(" 200 "), "{head}");
    assert!(body.starts_with("GET /old?v=1 HTTP/1."), "{body}");
    assert_eq!(
        echoed_header(&body, "host"),
        Some("legacy.example"),
        "{body}"
    );
}

#[tokio::test]
async fn reverse_http_keeps_alive_and_reuses_the_app_connection() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);

    for i in 0..5 {
        within("ready", STEP, sender.ready())
            .await
            .expect("the client connection stays open");
        let (request, expected) = if i % 2 == 0 {
            let path = format!("/round/{i}");
            (
                Request::get(path.as_str())
                    .header("host", "app")
                    .body(empty())
                    .unwrap(),
                format!("GET {path} HTTP/1.1"),
            )
        } else {
            (
                Request::post("/echo")
                    .header("host", "app")
                    .body(full(format!("body {i}")))
                    .unwrap(),
                format!("body {i}"),
            )
        };
        let response = within("response", STEP, sender.send_request(request))
            .await
            .unwrap();
        let (status, _, body) = read_text(response).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.lines().next(), Some(expected.as_str()), "{body}");
        // Let the proxy's pool take the finished connection back before the next request.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.connections(),
        1,
        "five requests on one client connection should share one app connection"
    );
}

#[tokio::test]
async fn reverse_http_relays_a_raw_chunked_upload() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let received = raw::exchange(
        proxy.inbound(),
        b"POST /sha256 HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let (head, body) = split_response(&received);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Chunked framing or not, the app sees the 11 bytes in order.
    let expected = format!("11 {}", sha256_hex(b"hello world"));
    assert!(
        body == expected || body.contains(&format!("\r\n{expected}\r\n")),
        "expected {expected:?} in {body:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http_streams_an_upload_without_content_length() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let len = 3 * 1024 * 1024 + 5;
    let request = Request::post(url(proxy.inbound(), "/sha256"))
        .body(streamed(len))
        .unwrap();
    assert!(request.headers().get("content-length").is_none());
    let (status, _, body) = fetch(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("{len} {}", pattern_sha256(len)));
}

/// An app that answers while it reads (here an echo streaming the body back as it comes) gets the rest of
/// the request body after its response head: the body is far larger than the socket buffers, so relaying
/// one direction and then the other would stall both sides.
#[rstest]
#[case::with_content_length(true)]
#[case::chunked(false)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http_relays_both_directions_to_an_app_that_answers_while_it_reads(
    #[case] with_length: bool,
) {
    let app = start_app().await;
    let (proxy, log) =
        support::capture::start_capturing_proxy("reverse", "http", Some(app.addr), |_| {}).await;
    let len = 16 * 1024 * 1024 + 3;
    let mut request = Request::post(url(proxy.inbound(), "/echo"));
    if with_length {
        request = request.header("content-length", len);
    }
    let request = request.body(streamed(len)).unwrap();
    let (length, digest) = within("a 16 MiB streaming echo", STEP, async {
        let response = client().request(request).await.expect("the proxy answers");
        assert_eq!(response.status(), StatusCode::OK);
        hash_body(response.into_body()).await
    })
    .await;
    assert_eq!(length, len);
    assert_eq!(digest, pattern_sha256(len));

    // The record has both bodies whole in size, although they crossed at the same time.
    let records = log.records(proxy).await;
    let sizes: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.detail {
            sidecar_proxy::capture::record::Detail::Http(exchange) => Some((
                exchange.request.method.clone(),
                exchange.request.body.size,
                exchange.response.as_ref().map(|r| (r.status, r.body.size)),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, [("POST".to_owned(), len, Some((200, len)))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http_streams_a_100_mb_upload() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let request = Request::post(url(proxy.inbound(), "/sha256"))
        .header("content-length", BIG)
        .body(streamed(BIG))
        .unwrap();
    let response = within("100 MB upload", Duration::from_secs(300), async {
        client().request(request).await.expect("the proxy answers")
    })
    .await;
    let (status, _, body) = read_text(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("{BIG} {}", pattern_sha256(BIG)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_http_streams_a_100_mb_download() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let request = Request::get(url(proxy.inbound(), &format!("/bytes/{BIG}")))
        .body(empty())
        .unwrap();
    let (length, digest) = within("100 MB download", Duration::from_secs(300), async {
        let response = client().request(request).await.expect("the proxy answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers().get("content-length").unwrap(),
            &BIG.to_string()
        );
        hash_body(response.into_body()).await
    })
    .await;
    assert_eq!(length, BIG);
    assert_eq!(digest, pattern_sha256(BIG));
}

#[rstest]
#[case::get("GET", "/")]
#[case::post("POST", "/orders?id=7&sort=desc")]
#[case::put("PUT", "/a/b/c?x=%20y")]
#[case::delete("DELETE", "/items/42?force=true")]
#[case::patch("PATCH", "/items/42")]
#[case::options("OPTIONS", "/cors?origin=a.example")]
#[case::extension_method("PURGE", "/cache/key?all")]
#[tokio::test]
async fn reverse_http_preserves_method_path_query_and_host(
    #[case] method: &str,
    #[case] path: &str,
) {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(url(proxy.inbound(), path))
        .header("host", "orders.shop.svc.cluster.local:8080")
        .body(empty())
        .unwrap();
    let (status, _, body) = fetch(request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body.lines().next(),
        Some(format!("{method} {path} HTTP/1.1").as_str()),
        "{body}"
    );
    assert_eq!(
        echoed_header(&body, "host"),
        Some("orders.shop.svc.cluster.local:8080"),
        "{body}"
    );
}

#[tokio::test]
async fn reverse_http_preserves_header_name_case() {
    let (app, mut heads) = raw::start_head_recorder().await;
    let proxy = start_proxy("reverse", "http", Some(app)).await;
    let received = raw::exchange(
        proxy.inbound(),
        b"GET /case HTTP/1.1\r\nHost: app\r\nX-Mixed-Case: one\r\nCONTENT-type: text/plain\r\n\
          x-lower: two\r\nX-UPPER: three\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    let head = within("recorded head", STEP, heads.recv()).await.unwrap();
    let names = head_names(&head);
    for name in ["Host", "X-Mixed-Case", "CONTENT-type", "x-lower", "X-UPPER"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} lost its case: {head}"
        );
    }
    assert!(head.starts_with("GET /case HTTP/1.1\r\n"), "{head}");
}

#[tokio::test]
async fn reverse_http_drops_hop_by_hop_headers() {
    let (app, mut heads) = raw::start_head_recorder().await;
    let proxy = start_proxy("reverse", "http", Some(app)).await;
    let received = raw::exchange(
        proxy.inbound(),
        b"GET /hop HTTP/1.1\r\nHost: app\r\nConnection: close, X-Session-Hint\r\nX-Session-Hint: 1\r\n\
          Keep-Alive: timeout=5\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\nTE: gzip\r\n\
          Proxy-Connection: keep-alive\r\nX-End-To-End: kept\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
    let head = within("recorded head", STEP, heads.recv()).await.unwrap();
    let names: Vec<String> = head_names(&head)
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    for dropped in [
        "x-session-hint",
        "keep-alive",
        "proxy-authorization",
        "te",
        "proxy-connection",
    ] {
        assert!(
            !names.iter().any(|n| n == dropped),
            "{dropped} reached the app: {head}"
        );
    }
    assert_eq!(head_value(&head, "connection"), None, "{head}");
    assert_eq!(head_value(&head, "x-end-to-end"), Some("kept"), "{head}");
}

#[tokio::test]
async fn reverse_http_keeps_te_trailers() {
    let (app, mut heads) = raw::start_head_recorder().await;
    let proxy = start_proxy("reverse", "http", Some(app)).await;
    raw::exchange(
        proxy.inbound(),
        b"GET /te HTTP/1.1\r\nHost: app\r\nTE: trailers\r\nConnection: TE, close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let head = within("recorded head", STEP, heads.recv()).await.unwrap();
    assert_eq!(head_value(&head, "te"), Some("trailers"), "{head}");
}

#[rstest]
#[case::first_hop(&[], "127.0.0.1")]
#[case::appended(&["203.0.113.9"], "203.0.113.9, 127.0.0.1")]
#[case::appended_to_a_chain(
    &["198.51.100.1, 203.0.113.9"],
    "198.51.100.1, 203.0.113.9, 127.0.0.1"
)]
#[case::appended_to_repeated_headers(
    &["198.51.100.1", "203.0.113.9"],
    "198.51.100.1, 203.0.113.9, 127.0.0.1"
)]
#[tokio::test]
async fn reverse_http_adds_x_forwarded_headers(#[case] existing: &[&str], #[case] expected: &str) {
    let (app, mut heads) = raw::start_head_recorder().await;
    let proxy = start_proxy("reverse", "http", Some(app)).await;
    let mut request = String::from("GET /xff HTTP/1.1\r\nHost: app\r\nConnection: close\r\n");
    for value in existing {
        request.push_str(&format!("X-Forwarded-For: {value}\r\n"));
    }
    request.push_str("\r\n");
    raw::exchange(proxy.inbound(), request.as_bytes(), Duration::from_secs(10)).await;
    let head = within("recorded head", STEP, heads.recv()).await.unwrap();
    assert_eq!(
        head_value(&head, "x-forwarded-for"),
        Some(expected),
        "{head}"
    );
    assert_eq!(
        head_value(&head, "x-forwarded-proto"),
        Some("http"),
        "{head}"
    );
    let forwarded_for_lines = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-forwarded-for:"))
        .count();
    assert_eq!(forwarded_for_lines, 1, "{head}");
}

// -------------------------------------------------------------------------------------------------
// reverse http: websocket, HTTP/2, app down
// -------------------------------------------------------------------------------------------------

#[tokio::test]
async fn reverse_http_upgrades_to_a_websocket() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    let (mut ws, response) = within(
        "websocket handshake",
        STEP,
        tokio_tungstenite::client_async("ws://app/ws", stream),
    )
    .await
    .expect("the handshake succeeds through the proxy");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let messages = [
        Message::text("hello through the sidecar"),
        Message::binary(binary),
        Message::text(""),
        Message::text("ünïcödé ✓"),
    ];
    for message in messages {
        within("send", STEP, ws.send(message.clone()))
            .await
            .unwrap();
        let echoed = within("echo", STEP, ws.next())
            .await
            .expect("the socket stays open")
            .expect("a message, not an error");
        assert_eq!(echoed, message);
    }
    within("close", STEP, ws.close(None)).await.unwrap();
}

async fn h2_sender(proxy: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake::<_, _, Body>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .expect("HTTP/2 handshake with the proxy");
    tokio::spawn(connection);
    sender
}

#[tokio::test]
async fn reverse_http_serves_http2_prior_knowledge() {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "http", Some(app.addr)).await;
    let mut sender = h2_sender(proxy.inbound()).await;

    let get = Request::get("http://app.internal/h2/get?x=1")
        .body(empty())
        .unwrap();
    let response = within("h2 GET", STEP, sender.send_request(get))
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    let (status, _, body) = read_text(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body.lines().next(),
        Some("GET /h2/get?x=1 HTTP/2.0"),
        "{body}"
    );

    let post = Request::post("http://app.internal/h2/post")
        .body(full("h2 body"))
        .unwrap();
    let response = within("h2 POST", STEP, sender.send_request(post))
        .await
        .unwrap();
    let (status, _, body) = read_text(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body.lines().next(),
        Some("POST /h2/post HTTP/2.0"),
        "{body}"
    );

    let len = 2 * 1024 * 1024 + 3;
    let upload = Request::post("http://app.internal/sha256")
        .body(streamed(len))
        .unwrap();
    let response = within("h2 upload", STEP, sender.send_request(upload))
        .await
        .unwrap();
    let (status, _, body) = read_text(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, format!("{len} {}", pattern_sha256(len)));

    let echo = Request::post("http://app.internal/echo")
        .body(full("echo over h2"))
        .unwrap();
    let response = within("h2 echo", STEP, sender.send_request(echo))
        .await
        .unwrap();
    let (status, _, body) = read_text(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "echo over h2");
}

#[rstest]
#[case::http1(false)]
#[case::http2(true)]
#[tokio::test]
async fn reverse_http_answers_502_naming_the_app_when_it_is_down(#[case] h2: bool) {
    let closed = support::closed_port::closed_port();
    let app = closed.addr();
    let proxy = start_proxy("reverse", "http", Some(app)).await;
    let response = if h2 {
        let mut sender = h2_sender(proxy.inbound()).await;
        let request = Request::get("http://app/anything").body(empty()).unwrap();
        within("502", STEP, sender.send_request(request))
            .await
            .unwrap()
    } else {
        let request = Request::get(url(proxy.inbound(), "/anything"))
            .body(empty())
            .unwrap();
        within("502", STEP, client().request(request))
            .await
            .unwrap()
    };
    let (status, _, body) = read_text(response).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body.contains(&app.to_string()),
        "the 502 body should name {app}: {body}"
    );
}

// -------------------------------------------------------------------------------------------------
// reverse socks
// -------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Socks {
    V4,
    V4a,
    V5,
}

/// A SOCKS connection through `proxy` asking for `host:port`; `host` is an IP literal or a name.
async fn socks_connect(
    dialect: Socks,
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> Box<dyn AsyncReadWrite> {
    let connecting = async {
        match dialect {
            Socks::V4 => {
                let ip: std::net::Ipv4Addr = host.parse().expect("SOCKS4 needs an IPv4 target");
                Box::new(
                    Socks4Stream::connect(proxy, SocketAddr::from((ip, port)))
                        .await
                        .expect("SOCKS4 CONNECT granted"),
                ) as Box<dyn AsyncReadWrite>
            }
            Socks::V4a => {
                assert!(
                    host.parse::<std::net::IpAddr>().is_err(),
                    "SOCKS4a sends a name"
                );
                Box::new(
                    Socks4Stream::connect(proxy, (host, port))
                        .await
                        .expect("SOCKS4a CONNECT granted"),
                )
            }
            Socks::V5 => Box::new(
                Socks5Stream::connect(proxy, (host, port))
                    .await
                    .expect("SOCKS5 CONNECT granted"),
            ),
        }
    };
    within("SOCKS handshake", STEP, connecting).await
}

trait AsyncReadWrite: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncReadWrite for T {}

#[rstest]
#[case::socks4_unused_port(Socks::V4, "127.0.0.1", 1)]
#[case::socks4a_localhost(Socks::V4a, "localhost", 80)]
#[case::socks4a_unresolvable(Socks::V4a, "anything.example", 80)]
#[case::socks5_ipv4(Socks::V5, "127.0.0.1", 1)]
#[case::socks5_domain(Socks::V5, "anything.example", 443)]
#[case::socks5_localhost(Socks::V5, "localhost", 80)]
#[tokio::test]
async fn reverse_socks_delivers_every_stream_to_the_app(
    #[case] dialect: Socks,
    #[case] host: &str,
    #[case] port: u16,
) {
    let app = start_app().await;
    let proxy = start_proxy("reverse", "socks", Some(app.addr)).await;
    let stream = socks_connect(dialect, proxy.inbound(), host, port).await;
    let response = http_over(stream, "/via-socks?q=1").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("\r\n\r\nGET /via-socks?q=1 HTTP/1.1\n"),
        "{response}"
    );
    assert_eq!(app.connections(), 1);
}

#[rstest]
#[case::socks4(Socks::V4)]
#[case::socks5(Socks::V5)]
#[tokio::test]
async fn reverse_socks_never_dials_the_requested_target(#[case] dialect: Socks) {
    let app = start_app().await;
    let (decoy, decoy_connections) = start_decoy().await;
    let proxy = start_proxy("reverse", "socks", Some(app.addr)).await;
    let stream = socks_connect(dialect, proxy.inbound(), "127.0.0.1", decoy.port()).await;
    let response = http_over(stream, "/not-the-decoy").await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("GET /not-the-decoy HTTP/1.1"),
        "{response}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        decoy_connections.load(Ordering::SeqCst),
        0,
        "the requested target was dialed"
    );
}

// -------------------------------------------------------------------------------------------------
// dual
// -------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Inbound {
    Http,
    Socks,
    Tcp,
}

#[rstest]
#[case::http("http", Inbound::Http)]
#[case::socks("socks", Inbound::Socks)]
#[case::tcp_http("tcp:http", Inbound::Tcp)]
#[case::tcp_socks("tcp:socks", Inbound::Tcp)]
#[tokio::test]
async fn dual_inbound_speaks_the_configured_protocol(
    #[case] protocol: &str,
    #[case] expected: Inbound,
) {
    let app = start_app().await;
    let proxy = start_proxy("dual", protocol, Some(app.addr)).await;
    let inbound = proxy.inbound();
    assert_ne!(inbound, proxy.outbound(), "dual has both listeners");

    // A plain HTTP request on the inbound port: an HTTP reverse proxy forwards it (adding
    // X-Forwarded-For), a TCP proxy passes the bytes as they are, a SOCKS port refuses it.
    let received = raw::exchange(
        inbound,
        b"GET /dual HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let (head, body) = split_response(&received);
    match expected {
        Inbound::Http | Inbound::Tcp => {
            assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
            assert!(body.starts_with("GET /dual HTTP/1.1\n"), "{body}");
            let forwarded = echoed_header(&body, "x-forwarded-for");
            if expected == Inbound::Http {
                assert_eq!(forwarded, Some("127.0.0.1"), "{body}");
            } else {
                assert_eq!(
                    forwarded, None,
                    "a tcp proxy must not touch the bytes: {body}"
                );
            }
        }
        Inbound::Socks => {
            assert!(head.starts_with("HTTP/1.1 400"), "{head}");
            assert!(body.contains("SOCKS"), "{body}");
        }
    }

    // The protocol's own client works too.
    match expected {
        Inbound::Http => {
            let request = Request::get(url(inbound, "/dual-client"))
                .body(empty())
                .unwrap();
            let (status, _, body) = fetch(request).await;
            assert_eq!(status, StatusCode::OK);
            assert!(body.starts_with("GET /dual-client HTTP/1.1"), "{body}");
        }
        Inbound::Socks => {
            let stream = socks_connect(Socks::V5, inbound, "anything.example", 80).await;
            let response = http_over(stream, "/dual-socks").await;
            assert!(response.contains("GET /dual-socks HTTP/1.1"), "{response}");
        }
        Inbound::Tcp => {
            let mut stream = TcpStream::connect(inbound).await.unwrap();
            let response = {
                stream
                    .write_all(b"GET /dual-tcp HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut out = String::new();
                within("tcp response", STEP, stream.read_to_string(&mut out))
                    .await
                    .unwrap();
                out
            };
            assert!(response.contains("GET /dual-tcp HTTP/1.1"), "{response}");
        }
    }
}

/// An app answering every connection with a chunked body followed by a declared trailer.
async fn start_app_with_trailers() -> SocketAddr {
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
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\nconnection: close\r\n\r\n\
                          5\r\nhello\r\n0\r\nx-checksum: 5d41402a\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    addr
}

/// `Trailer` describes the message, not the connection: a declared trailer reaches a caller that accepts
/// trailers (`TE: trailers`), after the body.
#[tokio::test]
async fn reverse_http_passes_trailers_through() {
    let app = start_app_with_trailers().await;
    let proxy = start_proxy("reverse", "http", Some(app)).await;
    let reply = raw::exchange(
        proxy.inbound(),
        b"GET /t HTTP/1.1\r\nhost: app\r\nte: trailers\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    let reply = String::from_utf8_lossy(&reply).to_lowercase();
    assert!(reply.starts_with("http/1.1 200 ok"), "{reply}");
    let body_end = reply.find("\r\n0\r\n").expect("a chunked body");
    assert!(reply[..body_end].contains("hello"), "{reply}");
    assert!(
        reply[body_end..].contains("x-checksum: 5d41402a"),
        "trailer missing after the last chunk: {reply}"
    );
}

// -------------------------------------------------------------------------------------------------
// reverse http: the HTTP/1 engine, byte by byte
// -------------------------------------------------------------------------------------------------

/// A raw HTTP/1 origin that counts the connections it accepts and answers each request with the bytes
/// [`scripted_answer`] gives for its path (after reading its body by Content-Length or chunked framing).
/// `/quiet-close` closes the connection after its answer without saying so; `/eof` has no length and ends
/// with the connection.
async fn start_scripted_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let Some((path, used)) = next_scripted_request(&mut stream, &mut seen).await
                    else {
                        return;
                    };
                    seen.drain(..used);
                    if stream.write_all(scripted_answer(&path)).await.is_err() {
                        return;
                    }
                    if path == "/quiet-close" || path == "/eof" {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

/// Reads one whole request (head and body) from `stream` into `seen`: its path and its length in `seen`.
async fn next_scripted_request(
    stream: &mut TcpStream,
    seen: &mut Vec<u8>,
) -> Option<(String, usize)> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut fields);
        if let Ok(httparse::Status::Complete(head)) = request.parse(seen) {
            let path = request.path.unwrap_or_default().to_owned();
            let field = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let end = if field("transfer-encoding").is_some() {
                // The test's chunked bodies end with a trailer section, then the empty line.
                seen[head..]
                    .windows(5)
                    .position(|w| w == b"0\r\nX-")
                    .and_then(|last| {
                        let from = head + last;
                        seen[from..]
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map(|end| from + end + 4)
                    })
            } else {
                let length: usize = field("content-length").map_or(0, |v| v.parse().unwrap());
                (seen.len() >= head + length).then_some(head + length)
            };
            if let Some(end) = end {
                return Some((path, end));
            }
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn scripted_answer(path: &str) -> &'static [u8] {
    match path {
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Sum: 7\r\n\r\n",
        "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Head: yes\r\n\r\n",
        "/204" => b"HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n",
        "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
        "/eof" => b"HTTP/1.1 200 OK\r\nX-C: 3\r\n\r\nuntil the end",
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n\r\nhello",
    }
}

/// Reads from `stream` until `expected.len()` bytes came (or the stream ended).
async fn read_exactly_what(stream: &mut TcpStream, expected: &[u8]) -> Vec<u8> {
    let mut got = vec![0u8; expected.len()];
    let mut filled = 0;
    while filled < got.len() {
        match within("the answer", STEP, stream.read(&mut got[filled..])).await {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    got.truncate(filled);
    got
}

/// Pipelined requests (a chunked upload with trailers among them), HEAD, 204 and 304 without bodies, an
/// app that closes its connection between two requests, and a response that ends with the connection:
/// each answer reaches the caller as the app wrote it, but for the hop-by-hop fields (`Keep-Alive` and
/// `Transfer-Encoding` re-stated after the others, `Connection: close` added where the caller's
/// connection ends), on one app connection until the app closed it, and every exchange is recorded.
#[tokio::test]
async fn reverse_http_relays_pipelined_http1_byte_exact_and_records_each_exchange() {
    let (origin, accepted) = start_scripted_origin().await;
    let (proxy, log) =
        support::capture::start_capturing_proxy("reverse", "http", Some(origin), |_| {}).await;
    let mut caller = TcpStream::connect(proxy.inbound()).await.unwrap();
    let first = [
        &b"GET /cl HTTP/1.1\r\nHost: app.test\r\n\r\n"[..],
        b"POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Check\r\n\r\n5\r\nhello\r\n0\r\nX-Check: 1\r\n\r\n",
        b"HEAD /head HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET /204 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET /304 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        b"GET /quiet-close HTTP/1.1\r\nHost: app.test\r\n\r\n",
    ]
    .concat();
    caller.write_all(&first).await.unwrap();
    let cl: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
    let expected_first = [
        cl,
        b"HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Sum: 7\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Head: yes\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n",
        cl,
    ]
    .concat();
    let got = read_exactly_what(&mut caller, &expected_first).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected_first)
    );
    // The app closed its connection after /quiet-close (whether the sidecar has seen that yet or not):
    // the next request goes on a new one.
    caller
        .write_all(b"GET /again HTTP/1.1\r\nHost: app.test\r\n\r\nGET /eof HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let expected_second = [
        cl,
        b"HTTP/1.1 200 OK\r\nX-C: 3\r\nconnection: close\r\n\r\nuntil the end",
    ]
    .concat();
    let mut got = Vec::new();
    within("the close", STEP, caller.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected_second)
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one app connection, and one more after the app closed it"
    );

    let records = log.records(proxy).await;
    let exchanges: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.detail {
            sidecar_proxy::capture::record::Detail::Http(exchange) => Some(exchange),
            _ => None,
        })
        .collect();
    let seen: Vec<(String, String, Option<u16>, bool)> = exchanges
        .iter()
        .map(|e| {
            (
                e.request.method.clone(),
                e.request.url.clone(),
                e.response.as_ref().map(|r| r.status),
                e.response.as_ref().is_some_and(|r| r.body.complete),
            )
        })
        .collect();
    let want = |method: &str, path: &str, status| {
        (
            method.to_owned(),
            format!("http://app.test{path}"),
            Some(status),
            true,
        )
    };
    assert_eq!(
        seen,
        [
            want("GET", "/cl", 200),
            want("POST", "/chunked", 200),
            want("HEAD", "/head", 200),
            want("GET", "/204", 204),
            want("GET", "/304", 304),
            want("GET", "/quiet-close", 200),
            want("GET", "/again", 200),
            want("GET", "/eof", 200),
        ]
    );
    let chunked = exchanges[1];
    assert_eq!(
        chunked.request.trailers,
        [("x-check".to_owned(), "1".to_owned())]
    );
    let response = chunked.response.as_ref().unwrap();
    assert_eq!(response.trailers, [("x-sum".to_owned(), "7".to_owned())]);
    assert_eq!(&response.body.base64[..], b"abcdefg");
    assert!(
        exchanges.iter().all(|e| e.error.is_none()),
        "{exchanges:#?}"
    );
    assert!(records
        .iter()
        .all(|r| r.target == "app.test" && r.transport == "http"));
}

/// A caller's keep-alive connection is served on one app connection, request after request, pipelined
/// or not, counted where the app accepts them.
#[tokio::test]
async fn reverse_http_serves_a_keep_alive_caller_on_one_app_connection() {
    let (origin, accepted) = start_scripted_origin().await;
    let proxy = start_proxy("reverse", "http", Some(origin)).await;
    let mut caller = TcpStream::connect(proxy.inbound()).await.unwrap();
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
    for round in 0..20 {
        let request = format!("GET /n/{round} HTTP/1.1\r\nHost: app\r\n\r\n");
        caller.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_exactly_what(&mut caller, answer).await, answer);
    }
    let pipelined = "GET /p HTTP/1.1\r\nHost: app\r\n\r\n".repeat(10);
    caller.write_all(pipelined.as_bytes()).await.unwrap();
    let all = answer.repeat(10);
    assert_eq!(read_exactly_what(&mut caller, &all).await, all);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "30 requests, one app connection"
    );
}

/// A raw HTTP/1 origin for the app-pool tests: it counts the connections it accepts and those that ended
/// (closed by the sidecar), and answers each request (read to its Content-Length) by its path:
/// - `/close`: `Connection: close`, yet the connection stays open (so only the sidecar's reading of the
///   field keeps it out of the pool);
/// - `/upgrade`: `101`, then requests are read on as before (a pooled upgraded connection would be used);
/// - `/quiet-close`: answered, then closed without saying so;
/// - `/arm`: answered; the next request on that connection is read and the connection closed unanswered,
///   as an app does when its keep-alive timeout fires as a request arrives;
/// - `/eof`: no length, the body ends with the connection;
/// - anything else: `200` with a Content-Length, the connection kept.
struct PoolOrigin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: Arc<AtomicUsize>,
}

impl PoolOrigin {
    async fn start() -> PoolOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (accepting, ending) = (accepted.clone(), ended.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                accepting.fetch_add(1, Ordering::SeqCst);
                let ending = ending.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut armed = false;
                    while let Some((path, used)) =
                        next_scripted_request(&mut stream, &mut seen).await
                    {
                        seen.drain(..used);
                        if armed {
                            break;
                        }
                        let answer: &[u8] = match path.as_str() {
                            "/close" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                            "/upgrade" => b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\n",
                            "/eof" => b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
                            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                        };
                        if stream.write_all(answer).await.is_err()
                            || path == "/quiet-close"
                            || path == "/eof"
                        {
                            break;
                        }
                        armed = path == "/arm";
                    }
                    ending.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        PoolOrigin {
            addr,
            accepted,
            ended,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

/// One request on a new client connection, answered and closed: the whole answer.
async fn on_a_new_connection(proxy: SocketAddr, request: &str) -> String {
    let mut caller = TcpStream::connect(proxy).await.unwrap();
    caller.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    within(
        "the answer and the close",
        STEP,
        caller.read_to_end(&mut got),
    )
    .await
    .unwrap();
    String::from_utf8_lossy(&got).into_owned()
}

/// `GET path` with `Connection: close`, as a client opening a connection per request sends it.
fn get_closing(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
}

/// Lets the sidecar see a client's close and give its app connection to the pool.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A new client connection for each request (`Connection: close`) is served on the one app connection
/// the earlier ones left in the pool; each exchange is still recorded under its own client connection,
/// delivered to the app as before.
#[tokio::test]
async fn reverse_http_serves_new_client_connections_on_one_pooled_app_connection() {
    let origin = PoolOrigin::start().await;
    let (proxy, log) =
        support::capture::start_capturing_proxy("reverse", "http", Some(origin.addr), |_| {}).await;
    for round in 0..10 {
        let answer =
            on_a_new_connection(proxy.inbound(), &get_closing(&format!("/n/{round}"))).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
        settle().await;
    }
    assert_eq!(
        origin.accepted(),
        1,
        "10 client connections, one app connection"
    );

    let records = log.records(proxy).await;
    let mut connections: Vec<u64> = records.iter().map(|r| r.connection).collect();
    connections.dedup();
    assert_eq!(records.len(), 10, "{records:#?}");
    assert_eq!(connections.len(), 10, "one record per client connection");
    let app = origin.addr.to_string();
    assert!(
        records
            .iter()
            .all(|r| r.target == "app.test" && r.delivered_to.as_deref() == Some(app.as_str())),
        "{records:#?}"
    );
}

/// `--app-idle-connections 0`: each client connection has its own app connection, as before the pool.
#[tokio::test]
async fn reverse_http_without_a_pool_opens_an_app_connection_per_client_connection() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy_with("reverse", "http", Some(origin.addr), |options| {
        options.app_idle_connections = 0;
    })
    .await;
    for _ in 0..3 {
        let answer = on_a_new_connection(proxy.inbound(), &get_closing("/n")).await;
        assert!(answer.ends_with("hello"), "{answer}");
        settle().await;
    }
    assert_eq!(origin.accepted(), 3);
    assert_eq!(origin.ended(), 3, "each closed with its client connection");
}

/// An idle pooled connection the app closed is not used; and one it closes as a request arrives (read,
/// unanswered) has a GET sent again on a new connection, while a POST, which the app may have acted on,
/// gets a 502.
#[tokio::test]
async fn reverse_http_replaces_a_pooled_connection_the_app_closed() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy("reverse", "http", Some(origin.addr)).await;
    let inbound = proxy.inbound();

    let answer = on_a_new_connection(inbound, &get_closing("/quiet-close")).await;
    assert!(answer.ends_with("hello"), "{answer}");
    settle().await;
    let answer = on_a_new_connection(inbound, &get_closing("/after-close")).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(origin.accepted(), 2);

    let answer = on_a_new_connection(inbound, &get_closing("/arm")).await;
    assert!(answer.ends_with("hello"), "{answer}");
    settle().await;
    let answer = on_a_new_connection(inbound, &get_closing("/sent-twice")).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(
        origin.accepted(),
        3,
        "the GET went again on a new connection"
    );

    let answer = on_a_new_connection(inbound, &get_closing("/arm")).await;
    assert!(answer.ends_with("hello"), "{answer}");
    settle().await;
    let post =
        "POST /once HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let answer = on_a_new_connection(inbound, post).await;
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
    assert_eq!(origin.accepted(), 3, "the POST was not sent again");
}

/// A connection whose answer said `Connection: close`, whose body ended with the connection, or which
/// carried an HTTP/1.0 request (the app closes those) is not kept for another client.
#[tokio::test]
async fn reverse_http_pools_no_connection_the_app_is_to_close() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy("reverse", "http", Some(origin.addr)).await;
    let inbound = proxy.inbound();
    // Each round's first request goes on the connection the last round's `/next` left (the first round's
    // on a new one); its `/next` needs a new one.
    let mut expected = 1;
    for (request, ends_with) in [
        (get_closing("/close"), "ok"),
        (get_closing("/eof"), "until the end"),
        (
            "GET /http10 HTTP/1.0\r\nHost: app.test\r\n\r\n".to_owned(),
            "hello",
        ),
    ] {
        let answer = on_a_new_connection(inbound, &request).await;
        assert!(answer.ends_with(ends_with), "{answer}");
        settle().await;
        let answer = on_a_new_connection(inbound, &get_closing("/next")).await;
        assert!(answer.ends_with("hello"), "{answer}");
        settle().await;
        expected += 1;
        assert_eq!(
            origin.accepted(),
            expected,
            "{request:?} was answered on a new connection, not the one it left"
        );
    }
}

/// A connection that switched protocols (`101`) is the client's for good: never pooled.
#[tokio::test]
async fn reverse_http_never_pools_an_upgraded_connection() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy("reverse", "http", Some(origin.addr)).await;
    let mut caller = TcpStream::connect(proxy.inbound()).await.unwrap();
    caller
        .write_all(b"GET /upgrade HTTP/1.1\r\nHost: app.test\r\nConnection: upgrade\r\nUpgrade: test\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 12];
    within("the 101", STEP, caller.read_exact(&mut head))
        .await
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    drop(caller);
    settle().await;
    let answer = on_a_new_connection(proxy.inbound(), &get_closing("/n")).await;
    assert!(answer.ends_with("hello"), "{answer}");
    assert_eq!(origin.accepted(), 2);
}

/// The pool keeps at most `--app-idle-connections`: four client connections open at once leave two
/// idle app connections (the others are closed), and the next four reuse those two.
#[tokio::test]
async fn reverse_http_keeps_at_most_the_idle_limit() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy_with("reverse", "http", Some(origin.addr), |options| {
        options.app_idle_connections = 2;
    })
    .await;
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    for round in 0..2 {
        drop(callers_at_once(proxy.inbound(), 4, "/n", answer).await);
        settle().await;
        if round == 0 {
            assert_eq!(origin.accepted(), 4);
            assert_eq!(origin.ended(), 2, "two kept idle, two closed");
        }
    }
    assert_eq!(origin.accepted(), 6, "two of the second four reused");
}

/// `count` keep-alive callers open at once, each answered `answer` to one GET of `path`, and held (so each
/// holds its own app connection) until the caller drops them.
async fn callers_at_once(
    inbound: std::net::SocketAddr,
    count: usize,
    path: &str,
    answer: &[u8],
) -> Vec<TcpStream> {
    let mut callers = Vec::new();
    for _ in 0..count {
        let mut caller = TcpStream::connect(inbound).await.unwrap();
        caller
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_exactly_what(&mut caller, answer).await, answer);
        callers.push(caller);
    }
    callers
}

/// An idle app connection is kept for `--app-idle-timeout` at most: reused within it, closed after it
/// even when no request comes.
#[tokio::test]
async fn reverse_http_closes_app_connections_idle_past_the_timeout() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy_with("reverse", "http", Some(origin.addr), |options| {
        options.app_idle_timeout = Duration::from_millis(400);
    })
    .await;
    for _ in 0..2 {
        let answer = on_a_new_connection(proxy.inbound(), &get_closing("/n")).await;
        assert!(answer.ends_with("hello"), "{answer}");
        settle().await;
    }
    assert_eq!(origin.accepted(), 1, "reused within the timeout");
    assert_eq!(origin.ended(), 0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        origin.ended(),
        1,
        "closed past the timeout, with no request"
    );
    let answer = on_a_new_connection(proxy.inbound(), &get_closing("/n")).await;
    assert!(answer.ends_with("hello"), "{answer}");
    assert_eq!(origin.accepted(), 2);
}

/// A request sent again goes on a new connection, not on another pooled one: the app closes idle
/// connections of the same age together, so the next pooled one may be closing too.
#[tokio::test]
async fn reverse_http_sends_a_request_again_on_a_new_connection() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy("reverse", "http", Some(origin.addr)).await;
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    // Two app connections at once, each to close the next request it reads, both left in the pool.
    drop(callers_at_once(proxy.inbound(), 2, "/arm", answer).await);
    settle().await;
    assert_eq!(origin.accepted(), 2);
    let got = on_a_new_connection(proxy.inbound(), &get_closing("/n")).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert_eq!(origin.accepted(), 3, "sent again on a new connection");
}

/// A keep-alive client's own app connection is held to `--app-idle-timeout` too: after a longer pause
/// its next request goes on a new one, not on a connection the app may be closing.
#[tokio::test]
async fn reverse_http_replaces_a_keep_alive_clients_app_connection_idle_past_the_timeout() {
    let origin = PoolOrigin::start().await;
    let proxy = start_proxy_with("reverse", "http", Some(origin.addr), |options| {
        options.app_idle_timeout = Duration::from_millis(300);
    })
    .await;
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let mut caller = TcpStream::connect(proxy.inbound()).await.unwrap();
    for pause in [0, 100, 600] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        caller
            .write_all(b"GET /n HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_exactly_what(&mut caller, answer).await, answer);
    }
    assert_eq!(
        origin.accepted(),
        2,
        "reused after 100 ms, replaced after 600 ms"
    );
}
