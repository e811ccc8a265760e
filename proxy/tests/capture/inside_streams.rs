//! HTTP/2 with prior knowledge and TLS inside streams: one record per multiplexed exchange, the
//! ClientHello's SNI on the stream record, also when the client's first bytes arrive in pieces.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rstest::rstest;
use sidecar_proxy::capture::record::{HttpExchange, HttpRequest, HttpResponse, StreamSummary};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::support::start_app;
use crate::{
    assert_http_record, assert_unique_ids, by_url, check_envelope, open_carrier, open_stream,
    send_and_read_all, stream_detail, whole, Carrier, StreamVia, DEADLINE,
};

/// How long a split client waits between its first piece and the rest: far more than a read takes, far
/// less than the detection timeout (1 s).
const SPLIT_PAUSE: Duration = Duration::from_millis(200);

type H2Body = UnsyncBoxBody<Bytes, Infallible>;

fn full(bytes: &'static [u8]) -> H2Body {
    Full::new(Bytes::from_static(bytes)).boxed_unsync()
}

/// A request body the test sends chunk by chunk: it stays open until the sender is dropped.
fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, H2Body) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok(Frame::data(chunk)), rx))
    });
    (tx, StreamBody::new(chunks).boxed_unsync())
}

/// Header pairs as a record writes them: names as hyper gives them (lower case), values as text.
fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// A client stream whose first `split` bytes go out alone, then nothing more for [`SPLIT_PAUSE`]: a
/// client whose opening arrives at the sidecar in two pieces.
struct SplitWrites<S> {
    inner: S,
    split: usize,
    written: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> SplitWrites<S> {
    fn new(inner: S, split: usize) -> Self {
        SplitWrites {
            inner,
            split,
            written: 0,
            pause: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SplitWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SplitWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(pause) = &mut this.pause {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let limit = if this.written < this.split {
            buf.len().min(this.split - this.written)
        } else {
            buf.len()
        };
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..limit]))?;
        let before = this.written;
        this.written += n;
        if before < this.split && this.written >= this.split {
            this.pause = Some(Box::pin(tokio::time::sleep(SPLIT_PAUSE)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[rstest]
#[case::connect_tunnel(Carrier::Connect)]
#[case::socks5(Carrier::Socks5)]
#[case::reverse_tcp(Carrier::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_inside_a_stream_gets_one_record_per_multiplexed_exchange(
    #[case] carrier: Carrier,
) {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log, stream, client, route) = open_carrier(carrier, app.addr).await;
    let authority = format!("localhost:{}", app.addr.port());
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, H2Body>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);

    // The POST opens its stream and keeps its body open...
    let (post_body, body) = channel_body();
    let post = http::Request::post(format!("http://{authority}/echo"))
        .header("x-request-id", "h2-post")
        .header("content-type", "application/octet-stream")
        .header("content-length", "16")
        .body(body)
        .unwrap();
    post_body.send(Bytes::from_static(b"multiplexed ")).unwrap();
    let post_response = tokio::time::timeout(DEADLINE, sender.send_request(post))
        .await
        .expect("the echo answers before the request body ends")
        .unwrap();

    // ...while a GET goes out and comes back whole on the same connection.
    let get = http::Request::get(format!("http://{authority}/h2/inside?q=1"))
        .header("x-request-id", "h2-get")
        .header("accept", "text/plain")
        .body(full(b""))
        .unwrap();
    let get_response = tokio::time::timeout(DEADLINE, sender.send_request(get))
        .await
        .expect("the GET is answered while the POST is open")
        .unwrap();
    let (get_parts, get_body) = get_response.into_parts();
    let get_body = get_body.collect().await.unwrap().to_bytes();
    assert_eq!(get_parts.status, 200);
    assert_eq!(get_parts.version, http::Version::HTTP_2);
    assert_eq!(
        get_body, "GET /h2/inside?q=1 HTTP/2.0\nx-request-id: h2-get\naccept: text/plain\n",
        "the app got the request over HTTP/2, as sent"
    );

    post_body.send(Bytes::from_static(b"body")).unwrap();
    drop(post_body);
    let (post_parts, echoed) = post_response.into_parts();
    let echoed = tokio::time::timeout(DEADLINE, echoed.collect())
        .await
        .expect("the echo ends")
        .unwrap()
        .to_bytes();
    assert_eq!(post_parts.status, 200);
    assert_eq!(post_parts.version, http::Version::HTTP_2);
    assert_eq!(echoed, "multiplexed body");
    drop(sender);
    tokio::time::timeout(DEADLINE, connection)
        .await
        .expect("the client connection closes once its sender is gone")
        .unwrap()
        .unwrap();

    let records = log.records(proxy).await;
    assert_eq!(
        records.len(),
        2,
        "one http record per exchange, no stream record: {records:#?}"
    );
    assert_unique_ids(&records);
    assert_eq!(
        app.connections(),
        1,
        "both exchanges over one upstream connection"
    );
    let get_expected = HttpExchange {
        request: HttpRequest {
            method: "GET".into(),
            url: format!("http://{authority}/h2/inside?q=1"),
            version: "HTTP/2.0".into(),
            headers: vec![
                ("x-request-id".into(), "h2-get".into()),
                ("accept".into(), "text/plain".into()),
            ],
            body: whole(b""),
            trailers: Vec::new(),
        },
        response: Some(HttpResponse {
            status: 200,
            version: "HTTP/2.0".into(),
            headers: header_pairs(&get_parts.headers),
            body: whole(&get_body),
            trailers: Vec::new(),
        }),
        error: None,
        upgraded: None,
        mock: None,
    };
    let post_expected = HttpExchange {
        request: HttpRequest {
            method: "POST".into(),
            url: format!("http://{authority}/echo"),
            version: "HTTP/2.0".into(),
            headers: vec![
                ("x-request-id".into(), "h2-post".into()),
                ("content-type".into(), "application/octet-stream".into()),
                ("content-length".into(), "16".into()),
            ],
            body: whole(b"multiplexed body"),
            trailers: Vec::new(),
        },
        response: Some(HttpResponse {
            status: 200,
            version: "HTTP/2.0".into(),
            headers: header_pairs(&post_parts.headers),
            body: whole(&echoed),
            trailers: Vec::new(),
        }),
        error: None,
        upgraded: None,
        mock: None,
    };
    let get_record = by_url(&records, "/h2/inside?q=1");
    let post_record = by_url(&records, "/echo");
    assert_http_record(get_record, &route, client, began, get_expected);
    assert_http_record(post_record, &route, client, began, post_expected);
    assert_eq!(
        get_record.connection, post_record.connection,
        "one client connection"
    );
}

#[rstest]
#[case::connect_tunnel(Carrier::Connect)]
#[case::socks5(Carrier::Socks5)]
#[case::reverse_tcp(Carrier::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_preface_split_across_writes_is_still_http2(#[case] carrier: Carrier) {
    let began = SystemTime::now();
    let app = start_app().await;
    let (proxy, log, stream, client, route) = open_carrier(carrier, app.addr).await;
    let authority = format!("localhost:{}", app.addr.port());
    // `PRI * HTTP/2.0\r\n`, a pause, then `\r\nSM\r\n\r\n` and the client's first frames.
    let split = SplitWrites::new(stream, 16);
    let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, H2Body>(
        TokioExecutor::new(),
        TokioIo::new(split),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let get = http::Request::get(format!("http://{authority}/h2/split"))
        .header("x-request-id", "h2-split")
        .body(full(b""))
        .unwrap();
    let response = tokio::time::timeout(DEADLINE, sender.send_request(get))
        .await
        .expect("the request is answered")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    assert_eq!(parts.status, 200);
    assert_eq!(
        body, "GET /h2/split HTTP/2.0\nx-request-id: h2-split\n",
        "the app got the request over HTTP/2"
    );
    drop(sender);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let expected = HttpExchange {
        request: HttpRequest {
            method: "GET".into(),
            url: format!("http://{authority}/h2/split"),
            version: "HTTP/2.0".into(),
            headers: vec![("x-request-id".into(), "h2-split".into())],
            body: whole(b""),
            trailers: Vec::new(),
        },
        response: Some(HttpResponse {
            status: 200,
            version: "HTTP/2.0".into(),
            headers: header_pairs(&parts.headers),
            body: whole(&body),
            trailers: Vec::new(),
        }),
        error: None,
        upgraded: None,
        mock: None,
    };
    assert_http_record(&records[0], &route, client, began, expected);
}

/// A minimal but well-formed TLS ClientHello record (TLS 1.2 framing, offering 1.3), with a `server_name`
/// extension, last, when `sni` is given.
fn client_hello(sni: Option<&str>) -> Vec<u8> {
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1.
    extensions.extend(extension(0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]));
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256.
    extensions.extend(extension(0x000d, &[0x00, 0x04, 0x04, 0x03, 0x08, 0x04]));
    // supported_versions: TLS 1.3, TLS 1.2.
    extensions.extend(extension(0x002b, &[0x04, 0x03, 0x04, 0x03, 0x03]));
    if let Some(name) = sni {
        let mut entry = vec![0x00]; // host_name
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        extensions.extend(extension(0x0000, &list));
    }
    let mut hello = vec![0x03, 0x03]; // legacy_version
    hello.extend((0..32u8).map(|i| i.wrapping_mul(37))); // random
    hello.push(32); // legacy_session_id
    hello.extend_from_slice(&[0xab; 32]);
    hello.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0xc0, 0x2f]); // two cipher suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello.extend(extensions);
    let mut handshake = vec![0x01]; // client_hello
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake record
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Where a ClientHello is cut between the client's two writes.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// One write.
    Whole,
    /// Inside the record header: its length is not there yet.
    InHeader,
    /// Inside the server name, the last bytes of the record.
    InName,
}

