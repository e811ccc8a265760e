//! What every record of one client connection shares, and the fields each record fills in around it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::record::{Detail, Record, TlsSession, SCHEMA};

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

/// How a record's bytes reached the sidecar and where they were going.
pub(super) struct RecordRoute {
    pub transport: &'static str,
    pub target: String,
    pub delivered_to: Option<String>,
    pub tls: Option<TlsSession>,
}

impl Origin {
    /// A record of this connection: the fields every kind shares, filled in from the origin.
    pub(super) fn record(
        &self,
        id: u64,
        route: RecordRoute,
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
