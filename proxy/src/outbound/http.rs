//! Forward `http`: absolute-form requests for `http://` URLs (HTTP_PROXY) and CONNECT tunnels to any
//! host:port (HTTPS_PROXY, and anything else a client tunnels).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::capture::{CaptureContext, HttpCapture, StreamCapture};
use crate::http::body::{empty, text_response, ProxyBody};
use crate::http::exchange::{failure_reason, finish_response};
use crate::http::headers::remove_hop_by_hop;
use crate::http::upgrade;
use crate::net::{dial, keepalive, Target};
use crate::relay::{proxy_stream, StreamJob};

pub struct ForwardHttp {
    client: Client<HttpConnector, ProxyBody>,
    connect_timeout: Duration,
}

impl ForwardHttp {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        // The same keepalive probing as every other upstream socket (see net::tune).
        connector.set_keepalive(Some(keepalive::IDLE));
        connector.set_keepalive_interval(Some(keepalive::INTERVAL));
        connector.set_keepalive_retries(Some(keepalive::RETRIES));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .set_host(false)
            .http1_preserve_header_case(true)
            .build(connector);
        ForwardHttp {
            client,
            connect_timeout,
        }
    }

    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        tasks: TaskTracker,
        context: CaptureContext,
    ) -> Result<Response<ProxyBody>, Infallible> {
        if request.method() == Method::CONNECT {
            return Ok(self.tunnel(request, tasks, context).await);
        }
        let uri = request.uri();
        Ok(match (uri.scheme_str(), uri.authority().cloned()) {
            (Some("http"), Some(authority)) => self.forward(request, authority, tasks, context).await,
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

    async fn forward(
        &self,
        mut request: Request<Incoming>,
        authority: Authority,
        tasks: TaskTracker,
        context: CaptureContext,
    ) -> Response<ProxyBody> {
        let upgrade_protocol = upgrade::requested(request.headers());
        let client_upgrade = upgrade_protocol
            .as_ref()
            .map(|_| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let capture =
            HttpCapture::begin(&context, "http", &parts, || (target_of(&authority), None));
        remove_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade_protocol {
            upgrade::restore_headers(&mut parts.headers, protocol);
        }
        // RFC 9112 §3.2.2: the URL's host wins over any Host the client sent, and never carries userinfo.
        if let Ok(host) = HeaderValue::from_str(&host_header(&authority)) {
            parts.headers.insert(header::HOST, host);
        }
        let upstream_request =
            Request::from_parts(parts, capture.request_body(body).boxed_unsync());
        match self.client.request(upstream_request).await {
            Ok(response) => finish_response(response, client_upgrade, &tasks, &capture),
            Err(e) => {
                let reason = failure_reason(&e);
                warn!(target = %authority, %reason, "forward request failed");
                if e.is_connect() {
                    context.count_connect_failure();
                }
                let response = text_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "sidecar: cannot reach {}: {reason}",
                        host_header(&authority)
                    ),
                );
                capture.sidecar_response(response, reason)
            }
        }
    }

    /// Opens the tunnel before answering, so an unreachable target gets a 502 rather than a dead tunnel.
    async fn tunnel(
        &self,
        request: Request<Incoming>,
        tasks: TaskTracker,
        context: CaptureContext,
    ) -> Response<ProxyBody> {
        let Some(target) = request.uri().authority().and_then(|a| {
            a.port_u16()
                .map(|port| Target::from_host_str(a.host(), port))
        }) else {
            return bad_request(format!(
                "sidecar: CONNECT needs host:port, got \"{}\"",
                request.uri()
            ));
        };
        let record = StreamCapture::begin(&context, "connect", target.to_string(), None);
        let upstream = match dial(&target, self.connect_timeout).await {
            Ok(upstream) => upstream,
            Err(e) => {
                warn!(error = %e, "CONNECT failed");
                context.count_connect_failure();
                record.refused(e.to_string());
                return text_response(StatusCode::BAD_GATEWAY, format!("sidecar: {e}"));
            }
        };
        debug!(%target, "CONNECT tunnel open");
        let tunnel_tasks = tasks.clone();
        tasks.spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(upgraded) => {
                    let job = StreamJob {
                        record,
                        context: &context,
                        tasks: &tunnel_tasks,
                    };
                    proxy_stream(TokioIo::new(upgraded), upstream, job).await;
                }
                Err(e) => {
                    debug!(error = %e, "client left before the tunnel started");
                    record.refused(format!("client left before the tunnel started: {e}"));
                }
            }
        });
        Response::new(empty())
    }
}

/// `host:port` as the client named it, with http's default port when none was given.
fn target_of(authority: &Authority) -> String {
    format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    )
}

/// The Host header for a URL's authority: host and explicit port, without any `user:password@`.
fn host_header(authority: &Authority) -> String {
    match authority.port() {
        Some(port) => format!("{}:{}", authority.host(), port.as_str()),
        None => authority.host().to_owned(),
    }
}

/// Refuses a request the forward proxy cannot serve, and records the refusal like any exchange.
fn refuse(
    request: Request<Incoming>,
    context: &CaptureContext,
    message: String,
) -> Response<ProxyBody> {
    let (parts, _unread_body) = request.into_parts();
    let capture = HttpCapture::begin(context, "http", &parts, || {
        (
            parts.uri.authority().map(target_of).unwrap_or_default(),
            None,
        )
    });
    capture.sidecar_response(bad_request(message.clone()), message)
}

/// Refuses a request the forward proxy cannot serve, with the one warning line every refusal gets.
fn bad_request(message: String) -> Response<ProxyBody> {
    warn!(reason = %message, "refused request");
    text_response(StatusCode::BAD_REQUEST, message)
}
