//! Transparent mode: iptables (see `init-iptables`) redirects the pod's inbound and outbound TCP to the
//! sidecar's listeners, and the sidecar relays each connection to where it was really going.
//!
//! The app needs no proxy settings. The destination comes from the socket itself (SO_ORIGINAL_DST), and
//! what the connection carries is found by who speaks first ([`crate::relay::proxy_stream`]): HTTP/1 and
//! HTTP/2 are recorded exchange by exchange, anything else (TLS with its SNI, databases, ...) as a stream.

mod original_dst;

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use crate::capture::Route;
use crate::connection::Connection;
use crate::net::{dial, Target};
use crate::options::RuntimeOptions;
use crate::relay::{proxy_stream, StreamJob};

pub use original_dst::{redirected_destination, Redirect};

/// How bytes reach the sidecar in this mode, for the records' `transport` field.
pub const TRANSPORT: &str = "iptables";

/// Relays one redirected connection to its original destination.
pub async fn serve<S>(
    client: S,
    destination: std::net::SocketAddr,
    options: &RuntimeOptions,
    context: Connection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    debug!(%destination, "redirected connection");
    let route = Arc::new(Route::new(TRANSPORT, destination.to_string(), None));
    let record = context.record_stream(&route);
    let upstream = match dial(&Target::from(destination), options.connect_timeout).await {
        Ok(upstream) => upstream,
        Err(e) => {
            // A redirected client expected to reach the destination itself: closing is its answer.
            warn!(error = %e, "closing connection: the original destination is unreachable");
            context.count_connect_failure();
            if let Some(record) = record {
                record.refused(e.to_string());
            }
            return;
        }
    };
    let job = StreamJob {
        route,
        record,
        context: &context,
    };
    proxy_stream(client, upstream, job).await;
}
