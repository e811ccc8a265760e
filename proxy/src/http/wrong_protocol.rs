//! A SOCKS or TLS client on an HTTP listener: a proxy URL with the wrong scheme (`socks5://` or `https://`
//! for the sidecar's plain HTTP proxy port), or a caller using the wrong port. HTTP's parser refused such
//! bytes and closed, so the client reported a reset and the log said only "malformed request".
//!
//! Now the client gets its own protocol's refusal, which its library can show (SOCKS has no room for a
//! sentence; TLS has alerts, not text), and the log names the setting the client probably wanted. The
//! first byte decides: no HTTP request starts with 0x04, 0x05 or 0x16, since methods are letters.

use crate::detect::tls::is_tls_handshake;
use crate::peer_warnings::{
    PeerWarning, SOCKS_ON_FORWARD, SOCKS_ON_REVERSE, TLS_ON_FORWARD, TLS_ON_REVERSE,
};

/// The refusal a SOCKS5 greeting gets: version 5, method 0xFF, "no acceptable methods" (RFC 1928 §3).
const SOCKS5_NO_ACCEPTABLE_METHOD: &[u8] = &[0x05, 0xFF];
/// The refusal a SOCKS4 request gets: reply version 0, code 91 "request rejected or failed", then the
/// port and address fields, zero.
const SOCKS4_REJECTED: &[u8] = &[0x00, 0x5B, 0, 0, 0, 0, 0, 0];
/// A fatal TLS `handshake_failure` alert (RFC 8446 §6): the client's library reports that no TLS could be
/// agreed, which is exactly so. Record version TLS 1.0, as a server that has not negotiated one sends.
const TLS_HANDSHAKE_FAILURE: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28];

/// What a client that is not speaking HTTP speaks instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WrongProtocol {
    Socks4,
    Socks5,
    Tls,
}

impl WrongProtocol {
    /// What the client's first bytes say it speaks, when it is something the sidecar can answer.
    pub fn of(first: &[u8]) -> Option<WrongProtocol> {
        match first {
            [0x05, ..] => Some(WrongProtocol::Socks5),
            [0x04, ..] => Some(WrongProtocol::Socks4),
            [0x16] | [0x16, 0x03] => Some(WrongProtocol::Tls),
            _ if is_tls_handshake(first) => Some(WrongProtocol::Tls),
            _ => None,
        }
    }

    /// The bytes that refuse the client in its own protocol.
    pub fn refusal(self) -> &'static [u8] {
        match self {
            WrongProtocol::Socks4 => SOCKS4_REJECTED,
            WrongProtocol::Socks5 => SOCKS5_NO_ACCEPTABLE_METHOD,
            WrongProtocol::Tls => TLS_HANDSHAKE_FAILURE,
        }
    }

    /// The `sidecar_handshake_errors_total` reason.
    pub fn reason(self) -> &'static str {
        match self {
            WrongProtocol::Socks4 | WrongProtocol::Socks5 => "socks_on_http",
            WrongProtocol::Tls => "tls_on_http",
        }
    }

    /// The log line for this client on a forward (`outbound`) or reverse (`inbound`) HTTP listener.
    pub fn warning(self, forward_proxy: bool) -> &'static PeerWarning {
        match (self, forward_proxy) {
            (WrongProtocol::Tls, true) => &TLS_ON_FORWARD,
            (WrongProtocol::Tls, false) => &TLS_ON_REVERSE,
            (_, true) => &SOCKS_ON_FORWARD,
            (_, false) => &SOCKS_ON_REVERSE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_socks_and_tls_from_http() {
        assert_eq!(WrongProtocol::of(&[5, 1, 0]), Some(WrongProtocol::Socks5));
        assert_eq!(
            WrongProtocol::of(&[4, 1, 0, 80]),
            Some(WrongProtocol::Socks4)
        );
        assert_eq!(
            WrongProtocol::of(&[0x16, 3, 1, 2, 0]),
            Some(WrongProtocol::Tls)
        );
        assert_eq!(WrongProtocol::of(&[0x16]), Some(WrongProtocol::Tls));
        for http in [&b"GET / HTTP/1.1\r\n"[..], b"PRI * HTTP/2.0", b"C", b""] {
            assert_eq!(WrongProtocol::of(http), None, "{http:?}");
        }
    }
}
