//! Absurd or conflicting request framing (Content-Length, Transfer-Encoding, line ends) through the reverse
//! and the forward HTTP proxy. The upstream is a real HTTP server that records every request it parsed:
//! each case ends with the request refused and nothing at the upstream, or with exactly the one request the
//! framing rules of RFC 9112 say was sent and the connection closed; never with the `GET /smuggled` that
//! a parser reading the framing another way would find behind it.
//!
//! Who decides each case: hyper refuses most (400; 431 for a length beyond its body limit). The sidecar
//! adds two refusals for what hyper would pass on altered (a coding besides `chunked`: 501; `chunked` twice:
//! 400) and answers 400, not 502, when the client's chunked framing breaks mid-body.

use rstest::rstest;
use tokio::net::TcpStream;

use sidecar_proxy::server::Services;

use crate::support::capture::RawHttp;
use crate::support::panics;
use crate::support::raw::RecordingUpstream;
use crate::{within, HttpProxy};

/// What the client and the upstream must see.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// This status, the connection closed after it, and not one byte at the upstream.
    Refused(u16),
    /// This status from the sidecar once the body broke, the connection closed after it, and no request
    /// completed at the upstream.
    BrokenBody(u16),
    /// One request served with this many body bytes, its 200, then the connection closed (RFC 9112 §6.3:
    /// a request with both Content-Length and Transfer-Encoding is read by the latter, and the connection
    /// is closed after it, so whatever follows is never read as a request).
    ForwardedThenClosed(usize),
}

#[rstest]
#[case::two_different_content_lengths(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhelloxGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::content_length_list(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhelloxGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::content_length_list_of_equal_values(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhelloGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::content_length_then_chunked(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::ForwardedThenClosed(0)
)]
#[case::chunked_then_content_length(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::ForwardedThenClosed(0)
)]
#[case::chunked_not_last(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::chunked_then_gzip_in_two_headers(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::gzip_under_chunked(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(501)
)]
#[case::chunked_twice(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::unknown_coding(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::chunked_on_http_1_0(
    "POST {t}/ HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::content_length_not_a_number(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: five\r\n\r\nhello",
    Outcome::Refused(400)
)]
#[case::content_length_with_plus(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
    Outcome::Refused(400)
)]
#[case::content_length_negative(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\nhello",
    Outcome::Refused(400)
)]
#[case::content_length_in_hex(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello",
    Outcome::Refused(400)
)]
#[case::content_length_beyond_u64(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\nhello",
    Outcome::Refused(400)
)]
// hyper's body-length limit (u64::MAX - 2) answers this one 431.
#[case::content_length_u64_max(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\nhello",
    Outcome::Refused(431)
)]
#[case::space_before_the_colon(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhelloGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::transfer_encoding_with_space_before_the_colon(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
    Outcome::Refused(400)
)]
#[case::obs_fold_content_length(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n 50\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::obs_fold_transfer_encoding(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::bare_cr_hiding_a_header(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nX: a\rContent-Length: 50\r\n\r\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::nul_in_transfer_encoding(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\0\r\n\r\n0\r\n\r\n",
    Outcome::Refused(400)
)]
#[case::bare_lf_in_chunked_framing(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\nGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    Outcome::BrokenBody(400)
)]
#[case::chunk_size_overflow(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
    Outcome::BrokenBody(400)
)]
#[case::chunk_longer_than_its_size(
    "POST {t}/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloGET {t}/smuggled HTTP/1.1\r\nHost: a\r\n\r\n0\r\n\r\n",
    Outcome::BrokenBody(400)
)]
#[tokio::test]
async fn ambiguous_framing_never_reaches_the_upstream_as_a_second_request(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
    #[case] request: &str,
    #[case] outcome: Outcome,
) {
    panics::watch();
    let upstream = RecordingUpstream::start().await;
    let front = proxy
        .start(upstream.addr, Services::default(), |_| {})
        .await;
    let request = request.replace("{t}", &front.target_prefix);

    let mut client = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());
    client.send(request.as_bytes()).await.unwrap();
    let mut statuses = Vec::new();
    // Every response until the sidecar closes the connection (which it must).
    while let Ok(response) = within("the sidecar's answer and close", client.read_response()).await
    {
        statuses.push(response.status);
    }
    let served = upstream.requests();
    assert!(
        served.iter().all(|request| !request.contains("smuggled")),
        "a request was smuggled to the upstream: {served:?}"
    );
    match outcome {
        Outcome::Refused(status) => {
            assert_eq!(statuses, [status], "answers to {request:?}");
            assert!(
                upstream.bytes().is_empty(),
                "the upstream received {:?}",
                String::from_utf8_lossy(&upstream.bytes())
            );
        }
        Outcome::BrokenBody(status) => {
            assert_eq!(statuses, [status], "answers to {request:?}");
            assert!(served.is_empty(), "requests served upstream: {served:?}");
        }
        Outcome::ForwardedThenClosed(body) => {
            assert_eq!(statuses, [200], "answers to {request:?}");
            assert_eq!(served.len(), 1, "requests served upstream: {served:?}");
            assert!(
                served[0].ends_with(&format!("({body} body bytes)")),
                "{served:?}"
            );
            // The Content-Length it came with is not passed on (RFC 9112 §6.3).
            let received = String::from_utf8_lossy(&upstream.bytes()).to_ascii_lowercase();
            assert!(
                !received.contains("content-length: 50"),
                "the conflicting length reached the upstream: {received:?}"
            );
        }
    }
    assert_eq!(panics::outside_tests(), 0, "a panic outside the tests");
}

