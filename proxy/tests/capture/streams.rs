//! Stream records: opaque streams with exact byte counts, a server that speaks first, a refused target,
//! payload kept only when asked, a text protocol that merely starts with `GET`, and a stream cut off at
//! shutdown.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rstest::rstest;
use sidecar_proxy::capture::record::{Body, Detail, Record, StreamPayload, StreamSummary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::{Socks4Stream, Socks5Stream};

use crate::support::capture::{
    free_port, parse_records, start_banner_server, start_capturing_proxy, start_reply_after_eof,
    RawHttp, Sidecar, TempDir,
};
use crate::{
    check_envelope, open_stream, send_and_read_all, stream_detail, whole, Route, StreamVia,
    DEADLINE,
};

/// A TLS ClientHello's first bytes, then filler: what a TLS client sends through a tunnel.
fn tls_like(len: usize) -> Vec<u8> {
    let mut bytes = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    bytes.extend((0..len - bytes.len()).map(|i| (i * 7 % 251) as u8));
    bytes
}

fn binary(len: usize) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x01, 0xff, 0xfe];
    bytes.extend((0..len - bytes.len()).map(|i| (i * 13 % 256) as u8));
    bytes
}

#[rstest]
#[case::tls_through_connect(StreamVia::Connect, true, "tls")]
#[case::binary_through_connect(StreamVia::Connect, false, "opaque")]
#[case::tls_through_socks4(StreamVia::Socks4, true, "tls")]
#[case::binary_through_socks5(StreamVia::Socks5, false, "opaque")]
#[case::tls_through_socks5(StreamVia::Socks5, true, "tls")]
#[case::tls_through_reverse_tcp(StreamVia::ReverseTcp, true, "tls")]
#[case::binary_through_reverse_tcp(StreamVia::ReverseTcp, false, "opaque")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_stream_gets_one_record_with_exact_byte_counts(
    #[case] via: StreamVia,
    #[case] tls: bool,
    #[case] seen: &str,
) {
    let began = SystemTime::now();
    let reply = binary(1234);
    let upstream = start_reply_after_eof(reply.clone()).await;
    let (proxy, log, mut stream, client, route) = open_stream(via, upstream, |_| {}).await;
    let payload = if tls { tls_like(5000) } else { binary(5000) };
    let answer = send_and_read_all(&mut stream, &payload).await;
    assert_eq!(answer, reply);
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    assert_eq!(
        stream_detail(&records[0]),
        &StreamSummary {
            protocol_seen: seen.into(),
            bytes_client_to_target: 5000,
            bytes_target_to_client: 1234,
            sni: None,
            end: "closed".into(),
            error: None,
            payload: None,
        }
    );
}

#[rstest]
#[case::client_answers(b"QUIT\r\n".as_slice(), "opaque")]
#[case::client_silent(b"".as_slice(), "none")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_speaks_first_is_one_stream_record(
    #[case] client_says: &[u8],
    #[case] seen: &str,
) {
    const BANNER: &[u8] = b"220 mail.test ESMTP ready\r\n";
    let began = SystemTime::now();
    let upstream = start_banner_server(BANNER).await;
    let (proxy, log, mut stream, client, route) =
        open_stream(StreamVia::ReverseTcp, upstream, |_| {}).await;
    let mut banner = vec![0; BANNER.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut banner))
        .await
        .expect("the banner arrives")
        .unwrap();
    assert_eq!(banner, BANNER);
    let rest = send_and_read_all(&mut stream, client_says).await;
    assert!(rest.is_empty());
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    assert_eq!(
        stream_detail(&records[0]),
        &StreamSummary {
            protocol_seen: seen.into(),
            bytes_client_to_target: client_says.len() as u64,
            bytes_target_to_client: BANNER.len() as u64,
            sni: None,
            end: "closed".into(),
            error: None,
            payload: None,
        }
    );
}

