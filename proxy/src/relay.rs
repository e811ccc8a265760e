//! Streams under tcp proxying, SOCKS, CONNECT and transparent redirects: relayed as bytes, unchanged and
//! in order, with cleartext HTTP/1 and HTTP/2 (prior knowledge) recorded by a passive tap on the way
//! through ([`crate::tap`]); everything else is one stream record (a TLS stream's server name noted).
//!
//! [`crate::io::copy_bidirectional`] is the whole data path: no per-byte work beyond what the tap
//! observes, buffers only while data flows, and a half-close on one side (EOF) is passed on as a write
//! shutdown to the other while the reverse direction keeps flowing.

use std::any::Any;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use crate::capture::{Capture, Route, StreamCapture, StreamEnd, TappedIo};
use crate::connection::Connection;
use crate::detect::tls::{client_hello_sni, is_tls_handshake};
use crate::detect::{first_bytes, is_h2_preface, is_http_request, FirstBytes, DETECT_TIMEOUT};
use crate::io::{splice_bidirectional, MeteredIo, ObservedIo, PrefixedIo};
use crate::log_escape::Escaped;
use crate::peer_warnings::HEAD_TOO_LARGE;
use crate::tap::{Followed, HttpTap, Protocol};
use crate::tls_out::{Intercepted, Outcome, TlsInterceptor};

/// Everything a stream needs besides its two ends.
pub struct StreamJob<'a> {
    /// How the stream reached the sidecar and where it goes, as its handler classified it.
    pub route: Arc<Route>,
    /// The stream's record, begun by the handler; `None` with capture off.
    pub record: Option<StreamCapture>,
    pub context: &'a Connection,
}

/// A stream being recorded: its route and record, and the connection and capture they belong to.
struct Recording<'a> {
    route: Arc<Route>,
    record: StreamCapture,
    context: &'a Connection,
    capture: &'a Capture,
}

/// Proxies an open stream between `client` and `upstream` and records it.
///
/// With capture on, whoever speaks first decides: a client opening with an HTTP/1 request line or the
/// HTTP/2 preface is served as HTTP (one record per exchange); a TLS ClientHello is intercepted when
/// tls-out is on for this connection and the host is not excluded, its decrypted HTTP then served the same
/// way; anything else is relayed as bytes (one stream record). With capture off there is nothing to
/// record, so every stream is relayed as bytes at once.
pub async fn proxy_stream<C, U>(mut client: C, mut upstream: U, job: StreamJob<'_>)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let StreamJob {
        route,
        record,
        context,
    } = job;
    let (Some(mut record), Some(capture)) = (record, context.capture.as_ref()) else {
        // Nothing to record, so nothing to look at: plain sockets are spliced, anything else relayed as
        // the bytes come.
        if let Some((client, upstream)) = plain_sockets(&mut client, &mut upstream) {
            let (socket, meter) = client.parts_mut();
            ended(splice_bidirectional(socket, upstream, meter).await);
            return;
        }
        relay(&mut client, &mut upstream).await;
        return;
    };
    let mut client = record.tap(client);
    // What detection reads ahead of the client's first bytes (an HTTP/2 server's SETTINGS) is replayed.
    let mut upstream = PrefixedIo::new(Vec::new(), upstream);
    // Boxed: detection reads into buffers of its own, which would otherwise stay part of the connection's
    // task for as long as it lives.
    match Box::pin(first_bytes(&mut client, &mut upstream, DETECT_TIMEOUT)).await {
        Ok(FirstBytes::Client(bytes)) if opens_http(&bytes) => {
            // The exchanges are the record of this stream; no payload copies.
            client.observer_mut().stop_copying();
            let mut client = PrefixedIo::new(bytes, client);
            let tapped = relay_tapped(&mut client, &mut upstream, route, context, capture).await;
            if let Some(end) = tapped {
                record.finish(client.into_inner(), end);
            } else {
                record.discard();
            }
        }
        Ok(FirstBytes::Client(bytes)) if to_intercept(context, &route, &bytes).is_some() => {
            let interceptor = to_intercept(context, &route, &bytes).expect("checked by the guard");
            let client = PrefixedIo::new(bytes, client);
            let recording = Recording {
                route,
                record,
                context,
                capture,
            };
            // Boxed like the HTTP path: only intercepted streams carry TLS state.
            Box::pin(intercepted(interceptor, client, upstream, recording)).await;
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
            let end = relay_opaque(first, &mut client, &mut upstream).await;
            record.finish(client, end);
        }
    }
}

