//! TLS for tls-out's tests: a capture CA, an HTTPS upstream with certificates of its own CA (h2 and
//! http/1.1 by ALPN), and a client that trusts whichever CA the test says.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A CA made for one test: its certificate and key, PEM, and an issuer for leaves.
pub struct TestCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        let key_pem = key.serialize_pem();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
            cert_der,
        }
    }

    /// Writes tls.crt and tls.key into a fresh directory, as a mounted Secret holds them.
    pub fn write_dir(&self, dir: &Path) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &self.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &self.key_pem).unwrap();
        dir.to_owned()
    }

    /// A server configuration with a leaf for `names` (DNS names or IP literals), offering `alpn`.
    pub fn server_config(&self, names: &[&str], alpn: &[&[u8]]) -> Arc<ServerConfig> {
        self.server_config_with(names, alpn, |_| {})
    }

    /// A server configuration presenting this CA's own certificate as its server certificate (what a
    /// self-signed CA certificate used as a server's certificate looks like), offering `alpn`.
    pub fn ca_as_server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        server_config_for(self.cert_der.clone(), key, alpn)
    }

    /// As [`TestCa::server_config`], with the leaf's parameters changed by `adjust` first (dates, names).
    pub fn server_config_with(
        &self,
        names: &[&str],
        alpn: &[&[u8]],
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().unwrap()),
            })
            .collect();
        adjust(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        server_config_for(cert.der().clone(), der, alpn)
    }
}

fn server_config_for(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client configuration trusting only `roots`, offering `alpn`.
pub fn client_config(roots: &[&CertificateDer<'static>], alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add((*root).clone()).unwrap();
    }
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// An HTTPS server on 127.0.0.1: HTTP/2 or HTTP/1.1 as ALPN decides, answering every request with
/// `upstream saw {method} {path} over {version}, {n} body bytes` and header `x-upstream-alpn`.
pub async fn start_https_upstream(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let alpn = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .unwrap_or_else(|| "none".into());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let alpn = alpn.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let text = format!(
                            "upstream saw {} {} over {:?}, {} body bytes",
                            parts.method,
                            parts.uri.path(),
                            parts.version,
                            body.len()
                        );
                        let response = Response::builder()
                            .header("x-upstream-alpn", alpn)
                            .body(Full::new(Bytes::from(text)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// What an HTTPS request through the sidecar came back with.
#[derive(Debug)]
pub struct HttpsReply {
    pub status: u16,
    pub body: String,
    /// The protocol the client's TLS agreed with the sidecar.
    pub alpn: Option<String>,
    pub upstream_alpn: Option<String>,
    /// The leaf the client was shown.
    pub peer_certificate: CertificateDer<'static>,
}

/// Opens TLS to `server_name` over `stream` and sends one request (`POST` with `body` when given, else
/// `GET`), in HTTP/2 when ALPN agreed on h2, else HTTP/1.1.
pub async fn https_request<S>(
    stream: S,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    path: &str,
    body: Option<&'static [u8]>,
) -> std::io::Result<HttpsReply>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let host = match &server_name {
        ServerName::DnsName(name) => name.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => unreachable!(),
    };
    let tls = TlsConnector::from(config)
        .connect(server_name, stream)
        .await?;
    let (_, session) = tls.get_ref();
    let alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let peer_certificate = session.peer_certificates().unwrap()[0].clone();
    let method = if body.is_some() { "POST" } else { "GET" };
    let request = Request::builder()
        .method(method)
        .header("user-agent", "tls-out-test")
        .body(Full::new(Bytes::from_static(body.unwrap_or_default())))
        .unwrap();
    let io = TokioIo::new(tls);
    let response = if alpn.as_deref() == Some("h2") {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        parts.uri = format!("https://{host}{path}").parse().unwrap();
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(std::io::Error::other)?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let (mut parts, body) = request.into_parts();
        parts.uri = path.parse().unwrap();
        parts.headers.insert("host", host.parse().unwrap());
        sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(std::io::Error::other)?
    };
    let status = response.status().as_u16();
    let upstream_alpn = response
        .headers()
        .get("x-upstream-alpn")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(HttpsReply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        alpn,
        upstream_alpn,
        peer_certificate,
    })
}
