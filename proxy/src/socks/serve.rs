//! One SOCKS connection from handshake to relay, shared by the forward proxy (deliver to the requested
//! target) and the reverse proxy (deliver to the app, whatever the caller asked for).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use super::{accept, SocksError};
use crate::capture::{CaptureContext, StreamCapture};
use crate::log_escape::Escaped;
use crate::net::{dial, Target};
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
    capture: CaptureContext,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let request = match tokio::time::timeout(timeouts.handshake, accept(client)).await {
        Ok(Ok(request)) => request,
        Ok(Err(SocksError::Empty)) => {
            debug!("client closed before a SOCKS request");
            return;
        }
        Ok(Err(SocksError::NotSocks { first })) => {
            capture.count_handshake_error("not_socks");
            warn!(
                first_byte = first,
                "closing connection: not a SOCKS4/SOCKS5 handshake"
            );
            return;
        }
        Ok(Err(e)) => {
            capture.count_handshake_error(e.metric_reason());
            warn!(error = %Escaped(&e), "closing connection: SOCKS handshake failed");
            return;
        }
        Err(_) => {
            capture.count_handshake_error("timeout");
            warn!(timeout = ?timeouts.handshake, "closing connection: SOCKS handshake not finished within the handshake timeout");
            return;
        }
    };

    let destination = deliver_to.unwrap_or(&request.target).clone();
    debug!(version = request.version.as_str(), requested = %Escaped(&request.target), destination = %Escaped(&destination), "SOCKS CONNECT");
    let record = StreamCapture::begin(
        &capture,
        request.version.as_str(),
        request.target.to_string(),
        deliver_to.map(|app| app.to_string()),
    );
    let upstream = match dial(&destination, timeouts.connect).await {
        Ok(upstream) => upstream,
        Err(e) => {
            warn!(error = %Escaped(&e), "SOCKS CONNECT failed");
            capture.count_connect_failure();
            let _ = request.refuse(e.failure).await;
            record.refused(e.to_string());
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
            record.refused(format!("client left before the SOCKS reply: {e}"));
            return;
        }
    };
    let job = StreamJob {
        record,
        context: &capture,
    };
    proxy_stream(client, upstream, job).await;
}
