//! Forward `http`: absolute-form requests for `http://` URLs (HTTP_PROXY) and CONNECT tunnels to any
//! host:port (HTTPS_PROXY, and anything else a client tunnels).
//!
//! A client connection is served by the HTTP/1 engine ([`crate::http::engine`], each request delivered to
//! the origin its URL names, recorded by the tap); a CONNECT it grants comes back here as the client's
//! socket and the target's, relayed like any stream. In mock mode the connection is served by hyper
//! instead ([`ForwardHttp::handle`]): the mock answers requests as `http` types.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::connection::Connection;
use crate::detect::H2_PREFACE;
use crate::http::body::{text_response, ProxyBody};
use crate::http::connection::{self, ServeOptions};
use crate::http::delivery::{Delivery, Failure};
use crate::http::engine;
use crate::http::exchange::{
    broken_request_body, failure_reason, failure_status, finish_response, refused_framing,
    refused_request, upstream_timed_out,
};
use crate::http::framing;
use crate::http::headers::remove_hop_by_hop;
use crate::http::host_header::{self, HostSource};
use crate::http::observed::ObservedExchange;
use crate::http::upgrade;
use crate::io::{BudgetedIo, PrefixedIo};
use crate::log_escape::Escaped;
use crate::mock::Mock;
use crate::net::{keepalive, Target};
use crate::options::RuntimeOptions;
use crate::peer_warnings::MALFORMED_REQUEST;
use crate::relay::{proxy_stream, StreamJob};

mod mocked;
mod mocked_tunnel;
mod redirected;
use mocked::{answer_from_mock, MockOutcome};
pub use redirected::serve_redirected;
// Here too, where the fuzz targets (fuzz/) have always found them.
pub use crate::http::forward_target::{connect_target, host_header, target_of};

pub struct ForwardHttp {
    /// The HTTP/1 engine's waits (connections served without a mock).
    engine: engine::Forward,
    /// hyper's client, for the requests a mock lets pass.
    client: Client<HttpConnector, ProxyBody>,
    /// HTTP/2 with prior knowledge, for the redirected HTTP/2 a mock lets pass (transparent mode).
    http2: Client<HttpConnector, ProxyBody>,
    connect_timeout: Duration,
    upstream_timeout: Duration,
    /// Mock mode: requests are answered from a capture (see [`crate::mock`]).
    mock: Option<Arc<Mock>>,
    /// How the mock serves the HTTP inside a connection it answers: redirected by iptables, or a CONNECT
    /// tunnel it granted ([`redirected`], [`mocked_tunnel`]).
    connection_serving: ServeOptions,
}

impl ForwardHttp {
    /// A forward proxy: connections open within `--connect-timeout`, and an upstream has
    /// `--upstream-timeout` to begin each response once the request reached it.
    pub fn new(options: &RuntimeOptions, mock: Option<Arc<Mock>>) -> Self {
        let connect_timeout = options.connect_timeout;
        let upstream_timeout = options.upstream_timeout;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        // The same keepalive probing as every other upstream socket (see net::tune).
        connector.set_keepalive(Some(keepalive::IDLE));
        connector.set_keepalive_interval(Some(keepalive::INTERVAL));
        connector.set_keepalive_retries(Some(keepalive::RETRIES));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .http1_preserve_header_case(true)
            // Each read from the upstream is one chunk of the response on its way to the client: small
            // enough that a client that does not read holds little besides what the budget counts.
            .http1_max_buf_size(crate::budget::QUEUE_CHUNK);
        let client = builder.build(connector.clone());
        let http2 = builder.http2_only(true).build(connector);
        ForwardHttp {
            engine: engine::Forward {
                connect_timeout,
                upstream_timeout,
            },
            client,
            http2,
            connect_timeout,
            upstream_timeout,
            mock,
            connection_serving: ServeOptions {
                handshake_timeout: options.handshake_timeout,
                accept_h2: true,
                max_request_head: options.max_request_head,
            },
        }
    }

    /// Whether a request the mock cannot answer goes on to its destination (`--mock-unmatched
    /// passthrough`); without a mock, everything does.
    pub fn passes_unmatched(&self) -> bool {
        self.mock
            .as_ref()
            .is_none_or(|mock| mock.unmatched == crate::mock::Unmatched::Passthrough)
    }

