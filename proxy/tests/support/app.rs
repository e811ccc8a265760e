//! The upstream the sidecar proxies to: a real hyper server (HTTP/1.1 and HTTP/2 prior knowledge, with
//! upgrades) whose answers reveal what reached it.
//!
//! - `GET /bytes/N`: N bytes of the test pattern, streamed.
//! - `POST /sha256`: `<length> <sha256>` of the request body, read as a stream.
//! - `POST /echo`: the request body streamed back.
//! - `GET /ws`: a websocket echo.
//! - anything else: `<METHOD> <path?query> <version>` then one `name: value` line per header received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::data::{hex, pattern_body};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub struct App {
    pub addr: SocketAddr,
    /// TCP connections the app has accepted: shows whether the proxy reused pooled connections.
    pub connections: Arc<AtomicUsize>,
}

impl App {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

pub async fn start_app() -> App {
    start_app_on("127.0.0.1:0").await
}

pub async fn start_app_on(bind: &str) -> App {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(stream),
                        hyper::service::service_fn(respond),
                    )
                    .await;
            });
        }
    });
    App { addr, connections }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
}

async fn respond(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    if let Some(len) = path.strip_prefix("/bytes/") {
        let len: u64 = len.parse().unwrap_or(0);
        let stream = pattern_body(len).map(|chunk| Ok::<_, std::io::Error>(Frame::data(chunk)));
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        response.headers_mut().insert("content-length", len.into());
        return Ok(response);
    }
    match path.as_str() {
        "/sha256" => {
            let mut body = request.into_body().into_data_stream();
            let mut hasher = Sha256::new();
            let mut length = 0u64;
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    return Ok(text(StatusCode::BAD_REQUEST, "body broken".into()));
                };
                length += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(text(
                StatusCode::OK,
                format!("{length} {}", hex(&hasher.finalize())),
            ))
        }
        "/echo" => {
            let stream = request
                .into_body()
                .into_data_stream()
                .map_ok(Frame::data)
                .map_err(std::io::Error::other);
            Ok(Response::new(StreamBody::new(stream).boxed_unsync()))
        }
        "/ws" => Ok(websocket_echo(request)),
        _ => {
            let mut out = format!(
                "{} {} {:?}\n",
                request.method(),
                request
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/"),
                request.version()
            );
            for (name, value) in request.headers() {
                out.push_str(&format!(
                    "{}: {}\n",
                    name,
                    value.to_str().unwrap_or("<binary>")
                ));
            }
            Ok(text(StatusCode::OK, out))
        }
    }
}

/// Answers a websocket handshake and echoes every message back.
fn websocket_echo(mut request: Request<Incoming>) -> Response<Body> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return text(StatusCode::BAD_REQUEST, "not a websocket handshake".into());
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(message)) = ws.next().await {
            if message.is_close() || ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = text(StatusCode::SWITCHING_PROTOCOLS, String::new());
    let headers = response.headers_mut();
    headers.insert("connection", "upgrade".parse().unwrap());
    headers.insert("upgrade", "websocket".parse().unwrap());
    headers.insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    response
}

/// A TCP echo server: every byte comes back; a half-close is answered with a half-close.
pub async fn start_tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
                let mut rest = Vec::new();
                let _ = reader.read_to_end(&mut rest).await;
            });
        }
    });
    addr
}
