//! SOCKS4 and SOCKS4a, server side: the CONNECT request and the reply.
//!
//! ```text
//! request: VN=4 | CD | DSTPORT(2) | DSTIP(4) | USERID... 0 | [HOST... 0 when DSTIP is 0.0.0.x, x != 0]
//! reply:   0 | 0x5A granted / 0x5B rejected | PORT(2) | IP(4)
//! ```

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::SocksVersion;
use crate::net::{Host, Target};

const CMD_CONNECT: u8 = 1;
const GRANTED: u8 = 0x5A;
const REJECTED: u8 = 0x5B;
/// Longest user id or host name accepted; a longer one is an attack or a broken client.
const MAX_FIELD: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum Socks4Error {
    #[error("command {0} is not supported (only CONNECT is)")]
    UnsupportedCommand(u8),
    #[error("{0} is longer than 255 bytes")]
    FieldTooLong(&'static str),
    #[error("host name is not valid UTF-8")]
    BadHostName,
    #[error("handshake cut short: {0}")]
    Truncated(io::Error),
}

/// Reads the rest of the request after the version byte. An unsupported command is refused here.
pub(super) async fn read_request<S>(stream: &mut S) -> Result<(SocksVersion, Target), Socks4Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = [0u8; 7];
    stream
        .read_exact(&mut head)
        .await
        .map_err(Socks4Error::Truncated)?;
    let command = head[0];
    let port = u16::from_be_bytes([head[1], head[2]]);
    let ip = Ipv4Addr::new(head[3], head[4], head[5], head[6]);
    read_nul_terminated(stream, "user id").await?;

    // 0.0.0.x with x != 0 is SOCKS4a's marker: a host name follows.
    let is_4a = head[3..6] == [0, 0, 0] && head[6] != 0;
    let (version, target) = if is_4a {
        let name = read_nul_terminated(stream, "host name").await?;
        let name = String::from_utf8(name).map_err(|_| Socks4Error::BadHostName)?;
        (SocksVersion::V4a, Target::from_host_str(&name, port))
    } else {
        (
            SocksVersion::V4,
            Target::new(Host::Ip(IpAddr::V4(ip)), port),
        )
    };

    if command != CMD_CONNECT {
        let _ = write_reply(stream, false, SocketAddr::from(([0, 0, 0, 0], 0))).await;
        return Err(Socks4Error::UnsupportedCommand(command));
    }
    Ok((version, target))
}

async fn read_nul_terminated<S: AsyncRead + Unpin>(
    stream: &mut S,
    what: &'static str,
) -> Result<Vec<u8>, Socks4Error> {
    let mut field = Vec::new();
    loop {
        let byte = stream.read_u8().await.map_err(Socks4Error::Truncated)?;
        if byte == 0 {
            return Ok(field);
        }
        if field.len() == MAX_FIELD {
            return Err(Socks4Error::FieldTooLong(what));
        }
        field.push(byte);
    }
}

pub(super) async fn write_reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    granted: bool,
    bound: SocketAddr,
) -> io::Result<()> {
    let ip = match bound.ip() {
        IpAddr::V4(ip) => ip.octets(),
        IpAddr::V6(_) => [0; 4],
    };
    let port = bound.port().to_be_bytes();
    let code = if granted { GRANTED } else { REJECTED };
    let reply = [0, code, port[0], port[1], ip[0], ip[1], ip[2], ip[3]];
    stream.write_all(&reply).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<(SocksVersion, Target), Socks4Error>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(bytes).await.unwrap();
        let result = read_request(&mut server).await;
        drop(server);
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        (result, reply)
    }

    #[tokio::test]
    async fn socks4_connect_to_an_ip() {
        let (result, _) = parse(&[1, 0x1F, 0x90, 127, 0, 0, 1, b'u', 0]).await;
        let (version, target) = result.unwrap();
        assert_eq!(version, SocksVersion::V4);
        assert_eq!(target.to_string(), "127.0.0.1:8080");
    }

    #[tokio::test]
    async fn socks4a_keeps_the_host_name() {
        let (result, _) = parse(b"\x01\x00\x50\x00\x00\x00\x01\x00example.test\x00").await;
        let (version, target) = result.unwrap();
        assert_eq!(version, SocksVersion::V4a);
        assert_eq!(target.host, Host::Name("example.test".into()));
    }

    #[tokio::test]
    async fn bind_is_rejected_with_0x5b() {
        let (result, reply) = parse(&[2, 0, 80, 127, 0, 0, 1, 0]).await;
        assert!(matches!(result, Err(Socks4Error::UnsupportedCommand(2))));
        assert_eq!(reply[..2], [0, REJECTED]);
    }

    #[tokio::test]
    async fn an_endless_user_id_is_refused() {
        let mut request = vec![1, 0, 80, 127, 0, 0, 1];
        request.extend(std::iter::repeat_n(b'a', 300));
        let (result, _) = parse(&request).await;
        assert!(matches!(result, Err(Socks4Error::FieldTooLong("user id"))));
    }
}
