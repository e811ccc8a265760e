//! Peers that reset mid-stream (SO_LINGER 0, then close: the kernel sends RST instead of FIN). The other
//! side is closed, a neighbouring connection through the same listener carries on, nothing panics, and the
//! capture record says the stream was reset (or, for HTTP, that the body did not complete).

use std::net::SocketAddr;
use std::time::Duration;

use rstest::rstest;
use sidecar_proxy::capture::record::{Detail, Record};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_socks::tcp::Socks5Stream;

use crate::support::capture::{connect_tunnel, start_capturing_proxy};
use crate::support::{panics, start_app, RunningProxy};
use crate::within;

/// Makes closing `stream` send a reset rather than a FIN.
fn reset_on_close(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads until the peer is gone (EOF or a reset); fails the test if it never goes.
async fn until_gone<S: AsyncRead + Unpin>(stream: &mut S, what: &str) {
    let mut sink = [0u8; 4096];
    within(what, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Sends `message` from `from` and reads it whole at `to`.
async fn pass<A, B>(from: &mut A, to: &mut B, message: &[u8])
where
    A: AsyncWrite + Unpin,
    B: AsyncRead + Unpin,
{
    from.write_all(message).await.unwrap();
    let mut got = vec![0u8; message.len()];
    within("a message through the relay", to.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(got, message);
}

/// An upstream that hands each connection it accepts to the test.
async fn start_handing_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hand, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = hand.send(stream);
        }
    });
    (addr, accepted)
}

#[derive(Clone, Copy, Debug)]
enum Relay {
    ReverseTcp,
    Connect,
    ForwardSocks5,
}

#[derive(Clone, Copy, Debug)]
enum Resetter {
    Client,
    Upstream,
}

#[rstest]
#[tokio::test]
async fn a_reset_mid_stream_closes_the_other_side_and_is_recorded(
    #[values(Relay::ReverseTcp, Relay::Connect, Relay::ForwardSocks5)] relay: Relay,
    #[values(Resetter::Client, Resetter::Upstream)] resetter: Resetter,
) {
    panics::watch();
    let (upstream, mut accepted) = start_handing_upstream().await;
    let (proxy_type, protocol) = match relay {
        Relay::ReverseTcp => ("reverse", "tcp"),
        Relay::Connect => ("forward", "http"),
        Relay::ForwardSocks5 => ("forward", "socks"),
    };
    let (proxy, log) = start_capturing_proxy(proxy_type, protocol, Some(upstream), |_| {}).await;

    // A neighbour on the same listener, then the stream that will be reset; both mid-conversation.
    let mut neighbour = connect(relay, &proxy, upstream).await;
    let mut neighbour_upstream = within("the neighbour accepted", accepted.recv())
        .await
        .unwrap();
    pass(
        &mut neighbour,
        &mut neighbour_upstream,
        b"neighbour says hi",
    )
    .await;
    let mut victim = connect(relay, &proxy, upstream).await;
    let victim_addr = victim.local_addr().unwrap();
    let mut victim_upstream = within("the victim accepted", accepted.recv())
        .await
        .unwrap();
    pass(&mut victim, &mut victim_upstream, b"ping").await;
    pass(&mut victim_upstream, &mut victim, b"pong").await;

    match resetter {
        Resetter::Client => {
            reset_on_close(&victim);
            drop(victim);
            until_gone(
                &mut victim_upstream,
                "the upstream side closed after the client's reset",
            )
            .await;
        }
        Resetter::Upstream => {
            reset_on_close(&victim_upstream);
            drop(victim_upstream);
            until_gone(
                &mut victim,
                "the client side closed after the upstream's reset",
            )
            .await;
        }
    }

    // The neighbour carries on both ways, then ends normally.
    pass(&mut neighbour, &mut neighbour_upstream, b"still here").await;
    pass(&mut neighbour_upstream, &mut neighbour, b"me too").await;
    neighbour.shutdown().await.unwrap();
    until_gone(&mut neighbour_upstream, "the neighbour's half-close").await;
    neighbour_upstream.shutdown().await.unwrap();
    until_gone(&mut neighbour, "the neighbour's close").await;

    let records = log.records(proxy).await;
    assert_eq!(stream_end(&records, victim_addr), "reset", "{records:#?}");
    assert_eq!(panics::outside_tests(), 0);
}

/// A raw TCP connection through `relay`: SOCKS5 and CONNECT handshakes done, so the socket itself is the
/// stream (and its linger can be set).
async fn connect(relay: Relay, proxy: &RunningProxy, upstream: SocketAddr) -> TcpStream {
    match relay {
        Relay::ReverseTcp => TcpStream::connect(proxy.inbound()).await.unwrap(),
        Relay::Connect => connect_tunnel(proxy.outbound(), &upstream.to_string()).await,
        Relay::ForwardSocks5 => Socks5Stream::connect(proxy.outbound(), upstream)
            .await
            .unwrap()
            .into_inner(),
    }
}

