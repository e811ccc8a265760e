//! A STAND-IN for the Kubernetes API server, for the webhook's `auto` layout tests: there is no control
//! plane on the test machine. It is HTTPS on 127.0.0.1 with a certificate from a test CA (minted by
//! rcgen through `certs::mint`), and answers only the two GETs the webhook makes, with the JSON a real
//! API server sends: `GET /version` (version.Info) and `GET /api/v1/nodes` (a NodeList, paged two nodes
//! at a time with a `continue` token, as an API server may page below the `limit` asked), or the
//! `Status` of a 401 (wrong bearer token) or a 403 (a ServiceAccount without the ClusterRole).
//! Shared by webhook_tls.rs and cli.rs (`#[path]`), each of which uses part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use sidecar_injector::certs;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The ServiceAccount token the stand-in accepts (anything else: 401).
pub const TOKEN: &str = "stand-in-serviceaccount-token";
/// Nodes per NodeList page.
const PAGE: usize = 2;

/// What the stand-in's cluster runs.
#[derive(Clone)]
pub struct Cluster {
    /// `gitVersion` of `GET /version`.
    pub server: &'static str,
    /// Node name and `status.nodeInfo.kubeletVersion`.
    pub nodes: Vec<(&'static str, &'static str)>,
    /// `GET /api/v1/nodes` answers 403, as for a ServiceAccount without the injector's ClusterRole.
    pub nodes_forbidden: bool,
}

pub struct StandInApiServer {
    pub url: String,
    /// `token` and `ca.crt`, as in a pod's /var/run/secrets/kubernetes.io/serviceaccount.
    pub service_account_dir: PathBuf,
    /// `path?query` of every request, and whether it carried the right bearer token.
    pub requests: Arc<Mutex<Vec<(String, bool)>>>,
    task: JoinHandle<()>,
}

impl StandInApiServer {
    pub async fn start(cluster: Cluster, dir: PathBuf) -> StandInApiServer {
        let minted =
            certs::mint(&["localhost".to_owned(), "127.0.0.1".to_owned()], 1).expect("mint");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
        std::fs::write(dir.join("ca.crt"), &minted.ca_pem).unwrap();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(minted.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(minted.key_pem.as_bytes()).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let cluster = Arc::new(cluster);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, cluster, seen) = (acceptor.clone(), cluster.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let answer = answer(&request, &cluster, &seen);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        StandInApiServer {
            url: format!("https://127.0.0.1:{}", addr.port()),
            service_account_dir: dir,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for StandInApiServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.service_account_dir);
    }
}

fn answer(
    request: &Request<Incoming>,
    cluster: &Cluster,
    seen: &Mutex<Vec<(String, bool)>>,
) -> Response<Full<Bytes>> {
    let target = request
        .uri()
        .path_and_query()
        .map(|target| target.as_str().to_owned())
        .unwrap_or_default();
    let authorized = request
        .headers()
        .get("authorization")
        .is_some_and(|value| value.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
    seen.lock().unwrap().push((target.clone(), authorized));
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    match request.uri().path() {
        "/version" => {
            let minor = cluster.server.split('.').nth(1).unwrap_or_default();
            json_answer(
                StatusCode::OK,
                json!({
                    "major": "1",
                    "minor": minor,
                    "emulationMajor": "1",
                    "emulationMinor": minor,
                    "gitVersion": cluster.server,
                    "gitCommit": "6911225c3f747e1cd9d109c305436d08b668f086",
                    "gitTreeState": "clean",
                    "buildDate": "2024-06-11T20:20:00Z",
                    "goVersion": "go1.22.4",
                    "compiler": "gc",
                    "platform": "linux/amd64"
                }),
            )
        }
        "/api/v1/nodes" if cluster.nodes_forbidden => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "nodes is forbidden: User \"system:serviceaccount:sidecar-injector:sidecar-injector\" cannot list resource \"nodes\" in API group \"\" at the cluster scope",
        ),
        "/api/v1/nodes" => {
            let query = request.uri().query().unwrap_or_default();
            let page = match query_value(query, "continue") {
                None => 0,
                Some(token) => match (1..=cluster.nodes.len() / PAGE)
                    .find(|&page| token == continue_token(page))
                {
                    Some(page) => page,
                    None => {
                        return status(
                            StatusCode::BAD_REQUEST,
                            "BadRequest",
                            &format!("invalid continue token {token:?}"),
                        )
                    }
                },
            };
            let items: Vec<Value> = cluster
                .nodes
                .iter()
                .skip(page * PAGE)
                .take(PAGE)
                .map(|(name, kubelet)| node(name, kubelet))
                .collect();
            let mut metadata = json!({"resourceVersion": "48213"});
            if (page + 1) * PAGE < cluster.nodes.len() {
                metadata["continue"] = json!(continue_token(page + 1));
                metadata["remainingItemCount"] = json!(cluster.nodes.len() - (page + 1) * PAGE);
            }
            json_answer(
                StatusCode::OK,
                json!({"kind": "NodeList", "apiVersion": "v1", "metadata": metadata, "items": items}),
            )
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// Base64 with `+`, `/` and `=`, as real continue tokens are: the client must percent-encode it.
fn continue_token(page: usize) -> String {
    format!("eyJ2IjoibWV0YS5rOHMuaW8vdjEi+/{page}==")
}

/// A query parameter, form-decoded (`+` is a space, `%XX` a byte).
fn query_value(query: &str, name: &str) -> Option<String> {
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    let bytes = raw.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => decoded.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            other => decoded.push(other),
        }
        i += 1;
    }
    String::from_utf8(decoded).ok()
}

/// A Node as `GET /api/v1/nodes` lists it (list items carry no kind and apiVersion).
fn node(name: &str, kubelet: &str) -> Value {
    json!({
        "metadata": {
            "name": name,
            "uid": format!("4b1e7a9c-0000-4000-8000-{:012x}", name.len()),
            "resourceVersion": "48190",
            "creationTimestamp": "2025-11-02T09:14:07Z",
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux"
            }
        },
        "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]},
        "status": {
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2025-12-07T01:02:03Z",
                "lastTransitionTime": "2025-11-02T09:15:00Z"
            }],
            "nodeInfo": {
                "machineID": "0f5e1c2d3b4a59687766554433221100",
                "systemUUID": "0f5e1c2d-3b4a-5968-7766-554433221100",
                "bootID": "7e3c6a1b-2d4f-4e5a-9b8c-1a2b3c4d5e6f",
                "kernelVersion": "6.1.0-28-amd64",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "containerRuntimeVersion": "containerd://1.7.24",
                "kubeletVersion": kubelet,
                "kubeProxyVersion": kubelet,
                "operatingSystem": "linux",
                "architecture": "amd64"
            }
        }
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    json_answer(
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()
        }),
    )
}

fn json_answer(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap()
}
