//! Streams under tcp proxying, SOCKS, CONNECT and transparent redirects: relayed as bytes, unchanged and
//! in order, with cleartext HTTP/1 and HTTP/2 (prior knowledge) recorded by a passive tap on the way
//! through ([`crate::tap`]); everything else is one stream record (a TLS stream's server name noted).
//!
//! [`crate::io::copy_bidirectional`] is the whole data path: no per-byte work beyond what the tap
//! observes, buffers only while data flows, and a half-close on one side (EOF) is passed on as a write
//! shutdown to the other while the reverse direction keeps flowing.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, warn};

use crate::capture::record::TlsSession;
use crate::capture::{CaptureContext, StreamCapture, StreamEnd, TappedIo};
use crate::detect::tls::{client_hello_sni, is_tls_handshake};
use crate::detect::{first_bytes, is_h2_preface, is_http_request, FirstBytes, DETECT_TIMEOUT};
use crate::io::{ObservedIo, PrefixedIo};
use crate::log_escape::Escaped;
use crate::tap::{Followed, HttpTap, Protocol, Route};
use crate::tls_out::{Intercepted, Outcome, TlsInterceptor};

/// Everything a stream needs besides its two ends.
pub struct StreamJob<'a> {
    pub record: StreamCapture,
    pub context: &'a CaptureContext,
}

/// Proxies an open stream between `client` and `upstream` and records it.
///
/// With capture on, whoever speaks first decides: a client opening with an HTTP/1 request line or the
/// HTTP/2 preface is served as HTTP (one record per exchange); a TLS ClientHello is intercepted when
/// tls-out is on for this connection and the host is not excluded, its decrypted HTTP then served the same
/// way; anything else is relayed as bytes (one stream record). With capture off there is nothing to
/// record, so every stream is relayed as bytes at once.
pub async fn proxy_stream<C, U>(client: C, mut upstream: U, job: StreamJob<'_>)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let StreamJob {
        mut record,
        context,
    } = job;
    let mut client = record.tap(client);
    if !context.sink.is_enabled() {
        let end = relay(&mut client, &mut upstream).await;
        record.finish(client, end);
        return;
    }
    // What detection reads ahead of the client's first bytes (an HTTP/2 server's SETTINGS) is replayed.
    let mut upstream = PrefixedIo::new(Vec::new(), upstream);
    match first_bytes(&mut client, &mut upstream, DETECT_TIMEOUT).await {
        Ok(FirstBytes::Client(bytes)) if opens_http(&bytes) => {
            let route = tapped_route(&record, None);
            // The exchanges are the record of this stream; no payload copies.
            client.observer_mut().stop_copying();
            let mut client = PrefixedIo::new(bytes, client);
            if let Some(end) = relay_tapped(&mut client, &mut upstream, route, context).await {
                record.finish(client.into_inner(), end);
            } else {
                record.discard();
            }
        }
        Ok(FirstBytes::Client(bytes)) if to_intercept(context, &record, &bytes).is_some() => {
            let (interceptor, requested) =
                to_intercept(context, &record, &bytes).expect("checked by the guard");
            let client = PrefixedIo::new(bytes, client);
            let job = StreamJob { record, context };
            // Boxed like the HTTP path: only intercepted streams carry TLS state.
            Box::pin(intercepted(interceptor, client, upstream, &requested, job)).await;
        }
        first => {
            if let Ok(FirstBytes::Client(bytes)) = &first {
                if let Some(sni) = client_hello_sni(bytes) {
                    record.note_sni(sni);
                }
                if let Some(interceptor) = context.tls_out().filter(|_| is_tls_handshake(bytes)) {
                    interceptor.count_passed();
                }
            }
            let end = relay_after(first, &mut client, &mut upstream).await;
            record.finish(client, end);
        }
    }
}

/// The interceptor and the host the client dialled, when this stream is one tls-out intercepts: it opens
/// with a ClientHello, tls-out is on for the connection, and neither the server name the client asked for
/// (SNI) nor the host or address it dialled is excluded (transparent mode knows only the address).
fn to_intercept<'a>(
    context: &'a CaptureContext,
    record: &StreamCapture,
    first: &[u8],
) -> Option<(&'a TlsInterceptor, String)> {
    let interceptor = context.tls_out().filter(|_| is_tls_handshake(first))?;
    let requested = host_of(record.target());
    let sni = client_hello_sni(first);
    (interceptor.intercepts(requested) && sni.is_none_or(|sni| interceptor.intercepts(&sni)))
        .then(|| (interceptor, requested.to_owned()))
}

/// Relays a stream whose first bytes detection read and did not serve as HTTP: they are replayed to the
/// side they were meant for.
async fn relay_after<C, U>(
    first: std::io::Result<FirstBytes>,
    client: &mut C,
    upstream: &mut U,
) -> StreamEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    match first {
        Ok(FirstBytes::Client(bytes)) => relay(&mut PrefixedIo::new(bytes, client), upstream).await,
        Ok(FirstBytes::Upstream(bytes)) => {
            relay(client, &mut PrefixedIo::new(bytes, upstream)).await
        }
        Ok(FirstBytes::Silence) => relay(client, upstream).await,
        Err(e) => StreamEnd::Reset(e.to_string()),
    }
}

