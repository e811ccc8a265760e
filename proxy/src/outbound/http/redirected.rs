//! Mock mode on connections rather than proxy requests: the app's outbound connections redirected by
//! iptables (transparent mode), and the CONNECT tunnels the mock grants ([`super::mocked_tunnel`]), are
//! answered from the mock capture instead of reaching their destination.
//!
//! The app speaks first in HTTP, so its first bytes decide ([`answer_connection`]):
//! - An HTTP/1 request line or HTTP/2's preface (prior knowledge, as gRPC uses in cleartext): the
//!   connection is served by the sidecar, each request answered by the forward handler's mock as if the
//!   app had sent it through the proxy to the URL it meant ([`super::ForwardHttp::handle_arrived`]).
//! - With tls-out, TLS to a host it intercepts: decrypted with a leaf of the capture CA (no upstream is
//!   contacted) and its HTTP answered the same way, as `https://`.
//! - Anything else (TLS tls-out does not intercept, a database protocol, a client silent past the
//!   handshake timeout) is a stream the mock cannot answer: with `--mock-unmatched passthrough` it goes
//!   to its destination and is recorded as usual;
//!   otherwise it is refused (closed), and the refusal is recorded with its reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::{Arrival, ForwardHttp};
use crate::capture::Route;
use crate::connection::Connection;
use crate::detect::tls::{client_hello_sni, is_tls_handshake};
use crate::detect::{first_bytes, is_h2_preface, is_http_request, FirstBytes, DETECT_TIMEOUT};
use crate::http::connection::{serve, ServeOptions};
use crate::io::PrefixedIo;
use crate::log_escape::Escaped;
use crate::options::RuntimeOptions;
use crate::peer_warnings::NOT_HTTP_UNDER_MOCK;

/// Serves one redirected outbound connection in mock mode.
pub async fn serve_redirected<S>(
    client: S,
    destination: SocketAddr,
    forward: Arc<ForwardHttp>,
    options: &RuntimeOptions,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    context: Connection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let arrival = Arrival::Redirected(destination);
    let answered = answer_connection(client, &arrival, &forward, shutdown, tasks, &context).await;
    let Some(client) = answered else {
        return;
    };
    if forward.passes_unmatched() {
        // Relayed and recorded as transparent mode does without a mock; the bytes read are replayed.
        crate::transparent::serve(client, destination, options, context).await;
        return;
    }
    refuse_unanswerable(&arrival, &context);
}

/// Serves a connection the mock may answer (redirected, or a CONNECT tunnel it granted) when its first
/// bytes are HTTP, or TLS that tls-out intercepts; else hands the client back, its first bytes kept, for
/// passthrough or refusal. `None`: served, or closed before it said anything.
pub(super) async fn answer_connection<S>(
    mut client: S,
    arrival: &Arrival,
    forward: &Arc<ForwardHttp>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    context: &Connection,
) -> Option<PrefixedIo<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let serving = forward.connection_serving;
    let first = app_speaks_first(&mut client, serving.handshake_timeout).await?;
    let client = PrefixedIo::new(first, client);
    let tls_host = arrival.tls_host();
    let interceptor = context
        .tls_out()
        .filter(|_| is_tls_handshake(client.prefix()))
        .filter(|interceptor| {
            let host = client_hello_sni(client.prefix()).unwrap_or_else(|| tls_host.clone());
            interceptor.intercepts(&host)
        });
    if let Some(interceptor) = interceptor {
        // tls-out: the app's HTTPS is decrypted with a leaf of the capture CA and answered by the mock.
        match interceptor.terminate(client, &tls_host).await {
            Ok((decrypted, session)) => {
                let options = ServeOptions {
                    accept_h2: true,
                    ..serving
                };
                // Its records carry the TLS the sidecar terminated, as tls-out's records always do.
                let context = &context.clone().inside_tls(session);
                answer_requests(
                    decrypted,
                    Scheme::HTTPS,
                    options,
                    arrival,
                    forward,
                    shutdown,
                    tasks,
                    context,
                )
                .await
            }
            Err(reason) => {
                let destination = arrival.destination();
                debug!(%destination, reason = %Escaped(&reason), "mock mode: TLS not terminated");
            }
        }
        return None;
    }
    let h2 = is_h2_preface(client.prefix());
    if h2 || is_http_request(client.prefix()) {
        let options = ServeOptions {
            accept_h2: h2,
            ..serving
        };
        answer_requests(
            client,
            Scheme::HTTP,
            options,
            arrival,
            forward,
            shutdown,
            tasks,
            context,
        )
        .await;
        return None;
    }
    Some(client)
}

/// Serves the connection's HTTP, each request answered by the forward handler's mock.
#[allow(clippy::too_many_arguments)]
async fn answer_requests<S>(
    stream: S,
    scheme: Scheme,
    options: ServeOptions,
    arrival: &Arrival,
    forward: &Arc<ForwardHttp>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    context: &Connection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (forward, arrival, for_requests) = (forward.clone(), arrival.clone(), context.clone());
    serve(stream, options, shutdown, context, move |request| {
        forward.clone().handle_arrived(
            request,
            arrival.clone(),
            scheme.clone(),
            tasks.clone(),
            for_requests.clone(),
        )
    })
    .await;
}

/// Closes a connection the mock cannot answer (no passthrough), recording the refusal and why.
pub(super) fn refuse_unanswerable(arrival: &Arrival, context: &Connection) {
    let destination = arrival.destination();
    let route = Arc::new(Route::new(arrival.transport(), destination.clone(), None));
    let reason = format!(
        "mock mode answers HTTP only: this connection to {destination} carried neither HTTP/1, HTTP/2's preface nor TLS that tls-out decrypts, so it was closed (--mock-unmatched passthrough sends such connections to their destination)"
    );
    NOT_HTTP_UNDER_MOCK.occurred_because(&format_args!("destination {destination}"));
    if let Some(record) = context.record_stream(&route) {
        record.refused(reason);
    }
}

/// The app's first bytes on a connection the mock may answer: empty when it said nothing within
/// `handshake_timeout` (or the detection window), `None` when it closed first.
pub(super) async fn app_speaks_first<S>(
    client: &mut S,
    handshake_timeout: Duration,
) -> Option<Vec<u8>>
where
    S: AsyncRead + Unpin,
{
    // No upstream is dialled before the app has spoken: a mocked destination may not exist at all. A
    // reader that never answers stands in for it, so only the client can decide.
    let (mut no_upstream, _kept_open) = tokio::io::duplex(1);
    let mut no_upstream = PrefixedIo::new(Vec::new(), &mut no_upstream);
    let opened = tokio::time::timeout(
        handshake_timeout,
        first_bytes(client, &mut no_upstream, DETECT_TIMEOUT),
    )
    .await;
    match opened {
        Ok(Ok(FirstBytes::Client(bytes))) => Some(bytes),
        Ok(Ok(_)) | Err(_) => Some(Vec::new()),
        Ok(Err(e)) => {
            debug!(error = %e, "connection closed before it said anything");
            None
        }
    }
}
