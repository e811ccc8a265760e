//! The validated configuration: what the sidecar runs as, per direction.
//!
//! Pure data. The listeners are built from a [`ProxyConfig`]; the injector builds the sidecar's environment
//! from one. Nothing here performs I/O.

use std::fmt;

/// Default inbound (reverse) listener port.
pub const DEFAULT_IN_PORT: u16 = 4143;
/// Default outbound (forward) listener port.
pub const DEFAULT_OUT_PORT: u16 = 4140;
/// Default host of the app a reverse proxy delivers to.
pub const DEFAULT_APP_HOST: &str = "localhost";
/// Default port of the app a reverse proxy delivers to.
pub const DEFAULT_APP_PORT: u16 = 80;

/// How the sidecar is placed in the pod's traffic (`proxy-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProxyType {
    /// iptables redirects the pod's traffic to the sidecar; the app needs no settings.
    Transparent,
    /// Inbound only: callers reach the app through the sidecar's in-port.
    Reverse,
    /// Outbound only: the app uses the sidecar's out-port as its HTTP or SOCKS proxy.
    Forward,
    /// Both reverse and forward.
    Dual,
}

impl ProxyType {
    pub const ALLOWED: &'static str = "transparent, reverse, forward, dual";

    pub fn parse(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "transparent" => Some(ProxyType::Transparent),
            "reverse" => Some(ProxyType::Reverse),
            "forward" => Some(ProxyType::Forward),
            "dual" => Some(ProxyType::Dual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProxyType::Transparent => "transparent",
            ProxyType::Reverse => "reverse",
            ProxyType::Forward => "forward",
            ProxyType::Dual => "dual",
        }
    }

    /// The `proxy-protocol` values that make sense for this type.
    pub fn allowed_protocols(self) -> &'static [ProtocolSetting] {
        use ProtocolSetting::*;
        match self {
            ProxyType::Reverse => &[Tcp, Http, Socks],
            ProxyType::Forward | ProxyType::Transparent => &[Http, Socks],
            ProxyType::Dual => &[Http, Socks, TcpHttp, TcpSocks],
        }
    }
}

impl fmt::Display for ProxyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `proxy-protocol` value: one protocol for every direction, or `tcp:<forward protocol>` for dual.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolSetting {
    Tcp,
    Http,
    Socks,
    TcpHttp,
    TcpSocks,
}

impl ProtocolSetting {
    pub const ALLOWED: &'static str = "tcp, http, socks, tcp:http, tcp:socks";

    pub fn parse(word: &str) -> Option<Self> {
        match word.to_ascii_lowercase().as_str() {
            "tcp" => Some(ProtocolSetting::Tcp),
            "http" => Some(ProtocolSetting::Http),
            "socks" => Some(ProtocolSetting::Socks),
            "tcp:http" => Some(ProtocolSetting::TcpHttp),
            "tcp:socks" => Some(ProtocolSetting::TcpSocks),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolSetting::Tcp => "tcp",
            ProtocolSetting::Http => "http",
            ProtocolSetting::Socks => "socks",
            ProtocolSetting::TcpHttp => "tcp:http",
            ProtocolSetting::TcpSocks => "tcp:socks",
        }
    }

    fn inbound(self) -> InboundProtocol {
        match self {
            ProtocolSetting::Tcp | ProtocolSetting::TcpHttp | ProtocolSetting::TcpSocks => {
                InboundProtocol::Tcp
            }
            ProtocolSetting::Http => InboundProtocol::Http,
            ProtocolSetting::Socks => InboundProtocol::Socks,
        }
    }

    fn outbound(self) -> Option<OutboundProtocol> {
        match self {
            ProtocolSetting::Tcp => None,
            ProtocolSetting::Http | ProtocolSetting::TcpHttp => Some(OutboundProtocol::Http),
            ProtocolSetting::Socks | ProtocolSetting::TcpSocks => Some(OutboundProtocol::Socks),
        }
    }
}

impl fmt::Display for ProtocolSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the inbound (reverse) listener speaks to callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InboundProtocol {
    /// Opaque bytes relayed to the app.
    Tcp,
    /// An HTTP reverse proxy in front of the app.
    Http,
    /// SOCKS4/4a/5 handshake from the caller, then the stream goes to the app.
    Socks,
}

impl InboundProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            InboundProtocol::Tcp => "tcp",
            InboundProtocol::Http => "http",
            InboundProtocol::Socks => "socks",
        }
    }
}

/// What the outbound (forward) listener speaks to the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutboundProtocol {
    /// Absolute-form HTTP requests and CONNECT tunnels.
    Http,
    /// SOCKS4, SOCKS4a and SOCKS5 on one port.
    Socks,
}

impl OutboundProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundProtocol::Http => "http",
            OutboundProtocol::Socks => "socks",
        }
    }
}

/// Where a reverse proxy delivers: the app, at `proxy-host:proxy-port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReverseTarget {
    /// A host name or an IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ReverseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One validated sidecar configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    pub proxy_type: ProxyType,
    pub protocol: ProtocolSetting,
    /// The app behind the reverse proxy.
    pub app: ReverseTarget,
    pub in_port: u16,
    pub out_port: u16,
}

impl ProxyConfig {
    /// The inbound listener's protocol, if this configuration has an inbound listener.
    pub fn inbound(&self) -> Option<InboundProtocol> {
        match self.proxy_type {
            ProxyType::Reverse | ProxyType::Dual => Some(self.protocol.inbound()),
            ProxyType::Forward | ProxyType::Transparent => None,
        }
    }

    /// The port of the inbound listener, when there is one: reverse, dual, and transparent (whose
    /// inbound listener takes what iptables redirects).
    pub fn inbound_listener_port(&self) -> Option<u16> {
        (self.inbound().is_some() || self.proxy_type == ProxyType::Transparent)
            .then_some(self.in_port)
    }

    /// The port of the outbound listener, when there is one: forward, dual, and transparent.
    pub fn outbound_listener_port(&self) -> Option<u16> {
        (self.outbound().is_some() || self.proxy_type == ProxyType::Transparent)
            .then_some(self.out_port)
    }

    /// The outbound listener's protocol, if this configuration has an outbound listener.
    pub fn outbound(&self) -> Option<OutboundProtocol> {
        match self.proxy_type {
            ProxyType::Forward | ProxyType::Dual => self.protocol.outbound(),
            ProxyType::Reverse | ProxyType::Transparent => None,
        }
    }
}
