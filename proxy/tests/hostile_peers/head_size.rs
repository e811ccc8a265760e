//! An oversized request head is answered 431 and the connection closed, by hyper at the limit the sidecar
//! sets (`--max-request-head`, 64 KiB by default); a head just within the limit is served. Too many header
//! fields (more than hyper's 100) is the same answer. HTTP that the sidecar serves inside a stream (a
//! CONNECT tunnel here; SOCKS, tcp and transparent streams take the same path) has the same limit.

use rstest::rstest;
use sidecar_proxy::server::Services;
use tokio::net::TcpStream;

use sidecar_proxy::capture::record::Detail;

use crate::support::capture::{connect_tunnel, start_capturing_proxy_serving, RawHttp};
use crate::support::start_app;
use crate::{within, HttpFront, HttpProxy};

/// A small limit, so the heads stay small.
const LIMIT: usize = 4 * 1024;

async fn start(proxy: HttpProxy, app: &crate::support::App) -> HttpFront {
    proxy
        .start(app.addr, Services::default(), |o| {
            o.max_request_head = LIMIT
        })
        .await
}

/// A request head of exactly `len` bytes (request line, headers, final empty line).
fn head_of_len(target_prefix: &str, len: usize) -> Vec<u8> {
    let start = format!("GET {target_prefix}/head HTTP/1.1\r\nHost: a\r\nX-Pad: ");
    let end = "\r\n\r\n";
    let pad = len - start.len() - end.len();
    format!("{start}{}{end}", "p".repeat(pad)).into_bytes()
}

#[rstest]
#[tokio::test]
async fn an_oversized_head_is_431_and_one_within_the_limit_is_served(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    let app = start_app().await;
    let front = start(proxy, &app).await;
    let (addr, prefix) = (front.addr, &front.target_prefix);

    let mut within_limit = RawHttp::new(TcpStream::connect(addr).await.unwrap());
    let answer = within(
        "an answer",
        within_limit.exchange(&head_of_len(prefix, LIMIT)),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");

    for len in [LIMIT + 1, 16 * LIMIT] {
        let mut oversized = RawHttp::new(TcpStream::connect(addr).await.unwrap());
        let answer = within("an answer", oversized.exchange(&head_of_len(prefix, len)))
            .await
            .unwrap();
        assert_eq!(answer.status, 431, "{len} bytes: {answer:?}");
        let after = within("the close", oversized.read_response()).await;
        assert!(after.is_err(), "the connection stays open after a 431");
    }
    assert_eq!(app.connections(), 1, "an oversized head reached the app");
}

#[rstest]
#[tokio::test]
async fn too_many_header_fields_is_431(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    let app = start_app().await;
    let front = start(proxy, &app).await;
    let (addr, prefix) = (front.addr, &front.target_prefix);
    let mut head = format!("GET {prefix}/many HTTP/1.1\r\nHost: a\r\n");
    for i in 0..120 {
        head.push_str(&format!("x-{i}: 1\r\n"));
    }
    head.push_str("\r\n");
    let mut client = RawHttp::new(TcpStream::connect(addr).await.unwrap());
    let answer = within("an answer", client.exchange(head.as_bytes()))
        .await
        .unwrap();
    assert_eq!(answer.status, 431, "{answer:?}");
    assert_eq!(app.connections(), 0);
}

/// Inside a CONNECT tunnel, with capture on, the sidecar serves the HTTP it finds: a head within the limit
/// reaches the app and is recorded, a larger one is answered 431 there and then, and neither forwarded nor
/// recorded.
#[tokio::test]
async fn http_inside_a_tunnel_has_the_same_head_limit() {
    let app = start_app().await;
    let (proxy, log) = start_capturing_proxy_serving(
        "forward",
        "http",
        None,
        |_| {},
        |o| o.max_request_head = LIMIT,
    )
    .await;
    let target = app.addr.to_string();

    let mut within_limit = RawHttp::new(connect_tunnel(proxy.outbound(), &target).await);
    let answer = within("an answer", within_limit.exchange(&head_of_len("", LIMIT)))
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");

    let mut oversized = RawHttp::new(connect_tunnel(proxy.outbound(), &target).await);
    let answer = within(
        "an answer",
        oversized.exchange(&head_of_len("", 16 * LIMIT)),
    )
    .await
    .unwrap();
    // The status alone: the app echoes what it got, and a 64 KiB echo would bury the message.
    assert_eq!(
        answer.status, 431,
        "a head of 16 times the limit inside the tunnel"
    );
    let after = within("the close", oversized.read_response()).await;
    assert!(after.is_err(), "the tunnel stays open after a 431");
    drop((within_limit, oversized));

    let records = log.records(proxy).await;
    let statuses: Vec<Option<u16>> = records
        .iter()
        .map(|record| match &record.detail {
            Detail::Http(http) => http.response.as_ref().map(|r| r.status),
            other => panic!("only HTTP exchanges are recorded here, got {other:?}"),
        })
        .collect();
    assert_eq!(statuses, [Some(200)], "{records:#?}");
}
