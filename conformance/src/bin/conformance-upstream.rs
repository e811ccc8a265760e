//! The upstream of every conformance cell: the app behind a reverse sidecar, or the server a forward client
//! reaches through the sidecar. It answers every request with a body that names what it received
//! ([`sidecar_conformance::upstream::echo_body`]), so a client's output proves which request arrived, and
//! logs each request as one JSON line on stdout, so a cell can check what the app saw.
//!
//! `conformance-upstream --http-port 80 [--https-port 8443 --tls-cert cert.pem --tls-key key.pem]`
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sidecar_conformance::upstream::{echo_body, SeenRequest, READY_LINE};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
struct Args {
    /// The address every port listens on: 127.0.0.1, the pod's loopback, unless the upstream is reached
    /// over the test's network (transparent cells: 0.0.0.0).
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    listen_address: Ipv4Addr,
    /// Cleartext HTTP ports (HTTP/1 and h2c).
    #[arg(long = "http-port", required = true)]
    http_ports: Vec<u16>,
    /// HTTPS port (ALPN h2 and http/1.1); needs --tls-cert and --tls-key.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    https_port: Option<u16>,
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut servers = Vec::new();
    for port in args.http_ports {
        let listener = bind(args.listen_address, port).await?;
        servers.push(tokio::spawn(serve(listener, "http", None)));
    }
    if let (Some(port), Some(cert), Some(key)) = (args.https_port, args.tls_cert, args.tls_key) {
        let acceptor = tls_acceptor(&cert, &key)?;
        let listener = bind(args.listen_address, port).await?;
        servers.push(tokio::spawn(serve(listener, "https", Some(acceptor))));
    }
    // Printed once every port is bound: the harness starts the sidecar only after this line.
    println!("{READY_LINE}");
    for server in servers {
        server.await?;
    }
    Ok(())
}

async fn bind(ip: Ipv4Addr, port: u16) -> anyhow::Result<TcpListener> {
    let address = SocketAddr::from((ip, port));
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad certificate in {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn serve(listener: TcpListener, scheme: &'static str, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(scheme, request));
            let builder = auto::Builder::new(TokioExecutor::new());
            let served = match tls {
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(e) => {
                        eprintln!("conformance-upstream: TLS handshake failed: {e}");
                        return;
                    }
                },
            };
            if let Err(e) = served {
                eprintln!("conformance-upstream: connection ended with an error: {e}");
            }
        });
    }
}

async fn answer(
    scheme: &'static str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            eprintln!("conformance-upstream: request body failed: {e}");
            Bytes::new()
        }
    };
    let host = head
        .headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| head.uri.authority().map(|a| a.to_string()));
    let seen = SeenRequest {
        scheme: scheme.to_owned(),
        method: head.method.to_string(),
        path: head
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string()),
        host,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    if let Ok(line) = serde_json::to_string(&seen) {
        println!("{line}");
    }
    let echo = echo_body(scheme, &seen.method, &seen.path, &seen.body);
    let response = Response::builder()
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(echo)))
        .expect("static response parts are valid");
    Ok(response)
}