#[rstest]
#[case::connect(StreamVia::Connect)]
#[case::socks5(StreamVia::Socks5)]
#[case::socks4(StreamVia::Socks4)]
#[case::reverse_tcp(StreamVia::ReverseTcp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_is_recorded_as_refused(#[case] via: StreamVia) {
    let began = SystemTime::now();
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let named = format!("localhost:{}", closed.port());
    let (proxy, log) = match via {
        StreamVia::Connect => start_capturing_proxy("forward", "http", None, |_| {}).await,
        StreamVia::Socks4 | StreamVia::Socks5 => {
            start_capturing_proxy("forward", "socks", None, |_| {}).await
        }
        StreamVia::ReverseTcp => {
            start_capturing_proxy("reverse", "tcp", Some(closed), |_| {}).await
        }
    };
    let (client, route) = match via {
        StreamVia::Connect => {
            let stream = TcpStream::connect(proxy.outbound()).await.unwrap();
            let client = stream.local_addr().unwrap();
            let mut conn = RawHttp::new(stream);
            let answer = conn
                .exchange(format!("CONNECT {named} HTTP/1.1\r\nhost: {named}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            assert_eq!(answer.status, 502);
            (
                client,
                Route {
                    direction: "outbound",
                    proxy_type: "forward",
                    protocol: "http",
                    transport: "connect",
                    target: named.clone(),
                    delivered_to: None,
                },
            )
        }
        StreamVia::Socks5 | StreamVia::Socks4 => {
            let socket = TcpStream::connect(proxy.outbound()).await.unwrap();
            let client = socket.local_addr().unwrap();
            let (result, transport, target) = if matches!(via, StreamVia::Socks5) {
                (
                    Socks5Stream::connect_with_socket(socket, ("localhost", closed.port()))
                        .await
                        .map(drop),
                    "socks5",
                    named.clone(),
                )
            } else {
                (
                    Socks4Stream::connect_with_socket(socket, closed)
                        .await
                        .map(drop),
                    "socks4",
                    closed.to_string(),
                )
            };
            assert!(result.is_err(), "the SOCKS CONNECT is refused");
            (
                client,
                Route {
                    direction: "outbound",
                    proxy_type: "forward",
                    protocol: "socks",
                    transport,
                    target,
                    delivered_to: None,
                },
            )
        }
        StreamVia::ReverseTcp => {
            let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
            let client = stream.local_addr().unwrap();
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut rest)).await;
            assert!(rest.is_empty());
            (
                client,
                Route {
                    direction: "inbound",
                    proxy_type: "reverse",
                    protocol: "tcp",
                    transport: "tcp",
                    target: closed.to_string(),
                    delivered_to: None,
                },
            )
        }
    };

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    check_envelope(&records[0], &route, client, began);
    let summary = stream_detail(&records[0]);
    let error = summary.error.clone().expect("a refused stream says why");
    assert!(
        error.contains(&route.target),
        "the error names the target {}: {error}",
        route.target
    );
    assert_eq!(
        summary,
        &StreamSummary {
            protocol_seen: "none".into(),
            bytes_client_to_target: 0,
            bytes_target_to_client: 0,
            sni: None,
            end: "refused".into(),
            error: Some(error),
            payload: None,
        }
    );
}

#[rstest]
#[case::off_by_default(None, None)]
#[case::on(Some(true), None)]
#[case::on_truncated_at_the_body_limit(Some(true), Some(100))]
#[case::off_explicitly(Some(false), None)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_payload_is_kept_only_when_asked(
    #[case] payload_on: Option<bool>,
    #[case] body_limit: Option<usize>,
) {
    let reply = binary(700);
    let upstream = start_reply_after_eof(reply.clone()).await;
    let (proxy, log, mut stream, _client, _route) =
        open_stream(StreamVia::Connect, upstream, |settings| {
            if let Some(on) = payload_on {
                settings.stream_payload = on;
            }
            if let Some(limit) = body_limit {
                settings.body_limit = limit;
            }
        })
        .await;
    let sent = tls_like(3000);
    let answer = send_and_read_all(&mut stream, &sent).await;
    assert_eq!(answer, reply, "the client gets everything whatever is kept");
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let summary = stream_detail(&records[0]);
    assert_eq!(
        (
            summary.bytes_client_to_target,
            summary.bytes_target_to_client
        ),
        (3000, 700)
    );
    let expected = match (payload_on, body_limit) {
        (Some(true), None) => Some(StreamPayload {
            client_to_target: whole(&sent),
            target_to_client: whole(&reply),
        }),
        (Some(true), Some(limit)) => Some(StreamPayload {
            client_to_target: Body {
                size: 3000,
                truncated: true,
                base64: Bytes::copy_from_slice(&sent[..limit]),
                complete: true,
            },
            target_to_client: Body {
                size: 700,
                truncated: true,
                base64: Bytes::copy_from_slice(&reply[..limit]),
                complete: true,
            },
        }),
        _ => None,
    };
    assert_eq!(summary.payload, expected);
}

