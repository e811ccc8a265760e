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

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::redirected::{answer_connection, refuse_unanswerable};
use super::{bad_request, connect_target, Arrival, ForwardHttp};
use crate::capture::Route;
use crate::connection::Connection;
use crate::http::body::{empty, ProxyBody};
use crate::log_escape::Escaped;
use crate::net::{dial, Target};
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
    client: TokioIo<Upgraded>,
    target: Target,
    forward: Arc<ForwardHttp>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    context: Connection,
) {
    let arrival = Arrival::Tunnelled(target.clone());
    let answered = answer_connection(client, &arrival, &forward, shutdown, tasks, &context).await;
    let Some(client) = answered else {
        return;
    };
    if !forward.passes_unmatched() {
        refuse_unanswerable(&arrival, &context);
        return;
    }
    // Passed through: relayed and recorded as a tunnel is without the mock; the bytes read are replayed.
    let route = Arc::new(Route::new("connect", target.to_string(), None));
    let record = context.record_stream(&route);
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
}
