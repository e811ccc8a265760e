//! What every record of one client connection shares, and the fields each record fills in around it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::record::{Detail, Record, SCHEMA};
use crate::tls_out::TlsSession;

static NEXT_RECORD: AtomicU64 = AtomicU64::new(1);

/// A fresh record id: ids follow the order records were started.
pub(crate) fn next_record_id() -> u64 {
    NEXT_RECORD.fetch_add(1, Ordering::Relaxed)
}

/// The client connection a record belongs to and the listener that accepted it.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    pub connection: u64,
    pub direction: &'static str,
    pub proxy_type: &'static str,
    pub protocol: &'static str,
    pub client: SocketAddr,
}

/// How a connection's bytes reached the sidecar and where they were going. Decided once, where the
/// connection is classified (its listener's handler, or each request on an HTTP listener), and handed to
/// the relay, the tap and the records alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `http`, `connect`, `socks4`, `socks4a`, `socks5`, `tcp`, or `iptables` (a redirected connection).
    pub transport: &'static str,
    /// The destination as the client named it (the CONNECT or SOCKS target, the app for a tcp relay, the
    /// original destination of a redirected connection), host names kept.
    pub target: String,
    /// Where the sidecar really delivered, when that differs from `target`.
    pub delivered_to: Option<String>,
    /// The TLS the sidecar terminated around these bytes (tls-out), when it did.
    pub tls: Option<TlsSession>,
}

impl Route {
    pub fn new(transport: &'static str, target: String, delivered_to: Option<String>) -> Route {
        Route {
            transport,
            target,
            delivered_to,
            tls: None,
        }
    }

    /// The same route inside the TLS the sidecar terminated (tls-out): what was decrypted is recorded with
    /// the session.
    pub fn inside_tls(&self, session: TlsSession) -> Route {
        Route {
            tls: Some(session),
            ..self.clone()
        }
    }

    /// The host part of the target (`host:port`, `[v6]:port`).
    pub fn target_host(&self) -> &str {
        let target = self.target.as_str();
        let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }
}

impl Origin {
    /// A record of this connection: the fields every kind shares, filled in from the origin.
    pub(crate) fn record(
        &self,
        id: u64,
        route: Route,
        started: (SystemTime, Duration),
        detail: Detail,
    ) -> Record {
        Record {
            schema: SCHEMA.to_owned(),
            id,
            connection: self.connection,
            direction: self.direction.to_owned(),
            proxy_type: self.proxy_type.to_owned(),
            protocol: self.protocol.to_owned(),
            transport: route.transport.to_owned(),
            client: self.client.to_string(),
            target: route.target,
            delivered_to: route.delivered_to,
            tls: route.tls,
            start: humantime::format_rfc3339_micros(started.0).to_string(),
            duration_ms: started.1.as_secs_f64() * 1000.0,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Route;

    #[test]
    fn the_host_of_a_target() {
        let host = |target: &str| {
            Route::new("tcp", target.to_owned(), None)
                .target_host()
                .to_owned()
        };
        assert_eq!(host("api.example.test:443"), "api.example.test");
        assert_eq!(host("10.0.0.7:443"), "10.0.0.7");
        assert_eq!(host("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(host("no-port"), "no-port");
    }
}
