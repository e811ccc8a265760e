//! Streams under tcp proxying, SOCKS, CONNECT and transparent redirects: cleartext HTTP/1 and HTTP/2 with
//! prior knowledge are detected and served as HTTP so their exchanges are recorded; everything else is an
//! opaque byte relay (a TLS stream's server name noted in its record).
//!
//! [`crate::io::copy_bidirectional`] is the whole opaque data path: no per-byte work, buffers only while
//! data flows, and a half-close on one side (EOF) is passed on as a write shutdown to the other while the
//! reverse direction keeps flowing.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::capture::record::TlsSession;
use crate::capture::{CaptureContext, StreamCapture, StreamEnd, TappedIo};
use crate::detect::tls::{client_hello_sni, is_tls_handshake};
use crate::detect::{first_bytes, is_h2_preface, is_http_request, FirstBytes, DETECT_TIMEOUT};
use crate::http::tunnelled::{self, TunnelledTarget};
use crate::io::PrefixedIo;
use crate::tls_out::{Intercepted, Outcome, TlsInterceptor};

/// Everything a stream needs besides its two ends.
pub struct StreamJob<'a> {
    pub record: StreamCapture,
    pub context: &'a CaptureContext,
    pub tasks: &'a TaskTracker,
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
        tasks,
    } = job;
    let mut client = record.tap(client);
    if !context.sink.is_enabled() {
        let end = relay(&mut client, &mut upstream).await;
        record.finish(client, end);
        return;
    }
    match first_bytes(&mut client, &mut upstream, DETECT_TIMEOUT).await {
        Ok(FirstBytes::Client(bytes)) if opens_http(&bytes) => {
            let route = tunnelled_route(&record, None);
            // The exchanges are the record of this stream; no separate stream record, no payload copies.
            record.discard();
            client.observer_mut().stop_copying();
            serve_http(
                PrefixedIo::new(bytes, client),
                upstream,
                route,
                context,
                tasks,
            )
            .await;
        }
        Ok(FirstBytes::Client(bytes)) if to_intercept(context, &record, &bytes).is_some() => {
            let (interceptor, requested) =
                to_intercept(context, &record, &bytes).expect("checked by the guard");
            let client = PrefixedIo::new(bytes, client);
            let job = StreamJob {
                record,
                context,
                tasks,
            };
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
        tasks,
    } = job;
    let Intercepted {
        mut client,
        mut upstream,
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
    match first_bytes(&mut client, &mut upstream, DETECT_TIMEOUT).await {
        Ok(FirstBytes::Client(bytes)) if opens_http(&bytes) => {
            let route = tunnelled_route(&record, Some(session));
            record.discard();
            client.get_mut().0.get_mut().observer_mut().stop_copying();
            serve_http(
                PrefixedIo::new(bytes, client),
                upstream,
                route,
                context,
                tasks,
            )
            .await;
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

fn tunnelled_route(record: &StreamCapture, tls: Option<TlsSession>) -> TunnelledTarget {
    TunnelledTarget {
        transport: record.transport(),
        target: record.target().to_owned(),
        delivered_to: record.delivered_to().map(str::to_owned),
        tls,
    }
}

/// Serves HTTP found on a stream (`client` replays the bytes detection read).
async fn serve_http<C, U>(
    client: PrefixedIo<C>,
    upstream: U,
    route: TunnelledTarget,
    context: &CaptureContext,
    tasks: &TaskTracker,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed: a future is as large as its largest state, and every connection's task would otherwise carry
    // the HTTP machinery's size while it waits for its first bytes.
    if is_h2_preface(client.prefix()) {
        Box::pin(tunnelled::serve_h2(
            client,
            upstream,
            route,
            context.clone(),
        ))
        .await;
    } else {
        Box::pin(tunnelled::serve(
            client,
            upstream,
            route,
            context.clone(),
            tasks.clone(),
        ))
        .await;
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
