//! The connections a replay sends its requests on: HTTP/1.1 to the target (HTTP/2 for exchanges recorded
//! as HTTP/2: h2c, or h2 by ALPN over TLS), in cleartext or in TLS verified against the system roots plus
//! an optional bundle (`--target-ca`), kept alive and reused: each worker keeps its own HTTP/1.1
//! connection ([`WorkerConnection`], driven in the worker's task by [`super::h1_link`]); the HTTP/2
//! exchanges share one connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::net::{dial, Target as DialTarget};
use crate::tls_out::upstream::UpstreamTls;

use super::answer::{read_answer, Answer};
use super::h1_link::H1Link;
use super::plan::Target;

pub struct TargetClient {
    target: Target,
    tls: Option<(UpstreamTls, ServerName<'static>)>,
    timeout: Duration,
    /// The HTTP/2 connection recorded HTTP/2 exchanges share (opened at the first of them).
    h2: tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>,
}

impl TargetClient {
    /// A client for `target`; `extra_ca` adds roots for an https target's certificate.
    pub fn new(
        target: Target,
        extra_ca: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Arc<TargetClient>, String> {
        let tls = if target.scheme == http::uri::Scheme::HTTPS {
            let tls = UpstreamTls::new(extra_ca).map_err(|e| e.to_string())?;
            let name = ServerName::try_from(
                target.authority.host().trim_matches(['[', ']']).to_owned(),
            )
            .map_err(|e| format!("invalid --target host {:?}: {e}", target.authority.host()))?;
            Some((tls, name))
        } else {
            None
        };
        Ok(Arc::new(TargetClient {
            target,
            tls,
            timeout,
            h2: tokio::sync::Mutex::new(None),
        }))
    }

    /// Sends `request` and reads the whole answer, within the timeout. An HTTP/1.1 request (origin-form
    /// URI, `host` set) goes on `connection`, opened first if it is not; an HTTP/2 one (absolute URI) on
    /// the shared HTTP/2 connection.
    pub async fn send(
        &self,
        connection: &mut WorkerConnection,
        request: Request<Bytes>,
    ) -> Result<Answer, String> {
        let timeout = self.timeout;
        let answer = tokio::time::timeout(timeout, self.exchange(connection, request))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no whole answer within {}",
                    humantime::format_duration(timeout)
                ))
            });
        if answer.is_err() {
            // Cut off mid-exchange, or broken: nothing more can be read on it in order.
            connection.0 = None;
        }
        answer
    }

    async fn exchange(
        &self,
        connection: &mut WorkerConnection,
        request: Request<Bytes>,
    ) -> Result<Answer, String> {
        if request.version() == Version::HTTP_2 {
            return self.exchange_h2(request).await;
        }
        let mut request = request;
        if request.uri().authority().is_some() {
            // HTTP/1.1 on a connection of our own: the request line carries the path, `host` the
            // authority.
            *request.uri_mut() = origin_form(request.uri())?;
        }
        let reusable = match &mut connection.0 {
            Some(link) => link.ready().await,
            None => false,
        };
        let link = match &mut connection.0 {
            Some(link) if reusable => link,
            slot => {
                let link = slot.insert(self.connect().await?);
                if !link.ready().await {
                    return Err("the target closed the new connection".to_owned());
                }
                link
            }
        };
        link.exchange(request.map(Full::new)).await
    }

    /// A recorded HTTP/2 exchange (gRPC, h2c) goes out as HTTP/2, every one on the one connection.
    async fn exchange_h2(&self, request: Request<Bytes>) -> Result<Answer, String> {
        let mut sender = self.h2_sender().await?;
        let started = Instant::now();
        let response = sender
            .send_request(request.map(Full::new))
            .await
            .map_err(|e| format!("the target did not answer over HTTP/2: {e}"))?;
        read_answer(response, started).await
    }

    async fn h2_sender(&self) -> Result<http2::SendRequest<Full<Bytes>>, String> {
        let mut shared = self.h2.lock().await;
        if let Some(sender) = shared.as_ref().filter(|sender| !sender.is_closed()) {
            return Ok(sender.clone());
        }
        let stream = self.dial().await?;
        let sender = match &self.tls {
            None => handshake_h2(stream).await?,
            Some((tls, name)) => {
                let stream = tls
                    .connect(stream, name.clone(), vec![b"h2".to_vec()])
                    .await
                    .map_err(|e| {
                        format!("TLS with {} failed: {e}", self.target.authority.host())
                    })?;
                handshake_h2(stream).await?
            }
        };
        *shared = Some(sender.clone());
        Ok(sender)
    }

    async fn dial(&self) -> Result<tokio::net::TcpStream, String> {
        let host = self.target.authority.host();
        let address = DialTarget::from_host_str(host, self.target.port());
        dial(&address, self.timeout)
            .await
            .map_err(|e| e.to_string())
    }

    async fn connect(&self) -> Result<H1Link, String> {
        let host = self.target.authority.host();
        let stream = self.dial().await?;
        match &self.tls {
            None => H1Link::handshake(stream).await,
            Some((tls, name)) => {
                let stream = tls
                    .connect(stream, name.clone(), vec![b"http/1.1".to_vec()])
                    .await
                    .map_err(|e| format!("TLS with {host} failed: {e}"))?;
                H1Link::handshake(stream).await
            }
        }
    }
}

fn origin_form(uri: &http::Uri) -> Result<http::Uri, String> {
    uri.path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .map_err(|e| format!("cannot send the path: {e}"))
}

/// One worker's HTTP/1.1 connection to the target: opened at its first request, reused while the target
/// keeps it open, replaced when it ends or an exchange on it fails.
#[derive(Default)]
pub struct WorkerConnection(Option<H1Link>);

async fn handshake_h2<S>(stream: S) -> Result<http2::SendRequest<Full<Bytes>>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot speak HTTP/2 to the target: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
