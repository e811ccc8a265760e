//! Telling what a freshly opened stream carries, by whoever speaks first.
//!
//! The client's first bytes decide: cleartext HTTP/1 and HTTP/2 prior knowledge are then proxied as HTTP so
//! each exchange is recorded, a TLS ClientHello is read far enough to name the server (SNI). A server that
//! speaks first (SMTP, MySQL, ...) means the stream is opaque, and so does silence on both sides past the
//! detection timeout. Whatever was read is handed back for replay.

pub mod tls;

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::io::PrefixedIo;

/// How long a client that has begun has to complete a request line or a TLS record.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Request methods that mark a stream as cleartext HTTP/1. CONNECT is one: the tap records the request
/// and its answer, and relays the tunnel after a `2xx` as bytes.
const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE", b"CONNECT",
];
/// The most bytes read before deciding: a longer request line is relayed as opaque bytes, and a TLS
/// ClientHello is at most one 16 KiB record plus its header.
const MAX_SNIFF: usize = 16 * 1024 + 5;
/// How HTTP/2 with prior knowledge opens a connection.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Who spoke first, and what they said.
pub enum FirstBytes {
    Client(Vec<u8>),
    Upstream(Vec<u8>),
    /// A side closed before either sent anything.
    Silence,
}

/// Waits for the first bytes from either side, however long that takes: a client that is slow to open (a
/// JVM starting TLS on a busy node) is still recognised, and waiting costs nothing since there is nothing
/// to relay meanwhile. Once the client has begun, it has `timeout` to complete what it began: when its
/// bytes begin like an HTTP method, reading goes on to the end of the request line, so that
/// [`is_http_request`] can check the whole line rather than guess from a word (`GET key` is Redis,
/// `GET / HTTP/1.1` is HTTP); a TLS record is read whole, so its server name can be found.
///
/// One server that speaks first does not decide: an HTTP/2 server's SETTINGS frame, which servers of
/// HTTP/2 with prior knowledge (grpc-go, hyper, Envoy) send as soon as a connection opens, without waiting
/// for the client's preface (RFC 9113 §3.4). The client then has `timeout` to begin, and its bytes decide
/// as usual; the server's are put back into `upstream`, to be relayed first. A client silent for that long
/// leaves the server as the one that spoke first.
pub async fn first_bytes<C, U>(
    client: &mut C,
    upstream: &mut PrefixedIo<U>,
    timeout: Duration,
) -> io::Result<FirstBytes>
where
    C: AsyncRead + Unpin,
    U: AsyncRead + Unpin,
{
    // Set by the client's first bytes, or by an HTTP/2 server's SETTINGS.
    let mut deadline = None;
    let mut from_client = Vec::new();
    // An HTTP/2 server's SETTINGS, held while the client is waited for.
    let mut from_upstream = Vec::new();
    // Small: they are part of the connection's task while it waits, however long that is.
    let mut client_buf = [0u8; 1024];
    let mut upstream_buf = [0u8; 512];
    loop {
        let room = (MAX_SNIFF - from_client.len()).min(client_buf.len());
        // Both reads are cancel-safe: the losing one has consumed nothing.
        tokio::select! {
            read = client.read(&mut client_buf[..room]) => {
                let n = read?;
                if n == 0 && from_client.is_empty() {
                    return Ok(if from_upstream.is_empty() { FirstBytes::Silence } else { FirstBytes::Upstream(from_upstream) });
                }
                if n == 0 {
                    return Ok(client_decides(from_client, from_upstream, upstream));
                }
                from_client.extend_from_slice(&client_buf[..n]);
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
                if !needs_more(&from_client) || from_client.len() >= MAX_SNIFF {
                    return Ok(client_decides(from_client, from_upstream, upstream));
                }
            }
            read = upstream.read(&mut upstream_buf), if from_client.is_empty() && from_upstream.is_empty() => {
                let n = read?;
                if n == 0 {
                    return Ok(FirstBytes::Silence);
                }
                if !is_h2_settings(&upstream_buf[..n]) {
                    return Ok(FirstBytes::Upstream(upstream_buf[..n].to_vec()));
                }
                from_upstream.extend_from_slice(&upstream_buf[..n]);
                deadline = Some(tokio::time::Instant::now() + timeout);
            }
            _ = sleep_until_set(deadline) => {
                if from_client.is_empty() {
                    return Ok(FirstBytes::Upstream(from_upstream));
                }
                return Ok(client_decides(from_client, from_upstream, upstream));
            }
        }
    }
}

