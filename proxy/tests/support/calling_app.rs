//! An app that calls a dependency while it serves: for each request, one `GET` to the dependency through
//! the sidecar's forward listener (absolute-form, as HTTP_PROXY clients send it), passing on the request's
//! `traceparent`, and the dependency's body as its answer. What links and `replay --mock-from` are about.
//! Requests to `/together` wait for one another first, so two are in flight at once when they call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

/// The app running; `use_proxy` points it at a sidecar's forward listener (before its first request).
pub struct CallingApp {
    pub addr: SocketAddr,
    proxy: Arc<Mutex<Option<SocketAddr>>>,
}

impl CallingApp {
    pub fn use_proxy(&self, proxy: SocketAddr) {
        *self.proxy.lock().unwrap_or_else(PoisonError::into_inner) = Some(proxy);
    }
}

/// Starts the app; a request for `path` calls `http://DEPENDENCY{call_for(path)}`.
pub async fn start_calling_app(dependency: SocketAddr, call_for: fn(&str) -> String) -> CallingApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let proxy: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(2));
    let for_app = proxy.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let proxy = for_app.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let proxy = proxy
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .expect("the test points the app at a sidecar first");
                    let barrier = barrier.clone();
                    async move {
                        if request.uri().path() == "/together" {
                            barrier.wait().await;
                        }
                        let trace = request.headers().get("traceparent").cloned();
                        let call = call_for(request.uri().path());
                        let body = call_dependency(proxy, dependency, &call, trace).await;
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    CallingApp { addr, proxy }
}

/// `GET http://DEPENDENCY{path}` through the forward proxy; the answer's body.
async fn call_dependency(
    proxy: SocketAddr,
    dependency: SocketAddr,
    path: &str,
    trace: Option<http::HeaderValue>,
) -> Bytes {
    let url = format!("http://{dependency}{path}");
    get_on_new_connection(proxy, &url, &dependency.to_string(), trace).await
}

/// One `GET target` (origin-form or absolute-form) to `to`, on a connection of its own, with `host` and
/// `traceparent` when given; the answer's body.
pub async fn get_on_new_connection(
    to: SocketAddr,
    target: &str,
    host: &str,
    traceparent: Option<http::HeaderValue>,
) -> Bytes {
    let stream = TcpStream::connect(to).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut request = Request::get(target).header("host", host);
    if let Some(trace) = traceparent {
        request = request.header("traceparent", trace);
    }
    let response = sender
        .send_request(request.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    response.into_body().collect().await.unwrap().to_bytes()
}
