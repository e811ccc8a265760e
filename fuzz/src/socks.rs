//! `socks_handshake`: the server side of SOCKS4, SOCKS4a and SOCKS5 ([`sidecar_proxy::socks::accept`]),
//! as the SOCKS listeners run it, fed a scripted client (see [`crate::scripted`]).
//!
//! Beside "no panic, no hang", every outcome is checked against a small reference reading of the same
//! bytes (RFC 1928/1929 and the SOCKS4/4a documents):
//!
//! - a handshake that succeeds names the version and target the client sent, and consumed exactly the
//!   handshake: the bytes after it come out of the granted stream unchanged, none lost to read-ahead;
//! - what the server wrote is exactly the protocol's replies for how far the client got (SOCKS5 method
//!   choice, sub-negotiation answer, error reply; SOCKS4's rejection; an HTTP 400 for an HTTP client);
//! - granting or refusing the request writes the matching reply. Which of the two happens, and with which
//!   dial failure, follows from the requested port, so the fuzzer reaches every reply.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sidecar_proxy::net::{DialFailure, Host, Target};
use sidecar_proxy::socks::{self, SocksError, SocksVersion};
use tokio::io::AsyncReadExt;

use crate::scripted::{run_to_end, ClientScript, ScriptedClient};

/// SOCKS4 reply codes.
const SOCKS4_GRANTED: u8 = 0x5A;
const SOCKS4_REJECTED: u8 = 0x5B;

pub fn socks_handshake(data: &[u8]) {
    let script = ClientScript::parse(data);
    let expected = reference::read(script.bytes);
    let (client, written) = ScriptedClient::new(&script);
    let outcome = run_to_end("SOCKS handshake", async move {
        let request = match socks::accept(client).await {
            Ok(request) => request,
            Err(error) => return Err(error),
        };
        let version = request.version;
        let target = request.target.clone();
        let answer = Answer::for_port(target.port);
        let after_handshake = match answer {
            Answer::Grant(bound) => {
                let mut stream = request
                    .grant(bound)
                    .await
                    .expect("granting writes to an in-memory client, which cannot fail");
                let mut rest = Vec::new();
                stream
                    .read_to_end(&mut rest)
                    .await
                    .expect("reading the in-memory client cannot fail");
                Some(rest)
            }
            Answer::Refuse(failure) => {
                request
                    .refuse(failure)
                    .await
                    .expect("refusing writes to an in-memory client, which cannot fail");
                None
            }
        };
        Ok((version, target, answer, after_handshake))
    });
    let written = written.bytes();

    match (outcome, expected) {
        (Ok((version, target, answer, after_handshake)), Expected::Accepted(accepted)) => {
            assert_eq!(version, accepted.version, "SOCKS version");
            assert_eq!(target, accepted.target, "requested target");
            check_target(&target);
            if let Some(rest) = after_handshake {
                assert_eq!(
                    rest,
                    &script.bytes[accepted.consumed..],
                    "the bytes after the handshake must reach the upstream unchanged"
                );
            }
            let mut replies = accepted.replies_before_answer.clone();
            replies.extend(answer.reply(version));
            assert_eq!(written, replies, "replies for {version:?} {target}");
        }
        (Ok((version, target, ..)), Expected::Refused(refused)) => panic!(
            "the server accepted {version:?} {target} but the reference refuses it: {}",
            refused.why
        ),
        (Err(error), Expected::Accepted(accepted)) => panic!(
            "the server refused ({error}) a handshake the reference accepts: {:?} {}",
            accepted.version, accepted.target
        ),
        (Err(error), Expected::Refused(refused)) => {
            // The message and the metric label must render for any input.
            let _ = (error.to_string(), error.metric_reason());
            if let SocksError::NotSocks { first } = error {
                assert!(
                    written.is_empty() || written.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
                    "first byte 0x{first:02x}: only an HTTP 400 may be written, got {written:?}"
                );
            } else {
                assert_eq!(
                    written, refused.replies,
                    "replies before refusing ({error}; reference: {})",
                    refused.why
                );
            }
        }
    }
}

/// The sidecar's answer to a request, chosen from the requested port.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Grant(SocketAddr),
    Refuse(DialFailure),
}

impl Answer {
    fn for_port(port: u16) -> Answer {
        const FAILURES: [DialFailure; 6] = [
            DialFailure::Refused,
            DialFailure::NetworkUnreachable,
            DialFailure::HostUnreachable,
            DialFailure::Resolve,
            DialFailure::TimedOut,
            DialFailure::Other,
        ];
        match port % 4 {
            0 => Answer::Grant(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
            // SOCKS4 replies have no room for IPv6: its reply must still be eight bytes.
            2 => Answer::Grant(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)),
            _ => Answer::Refuse(FAILURES[usize::from(port / 4) % FAILURES.len()]),
        }
    }