/// The client's bytes decide; what the upstream sent before them (an HTTP/2 server's SETTINGS) goes back
/// to be relayed first.
fn client_decides<U>(
    from_client: Vec<u8>,
    from_upstream: Vec<u8>,
    upstream: &mut PrefixedIo<U>,
) -> FirstBytes {
    upstream.unread(from_upstream);
    FirstBytes::Client(from_client)
}

/// Whether a server's first bytes are an HTTP/2 server preface: a SETTINGS frame (not an ACK) on stream 0,
/// its length a whole number of settings.
fn is_h2_settings(bytes: &[u8]) -> bool {
    let [l0, l1, l2, kind, flags, s0, s1, s2, s3, ..] = *bytes else {
        return false;
    };
    let length = u32::from_be_bytes([0, l0, l1, l2]);
    let stream = u32::from_be_bytes([s0 & 0x7f, s1, s2, s3]);
    kind == 0x04 && flags & 0x01 == 0 && stream == 0 && length.is_multiple_of(6) && length <= 16_384
}

/// Sleeps until the deadline, or forever while there is none.
async fn sleep_until_set(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Whether the bytes begin with a whole HTTP/1 request line: `METHOD SP target SP HTTP/1.x CRLF`.
pub fn is_http_request(bytes: &[u8]) -> bool {
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let line = bytes[..end].strip_suffix(b"\r").unwrap_or(&bytes[..end]);
    let mut words = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return false;
    };
    METHODS.contains(&method)
        && !target.is_empty()
        && !target.iter().any(|b| b.is_ascii_control())
        && (version == b"HTTP/1.1" || version == b"HTTP/1.0")
}

/// Whether the HTTP/2 connection preface is all there.
pub fn is_h2_preface(bytes: &[u8]) -> bool {
    bytes.starts_with(H2_PREFACE)
}

/// Whether the bytes so far are the start of something worth waiting for: a request line without its end,
/// part of the HTTP/2 preface, or a TLS record not yet complete.
fn needs_more(bytes: &[u8]) -> bool {
    if tls::is_tls_handshake(bytes) || (bytes.len() < 3 && bytes.first() == Some(&0x16)) {
        return tls::first_record_len(bytes).is_none_or(|len| bytes.len() < len);
    }
    if H2_PREFACE.len() > bytes.len() && H2_PREFACE.starts_with(bytes) {
        return true;
    }
    could_become_http(bytes) && !bytes.contains(&b'\n')
}

