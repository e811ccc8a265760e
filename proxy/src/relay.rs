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

use crate::capture::{CaptureContext, StreamCapture, StreamEnd};
use crate::detect::tls::client_hello_sni;
use crate::detect::{first_bytes, is_h2_preface, is_http_request, FirstBytes, DETECT_TIMEOUT};
use crate::http::tunnelled::{self, TunnelledTarget};
use crate::io::PrefixedIo;

/// Everything a stream needs besides its two ends.
pub struct StreamJob<'a> {
    pub record: StreamCapture,
    pub context: &'a CaptureContext,
    pub tasks: &'a TaskTracker,
}

/// Proxies an open stream between `client` and `upstream` and records it.
///
/// With capture on, whoever speaks first decides: a client opening with an HTTP/1 request line or the
/// HTTP/2 preface is served as HTTP (one record per exchange); anything else is relayed as bytes (one
/// stream record). With capture off there is nothing to record, so every stream is relayed as bytes at once.
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
        Ok(FirstBytes::Client(bytes)) if is_http_request(&bytes) || is_h2_preface(&bytes) => {
            let route = TunnelledTarget {
                transport: record.transport(),
                target: record.target().to_owned(),
                delivered_to: record.delivered_to().map(str::to_owned),
            };
            // The exchanges are the record of this stream; no separate stream record, no payload copies.
            let h2 = is_h2_preface(&bytes);
            record.discard();
            client.observer_mut().stop_copying();
            let client = PrefixedIo::new(bytes, client);
            // Boxed: a future is as large as its largest state, and every connection's task would
            // otherwise carry the HTTP machinery's size while it waits for its first bytes.
            if h2 {
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
        Ok(FirstBytes::Client(bytes)) => {
            if let Some(sni) = client_hello_sni(&bytes) {
                record.note_sni(sni);
            }
            let mut client = PrefixedIo::new(bytes, client);
            let end = relay(&mut client, &mut upstream).await;
            record.finish(client.into_inner(), end);
        }
        Ok(FirstBytes::Upstream(bytes)) => {
            let mut upstream = PrefixedIo::new(bytes, upstream);
            let end = relay(&mut client, &mut upstream).await;
            record.finish(client, end);
        }
        Ok(FirstBytes::Silence) => {
            let end = relay(&mut client, &mut upstream).await;
            record.finish(client, end);
        }
        Err(e) => record.finish(client, StreamEnd::Reset(e.to_string())),
    }
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