/// A TLS stream tls-out intercepts: once both handshakes are done, the decrypted stream is detected and
/// served like a cleartext one (HTTP exchange by exchange, anything else relayed as bytes), its records
/// marked with the TLS session.
async fn intercepted<C, U>(
    interceptor: &TlsInterceptor,
    client: PrefixedIo<TappedIo<C>>,
    upstream: U,
    requested_host: &str,
    job: StreamJob<'_>,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let StreamJob {
        mut record,
        context,
    } = job;
    let Intercepted {
        mut client,
        upstream,
        session,
    } = match interceptor
        .intercept(client, upstream, requested_host)
        .await
    {
        Outcome::Intercepted(both) => *both,
        Outcome::Failed { client, reason } => {
            match client {
                Some(client) => record.finish(client.into_inner(), StreamEnd::Reset(reason)),
                None => record.end(StreamEnd::Reset(reason)),
            }
            return;
        }
    };
    let mut upstream = PrefixedIo::new(Vec::new(), upstream);
    match first_bytes(&mut client, &mut upstream, DETECT_TIMEOUT).await {
        Ok(FirstBytes::Client(bytes)) if opens_http(&bytes) => {
            let route = tapped_route(&record, Some(session.clone()));
            client.get_mut().0.get_mut().observer_mut().stop_copying();
            let mut client = PrefixedIo::new(bytes, client);
            if let Some(end) = relay_tapped(&mut client, &mut upstream, route, context).await {
                record.note_intercepted(session);
                let (client, _) = client.into_inner().into_inner();
                record.finish(client.into_inner(), end);
            } else {
                record.discard();
            }
        }
        first => {
            // Not HTTP inside: relayed as bytes, one stream record saying it was decrypted. Payload copies
            // (--capture-payload) are of the client's wire bytes, so still encrypted.
            record.note_intercepted(session);
            let end = relay_after(first, &mut client, &mut upstream).await;
            let (client, _) = client.into_inner();
            record.finish(client.into_inner(), end);
        }
    }
}

/// Whether a client's first bytes are an HTTP/1 request line or the HTTP/2 preface.
fn opens_http(bytes: &[u8]) -> bool {
    is_http_request(bytes) || is_h2_preface(bytes)
}

fn tapped_route(record: &StreamCapture, tls: Option<TlsSession>) -> Route {
    Route {
        transport: record.transport(),
        target: record.target().to_owned(),
        delivered_to: record.delivered_to().map(str::to_owned),
        tls,
    }
}

/// Relays a stream that opened with HTTP (`client` replays the bytes detection read) with the tap
/// recording its exchanges. Returns how the stream ended when it must be recorded as a stream instead: the
/// tap could not follow it, and the exchanges it had recorded are followed by the stream's own record.
async fn relay_tapped<C, U>(
    client: &mut C,
    upstream: &mut U,
    route: Route,
    context: &CaptureContext,
) -> Option<StreamEnd>
where
    C: AsyncRead + AsyncWrite + Unpin + HasPrefix,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let protocol = if is_h2_preface(client.replayed()) {
        Protocol::H2
    } else {
        Protocol::Http1
    };
    let mut tapped = ObservedIo::new(client, HttpTap::new(context, route, protocol));
    let end = relay(&mut tapped, upstream).await;
    let failure = match &end {
        StreamEnd::Closed => None,
        StreamEnd::Reset(reason) | StreamEnd::Refused(reason) | StreamEnd::Untracked(reason) => {
            Some(reason.clone())
        }
    };
    let (client, tap) = tapped.into_parts();
    if tap.head_too_large() {
        refuse_large_head(client, context).await;
    }
    match tap.finish(failure.as_deref()) {
        Followed::Whole | Followed::HeadTooLarge => None,
        Followed::Lost(why) => {
            debug!(reason = %Escaped(&why), "stopped following HTTP on a stream; relayed as bytes");
            Some(match end {
                StreamEnd::Closed => StreamEnd::Untracked(why),
                other => other,
            })
        }
    }
}

/// Answers a request head over `--max-request-head` found inside a stream, as the HTTP listeners do: 431,
/// then the stream is closed (what the client sent of the head never reached the upstream whole).
async fn refuse_large_head<C: AsyncWrite + Unpin>(client: &mut C, context: &CaptureContext) {
    context.count_handshake_error("too_large");
    warn!(
        limit = context.max_request_head(),
        "request head inside a stream too large (answered 431)"
    );
    let body = "sidecar: the request head is over the limit\n";
    let answer = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// A stream that replays bytes detection read: what they are tells the tap which protocol it follows.
pub trait HasPrefix {
    fn replayed(&self) -> &[u8];
}

impl<S> HasPrefix for PrefixedIo<S> {
    fn replayed(&self) -> &[u8] {
        self.prefix()
    }
}

/// The host part of a record's target (`host:port`, `[v6]:port`).
fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Relays until both directions are finished, and says how the stream ended.
pub async fn relay<C, U>(client: &mut C, upstream: &mut U) -> StreamEnd
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    match crate::io::copy_bidirectional(client, upstream).await {
        Ok((sent, received)) => {
            debug!(sent, received, "stream closed");
            StreamEnd::Closed
        }
        Err(e) => {
            // A reset from either peer ends the stream; the other side is closed when both are dropped.
            debug!(error = %e, "stream ended with an error");
            StreamEnd::Reset(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_of_a_target() {
        assert_eq!(host_of("api.example.test:443"), "api.example.test");
        assert_eq!(host_of("10.0.0.7:443"), "10.0.0.7");
        assert_eq!(host_of("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(host_of("no-port"), "no-port");
    }
}
