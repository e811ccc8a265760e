//! What every record of one tapped stream shares, captured once when the tap starts so that records can be
//! built on the writer thread without holding the connection's context (and its open-connection gauge).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::capture::record::{Detail, Record, TlsSession, SCHEMA};
use crate::capture::CaptureSettings;
use crate::connection::Connection;

/// Where a tapped stream's exchanges come from and go to.
pub struct Route {
    pub transport: &'static str,
    /// The destination the client named (the CONNECT or SOCKS target, the app for a tcp relay, the
    /// original destination of a redirected connection).
    pub target: String,
    pub delivered_to: Option<String>,
    /// The TLS the sidecar terminated around these exchanges (tls-out), when it did.
    pub tls: Option<TlsSession>,
}

pub struct TapOrigin {
    connection: u64,
    direction: &'static str,
    proxy_type: &'static str,
    protocol: &'static str,
    client: SocketAddr,
    route: Route,
    pub settings: Arc<CaptureSettings>,
}

impl TapOrigin {
    pub fn new(context: &Connection, route: Route) -> Arc<TapOrigin> {
        Arc::new(TapOrigin {
            connection: context.id,
            direction: context.direction,
            proxy_type: context.proxy_type,
            protocol: context.protocol,
            client: context.client,
            route,
            settings: context.capture.settings.clone(),
        })
    }

    /// The scheme of the URLs this stream's requests were made to.
    pub fn scheme(&self) -> &'static str {
        if self.route.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn record(&self, id: u64, start: SystemTime, duration: Duration, detail: Detail) -> Record {
        Record {
            schema: SCHEMA.to_owned(),
            id,
            connection: self.connection,
            direction: self.direction.to_owned(),
            proxy_type: self.proxy_type.to_owned(),
            protocol: self.protocol.to_owned(),
            transport: self.route.transport.to_owned(),
            client: self.client.to_string(),
            target: self.route.target.clone(),
            delivered_to: self.route.delivered_to.clone(),
            tls: self.route.tls.clone(),
            start: humantime::format_rfc3339_micros(start).to_string(),
            duration_ms: duration.as_secs_f64() * 1000.0,
            detail,
        }
    }
}