    /// Serves one client connection of the forward listener: with the HTTP/1 engine, or with hyper in
    /// mock mode.
    pub async fn serve<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        options: ServeOptions,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        context: Connection,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if self.mock.is_some() {
            let for_requests = context.clone();
            let for_tunnels = shutdown.clone();
            let handler = move |request| {
                self.clone().handle(
                    request,
                    tasks.clone(),
                    for_tunnels.clone(),
                    for_requests.clone(),
                )
            };
            connection::serve(stream, options, shutdown, &context, handler).await;
            return;
        }
        let Some(opened) = connection::open(stream, options, &context).await else {
            return;
        };
        if opened.prefix == H2_PREFACE {
            refuse_h2_preface(&context);
            return;
        }
        let granted = engine::serve_opened(
            opened,
            options,
            engine::Destination::Forward(&self.engine),
            peer.ip(),
            &context,
            &shutdown,
        )
        .await;
        if let Some(tunnel) = granted {
            relay_tunnel(tunnel, &context).await;
        }
    }

    /// Mock mode's requests, served by hyper: CONNECT granted to the mock, absolute-form requests answered
    /// by it (or passed on), anything else refused as the engine refuses it.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
        context: Connection,
    ) -> Result<Response<ProxyBody>, Infallible> {
        if request.method() == Method::CONNECT {
            return Ok(mocked_tunnel::grant(
                self, request, tasks, shutdown, context,
            ));
        }
        let uri = request.uri();
        Ok(match (uri.scheme_str(), uri.authority().cloned()) {
            (Some("http"), Some(authority)) => {
                self.forward(request, authority, Arrival::Proxied, tasks, context)
                    .await
            }
            (Some(scheme), Some(_)) => {
                let message = format!(
                    "sidecar: {scheme}:// URLs cannot be sent in absolute-form; clients reach them through a CONNECT tunnel (HTTPS_PROXY)"
                );
                refuse(request, &context, message)
            }
            _ => refuse(
                request,
                &context,
                "sidecar: this is the outbound proxy port; send absolute-form requests (GET http://host/path) or CONNECT host:port".to_owned(),
            ),
        })
    }

    /// A request that reached the mock inside a connection rather than as a proxy request: redirected
    /// by iptables (transparent mode) or sent through a CONNECT tunnel the mock granted. It is answered
    /// as an absolute-form request for the URL the app meant: its Host (`:authority` on HTTP/2), else
    /// where the connection was going, so it matches the records a transparent or CONNECT capture
    /// wrote; a request the mock lets pass goes where the app was sending it.
    async fn handle_arrived(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        arrival: Arrival,
        scheme: Scheme,
        tasks: TaskTracker,
        context: Connection,
    ) -> Result<Response<ProxyBody>, Infallible> {
        // HTTP/2 names it in `:authority` (the URI), HTTP/1 in Host.
        let named = request.uri().authority().cloned().or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
                .and_then(|host| host.parse::<Authority>().ok())
        });
        let destination = arrival.destination();
        let authority = match named {
            Some(authority) => authority,
            None => match destination.parse::<Authority>() {
                Ok(authority) => authority,
                Err(_) => {
                    return Ok(refuse(
                        request,
                        &context,
                        format!("sidecar: cannot name the destination {destination} as a URL"),
                    ))
                }
            },
        };
        if request.method() == Method::CONNECT {
            let why = match arrival {
                Arrival::Tunnelled(_) => "sidecar: CONNECT inside a CONNECT tunnel is not served in mock mode",
                _ => "sidecar: CONNECT was redirected here by iptables; the app is not using a proxy, so there is no tunnel to open",
            };
            return Ok(refuse(request, &context, why.to_owned()));
        }
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        match Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query(path)
            .build()
        {
            Ok(uri) => *request.uri_mut() = uri,
            Err(e) => {
                return Ok(refuse(
                    request,
                    &context,
                    format!("sidecar: the request's Host and path do not make a URL: {e}"),
                ))
            }
        }
        Ok(self
            .forward(request, authority, arrival, tasks, context)
            .await)
    }

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        authority: Authority,
        arrival: Arrival,
        tasks: TaskTracker,
        context: Connection,
    ) -> Response<ProxyBody> {
        let upgrade_protocol = upgrade::requested(request.headers());
        let client_upgrade = upgrade_protocol
            .as_ref()
            .map(|_| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let capture = ObservedExchange::begin(&context, arrival.transport(), &parts, || {
            (arrival.record_target(&authority), None)
        });
        // Before hop-by-hop removal, which drops Transfer-Encoding.
        if let Err(refusal) = framing::check_request(&parts.headers) {
            return refused_framing(refusal, &capture);
        }
        // The URL's host replaces the header below, so none is fine; two are refused all the same.
        if let Err(refusal) = host_header::check_request(
            &parts.method,
            parts.version,
            &parts.headers,
            HostSource::Target,
        ) {
            return refused_request(refusal, &capture);
        }
        remove_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade_protocol {
            upgrade::restore_headers(&mut parts.headers, protocol);
        }
        // RFC 9112 §3.2.2: the URL's host wins over any Host the client sent, and never carries userinfo.
        if let Ok(host) = HeaderValue::from_str(&host_header(&authority)) {
            parts.headers.insert(header::HOST, host);
        }
        let decrypted = parts.uri.scheme() == Some(&Scheme::HTTPS);
        if !decrypted && !matches!(arrival, Arrival::Proxied) {
            // The pooled client dials the URI's authority: where iptables found the app sending it, or
            // the tunnel's target. The Host header set above still names what the app asked for.
            if let Ok(uri) = redirected_uri(&parts.uri, &arrival.destination()) {
                parts.uri = uri;
            }
        }
        if let Some(mock) = self.mock.clone() {
            let request_body = capture.request_body(body);
            return match answer_from_mock(&mock, &parts, request_body, &capture).await {
                MockOutcome::Answered(response) => response,
                MockOutcome::Passthrough(_) if decrypted => {
                    let reason = "sidecar mock: nothing recorded matches this HTTPS request, and --mock-unmatched passthrough cannot send on HTTPS that tls-out decrypted for the mock (the sidecar opens no TLS to the destination in mock mode); record this call first".to_owned();
                    capture.sidecar_response(
                        text_response(StatusCode::BAD_GATEWAY, reason.clone()),
                        reason,
                    )
                }
                MockOutcome::Passthrough(bytes) => {
                    let body = Full::new(bytes).map_err(|never| match never {});
                    self.deliver(
                        parts,
                        body,
                        authority,
                        client_upgrade,
                        tasks,
                        context,
                        capture,
                    )
                    .await
                }
            };
        }
        let body = capture.request_body(body);
        self.deliver(
            parts,
            body,
            authority,
            client_upgrade,
            tasks,
            context,
            capture,
        )
        .await
    }

    /// Sends the request upstream and relays the answer (or the failure) to the client.
    #[allow(clippy::too_many_arguments)]
    async fn deliver<B>(
        &self,
        parts: http::request::Parts,
        body: B,
        authority: Authority,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        tasks: TaskTracker,
        context: Connection,
        capture: ObservedExchange,
    ) -> Response<ProxyBody>
    where
        B: hyper::body::Body<Data = bytes::Bytes, Error = hyper::Error> + Send + Unpin + 'static,
    {
        let client = if parts.version == http::Version::HTTP_2 {
            &self.http2
        } else {
            &self.client
        };
        let (body, delivery) = Delivery::new(body, self.upstream_timeout);
        let upstream_request = Request::from_parts(parts, body.boxed_unsync());
        match delivery.response(client.request(upstream_request)).await {
            Ok(response) => finish_response(response, client_upgrade, &tasks, &capture),
            Err(Failure::TimedOut(timeout)) => {
                upstream_timed_out(&host_header(&authority), timeout, &context, &capture)
            }
            Err(Failure::BrokenRequestBody(reason)) => broken_request_body(&reason, &capture),
            Err(Failure::Upstream(e)) => {
                let reason = failure_reason(&e);
                warn!(target = %Escaped(&authority), reason = %Escaped(&reason), "forward request failed");
                if e.is_connect() {
                    context.count_connect_failure();
                }
                let response = text_response(
                    failure_status(&e),
                    format!(
                        "sidecar: cannot reach {}: {reason}",
                        host_header(&authority)
                    ),
                );
                capture.sidecar_response(response, reason)
            }
        }
    }
}

