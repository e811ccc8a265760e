//! The origin behind the sidecars, in this process on 127.0.0.1: an HTTP/1.1 server and a TCP echo.
//!
//! Its answers are predictable so the load generators can check every byte: `/small/<id>` answers
//! [`small_body`] of that id (a response that went to the wrong request shows), `/large` answers
//! [`large_body`]; the echo returns each connection's bytes and closes once the client has shut down its
//! writing side (so a bulk transfer through a relay also proves half-close).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Size of the `/large` body: big enough to span many reads and the capture's body limit.
pub const LARGE_BODY_LEN: usize = 256 * 1024;

pub struct Origin {
    pub http: SocketAddr,
    pub echo: SocketAddr,
    /// Cancelled to make every HTTP connection close once its exchange in flight is done.
    close_idle: CancellationToken,
    shutdown: CancellationToken,
}

impl Origin {
    pub async fn start() -> anyhow::Result<Origin> {
        let http_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let echo_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let origin = Origin {
            http: http_listener.local_addr()?,
            echo: echo_listener.local_addr()?,
            close_idle: CancellationToken::new(),
            shutdown: CancellationToken::new(),
        };
        let close_idle = origin.close_idle.clone();
        tokio::spawn(accept_each(
            http_listener,
            origin.shutdown.clone(),
            move |stream| serve_http_connection(stream, close_idle.clone()),
        ));
        tokio::spawn(accept_each(echo_listener, origin.shutdown.clone(), echo));
        Ok(origin)
    }

    /// Closes the keep-alive connections the sidecars pool towards the origin.
    pub fn close_idle_connections(&self) {
        self.close_idle.cancel();
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

/// The body `/small/<id>` answers.
pub fn small_body(id: &str) -> String {
    format!("sidecar-soak small response to {id}\n")
}

/// The body `/large` answers: a byte pattern whose period (251, a prime) matches no buffer size, so a
/// chunk lost, repeated or moved shows.
pub fn large_body() -> Bytes {
    static LARGE: OnceLock<Bytes> = OnceLock::new();
    LARGE
        .get_or_init(|| (0..LARGE_BODY_LEN).map(|i| (i % 251) as u8).collect())
        .clone()
}

/// Hands every connection `listener` accepts to a task of its own running `serve`, until `shutdown`.
async fn accept_each<F, Served>(listener: TcpListener, shutdown: CancellationToken, serve: F)
where
    F: Fn(TcpStream) -> Served,
    Served: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors or a connection reset before accept: the next accept may work.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve(stream));
    }
}

async fn serve_http_connection(stream: TcpStream, close_idle: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = close_idle.cancelled() => {}
    }
    // Closes at once when idle, after the response in flight otherwise.
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    let response = if let Some(id) = path.strip_prefix("/small/") {
        Response::new(Full::new(Bytes::from(small_body(id))))
    } else if path == "/large" {
        Response::new(Full::new(large_body()))
    } else {
        let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    };
    Ok(response)
}

/// Returns the connection's bytes; after the client's FIN, sends its own: the echo's half-close.
async fn echo(stream: TcpStream) {
    let (mut reader, mut writer) = stream.into_split();
    if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
        let _ = writer.shutdown().await;
    }
}