#[rstest]
#[case::sni_through_connect(StreamVia::Connect, Some("api.example.test"), Cut::Whole)]
#[case::sni_through_socks5(StreamVia::Socks5, Some("api.example.test"), Cut::Whole)]
#[case::sni_through_reverse_tcp(StreamVia::ReverseTcp, Some("api.example.test"), Cut::Whole)]
#[case::no_sni_through_connect(StreamVia::Connect, None, Cut::Whole)]
#[case::no_sni_through_socks5(StreamVia::Socks5, None, Cut::Whole)]
#[case::no_sni_through_reverse_tcp(StreamVia::ReverseTcp, None, Cut::Whole)]
#[case::split_in_header_through_connect(
    StreamVia::Connect,
    Some("api.example.test"),
    Cut::InHeader
)]
#[case::split_in_name_through_connect(StreamVia::Connect, Some("api.example.test"), Cut::InName)]
#[case::split_in_name_through_socks5(StreamVia::Socks5, Some("api.example.test"), Cut::InName)]
#[case::split_in_header_through_reverse_tcp(
    StreamVia::ReverseTcp,
    Some("api.example.test"),
    Cut::InHeader
)]
#[case::split_in_name_through_reverse_tcp(
    StreamVia::ReverseTcp,
    Some("api.example.test"),
    Cut::InName
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_hello_is_relayed_untouched_and_its_sni_recorded(
    #[case] via: StreamVia,
    #[case] sni: Option<&str>,
    #[case] cut: Cut,
) {
    let began = SystemTime::now();
    let echo = crate::support::start_tcp_echo().await;
    let (proxy, log, mut stream, client, route) = open_stream(via, echo, |_| {}).await;
    let hello = client_hello(sni);
    let at = match cut {
        Cut::Whole => hello.len(),
        Cut::InHeader => 3,
        Cut::InName => hello.len() - 8,
    };
    stream.write_all(&hello[..at]).await.unwrap();
    if at < hello.len() {
        tokio::time::sleep(SPLIT_PAUSE).await;
    }
    let echoed = send_and_read_all(&mut stream, &hello[at..]).await;
    assert_eq!(echoed, hello, "the echo returns the hello byte for byte");
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    assert_eq!(
        stream_detail(&records[0]),
        &StreamSummary {
            protocol_seen: "tls".into(),
            bytes_client_to_target: hello.len() as u64,
            bytes_target_to_client: hello.len() as u64,
            sni: sni.map(str::to_owned),
            end: "closed".into(),
            error: None,
            payload: None,
        }
    );
}