    /// The reply the client must read for this answer.
    fn reply(self, version: SocksVersion) -> Vec<u8> {
        match (version, self) {
            (SocksVersion::V4 | SocksVersion::V4a, Answer::Grant(bound)) => {
                let ip = match bound.ip() {
                    IpAddr::V4(ip) => ip.octets(),
                    IpAddr::V6(_) => [0; 4],
                };
                let mut reply = vec![0, SOCKS4_GRANTED];
                reply.extend(bound.port().to_be_bytes());
                reply.extend(ip);
                reply
            }
            (SocksVersion::V4 | SocksVersion::V4a, Answer::Refuse(_)) => socks4_rejection(),
            (SocksVersion::V5, Answer::Grant(bound)) => {
                let mut reply = vec![5, 0, 0];
                match bound.ip() {
                    IpAddr::V4(ip) => {
                        reply.push(1);
                        reply.extend(ip.octets());
                    }
                    IpAddr::V6(ip) => {
                        reply.push(4);
                        reply.extend(ip.octets());
                    }
                }
                reply.extend(bound.port().to_be_bytes());
                reply
            }
            (SocksVersion::V5, Answer::Refuse(failure)) => socks5_error(match failure {
                DialFailure::Refused => 5,
                DialFailure::NetworkUnreachable => 3,
                DialFailure::Resolve | DialFailure::HostUnreachable | DialFailure::TimedOut => 4,
                DialFailure::Other => 1,
            }),
        }
    }
}

fn socks4_rejection() -> Vec<u8> {
    vec![0, SOCKS4_REJECTED, 0, 0, 0, 0, 0, 0]
}

