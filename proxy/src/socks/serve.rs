//! One SOCKS connection from handshake to relay, shared by the forward proxy (deliver to the requested
//! target) and the reverse proxy (deliver to the app, whatever the caller asked for).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use super::{accept, SocksError};
use crate::capture::Route;
use crate::connection::Connection;
use crate::log_escape::Escaped;
use crate::net::{dial, Target};
use crate::peer_warnings::{HANDSHAKE_TIMEOUT, SOCKS_HANDSHAKE_FAILED};
use crate::relay::{proxy_stream, StreamJob};

pub struct Timeouts {
    pub handshake: Duration,
    pub connect: Duration,
}

/// Serves one SOCKS client. `deliver_to` overrides the requested destination (the reverse proxy's app).
pub async fn serve<S>(
    client: S,
    deliver_to: Option<&Target>,
    timeouts: &Timeouts,
    capture: Connection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed: the handshake's state is larger than the relay's, and without this an idle connection's task
    // would stay that size for its whole life.
    let request = match tokio::time::timeout(timeouts.handshake, Box::pin(accept(client))).await {
        Ok(Ok(request)) => request,
        Ok(Err(SocksError::Empty)) => {
            debug!("client closed before a SOCKS request");
            return;
        }
        Ok(Err(SocksError::NotSocks { first })) => {
            capture.count_handshake_error("not_socks");
            SOCKS_HANDSHAKE_FAILED.occurred_because(&format_args!(
                "not a SOCKS4/SOCKS5 handshake (first byte {first})"
            ));
            return;
        }
        Ok(Err(e)) => {
            capture.count_handshake_error(e.metric_reason());
            SOCKS_HANDSHAKE_FAILED.occurred_because(&Escaped(&e));
            return;
        }
        Err(_) => {
            capture.count_handshake_error("timeout");
            HANDSHAKE_TIMEOUT.occurred();
            return;
        }
    };

    let destination = deliver_to.unwrap_or(&request.target).clone();
    debug!(version = request.version.as_str(), requested = %Escaped(&request.target), destination = %Escaped(&destination), "SOCKS CONNECT");
    let route = Arc::new(Route::new(
        request.version.as_str(),
        request.target.to_string(),
        deliver_to.map(|app| app.to_string()),
    ));
    let record = capture.record_stream(&route);
    let upstream = match dial(&destination, timeouts.connect).await {
        Ok(upstream) => upstream,
        Err(e) => {
            warn!(error = %Escaped(&e), "SOCKS CONNECT failed");
            capture.count_connect_failure();
            let _ = request.refuse(e.failure).await;
            if let Some(record) = record {
                record.refused(e.to_string());
            }
            return;
        }
    };
    let bound = match upstream.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            warn!(error = %e, "upstream socket has no local address");
            return;
        }
    };
    let client = match request.grant(bound).await {
        Ok(client) => client,
        Err(e) => {
            debug!(error = %e, "client left before the SOCKS reply");
            if let Some(record) = record {
                record.refused(format!("client left before the SOCKS reply: {e}"));
            }
            return;
        }
    };
    let job = StreamJob {
        route,
        record,
        context: &capture,
    };
    // A client that sent nothing past its request (nearly every one: it waits for the reply) goes on as the
    // socket accept made, so a stream nothing reads can be spliced (relay.rs `plain_sockets`); bytes it
    // sent early stay in front of the rest.
    if client.prefix().is_empty() {
        proxy_stream(client.into_inner(), upstream, job).await;
    } else {
        proxy_stream(client, upstream, job).await;
    }
}
