//! The connections a replay sends its requests on: HTTP/1.1 to the target, in cleartext or in TLS
//! verified against the system roots plus an optional bundle (`--target-ca`), kept alive and reused.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::net::{dial, Target as DialTarget};
use crate::tls_out::upstream::UpstreamTls;

use super::plan::Target;

/// The largest response body a replay reads: anything larger is a failure, not a memory problem.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The target's answer to one request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// From sending the request to the whole response body.
    pub elapsed: Duration,
}

pub struct TargetClient {
    target: Target,
    tls: Option<(UpstreamTls, ServerName<'static>)>,
    timeout: Duration,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
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
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// Sends `request` (absolute URL) and reads the whole answer, within the timeout.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Answer, String> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no whole answer within {}",
                    humantime::format_duration(timeout)
                ))
            })
    }

    async fn exchange(&self, request: Request<Bytes>) -> Result<Answer, String> {
        let (mut parts, body) = request.into_parts();
        // HTTP/1.1 on a connection of our own: the request line carries the path, Host the authority.
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse()
            .map_err(|e| format!("cannot send the path: {e}"))?;
        let mut sender = match self.take_idle() {
            Some(sender) => sender,
            None => self.connect().await?,
        };
        let started = Instant::now();
        let response = sender
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|e| format!("the target did not answer: {e}"))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("the answer's body broke off: {e}"))?
            .to_bytes();
        let elapsed = started.elapsed();
        self.put_idle(sender);
        Ok(Answer {
            status,
            headers,
            body,
            elapsed,
        })
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<Full<Bytes>>) {
        if !sender.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let host = self.target.authority.host();
        let address = DialTarget::from_host_str(host, self.target.port());
        let stream = dial(&address, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        match &self.tls {
            None => handshake(stream).await,
            Some((tls, name)) => {
                let stream = tls
                    .connect(stream, name.clone(), vec![b"http/1.1".to_vec()])
                    .await
                    .map_err(|e| format!("TLS with {host} failed: {e}"))?;
                handshake(stream).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot speak HTTP/1.1 to the target: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