/// Text protocols that open with an HTTP-looking word (a Redis inline `GET key`) are not HTTP: without a
/// whole `METHOD target HTTP/1.x` request line the stream is relayed untouched and recorded as one stream.
#[tokio::test]
async fn a_text_protocol_that_starts_with_get_is_relayed_as_bytes() {
    let echo = crate::support::start_tcp_echo().await;
    let (proxy, log) = start_capturing_proxy("reverse", "tcp", Some(echo), |_| {}).await;
    let mut stream = TcpStream::connect(proxy.inbound()).await.unwrap();
    stream.write_all(b"GET key\r\n").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut echoed))
        .await
        .expect("the echo ends")
        .unwrap();
    assert_eq!(echoed, b"GET key\r\n");
    drop(stream);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let Detail::Stream(stream_record) = &records[0].detail else {
        panic!("expected a stream record: {:?}", records[0]);
    };
    assert_eq!(stream_record.bytes_client_to_target, 9);
    assert_eq!(stream_record.bytes_target_to_client, 9);
    assert_eq!(records[0].transport, "tcp");
}

/// A stream still open when the grace period ends is cut off, and still recorded: `end: reset`, with the
/// bytes that got through each way.
#[tokio::test]
async fn a_stream_cut_off_at_shutdown_is_recorded() {
    let echo = crate::support::start_tcp_echo().await;
    let dir = TempDir::new("cut-off");
    let capture_path = dir.0.join("records.jsonl");
    let capture_arg = capture_path.to_str().unwrap().to_owned();
    let mut sidecar = Sidecar::reverse(
        "tcp",
        echo,
        &["--capture", &capture_arg, "--shutdown-grace", "1s"],
        &dir.0,
    )
    .await;
    let mut stream = TcpStream::connect(sidecar.inbound).await.unwrap();
    stream.write_all(b"\x00\x01binary").await.unwrap();
    let mut echoed = [0u8; 8];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut echoed))
        .await
        .expect("the echo arrives")
        .unwrap();
    assert_eq!(&echoed, b"\x00\x01binary");

    sidecar.signal("TERM");
    let status = sidecar.exit().await;
    assert_eq!(status.code(), Some(0), "{}", sidecar.stderr());
    drop(stream);

    // The harness's own readiness probe (connect, then close) is a stream record too: skip it.
    let records: Vec<Record> = parse_records(&std::fs::read_to_string(&capture_path).unwrap())
        .into_iter()
        .filter(|r| !matches!(&r.detail, Detail::Stream(s) if s.protocol_seen == "none" && s.end == "closed"))
        .collect();
    assert_eq!(records.len(), 1, "{records:#?}");
    let Detail::Stream(summary) = &records[0].detail else {
        panic!("expected a stream record: {:?}", records[0]);
    };
    assert_eq!(summary.end, "reset");
    assert!(
        summary.error.as_deref().unwrap_or("").contains("cut off"),
        "{summary:?}"
    );
    assert_eq!(summary.bytes_client_to_target, 8);
    assert_eq!(summary.bytes_target_to_client, 8);
    assert_eq!(summary.protocol_seen, "opaque");
}