/// A SOCKS5 error reply, with the 0.0.0.0:0 bound address every such reply carries.
fn socks5_error(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// A host name that is an IP literal must have become an IP (it is dialled as one, never resolved).
fn check_target(target: &Target) {
    if let Host::Name(name) = &target.host {
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        assert!(
            bare.parse::<IpAddr>().is_err(),
            "IP literal {name:?} kept as a host name"
        );
    }
    let _ = target.to_string();
}

/// What the reference reading expects of a client's bytes.
enum Expected {
    Accepted(Accepted),
    Refused(Refused),
}

struct Accepted {
    version: SocksVersion,
    target: Target,
    /// Bytes of the handshake, up to and including the CONNECT request.
    consumed: usize,
    /// What the server writes before its answer (SOCKS5's method choice and sub-negotiation reply).
    replies_before_answer: Vec<u8>,
}

struct Refused {
    /// Everything the server writes before it gives up.
    replies: Vec<u8>,
    why: &'static str,
}

mod reference {
    //! The handshakes read straight from their specifications, independently of the proxy's code.

    use super::*;

    /// Longest SOCKS4 user id or host name the sidecar accepts.
    const MAX_SOCKS4_FIELD: usize = 255;

    struct Cursor<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let taken = self.bytes.get(self.at..self.at.checked_add(n)?)?;
            self.at += n;
            Some(taken)
        }

        fn u8(&mut self) -> Option<u8> {
            self.take(1).map(|b| b[0])
        }

        fn u16(&mut self) -> Option<u16> {
            self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
        }

        /// A NUL-terminated SOCKS4 field: `Err` when it runs past the limit, `Ok(None)` when cut short.
        fn nul_terminated(&mut self) -> Result<Option<&'a [u8]>, ()> {
            let rest = &self.bytes[self.at..];
            match rest.iter().position(|&b| b == 0) {
                Some(end) if end <= MAX_SOCKS4_FIELD => {
                    self.at += end + 1;
                    Ok(Some(&rest[..end]))
                }
                Some(_) => Err(()),
                None if rest.len() > MAX_SOCKS4_FIELD => Err(()),
                None => Ok(None),
            }
        }
    }

    pub(super) fn read(bytes: &[u8]) -> Expected {
        match bytes.first() {
            Some(4) => socks4(bytes),
            Some(5) => socks5(bytes),
            // Anything else is refused; what is written then is checked by the caller.
            _ => refused(Vec::new(), "not a SOCKS version byte"),
        }
    }

    fn refused(replies: Vec<u8>, why: &'static str) -> Expected {
        Expected::Refused(Refused { replies, why })
    }

    fn socks4(bytes: &[u8]) -> Expected {
        let mut cursor = Cursor { bytes, at: 1 };
        let Some(head) = cursor.take(7) else {
            return refused(Vec::new(), "SOCKS4 request cut short");
        };
        let (command, port) = (head[0], u16::from_be_bytes([head[1], head[2]]));
        let ip = Ipv4Addr::new(head[3], head[4], head[5], head[6]);
        match cursor.nul_terminated() {
            Ok(Some(_user_id)) => {}
            Ok(None) => return refused(Vec::new(), "SOCKS4 user id cut short"),
            Err(()) => return refused(Vec::new(), "SOCKS4 user id too long"),
        }
        let is_4a = head[3..6] == [0, 0, 0] && head[6] != 0;
        let (version, target) = if is_4a {
            let name = match cursor.nul_terminated() {
                Ok(Some(name)) => name,
                Ok(None) => return refused(Vec::new(), "SOCKS4a host name cut short"),
                Err(()) => return refused(Vec::new(), "SOCKS4a host name too long"),
            };
            let Ok(name) = std::str::from_utf8(name) else {
                return refused(Vec::new(), "SOCKS4a host name not UTF-8");
            };
            (SocksVersion::V4a, Target::from_host_str(name, port))
        } else {
            (
                SocksVersion::V4,
                Target::new(Host::Ip(IpAddr::V4(ip)), port),
            )
        };
        if command != 1 {
            return refused(socks4_rejection(), "SOCKS4 command other than CONNECT");
        }
        Expected::Accepted(Accepted {
            version,
            target,
            consumed: cursor.at,
            replies_before_answer: Vec::new(),
        })
    }

    fn socks5(bytes: &[u8]) -> Expected {
        let mut cursor = Cursor { bytes, at: 1 };
        let mut replies = Vec::new();
        let Some(count) = cursor.u8() else {
            return refused(replies, "SOCKS5 greeting cut short");
        };
        let Some(methods) = cursor.take(usize::from(count)) else {
            return refused(replies, "SOCKS5 methods cut short");
        };
        // No authentication is preferred; username/password (any credentials) is the fallback.
        if methods.contains(&0) {
            replies.extend([5, 0]);
        } else if methods.contains(&2) {
            replies.extend([5, 2]);
            match cursor.u8() {
                Some(1) => {}
                Some(_) => return refused(replies, "RFC 1929 sub-negotiation version not 1"),
                None => return refused(replies, "RFC 1929 sub-negotiation cut short"),
            }
            let user = cursor.u8().and_then(|len| cursor.take(usize::from(len)));
            let password =
                user.and_then(|_| cursor.u8().and_then(|len| cursor.take(usize::from(len))));
            if password.is_none() {
                return refused(replies, "RFC 1929 credentials cut short");
            }
            replies.extend([1, 0]);
        } else {
            replies.extend([5, 0xff]);
            return refused(replies, "no acceptable SOCKS5 method");
        }

        let Some(request) = cursor.take(4) else {
            return refused(replies, "SOCKS5 request cut short");
        };
        let (version, command, address_type) = (request[0], request[1], request[3]);
        if version != 5 {
            return refused(replies, "SOCKS5 request version not 5");
        }
        // The address is read before the command is looked at; a bad one gets a reply of its own.
        let host = match address_type {
            1 => cursor
                .take(4)
                .map(|ip| Ok(Host::Ip(IpAddr::from([ip[0], ip[1], ip[2], ip[3]])))),
            4 => cursor.take(16).map(|ip| {
                let octets: [u8; 16] = ip.try_into().expect("16 bytes taken");
                Ok(Host::Ip(IpAddr::from(octets)))
            }),
            3 => cursor
                .u8()
                .and_then(|len| cursor.take(usize::from(len)))
                .map(|name| std::str::from_utf8(name).map(str::to_owned).map(Host::Name)),
            _ => {
                replies.extend(socks5_error(8));
                return refused(replies, "SOCKS5 address type not supported");
            }
        };
        let (host, port) = match (host, cursor.u16()) {
            (Some(Ok(host)), Some(port)) => (host, port),
            // fast-socks5 answers every unreadable address with "connection refused".
            (Some(Err(_)), _) => {
                replies.extend(socks5_error(5));
                return refused(replies, "SOCKS5 domain name not UTF-8");
            }
            _ => {
                replies.extend(socks5_error(5));
                return refused(replies, "SOCKS5 address cut short");
            }
        };
        match command {
            1 => {}
            2 | 3 => {
                replies.extend(socks5_error(7));
                return refused(replies, "SOCKS5 BIND / UDP ASSOCIATE not supported");
            }
            _ => {
                replies.extend(socks5_error(7));
                return refused(replies, "unknown SOCKS5 command");
            }
        }
        let target = match host {
            Host::Name(name) => Target::from_host_str(&name, port),
            ip => Target::new(ip, port),
        };
        Expected::Accepted(Accepted {
            version: SocksVersion::V5,
            target,
            consumed: cursor.at,
            replies_before_answer: replies,
        })
    }
}
