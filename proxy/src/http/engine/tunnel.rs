//! CONNECT on the forward listener: the target is dialled before the caller is answered, so an
//! unreachable target gets a 502 (504 when connecting timed out) rather than a dead tunnel, and the
//! stream's record says `refused`. Once granted, the engine stops and hands the caller's connection back
//! ([`super::Tunnel`]): the stream relay carries the tunnel as any other stream (spliced, or its inner
//! protocol recorded). The CONNECT exchange itself is not an HTTP record, as on the hyper path.

use std::sync::Arc;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::answers;
use super::body::Framing;
use super::forward::Addressed;
use super::request::Request;
use super::{Engine, Flow};
use crate::capture::{Route, StreamCapture};
use crate::log_escape::Escaped;
use crate::net::{dial, DialFailure};

/// The granted tunnel's other end, its route and record, until the engine hands them back.
pub struct Granted {
    pub upstream: TcpStream,
    pub route: Arc<Route>,
    pub record: Option<StreamCapture>,
}

/// The answer that grants a tunnel: bytes after it are the tunnel's.
const GRANTED: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";

impl<C: AsyncRead + AsyncWrite + Unpin> Engine<'_, C> {
    /// Opens the tunnel a CONNECT `request` asks for (or answers why it opens none).
    pub(super) async fn open_tunnel(&mut self, mut request: Request) -> Flow {
        self.input.consume(request.len);
        let target = match request.addressed.take() {
            Some(Addressed::Tunnel(Ok(target))) => target,
            Some(Addressed::Tunnel(Err(refusal))) => {
                warn!(reason = %Escaped(&refusal), "refused request");
                return self
                    .answer_unrecorded(&request, StatusCode::BAD_REQUEST, &refusal)
                    .await;
            }
            _ => unreachable!("the engine opens tunnels for CONNECT on the forward listener only"),
        };
        let route = Arc::new(Route::new("connect", target.to_string(), None));
        let record = self.context.record_stream(&route);
        let upstream = match dial(&target, self.destination.connect_timeout()).await {
            Ok(upstream) => upstream,
            Err(e) => {
                warn!(error = %Escaped(&e), "CONNECT failed");
                self.context.count_connect_failure();
                if let Some(record) = record {
                    record.refused(e.to_string());
                }
                let status = if e.failure == DialFailure::TimedOut {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return self
                    .answer_unrecorded(&request, status, &format!("sidecar: {e}"))
                    .await;
            }
        };
        debug!(target = %Escaped(&target), "CONNECT tunnel open");
        // The upstream connection of earlier absolute-form requests is done with.
        self.upstream = None;
        if let Err(e) = self.caller.write_all(GRANTED).await {
            debug!(error = %e, "client left before the tunnel started");
            if let Some(record) = record {
                record.refused(format!("client left before the tunnel started: {e}"));
            }
            return Flow::Close(None);
        }
        self.account.upgraded();
        self.tunnel = Some(Granted {
            upstream,
            route,
            record,
        });
        Flow::Tunnel
    }

    /// Answers a CONNECT that opens no tunnel: not an HTTP record (the stream's record, if any, says why).
    /// The connection stays open for the next request unless the caller said otherwise or sent a body.
    async fn answer_unrecorded(
        &mut self,
        request: &Request,
        status: StatusCode,
        text: &str,
    ) -> Flow {
        let closes = !request.keep_alive
            || request.framing != Framing::Empty
            || self.shutdown.is_cancelled();
        let answer = answers::text(status, text, closes);
        if let Err(e) = self.caller.write_all(&answer.wire).await {
            return Flow::Close(Some(e.to_string()));
        }
        if closes {
            Flow::Close(None)
        } else {
            Flow::Next
        }
    }
}
