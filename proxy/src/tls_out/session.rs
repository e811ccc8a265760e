//! What an interception agreed with both sides: produced here, carried by the records of what was inside.

use serde::Deserialize;

/// The TLS the sidecar terminated: what the client asked for and what was agreed with it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TlsSession {
    /// The server name the client asked for (SNI); absent when it sent none.
    #[serde(default)]
    pub sni: Option<String>,
    /// The application protocol agreed (ALPN): `h2`, `http/1.1`, ...; absent when none was.
    #[serde(default)]
    pub alpn: Option<String>,
    /// The client side's TLS version: `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The upstream side's TLS version; absent when no upstream was contacted (mock mode answers the
    /// decrypted requests from a recording).
    #[serde(default)]
    pub upstream_version: Option<String>,
}
