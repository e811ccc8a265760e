//! Mock mode on the forward listener: a CONNECT tunnel (the app's HTTPS_PROXY) is granted at once,
//! without dialling its target (a mocked destination may not exist at all), and what the app sends
//! through it decides, as on a connection iptables redirected ([`super::redirected`]):
//! - With tls-out, TLS to a host it intercepts: decrypted with a leaf of the capture CA, and each request
//!   answered by the mock as `https://` (its record: transport `connect`, target the tunnel's).
//! - An HTTP/1 request or HTTP/2's preface in cleartext: answered the same way, as `http://`.
//! - Anything else (TLS that tls-out does not intercept, or is off; another protocol): a stream the mock
//!   cannot answer. With `--mock-unmatched passthrough` the target is dialled and the stream relayed and
//!   recorded as any tunnel; otherwise the tunnel is closed and the refusal recorded with its reason.

use std::sync::Arc;

use http::uri::Scheme;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::redirected::app_speaks_first;
use super::{bad_request, connect_target, Arrival, ForwardHttp};
use crate::capture::Route;
use crate::connection::Connection;
use crate::detect::tls::{client_hello_sni, is_tls_handshake};
use crate::detect::{is_h2_preface, is_http_request};
use crate::http::body::{empty, ProxyBody};
use crate::http::connection::serve;
use crate::io::PrefixedIo;
use crate::log_escape::Escaped;
use crate::net::{dial, Target};
use crate::peer_warnings::NOT_HTTP_UNDER_MOCK;
use crate::relay::{proxy_stream, StreamJob};

/// Answers a CONNECT in mock mode: `200` at once, and the tunnel served on its own task.
pub(super) fn grant(
    forward: Arc<ForwardHttp>,
    request: Request<Incoming>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    context: Connection,
) -> Response<ProxyBody> {
    let Some(target) = connect_target(request.uri()) else {
        return bad_request(format!(
            "sidecar: CONNECT needs host:port, got \"{}\"",
            request.uri()
        ));
    };
    debug!(target = %Escaped(&target), "CONNECT tunnel granted to the mock");
    let spawner = tasks.clone();
    spawner.spawn(async move {
        match hyper::upgrade::on(request).await {
            Ok(upgraded) => {
                serve_tunnel(
                    TokioIo::new(upgraded),
                    target,
                    forward,
                    tasks,
                    shutdown,
                    context,
                )
                .await
            }
            Err(e) => debug!(error = %e, "client left before the tunnel started"),
        }
    });
    Response::new(empty())
}

async fn serve_tunnel(
    mut client: TokioIo<Upgraded>,
    target: Target,
    forward: Arc<ForwardHttp>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    context: Connection,
) {
    let serving = forward.tunnel_serving;
    let Some(first) = app_speaks_first(&mut client, serving.handshake_timeout).await else {
        return;
    };
    let client = PrefixedIo::new(first, client);
    let named_host = match &target.host {
        crate::net::Host::Name(name) => name.clone(),
        crate::net::Host::Ip(ip) => ip.to_string(),
    };
    let interceptor = context
        .tls_out()
        .filter(|_| is_tls_handshake(client.prefix()))
        .filter(|interceptor| {
            let host = client_hello_sni(client.prefix()).unwrap_or_else(|| named_host.clone());
            interceptor.intercepts(&host)
        });
    if let Some(interceptor) = interceptor {
        match interceptor.terminate(client, &named_host).await {
            Ok(decrypted) => {
                let options = serving;
                answer_requests(
                    decrypted,
                    Scheme::HTTPS,
                    options,
                    target,
                    forward,
                    tasks,
                    shutdown,
                    context,
                )
                .await
            }
            Err(reason) => {
                debug!(target = %Escaped(&target), reason = %Escaped(&reason), "mock mode: TLS in the tunnel not terminated")
            }
        }
        return;
    }
    let h2 = is_h2_preface(client.prefix());
    if h2 || is_http_request(client.prefix()) {
        let mut options = serving;
        options.accept_h2 = h2;
        answer_requests(
            client,
            Scheme::HTTP,
            options,
            target,
            forward,
            tasks,
            shutdown,
            context,
        )
        .await;
        return;
    }
    let route = Arc::new(Route::new("connect", target.to_string(), None));
    let record = context.record_stream(&route);
    if forward.passes_unmatched() {
        match dial(&target, forward.connect_timeout).await {
            Ok(upstream) => {
                let job = StreamJob {
                    route,
                    record,
                    context: &context,
                };
                proxy_stream(client, upstream, job).await;
            }
            Err(e) => {
                debug!(target = %Escaped(&target), error = %Escaped(&e), "mock mode: passthrough tunnel failed");
                context.count_connect_failure();
                if let Some(record) = record {
                    record.refused(e.to_string());
                }
            }
        }
        return;
    }
    let reason = format!(
        "mock mode answers HTTP only: this CONNECT tunnel to {target} carried neither HTTP nor TLS that tls-out decrypts, so it was closed (--mock-unmatched passthrough sends such tunnels to their target; --tls-out decrypts HTTPS for the mock)"
    );
    NOT_HTTP_UNDER_MOCK.occurred_because(&format_args!("tunnel to {target}"));
    if let Some(record) = record {
        record.refused(reason);
    }
}

/// Serves the HTTP the app sends through the tunnel, each request answered by the mock.
#[allow(clippy::too_many_arguments)]
async fn answer_requests<S>(
    stream: S,
    scheme: Scheme,
    options: crate::http::connection::ServeOptions,
    target: Target,
    forward: Arc<ForwardHttp>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    context: Connection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let for_requests = context.clone();
    serve(stream, options, shutdown, &context, move |request| {
        forward.clone().handle_arrived(
            request,
            Arrival::Tunnelled(target.clone()),
            scheme.clone(),
            tasks.clone(),
            for_requests.clone(),
        )
    })
    .await;
}