/// Lines ended by a bare LF are accepted (RFC 9112 §2.2 allows it) and re-framed with CRLF on the way
/// upstream, so the upstream reads exactly what the sidecar read; the connection stays usable.
#[rstest]
#[tokio::test]
async fn bare_lf_line_ends_are_reframed_not_passed_on(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    let upstream = RecordingUpstream::start().await;
    let front = proxy
        .start(upstream.addr, Services::default(), |_| {})
        .await;
    let target_prefix = &front.target_prefix;
    let mut client = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());
    let request = format!("POST {target_prefix}/lf HTTP/1.1\nHost: a\nContent-Length: 5\n\nhello");
    let first = within("the answer", client.exchange(request.as_bytes()))
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    let again = format!("GET {target_prefix}/again HTTP/1.1\r\nHost: a\r\n\r\n");
    let second = within("the second answer", client.exchange(again.as_bytes()))
        .await
        .unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(upstream.requests().len(), 2, "{:?}", upstream.requests());
    let received = String::from_utf8_lossy(&upstream.bytes()).into_owned();
    assert!(
        !received.replace("\r\n", "").contains('\n'),
        "a bare LF reached the upstream: {received:?}"
    );
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request with two, is answered 400 by the
/// sidecar and never reaches the upstream (with two, the record could go by one and the app by the other).
/// It is not a framing error, so the connection serves the client's next request, and another connection
/// open meanwhile is untouched. (Through the forward proxy a missing `Host` is served: the absolute-form
/// URL names the host; see `forward.rs` `absolute_form_without_host_gets_host_from_the_uri`.)
#[rstest]
#[case::two_hosts("GET {t}/refused HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 2)]
#[case::two_equal_hosts("GET {t}/refused HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 2)]
#[case::two_hosts_and_a_body(
    "POST {t}/refused HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nHost: b\r\n\r\nhello",
    2
)]
#[tokio::test]
async fn a_missing_or_repeated_host_is_400_and_the_connection_serves_on(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
    #[case] request: &str,
    #[case] hosts: usize,
) {
    host_refused(proxy, request, hosts).await;
}

#[tokio::test]
async fn an_http_1_1_request_without_host_is_400_at_the_reverse_proxy() {
    host_refused(
        HttpProxy::Reverse,
        "GET {t}/refused HTTP/1.1\r\nX-Test: 1\r\n\r\n",
        0,
    )
    .await;
}

