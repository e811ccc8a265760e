//! The webhook's two questions to the Kubernetes API server, for the `auto` layout: `GET /version` and
//! `GET /api/v1/nodes` (paged), as the injector's ServiceAccount (its token and the cluster CA from
//! [`SERVICE_ACCOUNT_DIR`], the address from `KUBERNETES_SERVICE_HOST`/`_PORT`; each overridable, so the
//! webhook can run outside a pod and a test can point it at a stand-in).
//!
//! Why not kube's client: two GETs every few minutes need none of what `kube/client` brings (tower and
//! tower-http layers, kubeconfig parsing, exec and OIDC auth, its own hyper-rustls stack) and it would
//! add those crates to every build and to the Bazel lock. hyper, tokio-rustls (ring) and k8s-openapi's
//! types, which the injector already uses, do the two GETs.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, HOST, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::version::Info;
use k8s_openapi::List;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;
use sidecar_proxy::config::excerpt;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::kube_versions::{ClusterVersions, NodeVersion};

/// Where Kubernetes mounts a pod's ServiceAccount token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Nodes asked for per page: a big cluster's list stays a few MiB per answer.
const PAGE_SIZE: u32 = 500;
/// 500 nodes of ~10 KiB each, with room to spare.
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// A cluster larger than this many pages (100 000 nodes) is not read to the end.
const MAX_PAGES: usize = 200;

/// How to reach the API server.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    /// `https://HOST[:PORT]`; `None`: from `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    pub api_server: Option<String>,
    /// Read at every ask: a projected token is rotated by the kubelet.
    pub token_file: PathBuf,
    /// PEM bundle the API server's certificate must chain to.
    pub ca_file: PathBuf,
    /// For each GET, connection included.
    pub timeout: Duration,
}

impl ClusterAccess {
    /// The in-cluster defaults: the pod's ServiceAccount and the `kubernetes` Service's address.
    pub fn in_cluster() -> Self {
        ClusterAccess {
            api_server: None,
            token_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("token"),
            ca_file: PathBuf::from(SERVICE_ACCOUNT_DIR).join("ca.crt"),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why the API server could not be asked, in words that fit the pod's `sidecar-layout-reason`.
#[derive(Debug, Error)]
pub enum AskError {
    #[error("KUBERNETES_SERVICE_HOST is not set (not running in a pod?) and no --kube-api-server was given")]
    NoAddress,
    #[error("the API server address \"{0}\" is not https://HOST[:PORT]")]
    BadAddress(String),
    #[error("cannot read the ServiceAccount token {path}: {source}")]
    Token { path: String, source: io::Error },
    #[error("cannot use the cluster CA {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("cannot reach the API server at {authority}: {reason}")]
    Connect { authority: String, reason: String },
    #[error("GET {path}: no answer within {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("GET {path}: {status}: {message}")]
    Status {
        path: String,
        status: StatusCode,
        message: String,
    },
    #[error("GET {path}: {reason}")]
    Answer { path: String, reason: String },
}

impl AskError {
    /// The API server refused the ServiceAccount (401) or its role lacks a permission (403).
    pub fn is_refusal(&self) -> bool {
        matches!(self, AskError::Status { status, .. }
            if *status == StatusCode::UNAUTHORIZED || *status == StatusCode::FORBIDDEN)
    }
}

/// The API server's version and every node's kubelet version.
pub async fn ask_versions(access: &ClusterAccess) -> Result<ClusterVersions, AskError> {
    let connection = Connection::prepare(access)?;
    let info: Info = connection.get("/version".to_owned()).await?;
    let mut nodes = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let path = match &next {
            None => format!("/api/v1/nodes?limit={PAGE_SIZE}"),
            Some(token) => format!(
                "/api/v1/nodes?limit={PAGE_SIZE}&continue={}",
                percent_encode(token)
            ),
        };
        let page: List<Node> = connection.get(path).await?;
        nodes.extend(page.items.into_iter().map(|node| {
            NodeVersion {
                name: node.metadata.name.unwrap_or_default(),
                kubelet: node
                    .status
                    .and_then(|status| status.node_info)
                    .map(|info| info.kubelet_version)
                    .unwrap_or_default(),
            }
        }));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => next = Some(token),
            _ => break,
        }
    }
    Ok(ClusterVersions {
        server: info.git_version,
        nodes,
    })
}

/// Everything one ask needs, read once: the address, the token and the TLS configuration.
struct Connection {
    authority: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    token: String,
    tls: TlsConnector,
    timeout: Duration,
}

impl Connection {
    fn prepare(access: &ClusterAccess) -> Result<Connection, AskError> {
        let address = match &access.api_server {
            Some(address) => address.clone(),
            None => address_from_environment()?,
        };
        let bad = || AskError::BadAddress(address.clone());
        let uri: Uri = address.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") || !matches!(uri.path(), "" | "/") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?.to_string();
        // An IPv6 literal comes bracketed in a URI, bare in a socket address and a TLS name.
        let host = uri
            .host()
            .ok_or_else(bad)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let server_name = ServerName::try_from(host.clone()).map_err(|_| bad())?;

        let token_path = access.token_file.display().to_string();
        let token = std::fs::read_to_string(&access.token_file)
            .map_err(|source| AskError::Token {
                path: token_path.clone(),
                source,
            })?
            .trim()
            .to_owned();
        if token.is_empty() {
            return Err(AskError::Token {
                path: token_path,
                source: io::Error::new(io::ErrorKind::InvalidData, "the file is empty"),
            });
        }
        Ok(Connection {
            authority,
            host,
            port: uri.port_u16().unwrap_or(443),
            server_name,
            token,
            tls: tls_connector(&access.ca_file)?,
            timeout: access.timeout,
        })
    }

