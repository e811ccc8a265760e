//! The exchange's unhappy endings, where the sidecar answers the caller itself: the upstream (the app, or
//! the forward listener's origin) unreachable (502, or 504 on a connect timeout), failing mid-exchange
//! (502), slow to answer (504), or the caller's body broken (400). Each answer is recorded as the
//! sidecar's own, and the connection kept when the unread body is short enough to read past. The texts
//! are the hyper paths': the app is "the app at ADDRESS", an origin its URL's `host[:port]`.

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::warn;

use super::answers;
use super::body::Framing;
use super::buffer::Buffer;
use super::request::Request;
use super::{Destination, Engine, Flow, MAX_SKIPPED_BODY};
use crate::io::Observer;
use crate::log_escape::Escaped;
use crate::metrics::ListenerLabels;
use crate::net::{humanize, DialError, DialFailure};

impl<C: AsyncRead + AsyncWrite + Unpin> Engine<'_, C> {
    pub(super) async fn dial_failed(
        &mut self,
        request: &Request,
        error: DialError,
        started: std::time::Instant,
    ) -> Flow {
        self.context.count_connect_failure();
        let status = if error.failure == DialFailure::TimedOut {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        let reason = error.to_string();
        let text = self.failed(request, &reason);
        self.answer(request, status, &text, reason, false, true, started)
            .await
    }

    /// Logs that the exchange failed for `reason`, and says so for the caller.
    fn failed(&self, request: &Request, reason: &str) -> String {
        match self.destination {
            Destination::App(app) => {
                warn!(app = %app.name, reason = %Escaped(reason), "app request failed");
                format!("sidecar: the app at {} did not answer: {reason}", app.name)
            }
            Destination::Forward(_) => {
                let host = request.origin_host();
                warn!(target = %Escaped(host), reason = %Escaped(reason), "forward request failed");
                format!("sidecar: cannot reach {host}: {reason}")
            }
        }
    }

    /// The app failed the exchange (closed or reset before its answer, or answered what is not HTTP).
    pub(super) async fn upstream_failed(
        &mut self,
        request: &Request,
        reason: String,
        request_sent: bool,
        started: std::time::Instant,
    ) -> Flow {
        let text = self.failed(request, &reason);
        self.answer(
            request,
            StatusCode::BAD_GATEWAY,
            &text,
            reason,
            !request_sent,
            false,
            started,
        )
        .await
    }

    pub(super) async fn timed_out(
        &mut self,
        request: &Request,
        started: std::time::Instant,
    ) -> Flow {
        let upstream = match self.destination {
            Destination::App(app) => format!("the app at {}", app.name),
            Destination::Forward(_) => request.origin_host().to_owned(),
        };
        let reason = format!(
            "{upstream} did not begin its response within {} (--upstream-timeout)",
            humanize(self.destination.upstream_timeout())
        );
        warn!(reason = %Escaped(&reason), "upstream timed out");
        self.context
            .metrics
            .upstream_timeouts
            .get_or_create(&ListenerLabels {
                direction: self.context.direction,
                protocol: self.context.protocol,
            })
            .inc();
        let text = format!("sidecar: {reason}");
        self.answer(
            request,
            StatusCode::GATEWAY_TIMEOUT,
            &text,
            reason,
            false,
            false,
            started,
        )
        .await
    }

    /// The caller broke its request body on the way (bad chunked framing, a close mid-body): the app's
    /// connection is given up, and where the body ends is unknown, so the caller's closes too.
    pub(super) async fn broken_body(
        &mut self,
        request: &Request,
        why: &str,
        started: std::time::Instant,
    ) -> Flow {
        self.upstream = None;
        self.from_app = Buffer::default();
        let reason = format!("the request body could not be read: {why}");
        warn!(reason = %Escaped(&reason), "refused request");
        let text = format!("sidecar: {reason}");
        self.answer(
            request,
            StatusCode::BAD_REQUEST,
            &text,
            reason,
            true,
            false,
            started,
        )
        .await
    }

    /// Answers the request itself and records that answer. The connection stays open when nothing says
    /// otherwise and the request's body, if unread (`body_unread`), is short enough to read past.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn answer(
        &mut self,
        request: &Request,
        status: StatusCode,
        text: &str,
        reason: String,
        closes: bool,
        body_unread: bool,
        started: std::time::Instant,
    ) -> Flow {
        let skip = match (body_unread, request.framing) {
            (false, _) | (true, Framing::Empty) => Some(0),
            (true, Framing::Length(n)) if n <= MAX_SKIPPED_BODY => Some(n),
            _ => None,
        };
        let closes =
            closes || skip.is_none() || !request.keep_alive || self.shutdown.is_cancelled();
        let answer = answers::text(status, text, closes);
        match self.tap.as_mut() {
            Some(tap) => tap.answered_by_sidecar(answer.record_head, &answer.body, reason),
            None => self.timed(started),
        }
        if let Err(e) = self.caller.write_all(&answer.wire).await {
            return Flow::Close(Some(e.to_string()));
        }
        match skip {
            Some(left) if !closes && left > 0 => {
                if self.skip_body(left).await {
                    Flow::Next
                } else {
                    Flow::Close(None)
                }
            }
            _ if closes => Flow::Close(None),
            _ => Flow::Next,
        }
    }

    /// Reads past `left` bytes of an unforwarded body (shown to the tap: the caller sent them).
    pub(super) async fn skip_body(&mut self, mut left: u64) -> bool {
        let deadline = Instant::now() + self.limits.handshake_timeout;
        loop {
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(self.input.len());
            if let Some(tap) = self.tap.as_mut() {
                tap.read(&self.input.bytes()[..n]);
            }
            self.input.consume(n);
            left -= n as u64;
            if left == 0 {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.input.read_from(&mut self.caller)).await {
                Ok(Ok(1..)) => {}
                _ => return false,
            }
        }
    }
}