/// How a request reached the forward handler, for its record and its delivery.
#[derive(Clone)]
enum Arrival {
    /// Sent to the proxy port by a client that uses the proxy (HTTP_PROXY).
    Proxied,
    /// Redirected by iptables on its way to this address (transparent mode with a mock).
    Redirected(SocketAddr),
    /// Sent through a CONNECT tunnel to this target that the mock granted (HTTPS_PROXY, mock mode).
    Tunnelled(Target),
}

impl Arrival {
    /// The record's `transport`.
    fn transport(&self) -> &'static str {
        match self {
            Arrival::Proxied => "http",
            Arrival::Redirected(_) => crate::transparent::TRANSPORT,
            Arrival::Tunnelled(_) => "connect",
        }
    }

    /// The record's `target`: where the client was going, as transparent mode's and CONNECT's records
    /// name it.
    fn record_target(&self, authority: &Authority) -> String {
        match self {
            Arrival::Proxied => target_of(authority),
            Arrival::Redirected(_) | Arrival::Tunnelled(_) => self.destination(),
        }
    }

    /// The host a TLS client inside the connection is given a leaf for when it sends no server name.
    fn tls_host(&self) -> String {
        match self {
            Arrival::Proxied => String::new(),
            Arrival::Redirected(destination) => destination.ip().to_string(),
            Arrival::Tunnelled(target) => match &target.host {
                crate::net::Host::Name(name) => name.clone(),
                crate::net::Host::Ip(ip) => ip.to_string(),
            },
        }
    }

    /// Where the connection the request came in was going (`host:port`).
    fn destination(&self) -> String {
        match self {
            Arrival::Proxied => String::new(),
            Arrival::Redirected(destination) => destination.to_string(),
            Arrival::Tunnelled(target) => target.to_string(),
        }
    }
}