    /// One GET on a fresh connection (one every few minutes: not worth keeping one open).
    async fn get<T: DeserializeOwned>(&self, path: String) -> Result<T, AskError> {
        match tokio::time::timeout(self.timeout, self.get_now(&path)).await {
            Ok(result) => result,
            Err(_) => Err(AskError::Timeout {
                path,
                timeout: self.timeout,
            }),
        }
    }

    async fn get_now<T: DeserializeOwned>(&self, path: &str) -> Result<T, AskError> {
        let connect_error = |reason: String| AskError::Connect {
            authority: self.authority.clone(),
            reason,
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| connect_error(format!("TLS: {e}")))?;
        let answer_error = |reason: String| AskError::Answer {
            path: path.to_owned(),
            reason,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| answer_error(e.to_string()))?;
        let driver = tokio::spawn(connection);
        let request = Request::get(path)
            .header(HOST, &self.authority)
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(ACCEPT, "application/json")
            .header(
                USER_AGENT,
                concat!("sidecar-injector/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| answer_error(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| answer_error(e.to_string()))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| answer_error(format!("cannot read the answer: {e}")))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            return Err(AskError::Status {
                path: path.to_owned(),
                status,
                message: status_message(&body),
            });
        }
        serde_json::from_slice(&body)
            .map_err(|e| answer_error(format!("unexpected answer: {}", excerpt(&e.to_string()))))
    }
}

fn address_from_environment() -> Result<String, AskError> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST")
        .ok()
        .filter(|host| !host.trim().is_empty())
        .ok_or(AskError::NoAddress)?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
    let host = host.trim();
    Ok(if host.contains(':') {
        format!("https://[{host}]:{}", port.trim())
    } else {
        format!("https://{host}:{}", port.trim())
    })
}

fn tls_connector(ca_file: &std::path::Path) -> Result<TlsConnector, AskError> {
    let ca_error = |reason: String| AskError::Ca {
        path: ca_file.display().to_string(),
        reason,
    };
    let pem = std::fs::read(ca_file).map_err(|e| ca_error(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| ca_error(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ca_error("no certificate in the file".to_owned()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ca_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The `message` of the API server's `Status` answer (`nodes is forbidden: User ... cannot list ...`), or
/// the beginning of whatever else it sent.
fn status_message(body: &[u8]) -> String {
    let status: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    match status
        .as_ref()
        .and_then(|status| status.get("message"))
        .and_then(serde_json::Value::as_str)
    {
        Some(message) => excerpt(message).into_owned(),
        None => excerpt(String::from_utf8_lossy(body).trim()).into_owned(),
    }
}

/// A `continue` token as a query value (it is base64, whose `+`, `/` and `=` mean something in a query).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continue_token_survives_the_query() {
        assert_eq!(percent_encode("eyJ2Ijo+/x=="), "eyJ2Ijo%2B%2Fx%3D%3D");
    }

    #[test]
    fn addresses_other_than_https_host_port_are_refused() {
        for address in [
            "http://10.0.0.1",
            "10.0.0.1:443",
            "https://10.0.0.1/api",
            "https://",
        ] {
            let access = ClusterAccess {
                api_server: Some(address.to_owned()),
                ..ClusterAccess::in_cluster()
            };
            match Connection::prepare(&access) {
                Err(AskError::BadAddress(_)) => {}
                Err(other) => panic!("{address}: {other}"),
                Ok(_) => panic!("{address}: accepted"),
            }
        }
    }
}
