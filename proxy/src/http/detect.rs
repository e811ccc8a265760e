//! Telling what a freshly opened stream carries, by whoever speaks first.
//!
//! The client's first bytes decide (cleartext HTTP/1 is then proxied as HTTP so each exchange is
//! recorded); a server that speaks first (SMTP, MySQL, ...) means the stream is opaque, and so does
//! silence on both sides past the detection timeout. Whatever was read is handed back for replay.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// How long both sides may stay silent before the stream is treated as opaque.
pub const DETECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Request methods that mark a stream as cleartext HTTP/1. CONNECT is left out: a tunnel inside a
/// tunnel is relayed as bytes.
const METHODS: [&[u8]; 8] = [
    b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE",
];
/// Enough bytes to see the longest method and its space.
const SNIFF_LEN: usize = 8;

/// Who spoke first, and what they said.
pub enum FirstBytes {
    Client(Vec<u8>),
    Upstream(Vec<u8>),
    /// Neither side sent anything within the timeout, or a side closed at once.
    Silence,
}

/// Waits for the first bytes from either side.
pub async fn first_bytes<C, U>(
    client: &mut C,
    upstream: &mut U,
    timeout: Duration,
) -> io::Result<FirstBytes>
where
    C: AsyncRead + Unpin,
    U: AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut from_client = Vec::new();
    let mut client_buf = [0u8; SNIFF_LEN];
    let mut upstream_buf = [0u8; 1024];
    loop {
        // Both reads are cancel-safe: the losing one has consumed nothing.
        tokio::select! {
            read = client.read(&mut client_buf[..SNIFF_LEN - from_client.len()]) => {
                let n = read?;
                if n == 0 {
                    return Ok(if from_client.is_empty() { FirstBytes::Silence } else { FirstBytes::Client(from_client) });
                }
                from_client.extend_from_slice(&client_buf[..n]);
                if from_client.len() >= SNIFF_LEN || !could_become_http(&from_client) || is_http_request(&from_client) {
                    return Ok(FirstBytes::Client(from_client));
                }
            }
            read = upstream.read(&mut upstream_buf), if from_client.is_empty() => {
                let n = read?;
                return Ok(if n == 0 { FirstBytes::Silence } else { FirstBytes::Upstream(upstream_buf[..n].to_vec()) });
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Ok(if from_client.is_empty() { FirstBytes::Silence } else { FirstBytes::Client(from_client) });
            }
        }
    }
}

/// Whether the bytes begin an HTTP/1 request line (`METHOD SP ...`).
pub fn is_http_request(bytes: &[u8]) -> bool {
    METHODS.iter().any(|method| {
        bytes.len() > method.len() && bytes.starts_with(method) && bytes[method.len()] == b' '
    })
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
    fn recognises_request_lines() {
        assert!(is_http_request(b"GET / HTTP/1.1"));
        assert!(is_http_request(b"DELETE /x"));
        assert!(!is_http_request(b"GETTING"));
        assert!(!is_http_request(b"CONNECT a:1 HTTP/1.1"));
        assert!(!is_http_request(&[0x16, 0x03, 0x01]));
    }

    #[tokio::test]
    async fn a_request_split_across_reads_is_still_http() {
        let (mut client, mut client_side) = tokio::io::duplex(64);
        let (_upstream, mut upstream_side) = tokio::io::duplex(64);
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

    #[tokio::test]
    async fn a_server_that_speaks_first_wins() {
        let (_client, mut client_side) = tokio::io::duplex(64);
        let (mut upstream, mut upstream_side) = tokio::io::duplex(64);
        upstream.write_all(b"220 smtp ready\r\n").await.unwrap();
        let first = first_bytes(&mut client_side, &mut upstream_side, Duration::from_secs(2))
            .await
            .unwrap();
        assert!(matches!(first, FirstBytes::Upstream(bytes) if bytes.starts_with(b"220")));
    }

    #[tokio::test]
    async fn silence_ends_at_the_timeout() {
        let (_client, mut client_side) = tokio::io::duplex(64);
        let (_upstream, mut upstream_side) = tokio::io::duplex(64);
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
