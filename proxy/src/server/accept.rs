//! The accept loops and the task each connection runs in: its metrics, its [`Connection`], its span, and
//! the protocol handler of its listener.
//!
//! An accept that fails for lack of resources (file descriptors above all) is retried after a pause, so an
//! exhausted process waits instead of spinning on a listener that stays readable; the pending connections
//! wait in the kernel's backlog meanwhile, and are served as soon as descriptors are free again. So do they
//! while the memory budget has no room for another connection ([`super::admission`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info_span, Instrument};

use super::admission::Admission;
use super::drain::Accepted;
use super::limit::ConnectionLimit;
use super::listeners::{Handler, Listener, TRANSPARENT};
use super::Services;
use crate::capture::Capture;
use crate::connection::Connection;
use crate::http::connection::ServeOptions;
use crate::io::{ByteMeter, MeteredIo};
use crate::metrics::{
    DirectionLabels, FlowLabels, GaugeGuard, HandshakeErrorLabels, ListenerLabels, Metrics,
    RecordLabels,
};
use crate::options::RuntimeOptions;
use crate::outbound::http::serve_redirected;
use crate::peer_warnings::{ACCEPT_FAILED, NOT_REDIRECTED};
use crate::socks::{self, Timeouts};
use crate::transparent::{self, redirected_destination, Redirect};

/// The pause after an accept failed for lack of resources: long enough to cost nothing while the process is
/// out of file descriptors, short enough that serving resumes promptly once some are free.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// What the accept loops and their connections share.
pub(super) struct Shared {
    pub(super) options: Arc<RuntimeOptions>,
    pub(super) services: Services,
    /// What every connection's records need, with capture on; `None` with capture off.
    pub(super) capture: Option<Capture>,
    pub(super) proxy_type: &'static str,
    pub(super) tasks: TaskTracker,
    /// Cancelled once the drain after SIGTERM is over: stop accepting, finish what is open.
    pub(super) shutdown: CancellationToken,
    pub(super) accepted: Arc<Accepted>,
}

pub(super) async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let metrics = &shared.services.metrics;
    let labels = ListenerLabels {
        direction: listener.direction,
        protocol: listener.protocol,
    };
    // Looked up once: per-connection counting is then plain atomic adds.
    let accepted_total = metrics.connections_accepted.get_or_create(&labels).clone();
    let open = metrics.connections_open.get_or_create(&labels).clone();
    let flow = |flow| {
        metrics
            .relayed_bytes
            .get_or_create(&FlowLabels {
                direction: listener.direction,
                flow,
            })
            .clone()
    };
    let (from_client, to_client) = (flow("client_to_target"), flow("target_to_client"));
    zero_series(metrics, &labels, shared.services.capture.is_enabled());
    let limit = ConnectionLimit::new(
        listener.direction,
        shared.options.max_connections,
        open.clone(),
        metrics.connections_refused.get_or_create(&labels).clone(),
    );
    let accept_errors = metrics.accept_errors.get_or_create(&labels).clone();
    let mut admission = Admission::new(&listener.handler);
    loop {
        if shared.shutdown.is_cancelled() || !admission.room(&shared.shutdown).await {
            break;
        }
        // Whether a caller was waiting tells the admission whether the backlog holds anyone.
        let waiting = std::future::poll_fn(|cx| Poll::Ready(listener.socket.poll_accept(cx))).await;
        let accepted = match waiting {
            Poll::Ready(accepted) => accepted,
            Poll::Pending => {
                admission.backlog_empty();
                tokio::select! {
                    _ = shared.shutdown.cancelled() => break,
                    accepted = listener.socket.accept() => accepted,
                }
            }
        };
        match accepted {
            Ok((stream, peer)) => {
                // No-delay and keepalive come with the socket, from its listener (net/keepalive.rs).
                accepted_total.inc();
                shared.accepted.one_more();
                // Read before the socket is wrapped: the kernel knows where a redirected connection was going.
                let redirect = match &*listener.handler {
                    Handler::Transparent { .. } => match redirected_destination(&stream) {
                        Ok(Redirect::To(destination)) => Some(destination),
                        Ok(Redirect::NotRedirected) | Err(_) => {
                            // Relaying it would make the sidecar connect to itself, forever.
                            NOT_REDIRECTED.occurred_because(&format_args!(
                                "{} listener, from {peer}",
                                listener.direction
                            ));
                            count_handshake_error(metrics, &labels, "not_redirected");
                            continue;
                        }
                    },
                    _ => None,
                };
                if limit.is_reached() {
                    limit.refuse(
                        stream,
                        peer,
                        &listener.handler,
                        shared.options.handshake_timeout,
                        &shared.tasks,
                    );
                    continue;
                }
                // Held by the connection, which tunnels and upgraded connections keep past this task.
                let open = Arc::new(GaugeGuard::new(open.clone()));
                // The connection's fixed cost, in the budget for as long as its socket lives.
                let stream = MeteredIo::new(
                    stream,
                    ByteMeter::new(from_client.clone(), to_client.clone())
                        .holding(admission.admit()),
                );
                let context = Connection::new(
                    shared.capture.clone(),
                    shared.services.metrics.clone(),
                    listener.direction,
                    shared.proxy_type,
                    listener.protocol,
                    peer,
                )
                .holding(open)
                .with_max_request_head(shared.options.max_request_head)
                // Only the app's own outbound TLS is intercepted; inbound TLS is the app's to terminate.
                .with_tls_out(if listener.direction == "outbound" {
                    shared.services.tls_out.clone()
                } else {
                    None
                });
                let span = info_span!("conn", direction = listener.direction, protocol = listener.protocol, %peer);
                let connection = serve_connection(
                    listener.handler.clone(),
                    stream,
                    peer,
                    redirect,
                    shared.clone(),
                    context,
                );
                shared.tasks.spawn(connection.instrument(span));
            }
            Err(e) => {
                accept_errors.inc();
                if is_connection_gone(&e) {
                    // One client's problem (it left before it was accepted), not the listener's.
                    debug!(direction = listener.direction, error = %e, "connection gone before accept");
                    continue;
                }
                ACCEPT_FAILED
                    .occurred_because(&format_args!("{} listener: {e}", listener.direction));
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
            }
        }
    }
}