async fn host_refused(proxy: HttpProxy, request: &str, hosts: usize) {
    panics::watch();
    let upstream = RecordingUpstream::start().await;
    let front = proxy
        .start(upstream.addr, Services::default(), |_| {})
        .await;
    let t = &front.target_prefix;
    let good = |path: &str| format!("GET {t}{path} HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut other = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());
    let mut client = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());

    let before = within(
        "the first answer",
        client.exchange(good("/before").as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(before.status, 200);
    let refused = within(
        "the refusal",
        client.exchange(request.replace("{t}", t).as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(refused.status, 400, "{refused:?}");
    let reason = String::from_utf8_lossy(&refused.body).into_owned();
    let expected = match hosts {
        0 => "sidecar: an HTTP/1.1 request must have a Host header (RFC 9112 §3.2)".to_owned(),
        n => format!(
            "sidecar: the request has {n} Host headers; it may have only one (RFC 9112 §3.2)"
        ),
    };
    assert_eq!(reason.trim_end(), expected);
    let after = within(
        "the answer after",
        client.exchange(good("/after").as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(after.status, 200, "the connection serves on");
    let elsewhere = within(
        "the other connection",
        other.exchange(good("/other").as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.status, 200);

    let served = upstream.requests();
    assert_eq!(served.len(), 3, "{served:?}");
    assert!(
        served.iter().all(|line| !line.contains("/refused")),
        "the refused request reached the upstream: {served:?}"
    );
    assert_eq!(panics::outside_tests(), 0, "a panic outside the tests");
}

/// HTTP/1.0 predates `Host`: a request without one is still served.
#[rstest]
#[tokio::test]
async fn an_http_1_0_request_without_host_is_served(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    let upstream = RecordingUpstream::start().await;
    let front = proxy
        .start(upstream.addr, Services::default(), |_| {})
        .await;
    let request = format!("GET {}/old HTTP/1.0\r\n\r\n", front.target_prefix);
    let mut client = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());
    let answer = within("the answer", client.exchange(request.as_bytes()))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.requests().len(), 1);
}

/// Chunked trailers on HTTP/1, as docs/proxy-modes.md states them: a trailer field reaches the upstream
/// when the request's `Trailer` header announces it, except the fields RFC 9110 §6.5.1 rules out of
/// trailers (framing, routing, authentication, content format), which are dropped even when announced.
/// An unannounced field is dropped too.
#[rstest]
#[tokio::test]
async fn http_1_trailers_pass_when_announced_except_those_rfc_9110_rules_out(
    #[values(HttpProxy::Reverse, HttpProxy::Forward)] proxy: HttpProxy,
) {
    let upstream = RecordingUpstream::start().await;
    let front = proxy
        .start(upstream.addr, Services::default(), |_| {})
        .await;
    let request = format!(
        "POST {}/trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\
         Trailer: x-checksum, cookie, authorization, set-cookie, content-type, host\r\n\r\n\
         5\r\nhello\r\n0\r\nx-checksum: abc123\r\ncookie: session=s1\r\nauthorization: Bearer t0k3n\r\n\
         set-cookie: a=b\r\ncontent-type: text/evil\r\nhost: elsewhere.test\r\nx-unannounced: 1\r\n\r\n",
        front.target_prefix
    );
    let mut client = RawHttp::new(TcpStream::connect(front.addr).await.unwrap());
    let answer = within("the answer", client.exchange(request.as_bytes()))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.requests().len(), 1, "{:?}", upstream.requests());

    let received = String::from_utf8_lossy(&upstream.bytes()).to_ascii_lowercase();
    let (_, trailers) = received
        .split_once("\r\n0\r\n")
        .unwrap_or_else(|| panic!("no last chunk upstream: {received:?}"));
    for passed in ["x-checksum: abc123", "cookie: session=s1"] {
        assert!(
            trailers.contains(passed),
            "{passed:?} missing: {trailers:?}"
        );
    }
    for dropped in [
        "bearer t0k3n",
        "set-cookie",
        "text/evil",
        "elsewhere.test",
        "x-unannounced",
    ] {
        assert!(
            !trailers.contains(dropped),
            "{dropped:?} passed: {trailers:?}"
        );
    }
}
