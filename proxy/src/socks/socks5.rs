//! SOCKS5 server side, on fast-socks5's protocol state machine.
//!
//! No authentication is needed, but a client that offers only username/password (RFC 1929) is let in
//! whatever it sends, empty fields included: some clients (Java's among them) offer it even when no
//! credentials are configured. fast-socks5's own password method refuses empty fields, hence
//! [`AnyCredentials`].

use fast_socks5::server::{
    states, AuthMethod, AuthMethodSuccessState, NoAuthentication, NoAuthenticationImpl,
    Socks5ServerProtocol,
};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::SocksError;
use crate::net::{DialFailure, Target};

fast_socks5::auth_method_enums! {
    /// The methods the sidecar offers, in order of preference.
    pub enum SidecarAuth / SidecarAuthStarted<T> {
        NoAuthentication(NoAuthenticationImpl<T>),
        AnyCredentials(AnyCredentialsStarted<T>),
    }
}

/// No-auth first: a client offering both gets the one that needs nothing.
const METHODS: &[SidecarAuth] = &[
    SidecarAuth::NoAuthentication(NoAuthentication),
    SidecarAuth::AnyCredentials(AnyCredentials),
];

/// RFC 1929 username/password, every credential accepted.
#[derive(Clone, Copy, Debug)]
pub struct AnyCredentials;

impl<T> AuthMethod<T> for AnyCredentials {
    type StartingState = AnyCredentialsStarted<T>;

    fn method_id(self) -> u8 {
        0x02
    }

    fn new(self, inner: T) -> Self::StartingState {
        AnyCredentialsStarted(inner)
    }
}

pub struct AnyCredentialsStarted<T>(T);

pub struct AnyCredentialsAccepted<T>(T);

impl<T> AuthMethodSuccessState<T> for AnyCredentialsAccepted<T> {
    fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AnyCredentialsStarted<T> {
    /// Reads `VER=1 | ULEN | UNAME | PLEN | PASSWD`, discards the credentials and answers success.
    async fn accept(mut self) -> Result<AnyCredentialsAccepted<T>, SocksError> {
        let stream = &mut self.0;
        let version = stream.read_u8().await?;
        if version != 1 {
            return Err(SocksError::Socks5Auth(version));
        }
        let mut field = [0u8; 255];
        let user_len = stream.read_u8().await? as usize;
        stream.read_exact(&mut field[..user_len]).await?;
        let password_len = stream.read_u8().await? as usize;
        stream.read_exact(&mut field[..password_len]).await?;
        stream.write_all(&[1, 0]).await?;
        Ok(AnyCredentialsAccepted(self.0))
    }
}

pub(super) async fn read_request<S>(
    stream: S,
) -> Result<(Socks5ServerProtocol<S, states::CommandRead>, Target), SocksError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let authenticated = match Socks5ServerProtocol::start(stream)
        .negotiate_auth(METHODS)
        .await?
    {
        SidecarAuthStarted::NoAuthentication(auth) => Socks5ServerProtocol::finish_auth(auth),
        SidecarAuthStarted::AnyCredentials(auth) => {
            Socks5ServerProtocol::finish_auth(auth.accept().await?)
        }
    };
    let (protocol, command, target) = authenticated.read_command().await?;
    let refused = match command {
        Socks5Command::TCPConnect => None,
        Socks5Command::TCPBind => Some("BIND"),
        Socks5Command::UDPAssociate => Some("UDP ASSOCIATE"),
    };
    if let Some(name) = refused {
        protocol
            .reply_error(&ReplyError::CommandNotSupported)
            .await?;
        return Err(SocksError::Socks5Command(name));
    }
    let target = match target {
        TargetAddr::Ip(addr) => Target::from(addr),
        // Some clients send an IP literal (even a bracketed IPv6 one) as a "domain": dial it as an IP.
        TargetAddr::Domain(name, port) => Target::from_host_str(&name, port),
    };
    Ok((protocol, target))
}

/// The SOCKS5 reply code that tells the client why its connection failed.
pub(super) fn reply_for(failure: DialFailure) -> ReplyError {
    match failure {
        DialFailure::Refused => ReplyError::ConnectionRefused,
        DialFailure::NetworkUnreachable => ReplyError::NetworkUnreachable,
        DialFailure::Resolve | DialFailure::HostUnreachable | DialFailure::TimedOut => {
            ReplyError::HostUnreachable
        }
        DialFailure::Other => ReplyError::GeneralFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client offering only username/password, with an empty password (as Java sends when none is set).
    #[tokio::test]
    async fn empty_credentials_are_accepted() {
        let (mut client, server) = tokio::io::duplex(256);
        let serve = tokio::spawn(read_request(server));
        client.write_all(&[5, 1, 2]).await.unwrap();
        let mut choice = [0u8; 2];
        client.read_exact(&mut choice).await.unwrap();
        assert_eq!(choice, [5, 2]);
        client
            .write_all(&[1, 4, b'j', b'a', b'v', b'a', 0])
            .await
            .unwrap();
        let mut auth = [0u8; 2];
        client.read_exact(&mut auth).await.unwrap();
        assert_eq!(auth, [1, 0]);
        client
            .write_all(&[
                5, 1, 0, 3, 9, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't', 0, 80,
            ])
            .await
            .unwrap();
        let (_, target) = serve.await.unwrap().unwrap();
        assert_eq!(target.to_string(), "localhost:80");
    }
}