/// Whether more bytes could still make these an HTTP request line.
fn could_become_http(bytes: &[u8]) -> bool {
    METHODS.iter().any(|method| {
        let mut with_space = method.to_vec();
        with_space.push(b' ');
        with_space.starts_with(bytes) || bytes.starts_with(&with_space)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn recognises_whole_request_lines_only() {
        assert!(is_http_request(b"GET / HTTP/1.1\r\nhost: a\r\n"));
        assert!(is_http_request(b"DELETE /x HTTP/1.0\r\n"));
        assert!(!is_http_request(b"GET / HTTP/1.1"), "no line end yet");
        assert!(!is_http_request(b"GET key\r\n"), "a Redis inline command");
        assert!(!is_http_request(b"GET /\r\n"), "HTTP/0.9");
        assert!(!is_http_request(b"GETTING there\r\n"));
        assert!(is_http_request(b"CONNECT a:1 HTTP/1.1\r\n"));
        assert!(!is_http_request(&[0x16, 0x03, 0x01]));
    }

    #[tokio::test]
    async fn a_request_split_across_reads_is_still_http() {
        let (mut client, mut client_side) = tokio::io::duplex(64);
        let (_upstream, upstream_side) = tokio::io::duplex(64);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        let writer = tokio::spawn(async move {
            client.write_all(b"PO").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(b"ST /x HTTP/1.1\r\n").await.unwrap();
            client
        });
        let first = first_bytes(&mut client_side, &mut upstream_side, Duration::from_secs(2))
            .await
            .unwrap();
        let _client = writer.await.unwrap();
        match first {
            FirstBytes::Client(bytes) => assert!(is_http_request(&bytes), "{bytes:?}"),
            _ => panic!("expected the client's bytes"),
        }
    }

    /// Feeds `bytes` to [`first_bytes`] in two writes, cut at `at` with a pause between them, and returns
    /// what detection handed back.
    async fn first_bytes_in_two_pieces(bytes: &[u8], at: usize) -> Vec<u8> {
        let (mut client, mut client_side) = tokio::io::duplex(64 * 1024);
        let (_upstream, upstream_side) = tokio::io::duplex(64);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        let (head, tail) = (bytes[..at].to_vec(), bytes[at..].to_vec());
        let writer = tokio::spawn(async move {
            client.write_all(&head).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
            client.write_all(&tail).await.unwrap();
            client
        });
        let first = first_bytes(&mut client_side, &mut upstream_side, Duration::from_secs(2))
            .await
            .unwrap();
        let _client = writer.await.unwrap();
        match first {
            FirstBytes::Client(bytes) => bytes,
            _ => panic!("expected the client's bytes (cut at {at})"),
        }
    }

    #[tokio::test]
    async fn a_tls_record_split_across_reads_is_read_whole() {
        let hello = tls::tests::client_hello("api.example.test");
        // In the content type, in the version, before and inside the length, just after the header, in
        // the middle, and one byte short.
        for at in [1, 2, 3, 4, 5, 40, hello.len() - 1] {
            let bytes = first_bytes_in_two_pieces(&hello, at).await;
            assert_eq!(bytes, hello, "cut at {at}");
            assert_eq!(
                tls::client_hello_sni(&bytes).as_deref(),
                Some("api.example.test"),
                "cut at {at}"
            );
        }
    }

    #[tokio::test]
    async fn an_h2_preface_split_across_reads_is_still_h2() {
        // The preface, then an empty SETTINGS frame.
        let mut opening = H2_PREFACE.to_vec();
        opening.extend_from_slice(&[0, 0, 0, 0x04, 0, 0, 0, 0, 0]);
        // Inside `PRI` (also the start of POST, PUT, PATCH), after the first line, one byte short.
        for at in [1, 3, 16, H2_PREFACE.len() - 1] {
            let bytes = first_bytes_in_two_pieces(&opening, at).await;
            assert!(is_h2_preface(&bytes), "cut at {at}: {bytes:?}");
            assert_eq!(bytes, opening, "cut at {at}");
        }
    }

    #[tokio::test]
    async fn a_server_that_speaks_first_wins() {
        let (_client, mut client_side) = tokio::io::duplex(64);
        let (mut upstream, upstream_side) = tokio::io::duplex(64);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        upstream.write_all(b"220 smtp ready\r\n").await.unwrap();
        let first = first_bytes(&mut client_side, &mut upstream_side, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(matches!(first, FirstBytes::Upstream(bytes) if bytes.starts_with(b"220")));
    }

    /// What a hyper, grpc-go or Envoy h2c server sends on accept: SETTINGS with one setting, before the
    /// client has said anything.
    const SERVER_SETTINGS: [u8; 15] = [0, 0, 6, 0x04, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 100];

    #[tokio::test]
    async fn an_h2_server_settings_first_leaves_the_decision_to_the_client() {
        let (mut client, mut client_side) = tokio::io::duplex(1024);
        let (mut upstream, upstream_side) = tokio::io::duplex(1024);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        upstream.write_all(&SERVER_SETTINGS).await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            client.write_all(H2_PREFACE).await.unwrap();
            client
        });
        let first = first_bytes(&mut client_side, &mut upstream_side, Duration::from_secs(2))
            .await
            .unwrap();
        let _client = writer.await.unwrap();
        assert!(matches!(first, FirstBytes::Client(bytes) if is_h2_preface(&bytes)));
        // The server's bytes are relayed first, untouched.
        drop(upstream);
        let mut replayed = Vec::new();
        upstream_side.read_to_end(&mut replayed).await.unwrap();
        assert_eq!(replayed, SERVER_SETTINGS);
    }

    #[tokio::test]
    async fn an_h2_server_settings_and_a_silent_client_is_the_server_first() {
        let (_client, mut client_side) = tokio::io::duplex(64);
        let (mut upstream, upstream_side) = tokio::io::duplex(64);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        upstream.write_all(&SERVER_SETTINGS).await.unwrap();
        let first = first_bytes(
            &mut client_side,
            &mut upstream_side,
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        assert!(matches!(first, FirstBytes::Upstream(bytes) if bytes == SERVER_SETTINGS));
        assert!(upstream_side.prefix().is_empty(), "handed back, not kept");
        // A SETTINGS ACK, or a frame on a stream, is no server preface.
        assert!(is_h2_settings(&SERVER_SETTINGS));
        assert!(!is_h2_settings(&[0, 0, 0, 0x04, 0x01, 0, 0, 0, 0]));
        assert!(!is_h2_settings(&[0, 0, 6, 0x04, 0, 0, 0, 0, 1]));
        assert!(!is_h2_settings(b"220 smtp ready\r\n"));
    }

    #[tokio::test]
    async fn a_client_slow_to_open_is_still_recognised() {
        let (mut client, mut client_side) = tokio::io::duplex(64 * 1024);
        let (_upstream, upstream_side) = tokio::io::duplex(64);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        let hello = tls::tests::client_hello("slow.example.test");
        let sent = hello.clone();
        let writer = tokio::spawn(async move {
            // Far longer than the timeout, which only starts with the client's first byte.
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.write_all(&sent).await.unwrap();
            client
        });
        let first = first_bytes(
            &mut client_side,
            &mut upstream_side,
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        let _client = writer.await.unwrap();
        match first {
            FirstBytes::Client(bytes) => assert_eq!(bytes, hello),
            _ => panic!("expected the client's hello"),
        }
    }

    #[tokio::test]
    async fn an_unfinished_request_line_waits_only_the_timeout() {
        let (mut client, mut client_side) = tokio::io::duplex(64);
        let (_upstream, upstream_side) = tokio::io::duplex(64);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        client.write_all(b"GET /never-ends").await.unwrap();
        let first = tokio::time::timeout(
            Duration::from_secs(2),
            first_bytes(
                &mut client_side,
                &mut upstream_side,
                Duration::from_millis(50),
            ),
        )
        .await
        .expect("detection gives up after its timeout")
        .unwrap();
        assert!(matches!(first, FirstBytes::Client(bytes) if bytes == b"GET /never-ends"));
    }

    #[tokio::test]
    async fn a_side_closing_first_is_silence() {
        let (client, mut client_side) = tokio::io::duplex(64);
        let (_upstream, upstream_side) = tokio::io::duplex(64);
        let mut upstream_side = PrefixedIo::new(Vec::new(), upstream_side);
        drop(client);
        let first = first_bytes(
            &mut client_side,
            &mut upstream_side,
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        assert!(matches!(first, FirstBytes::Silence));
    }
}
