//! SOCKS5 server side, on fast-socks5's protocol state machine.
//!
//! No authentication is needed, but a client that offers only username/password (RFC 1929) is let in
//! whatever it sends: some clients (Java's among them) offer it even when no credentials are configured.

use fast_socks5::server::{
    states, NoAuthentication, PasswordAuthentication, Socks5ServerProtocol, StandardAuthentication,
    StandardAuthenticationStarted,
};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite};

use super::SocksError;
use crate::net::{DialFailure, Host, Target};

/// No-auth first: a client offering both gets the one that needs nothing.
const METHODS: &[StandardAuthentication] = &[
    StandardAuthentication::NoAuthentication(NoAuthentication),
    StandardAuthentication::PasswordAuthentication(PasswordAuthentication),
];

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
        StandardAuthenticationStarted::NoAuthentication(auth) => {
            Socks5ServerProtocol::finish_auth(auth)
        }
        StandardAuthenticationStarted::PasswordAuthentication(auth) => {
            let (_user, _password, auth) = auth.read_username_password().await?;
            Socks5ServerProtocol::finish_auth(auth.accept().await?)
        }
    };
    let (protocol, command, target) = authenticated.read_command().await?;
    match command {
        Socks5Command::TCPConnect => {}
        Socks5Command::TCPBind | Socks5Command::UDPAssociate => {
            let name = if command == Socks5Command::TCPBind {
                "BIND"
            } else {
                "UDP ASSOCIATE"
            };
            protocol
                .reply_error(&ReplyError::CommandNotSupported)
                .await?;
            return Err(SocksError::Socks5Command(name));
        }
    }
    let target = match target {
        TargetAddr::Ip(addr) => Target::from(addr),
        TargetAddr::Domain(name, port) => Target::new(Host::Name(name), port),
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
