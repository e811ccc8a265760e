//! What the docs promise for each cell. A cell runs either way; its test passes when what happened is
//! what the docs say: `Works` cells must deliver every request exactly, `Unsupported` cells must fail.
//! An unsupported cell that works fails its test just the same: then the docs are wrong and change.

use crate::clients::{Client, Runtime, Side, Speaks};
use crate::modes::{Mode, Protocol};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Works,
    /// The docs say this combination does not work, and why.
    Unsupported(Unsupported),
}

/// A documented failure: why, and how it shows, so that a cell failing for another reason (a crash, a
/// timeout, a wrong port) is not taken for the documented failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub reason: String,
    /// Text the client's failure must contain (compared without case).
    pub signature: &'static str,
}

impl Unsupported {
    fn expected(reason: &str, signature: &'static str) -> Expected {
        Expected::Unsupported(Unsupported {
            reason: reason.to_owned(),
            signature,
        })
    }
}

/// What an HTTP client gets from a SOCKS port: the sidecar's own 400.
const SOCKS_PORT_ANSWERS_HTTP: &str = "this port speaks SOCKS4/SOCKS5, not HTTP";
/// SOCKS clients name the protocol that failed in their errors (curl, Go, PySocks).
const SOCKS_HANDSHAKE_FAILED: &str = "socks";

/// The port a client row talks to in a column, with its protocol; `None` when the column has no
/// listener on the row's side (the cell does not exist).
pub fn sidecar_port(client: &Client, mode: &Mode) -> Option<crate::modes::Port> {
    match client.side {
        Side::Outbound => mode.outbound,
        Side::Inbound => mode.inbound,
    }
}

/// The documented outcome of a cell, or `None` for a cell that does not exist.
pub fn expected(client: &Client, mode: &Mode) -> Option<Expected> {
    let port = sidecar_port(client, mode)?;
    let expected = match (client.speaks, port.protocol) {
        // Transparent columns have their own rows: an app configured for a proxy port has nothing to
        // talk to there, and an app with no setting reaches an inline sidecar only by being told to.
        (Speaks::Nothing, Protocol::Redirected) => Expected::Works,
        // The admin port is the same in every mode; the transparent column shows that the redirect
        // leaves it alone.
        (Speaks::SidecarAdmin, Protocol::Redirected) => Expected::Works,
        (Speaks::Nothing | Speaks::SidecarAdmin, _) | (_, Protocol::Redirected) => return None,
        // It tries to reach the upstream itself, which only the sidecar can resolve.
        (Speaks::Ignored(reason), _) => Unsupported::expected(reason, "UnresolvedAddressException"),
        (Speaks::HttpProxy, Protocol::Http) | (Speaks::Socks, Protocol::Socks) => Expected::Works,
        (Speaks::PlainHttp, Protocol::Tcp | Protocol::Http) => Expected::Works,
        (Speaks::HttpProxy, _) if client.runtime == Runtime::Node => Unsupported::expected(
            "NodeJS needs `proxy-protocol` `http` or `tcp:http`: global-agent speaks only HTTP proxy",
            SOCKS_PORT_ANSWERS_HTTP,
        ),
        (Speaks::HttpProxy, _) => Unsupported::expected(
            "an `http://` proxy setting needs the forward port to speak http",
            SOCKS_PORT_ANSWERS_HTTP,
        ),
        // The HTTP port answers a SOCKS greeting with SOCKS's own refusal, which Java reports as such
        // (before, an HTTP 400 made it fall back to a direct connection and fail to resolve the name).
        (Speaks::Socks, _) if client.runtime == Runtime::Java => Unsupported::expected(
            "Java's SOCKS properties need `proxy-protocol` `socks` or `tcp:socks`",
            "No acceptable methods",
        ),
        (Speaks::Socks, _) if client.side == Side::Outbound => Unsupported::expected(
            "a SOCKS proxy setting needs the forward port to speak socks",
            SOCKS_HANDSHAKE_FAILED,
        ),
        (Speaks::Socks, _) => Unsupported::expected(
            "a SOCKS caller needs the inbound port to speak socks",
            SOCKS_HANDSHAKE_FAILED,
        ),
        (Speaks::PlainHttp, Protocol::Socks) => Unsupported::expected(
            "an inbound socks port needs callers to speak SOCKS",
            SOCKS_PORT_ANSWERS_HTTP,
        ),
    };
    Some(expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clients, modes};

    #[test]
    fn the_docs_claims_are_the_expectations() {
        let node = clients::by_id("node_global_agent").unwrap();
        let java_socks = clients::by_id("java_urlconnection_socks_properties").unwrap();
        assert_eq!(expected(node, &modes::FORWARD_HTTP), Some(Expected::Works));
        assert!(matches!(
            expected(node, &modes::FORWARD_SOCKS),
            Some(Expected::Unsupported(_))
        ));
        assert_eq!(
            expected(java_socks, &modes::DUAL_TCP_SOCKS),
            Some(Expected::Works)
        );
        assert!(matches!(
            expected(java_socks, &modes::DUAL_TCP_HTTP_8080),
            Some(Expected::Unsupported(_))
        ));
    }

    #[test]
    fn cells_exist_only_where_the_column_has_the_rows_listener() {
        let go = clients::by_id("go_env_http").unwrap();
        let caller = clients::by_id("go_caller").unwrap();
        assert_eq!(expected(go, &modes::REVERSE_TCP), None);
        assert_eq!(expected(caller, &modes::FORWARD_HTTP), None);
        assert_eq!(expected(caller, &modes::REVERSE_TCP), Some(Expected::Works));
    }

    #[test]
    fn transparent_columns_have_only_the_rows_without_settings() {
        let go = clients::by_id("go_env_http").unwrap();
        let bare = clients::by_id("transparent_go").unwrap();
        let admin = clients::by_id("transparent_curl_admin_port").unwrap();
        assert_eq!(expected(go, &modes::TRANSPARENT), None);
        assert_eq!(expected(bare, &modes::FORWARD_HTTP), None);
        assert_eq!(expected(bare, &modes::TRANSPARENT), Some(Expected::Works));
        assert_eq!(expected(admin, &modes::TRANSPARENT), Some(Expected::Works));
        assert_eq!(expected(admin, &modes::TRANSPARENT_TLS_OUT), None);
    }
}
