//! The server side of SOCKS4, SOCKS4a and SOCKS5 on one port, told apart by the first byte.
//!
//! [`accept`] runs the handshake up to the client's CONNECT request; the caller decides where the stream
//! really goes (the requested target for a forward proxy, the app for a reverse one), then answers with
//! [`SocksRequest::grant`] or [`SocksRequest::refuse`]. SOCKS5 is fast-socks5's; SOCKS4/4a is ours.

mod serve;
mod socks4;
mod socks5;

pub use serve::{serve, Timeouts};

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::io::PrefixedIo;
use crate::net::closing::{drain_and_close, plain_http_response};
use crate::net::{DialFailure, Target};

/// What a client that speaks HTTP to a SOCKS port is told, so a misconfigured proxy URL is obvious.
const HTTP_ON_SOCKS_PORT: &str =
    "sidecar: this port speaks SOCKS4/SOCKS5, not HTTP; use a socks5:// or socks4a:// proxy URL for it\n";

/// The dialect a client spoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocksVersion {
    V4,
    /// SOCKS4 with the host name sent for the proxy to resolve.
    V4a,
    V5,
}

impl SocksVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            SocksVersion::V4 => "socks4",
            SocksVersion::V4a => "socks4a",
            SocksVersion::V5 => "socks5",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    #[error("client closed the connection before sending a SOCKS request")]
    Empty,
    /// The first byte was not a SOCKS version (an HTTP client was answered with a 400).
    #[error("not a SOCKS4/SOCKS5 handshake (first byte 0x{first:02x})")]
    NotSocks { first: u8 },
    #[error("SOCKS4 {0}")]
    Socks4(#[from] socks4::Socks4Error),
    #[error("SOCKS5 {0}")]
    Socks5(#[from] fast_socks5::server::SocksServerError),
    #[error("SOCKS5 username/password sub-negotiation version {0} is not 1")]
    Socks5Auth(u8),
    #[error("SOCKS5 command {0} is not supported (only CONNECT is)")]
    Socks5Command(&'static str),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl SocksError {
    /// The `reason` label of the handshake-errors metric.
    pub fn metric_reason(&self) -> &'static str {
        match self {
            SocksError::Empty => "empty",
            SocksError::NotSocks { .. } => "not_socks",
            SocksError::Socks4(socks4::Socks4Error::UnsupportedCommand(_))
            | SocksError::Socks5Command(_) => "unsupported_command",
            SocksError::Socks4(socks4::Socks4Error::Truncated(_)) | SocksError::Io(_) => {
                "truncated"
            }
            SocksError::Socks4(_) | SocksError::Socks5(_) | SocksError::Socks5Auth(_) => {
                "malformed"
            }
        }
    }
}

/// A client's CONNECT request, waiting for the sidecar's answer.
pub struct SocksRequest<S> {
    pub version: SocksVersion,
    /// The destination the client asked for, host names unresolved.
    pub target: Target,
    pending: Pending<S>,
}

enum Pending<S> {
    V4(S),
    V5(fast_socks5::server::Socks5ServerProtocol<S, fast_socks5::server::states::CommandRead>),
}

/// Runs a SOCKS handshake up to the CONNECT request.
pub async fn accept<S>(mut stream: S) -> Result<SocksRequest<PrefixedIo<S>>, SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = match stream.read_u8().await {
        Ok(byte) => byte,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(SocksError::Empty),
        Err(e) => return Err(e.into()),
    };
    match first {
        4 => {
            let (version, target) = socks4::read_request(&mut stream).await?;
            Ok(SocksRequest {
                version,
                target,
                pending: Pending::V4(PrefixedIo::new(bytes::Bytes::new(), stream)),
            })
        }
        5 => {
            let (protocol, target) =
                socks5::read_request(PrefixedIo::new(vec![5u8], stream)).await?;
            Ok(SocksRequest {
                version: SocksVersion::V5,
                target,
                pending: Pending::V5(protocol),
            })
        }
        other => {
            if other.is_ascii_uppercase() {
                // Most likely an http:// proxy URL pointed at a SOCKS port: say so in HTTP.
                let answer =
                    plain_http_response(http::StatusCode::BAD_REQUEST, "", HTTP_ON_SOCKS_PORT);
                let _ = stream.write_all(answer.as_bytes()).await;
                drain_and_close(&mut stream).await;
            }
            Err(SocksError::NotSocks { first: other })
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SocksRequest<S> {
    /// Tells the client its connection is open; the returned stream carries its payload.
    pub async fn grant(self, bound: SocketAddr) -> io::Result<S> {
        match self.pending {
            Pending::V4(mut stream) => {
                socks4::write_reply(&mut stream, true, bound).await?;
                Ok(stream)
            }
            Pending::V5(protocol) => protocol
                .reply_success(bound)
                .await
                .map_err(io::Error::other),
        }
    }

    /// Tells the client why its connection could not be opened.
    pub async fn refuse(self, failure: DialFailure) -> io::Result<()> {
        match self.pending {
            Pending::V4(mut stream) => {
                socks4::write_reply(&mut stream, false, SocketAddr::from(([0, 0, 0, 0], 0))).await
            }
            Pending::V5(protocol) => protocol
                .reply_error(&socks5::reply_for(failure))
                .await
                .map_err(io::Error::other),
        }
    }
}