/// How the stream record of the client at `client` says the stream ended (`closed`, `reset`).
fn stream_end(records: &[Record], client: SocketAddr) -> String {
    records
        .iter()
        .find_map(|record| match &record.detail {
            Detail::Stream(summary) if record.client == client.to_string() => {
                Some(summary.end.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no stream record for {client} in {records:#?}"))
}

/// An HTTP upstream that answers with a head promising a megabyte, sends a little of it, and resets.
async fn start_resetting_http_upstream() -> SocketAddr {
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
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n")
                    .await;
                let _ = stream.write_all(&[b'x'; 10_000]).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                reset_on_close(&stream);
            });
        }
    });
    addr
}

#[rstest]
#[tokio::test]
async fn an_upstream_reset_mid_response_cuts_the_client_off_and_is_recorded(
    #[values(crate::HttpProxy::Reverse, crate::HttpProxy::Forward)] proxy: crate::HttpProxy,
) {
    panics::watch();
    let upstream = start_resetting_http_upstream().await;
    let healthy = start_app().await;
    let (proxy_type, app) = match proxy {
        crate::HttpProxy::Reverse => ("reverse", Some(upstream)),
        crate::HttpProxy::Forward => ("forward", None),
    };
    let (running, log) = start_capturing_proxy(proxy_type, "http", app, |_| {}).await;
    let (addr, prefix) = match proxy {
        crate::HttpProxy::Reverse => (running.inbound(), String::new()),
        crate::HttpProxy::Forward => (running.outbound(), format!("http://{upstream}")),
    };
    let mut client = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {prefix}/cut HTTP/1.1\r\nHost: a\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 65536];
    within("the client is cut off", async {
        loop {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text:.200}");
    assert!(
        received.len() < 1_048_576,
        "the whole body arrived although the upstream reset"
    );

    // The listener still serves: a new connection gets a response head (through the reverse proxy from
    // the same app, which cuts that one off too; through the forward proxy from a healthy upstream).
    let mut next = TcpStream::connect(addr).await.unwrap();
    let again = match proxy {
        crate::HttpProxy::Reverse => "GET /again HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
        crate::HttpProxy::Forward => {
            format!(
                "GET http://{}/again HTTP/1.1\r\nHost: a\r\n\r\n",
                healthy.addr
            )
        }
    };
    next.write_all(again.as_bytes()).await.unwrap();
    let mut status_line = [0u8; 15];
    within("the next answer", next.read_exact(&mut status_line))
        .await
        .unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 200 OK");

    let records = log.records(running).await;
    let cut = records
        .iter()
        .find_map(|record| match &record.detail {
            Detail::Http(exchange) if exchange.request.url.ends_with("/cut") => Some(exchange),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no record of the cut exchange in {records:#?}"));
    let response = cut
        .response
        .as_ref()
        .expect("the response head is recorded");
    assert!(!response.body.complete, "{cut:#?}");
    assert_eq!(panics::outside_tests(), 0);
}

/// An upstream that reads each connection to its end (EOF or reset) and reports how it ended.
async fn start_reading_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, reports) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let mut total = 0;
                let mut sink = [0u8; 65536];
                while let Ok(n) = stream.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                let _ = report.send(total);
            });
        }
    });
    (addr, reports)
}

#[rstest]
#[tokio::test]
async fn a_client_reset_mid_upload_closes_the_upstream_connection(
    #[values(crate::HttpProxy::Reverse, crate::HttpProxy::Forward)] proxy: crate::HttpProxy,
) {
    panics::watch();
    let (upstream, mut ended) = start_reading_upstream().await;
    let front = proxy
        .start(upstream, sidecar_proxy::server::Services::default(), |_| {})
        .await;
    let mut client = TcpStream::connect(front.addr).await.unwrap();
    let head = format!(
        "POST {}/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10485760\r\n\r\n",
        front.target_prefix
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&[b'u'; 256 * 1024]).await.unwrap();
    // Let the upload reach the upstream before the reset.
    tokio::time::sleep(Duration::from_millis(100)).await;
    reset_on_close(&client);
    drop(client);
    let received = within("the upstream connection closed", ended.recv())
        .await
        .expect("the upstream saw its connection end");
    assert!(received > 0 && received < 10_485_760, "{received} bytes");
    assert_eq!(panics::outside_tests(), 0);
    assert!(!front.proxy.task.as_ref().unwrap().is_finished());
}
