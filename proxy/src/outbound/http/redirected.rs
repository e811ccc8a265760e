//! Mock mode in transparent mode: the app's outbound connections, redirected by iptables, are answered
//! from the mock capture instead of reaching their destination.
//!
//! The app speaks first in HTTP, so its first bytes decide:
//! - An HTTP/1 request line or HTTP/2's preface (prior knowledge, as gRPC uses in cleartext): the
//!   connection is served by the sidecar, each request answered by the forward handler's mock as if the
//!   app had sent it through the proxy to the URL it meant ([`super::ForwardHttp::handle_redirected`]).
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

use super::ForwardHttp;
use crate::capture::Route;
use crate::connection::Connection;
use crate::detect::tls::{client_hello_sni, is_tls_handshake};
use crate::detect::{first_bytes, is_h2_preface, is_http_request, FirstBytes, DETECT_TIMEOUT};
use crate::http::connection::{serve, ServeOptions};
use crate::io::PrefixedIo;
use crate::options::RuntimeOptions;
use crate::peer_warnings::NOT_HTTP_UNDER_MOCK;

/// Serves one redirected outbound connection in mock mode.
pub async fn serve_redirected<S>(
    mut client: S,
    destination: SocketAddr,
    forward: Arc<ForwardHttp>,
    options: &RuntimeOptions,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    context: Connection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(first) = app_speaks_first(&mut client, options.handshake_timeout).await else {
        return;
    };
    let client = PrefixedIo::new(first, client);
    let interceptor = context
        .tls_out()
        .filter(|_| is_tls_handshake(client.prefix()))
        .filter(|interceptor| {
            let host =
                client_hello_sni(client.prefix()).unwrap_or_else(|| destination.ip().to_string());
            interceptor.intercepts(&host)
        });
    if let Some(interceptor) = interceptor {
        // tls-out: the app's HTTPS is decrypted with a leaf of the capture CA and answered by the mock.
        let decrypted = match interceptor
            .terminate(client, &destination.ip().to_string())
            .await
        {
            Ok(decrypted) => decrypted,
            Err(reason) => {
                debug!(%destination, reason = %crate::log_escape::Escaped(&reason), "mock mode: TLS not terminated");
                return;
            }
        };
        let serve_options = ServeOptions {
            handshake_timeout: options.handshake_timeout,
            accept_h2: true,
            max_request_head: options.max_request_head,
        };
        let for_requests = context.clone();
        serve(
            decrypted,
            serve_options,
            shutdown,
            &context,
            move |request| {
                forward.clone().handle_redirected(
                    request,
                    destination,
                    Scheme::HTTPS,
                    tasks.clone(),
                    for_requests.clone(),
                )
            },
        )
        .await;
        return;
    }
    let h2 = is_h2_preface(client.prefix());
    if h2 || is_http_request(client.prefix()) {
        let serve_options = ServeOptions {
            handshake_timeout: options.handshake_timeout,
            accept_h2: h2,
            max_request_head: options.max_request_head,
        };
        let for_requests = context.clone();
        serve(client, serve_options, shutdown, &context, move |request| {
            forward.clone().handle_redirected(
                request,
                destination,
                Scheme::HTTP,
                tasks.clone(),
                for_requests.clone(),
            )
        })
        .await;
        return;
    }
    if forward.passes_unmatched() {
        // Relayed and recorded as transparent mode does without a mock; the bytes read are replayed.
        crate::transparent::serve(client, destination, options, context).await;
        return;
    }
    let route = Arc::new(Route::new(
        crate::transparent::TRANSPORT,
        destination.to_string(),
        None,
    ));
    let reason = format!(
        "mock mode answers HTTP only: this connection to {destination} did not open with an HTTP/1 request or HTTP/2's preface, so it was closed (--mock-unmatched passthrough sends such streams to their destination)"
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