/// Relays a stream capture records only as a stream (TLS tls-out does not intercept, a protocol the tap
/// does not follow): spliced when its ends are plain sockets and no payload copies are kept, since then
/// nothing needs its bytes but their count.
async fn relay_opaque<C, U>(
    first: std::io::Result<FirstBytes>,
    client: &mut TappedIo<C>,
    upstream: &mut PrefixedIo<U>,
) -> StreamEnd
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
    U: AsyncRead + AsyncWrite + Unpin + 'static,
{
    // The record names the protocol from the client's first bytes: only a stream whose client spoke first,
    // and enough for that, is spliced.
    let spliceable = matches!(first, Ok(FirstBytes::Client(_)))
        && client.observer().has_seen_first_bytes()
        && !client.observer().copies_payload()
        && upstream.prefix().is_empty()
        && plain_sockets(client.parts_mut().0, upstream.get_mut()).is_some();
    let bytes = match first {
        Ok(FirstBytes::Client(bytes)) if spliceable => bytes,
        first => return relay_after(first, client, upstream).await,
    };
    // What detection read goes on first; then the sockets are spliced.
    if let Err(e) = upstream.write_all(&bytes).await {
        return StreamEnd::Reset(e.to_string());
    }
    let (client, tap) = client.parts_mut();
    let (client, upstream) =
        plain_sockets(client, upstream.get_mut()).expect("checked above: plain sockets");
    let (socket, meter) = client.parts_mut();
    ended(splice_bidirectional(socket, upstream, &mut (meter, tap)).await)
}

/// The interceptor, when this stream is one tls-out intercepts: it opens with a ClientHello, tls-out is on
/// for the connection, and neither the server name the client asked for (SNI) nor the host or address it
/// dialled is excluded (transparent mode knows only the address).
fn to_intercept<'a>(
    context: &'a Connection,
    route: &Route,
    first: &[u8],
) -> Option<&'a TlsInterceptor> {
    let interceptor = context.tls_out().filter(|_| is_tls_handshake(first))?;
    let requested = route.target_host();
    let sni = client_hello_sni(first);
    (interceptor.intercepts(requested) && sni.is_none_or(|sni| interceptor.intercepts(&sni)))
        .then_some(interceptor)
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
    recording: Recording<'_>,
) where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    U: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Recording {
        route,
        mut record,
        context,
        capture,
    } = recording;
    let Intercepted {
        mut client,
        upstream,
        session,
    } = match interceptor
        .intercept(client, upstream, route.target_host())
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
    let inside = Arc::new(route.inside_tls(session));
    let mut upstream = PrefixedIo::new(Vec::new(), upstream);
    match first_bytes(&mut client, &mut upstream, DETECT_TIMEOUT).await {
        Ok(FirstBytes::Client(bytes)) if opens_http(&bytes) => {
            client.get_mut().0.get_mut().observer_mut().stop_copying();
            let mut client = PrefixedIo::new(bytes, client);
            let tapped =
                relay_tapped(&mut client, &mut upstream, inside.clone(), context, capture).await;
            if let Some(end) = tapped {
                record.note_intercepted(inside);
                let (client, _) = client.into_inner().into_inner();
                record.finish(client.into_inner(), end);
            } else {
                record.discard();
            }
        }
        first => {
            // Not HTTP inside: relayed as bytes, one stream record saying it was decrypted. Payload copies
            // (--capture-payload) are of the client's wire bytes, so still encrypted.
            record.note_intercepted(inside);
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

/// Relays a stream that opened with HTTP (`client` replays the bytes detection read) with the tap
/// recording its exchanges. Returns how the stream ended when it must be recorded as a stream instead: the
/// tap could not follow it, and the exchanges it had recorded are followed by the stream's own record.
async fn relay_tapped<C, U>(
    client: &mut C,
    upstream: &mut U,
    route: Arc<Route>,
    context: &Connection,
    capture: &Capture,
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
    let mut tapped = ObservedIo::new(client, HttpTap::new(context, capture, route, protocol));
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
async fn refuse_large_head<C: AsyncWrite + Unpin>(client: &mut C, context: &Connection) {
    context.count_handshake_error("too_large");
    HEAD_TOO_LARGE.occurred_because(&format_args!(
        "a request head inside a stream went over {} bytes",
        context.max_request_head()
    ));
    let body = "sidecar: the request head is over the limit\n";
    let answer = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// The sockets under a stream's two ends when they are the plain ones accept and dial produce (the
/// client's counted for the relayed-bytes metric), so the stream can be spliced. The ends are generic
/// because a CONNECT tunnel's client side is hyper's upgraded stream; that one is relayed through user
/// space.
fn plain_sockets<'a, C: 'static, U: 'static>(
    client: &'a mut C,
    upstream: &'a mut U,
) -> Option<(&'a mut MeteredIo<TcpStream>, &'a mut TcpStream)> {
    let client = (client as &mut dyn Any).downcast_mut::<MeteredIo<TcpStream>>()?;
    let upstream = (upstream as &mut dyn Any).downcast_mut::<TcpStream>()?;
    Some((client, upstream))
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

/// Relays until both directions are finished, and says how the stream ended.
pub async fn relay<C, U>(client: &mut C, upstream: &mut U) -> StreamEnd
where
    C: AsyncRead + AsyncWrite + Unpin + ?Sized,
    U: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    ended(crate::io::copy_bidirectional(client, upstream).await)
}

/// How a stream ended, from what its relay returned.
fn ended(relayed: std::io::Result<(u64, u64)>) -> StreamEnd {
    match relayed {
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
