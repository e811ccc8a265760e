//! Body truncation: bodies are cut in the record, never on the wire.

use bytes::Bytes;
use rstest::rstest;
use sidecar_proxy::capture::record::Body;
use tokio::net::TcpStream;

use crate::support::capture::{start_capturing_proxy, RawHttp};
use crate::support::start_app;
use crate::{by_url, http_detail, whole, Sent};

#[rstest]
#[case::reverse_http("reverse", "http")]
#[case::inside_reverse_tcp("reverse", "tcp")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_truncated_in_the_record_never_on_the_wire(
    #[case] proxy_type: &str,
    #[case] protocol: &str,
) {
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy(proxy_type, protocol, Some(app.addr), |settings| {
        settings.body_limit = 16;
    })
    .await;
    let mut conn = RawHttp::new(TcpStream::connect(proxy.inbound()).await.unwrap());
    let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let post = Sent::new("POST", "/echo", &[("Host", "app.test")]).with_body(&body);
    let got = conn.exchange(&post.bytes()).await.unwrap();
    assert_eq!(got.body, body, "the client got the whole echoed body");
    let big = Sent::new("GET", "/bytes/100000", &[("Host", "app.test")]);
    let got_big = conn.exchange(&big.bytes()).await.unwrap();
    assert_eq!(
        got_big.body.len(),
        100_000,
        "the client got the whole download"
    );
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let truncated = |bytes: &[u8]| Body {
        size: bytes.len() as u64,
        truncated: true,
        base64: Bytes::copy_from_slice(&bytes[..16]),
        complete: true,
    };
    let echo = http_detail(by_url(&records, "/echo"));
    assert_eq!(echo.request.body, truncated(&body));
    assert_eq!(echo.response.as_ref().unwrap().body, truncated(&got.body));
    let download = http_detail(by_url(&records, "/bytes/100000"));
    assert_eq!(download.request.body, whole(b""));
    assert_eq!(
        download.response.as_ref().unwrap().body,
        truncated(&got_big.body)
    );
}