/// `uri` with its authority replaced by `destination`.
fn redirected_uri(uri: &Uri, destination: &str) -> Result<Uri, http::Error> {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(destination)
        .path_and_query(path)
        .build()
}

/// Refuses a request the forward proxy cannot serve, and records the refusal like any exchange.
fn refuse(
    request: Request<Incoming>,
    context: &Connection,
    message: String,
) -> Response<ProxyBody> {
    let (parts, _unread_body) = request.into_parts();
    let capture = ObservedExchange::begin(context, "http", &parts, || {
        (
            parts.uri.authority().map(target_of).unwrap_or_default(),
            None,
        )
    });
    capture.sidecar_response(bad_request(message.clone()), message)
}

/// Refuses a request the forward proxy cannot serve, with the one warning line every refusal gets.
fn bad_request(message: String) -> Response<ProxyBody> {
    warn!(reason = %Escaped(&message), "refused request");
    text_response(StatusCode::BAD_REQUEST, message)
}

/// Relays a CONNECT tunnel the engine granted: the client's socket as it was accepted (with the bytes the
/// engine read past the CONNECT head replayed first, when there are any), so a tunnel nothing reads can be
/// spliced like any other stream (forward.rs `a_connect_tunnel_nothing_reads_is_spliced`).
async fn relay_tunnel<S>(tunnel: engine::Tunnel<BudgetedIo<PrefixedIo<S>>>, context: &Connection)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let job = StreamJob {
        route: tunnel.route,
        record: tunnel.record,
        context,
    };
    let served = tunnel.caller.into_inner();
    // The engine read its buffer before what is left of the prefix (if anything is).
    let early = [&tunnel.early[..], served.prefix()].concat();
    let socket = served.into_inner();
    if early.is_empty() {
        proxy_stream(socket, tunnel.upstream, job).await;
    } else {
        proxy_stream(PrefixedIo::new(early, socket), tunnel.upstream, job).await;
    }
}

/// HTTP/2's preface on the forward listener, which serves HTTP/1 only: closed without an answer and
/// counted as a malformed head, as hyper's HTTP/1 server did (and still does in mock mode).
fn refuse_h2_preface(context: &Connection) {
    context.count_handshake_error("malformed");
    MALFORMED_REQUEST.occurred_because(&"invalid HTTP version parsed (found HTTP2 preface)");
}
