//! Reverse `http`: an HTTP reverse proxy in front of the app.
//!
//! HTTP/1.0 and 1.1 callers are served by the HTTP/1 engine ([`crate::http::engine`]): one connection to
//! the app at a time per caller connection, taken from (and left to) a pool of idle ones the callers
//! share, heads rewritten and bodies relayed as bytes, recorded by the tap.
//! HTTP/2 prior-knowledge callers are served by hyper and forwarded as HTTP/2 prior knowledge (h2c), so
//! gRPC and trailers keep working.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::AppConnector;
use crate::connection::Connection;
use crate::http::body::{text_response, ProxyBody};
use crate::http::connection::{self, ServeOptions};
use crate::http::delivery::{Delivery, Failure};
use crate::http::engine;
use crate::http::exchange::{
    broken_request_body, failure_reason, failure_status, finish_response, refused_framing,
    refused_request, upstream_timed_out,
};
use crate::http::framing;
use crate::http::headers::{add_forwarded, remove_hop_by_hop};
use crate::http::host_header::{self, HostSource};
use crate::http::observed::ObservedExchange;
use crate::http::upgrade;
use crate::log_escape::Escaped;
use crate::net::Target;
use crate::options::RuntimeOptions;

/// The HTTP/2 flow-control windows the sidecar gives the app: what may wait in the sidecar for a client.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;

pub struct ReverseHttp {
    app: Target,
    app_authority: Authority,
    http2: Client<AppConnector, ProxyBody>,
    upstream_timeout: Duration,
    /// The HTTP/1 engine's way to the app.
    engine_app: engine::App,
}

impl ReverseHttp {
    /// A reverse proxy to `app`: connections open within `--connect-timeout`, the app has
    /// `--upstream-timeout` to begin each response once the request reached it, and HTTP/1 callers share
    /// up to `--app-idle-connections` idle connections to it.
    pub fn new(app: Target, options: &RuntimeOptions) -> Self {
        let connect_timeout = options.connect_timeout;
        let upstream_timeout = options.upstream_timeout;
        let connector = AppConnector::new(app.clone(), connect_timeout);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .http1_preserve_header_case(true)
            // Each read from the app is one chunk of the response on its way to the client: small enough
            // that a client that does not read holds little besides what the memory budget counts (also
            // the largest response head the app may send).
            .http1_max_buf_size(crate::budget::QUEUE_CHUNK)
            // What the app may send on an HTTP/2 stream before the sidecar reads it (h2's default is
            // 2 MB a stream and 5 MB a connection, held for a client that does not read).
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .http2_initial_connection_window_size(CONNECTION_WINDOW);
        let http2 = builder.http2_only(true).build(connector);
        let app_authority = app
            .to_string()
            .parse()
            .unwrap_or_else(|_| Authority::from_static("localhost"));
        let engine_app = engine::App {
            target: app.clone(),
            name: app.to_string(),
            connect_timeout,
            upstream_timeout,
            pool: engine::AppPool::new(options.app_idle_connections, options.app_idle_timeout),
        };
        ReverseHttp {
            app,
            app_authority,
            http2,
            upstream_timeout,
            engine_app,
        }
    }

    /// Serves one caller connection: HTTP/1 with the engine, HTTP/2 (prior knowledge) with hyper.
    #[allow(clippy::too_many_arguments)]
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
        let Some(opened) = connection::open(stream, options, &context).await else {
            return;
        };
        if opened.is_h2 {
            let for_requests = context.clone();
            let handler = move |request| {
                self.clone()
                    .handle(request, peer, tasks.clone(), for_requests.clone())
            };
            connection::serve_opened(opened, options, shutdown, &context, handler).await;
            return;
        }
        // The reverse listener's app takes CONNECT itself: no tunnel is ever handed back here.
        let _no_tunnel = engine::serve_opened(
            opened,
            options,
            engine::Destination::App(&self.engine_app),
            peer.ip(),
            &context,
            &shutdown,
        )
        .await;
    }

    /// Proxies one HTTP/2 request from `peer` to the app.
    pub async fn handle(
        self: Arc<Self>,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        tasks: TaskTracker,
        context: Connection,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let upgrade_protocol = upgrade::requested(request.headers());
        let client_upgrade = upgrade_protocol
            .as_ref()
            .map(|_| hyper::upgrade::on(&mut request));
        let is_h2 = request.version() == Version::HTTP_2;

        let (mut parts, body) = request.into_parts();
        // The record keeps the request as the caller sent it, before any header is changed.
        let capture = ObservedExchange::begin(&context, "http", &parts, || {
            let requested = requested_authority(&parts).unwrap_or_else(|| self.app.to_string());
            (requested, Some(self.app.to_string()))
        });
        parts.uri = self.upstream_uri(&parts.uri, is_h2);
        // Before hop-by-hop removal, which drops Transfer-Encoding.
        if let Err(refusal) = framing::check_request(&parts.headers) {
            return Ok(refused_framing(refusal, &capture));
        }
        if let Err(refusal) = host_header::check_request(
            &parts.method,
            parts.version,
            &parts.headers,
            HostSource::Header,
        ) {
            return Ok(refused_request(refusal, &capture));
        }
        remove_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade_protocol {
            upgrade::restore_headers(&mut parts.headers, protocol);
        }
        add_forwarded(&mut parts.headers, peer.ip(), "http");

        let client = &self.http2;
        let (body, delivery) = Delivery::new(capture.request_body(body), self.upstream_timeout);
        let upstream_request = Request::from_parts(parts, body.boxed_unsync());
        Ok(
            match delivery.response(client.request(upstream_request)).await {
                Ok(response) => finish_response(response, client_upgrade, &tasks, &capture),
                Err(Failure::TimedOut(timeout)) => upstream_timed_out(
                    &format!("the app at {}", self.app),
                    timeout,
                    &context,
                    &capture,
                ),
                Err(Failure::BrokenRequestBody(reason)) => broken_request_body(&reason, &capture),
                Err(Failure::Upstream(e)) => {
                    let reason = failure_reason(&e);
                    warn!(app = %self.app, reason = %Escaped(&reason), "app request failed");
                    if e.is_connect() {
                        context.count_connect_failure();
                    }
                    let response = text_response(
                        failure_status(&e),
                        format!("sidecar: the app at {} did not answer: {reason}", self.app),
                    );
                    capture.sidecar_response(response, reason)
                }
            },
        )
    }

    /// The URI the pooled client is given. HTTP/1 requests are keyed to the app (the caller's Host header
    /// travels untouched); HTTP/2 keeps the caller's authority, since that is what `:authority` carries.
    fn upstream_uri(&self, original: &Uri, is_h2: bool) -> Uri {
        let path = original
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let authority = match (is_h2, original.authority()) {
            (true, Some(authority)) => authority.clone(),
            _ => self.app_authority.clone(),
        };
        let scheme = match (is_h2, original.scheme()) {
            (true, Some(scheme)) => scheme.clone(),
            _ => Scheme::HTTP,
        };
        Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
            .unwrap_or_else(|_| original.clone())
    }
}

/// The authority the caller addressed: `:authority` on HTTP/2, the Host header on HTTP/1.
fn requested_authority(parts: &http::request::Parts) -> Option<String> {
    parts.uri.authority().map(|a| a.to_string()).or_else(|| {
        parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    })
}