/// Whether an accept error concerns only the connection being accepted.
fn is_connection_gone(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
    )
}

fn count_handshake_error(metrics: &Metrics, listener: &ListenerLabels, reason: &'static str) {
    metrics
        .handshake_errors
        .get_or_create(&HandshakeErrorLabels {
            direction: listener.direction,
            protocol: listener.protocol,
            reason,
        })
        .inc();
}

/// Creates this listener's series at 0, so dashboards and alerts see "none yet" rather than "no data".
fn zero_series(metrics: &Metrics, labels: &ListenerLabels, capturing: bool) {
    let _ = metrics.upstream_connect_failures.get_or_create(labels);
    let _ = metrics.connections_refused.get_or_create(labels);
    let _ = metrics.accept_errors.get_or_create(labels);
    if labels.protocol == "http" {
        let _ = metrics.upstream_timeouts.get_or_create(labels);
    }
    let reasons: &[&'static str] = match labels.protocol {
        "http" => &[
            "timeout",
            "malformed",
            "too_large",
            "socks_on_http",
            "tls_on_http",
        ],
        "socks" => &[
            "timeout",
            "malformed",
            "not_socks",
            "unsupported_command",
            "truncated",
            "empty",
        ],
        TRANSPARENT => &["not_redirected"],
        _ => &[],
    };
    for &reason in reasons {
        let _ = metrics
            .handshake_errors
            .get_or_create(&HandshakeErrorLabels {
                direction: labels.direction,
                protocol: labels.protocol,
                reason,
            });
    }
    let _ = metrics.request_duration.get_or_create(&DirectionLabels {
        direction: labels.direction,
    });
    if capturing {
        let _ = metrics.probes_skipped.get_or_create(&DirectionLabels {
            direction: labels.direction,
        });
        for kind in ["http", "stream"] {
            let _ = metrics
                .records_captured
                .get_or_create(&RecordLabels { kind });
        }
    }
}

async fn serve_connection<S>(
    handler: Arc<Handler>,
    stream: S,
    peer: SocketAddr,
    redirect: Option<SocketAddr>,
    shared: Arc<Shared>,
    context: Connection,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    debug!("accepted");
    let options = &shared.options;
    let socks_timeouts = Timeouts {
        handshake: options.handshake_timeout,
        connect: options.connect_timeout,
    };
    let tasks = shared.tasks.clone();
    let shutdown = shared.shutdown.clone();
    // Each handler's future is boxed: a future is as large as its largest state, so without this every
    // connection's task would be the size of the largest handler (the HTTP server's), idle ones included.
    match &*handler {
        Handler::ReverseTcp(app) => {
            Box::pin(crate::inbound::tcp::serve(stream, app, options, context)).await
        }
        Handler::ReverseSocks(app) => {
            Box::pin(socks::serve(stream, Some(app), &socks_timeouts, context)).await
        }
        Handler::ForwardSocks => {
            Box::pin(socks::serve(stream, None, &socks_timeouts, context)).await
        }
        Handler::Transparent { mocked } => match (redirect, mocked) {
            (Some(destination), None) => {
                Box::pin(transparent::serve(stream, destination, options, context)).await
            }
            (Some(destination), Some(forward)) => {
                Box::pin(serve_redirected(
                    stream,
                    destination,
                    forward.clone(),
                    options,
                    shutdown,
                    tasks,
                    context,
                ))
                .await
            }
            (None, _) => {}
        },
        Handler::ReverseHttp(reverse) => {
            let serve_options = ServeOptions {
                handshake_timeout: options.handshake_timeout,
                accept_h2: true,
                max_request_head: options.max_request_head,
            };
            Box::pin(
                reverse
                    .clone()
                    .serve(stream, peer, serve_options, shutdown, tasks, context),
            )
            .await
        }
        Handler::ForwardHttp(forward) => {
            let serve_options = ServeOptions {
                handshake_timeout: options.handshake_timeout,
                accept_h2: false,
                max_request_head: options.max_request_head,
            };
            Box::pin(
                forward
                    .clone()
                    .serve(stream, peer, serve_options, shutdown, tasks, context),
            )
            .await
        }
    }
}
