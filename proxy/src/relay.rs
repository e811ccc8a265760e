//! Streams under tcp proxying, SOCKS, CONNECT and transparent redirects: cleartext HTTP/1 and HTTP/2 with
//! prior knowledge are detected and served as HTTP so their exchanges are recorded; everything else is an
//! opaque byte relay (a TLS stream's server name noted in its record).
//!
//! tokio's `copy_bidirectional` is the whole opaque data path: fixed buffers (allocated once a side
//! speaks), no per-byte work, and a half-close on one side (EOF) is passed on as a write shutdown to the
//! other while the reverse direction keeps flowing.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::capture::{CaptureContext, StreamCapture, StreamEnd};
use crate::detect::tls::client_hello_sni;
use crate::detect::{first_bytes, is_h2_preface, is_http_request, FirstBytes, DETECT_TIMEOUT};
use crate::http::tunnelled::{self, TunnelledTarget};
use crate::io::PrefixedIo;

/// Bytes each direction of a relay moves per read and write. tokio's default (8 KiB) costs four times the
/// syscalls on bulk transfers; 64 KiB is what a loopback TCP socket hands over in one read.
pub const RELAY_BUFFER: usize = 64 * 1024;

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
///
/// The relay's buffers are allocated only once either side has sent something: a connection that is
/// opened and left idle (a pool's spare connection, a client that never speaks) holds only the few hundred
/// bytes of the first reads, not two large buffers.
pub async fn relay<C, U>(client: &mut C, upstream: &mut U) -> StreamEnd
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let copied = match first_data(client, upstream).await {
        Ok(FirstData::Client(bytes)) => {
            copy(&mut PrefixedIo::new(bytes, &mut *client), upstream).await
        }
        Ok(FirstData::Upstream(bytes)) => {
            copy(client, &mut PrefixedIo::new(bytes, &mut *upstream)).await
        }
        // An end of stream reads again as one, so the copy sees it and passes the half-close on. Small
        // buffers: a connection closing before it spoke rarely has much left to say.
        Ok(FirstData::End) => tokio::io::copy_bidirectional(client, upstream).await,
        Err(e) => Err(e),
    };
    match copied {
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

async fn copy<C, U>(client: &mut C, upstream: &mut U) -> std::io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    tokio::io::copy_bidirectional_with_sizes(client, upstream, RELAY_BUFFER, RELAY_BUFFER).await
}

/// Bytes read while waiting for a side to speak: enough for most first messages, small enough that an
/// idle connection's task stays small (they are part of it while it waits).
const FIRST_READ: usize = 512;

enum FirstData {
    Client(Vec<u8>),
    Upstream(Vec<u8>),
    /// A side ended its stream before either sent anything.
    End,
}

/// Waits until either side sends something (or ends its stream), and returns what it sent.
async fn first_data<C, U>(client: &mut C, upstream: &mut U) -> std::io::Result<FirstData>
where
    C: AsyncRead + Unpin + ?Sized,
    U: AsyncRead + Unpin + ?Sized,
{
    let mut from_client = [0u8; FIRST_READ];
    let mut from_upstream = [0u8; FIRST_READ];
    // Both reads are cancel-safe: the losing one has consumed nothing.
    tokio::select! {
        read = client.read(&mut from_client) => Ok(match read? {
            0 => FirstData::End,
            n => FirstData::Client(from_client[..n].to_vec()),
        }),
        read = upstream.read(&mut from_upstream) => Ok(match read? {
            0 => FirstData::End,
            n => FirstData::Upstream(from_upstream[..n].to_vec()),
        }),
    }
}
