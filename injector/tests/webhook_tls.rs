//! The webhook over real TLS, as the API server talks to it: AdmissionReviews in the exact shape the API
//! server sends, over HTTP/1.1 and h2, against a certificate minted by `certs` and trusted through its CA
//! only; the probe and error paths; certificate rotation; graceful shutdown; the `auto` layout against a
//! stand-in API server (support/stand_in_api_server.rs).

#[path = "support/stand_in_api_server.rs"]
mod stand_in_api_server;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use sidecar_injector::certs::{self, Minted};
use sidecar_injector::cluster_api::ClusterAccess;
use sidecar_injector::containers::SidecarOptions;
use sidecar_injector::server::{AutoLayoutSource, Server, ServerError, ServerSettings};
use sidecar_proxy::config::{ProxyConfig, RawSettings};
use stand_in_api_server::{Cluster, StandInApiServer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "registry.example.com/sidecar-proxy:0.1.0";

// ---------------------------------------------------------------------------------------------------------
// Support: a webhook on 127.0.0.1:0 with a freshly minted certificate, and a client trusting one CA.

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "webhook-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mint_for_localhost() -> Minted {
    certs::mint(&["localhost".to_owned(), "127.0.0.1".to_owned()], 1).expect("mint")
}

struct Webhook {
    addr: SocketAddr,
    dir: PathBuf,
    ca_pem: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Webhook {
    async fn start() -> Webhook {
        Webhook::start_with(|settings| settings).await
    }

    async fn start_with(configure: impl FnOnce(ServerSettings) -> ServerSettings) -> Webhook {
        let dir = scratch_dir();
        let minted = mint_for_localhost();
        minted.write(&dir).expect("write certs");
        let settings = ServerSettings::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.join(certs::CERT_FILE),
            dir.join(certs::KEY_FILE),
            SidecarOptions::new(IMAGE),
        );
        let server = Server::bind(configure(settings)).await.expect("bind");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(shutdown.clone()));
        Webhook {
            addr,
            dir,
            ca_pem: minted.ca_pem,
            shutdown,
            task: Some(task),
        }
    }

    fn client(&self) -> Client {
        Client::new(self.addr, &self.ca_pem)
    }

    /// Stops the server and waits until `run` has returned.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("run returns after shutdown")
                .expect("run does not panic");
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    Http1,
    H2,
}

#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    ca_pem: String,
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    fn new(addr: SocketAddr, ca_pem: &str) -> Client {
        Client {
            addr,
            ca_pem: ca_pem.to_owned(),
        }
    }

    /// A TLS connection trusting only this client's CA, offering `alpn`.
    async fn tls(&self, alpn: &[&[u8]]) -> std::io::Result<TlsStream<TcpStream>> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("CA accepted");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(self.addr).await?;
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    async fn send<B>(&self, protocol: Protocol, request: Request<B>) -> Answer
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let alpn: &[&[u8]] = match protocol {
            Protocol::Http1 => &[b"http/1.1"],
            Protocol::H2 => &[b"h2"],
        };
        let stream = self.tls(alpn).await.expect("TLS handshake");
        let negotiated = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(negotiated.as_deref(), Some(alpn[0]), "ALPN");
        let io = TokioIo::new(stream);
        let response = match protocol {
            Protocol::Http1 => {
                let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.expect("response")
            }
            Protocol::H2 => {
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(conn);
                sender.send_request(request).await.expect("response")
            }
        };
        let (parts, body) = response.into_parts();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let request = Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        self.send(Protocol::Http1, request).await
    }

    async fn post_review(&self, protocol: Protocol, review: &Value) -> Answer {
        self.send(
            protocol,
            post("/mutate", serde_json::to_vec(review).unwrap()),
        )
        .await
    }
}

fn post(path: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .unwrap()
}

/// A pod as a ReplicaSet controller creates it: no name yet, a generateName, the user's annotations.
fn pod(annotations: &[(&str, &str)]) -> Pod {
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), (*v).to_owned()))
        .collect();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some("web-7d4b9c6f8-".to_owned()),
            namespace: Some("shop".to_owned()),
            labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".to_owned(),
                image: Some("nginx:1.27".to_owned()),
                ports: Some(vec![ContainerPort {
                    container_port: 8080,
                    name: Some("http".to_owned()),
                    protocol: Some("TCP".to_owned()),
                    ..ContainerPort::default()
                }]),
                ..Container::default()
            }],
            service_account_name: Some("default".to_owned()),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The AdmissionReview the API server (admission.k8s.io/v1) sends for a pod CREATE.
fn admission_review(uid: &str, pod: &Pod) -> Value {
    let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
    let gvr = json!({"group": "", "version": "v1", "resource": "pods"});
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "5f0b5a8e-3c1d-4f55-9b0a-2d6c1b7e9a10",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated"
                ]
            },
            "object": serde_json::to_value(pod).unwrap(),
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

fn env_of(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .map(|var| (var.name.clone(), var.value.clone().unwrap_or_default()))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_annotated_pod_gets_the_sidecar_over_http1_and_h2() {
    let webhook = Webhook::start().await;
    let client = webhook.client();
    // The spec's example: dual, tcp reverse to 8080, http forward, both sidecar ports moved.
    let pod = pod(&[
        ("inject", "true"),
        ("proxy-type", "dual"),
        ("proxy-protocol", "tcp:http"),
        ("proxy-port", "8080"),
        ("proxy-in-port", "10000"),
        ("proxy-out-port", "10001"),
    ]);
    for (protocol, uid) in [
        (Protocol::Http1, "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4"),
        (Protocol::H2, "e911857d-c318-11e8-bbad-025000000001"),
    ] {
        let answer = client
            .post_review(protocol, &admission_review(uid, &pod))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{protocol:?}: {}",
            answer.text()
        );
        assert_eq!(answer.headers["content-type"], "application/json");
        let review = answer.json();
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(review["kind"], "AdmissionReview");
        let response = &review["response"];
        assert_eq!(response["uid"], uid, "{protocol:?}");
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(response["patchType"], "JSONPatch");

        let patch_json = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().expect("patch is base64 text"))
            .expect("base64");
        let patch: json_patch::Patch = serde_json::from_slice(&patch_json).expect("RFC 6902");
        let mut patched = serde_json::to_value(&pod).unwrap();
        json_patch::patch(&mut patched, &patch)
            .expect("the patch applies to the pod it was made for");
        let patched: Pod = serde_json::from_value(patched).expect("still a Pod");

        let containers = &patched.spec.as_ref().unwrap().containers;
        assert_eq!(containers.len(), 2);
        let sidecar = &containers[0];
        assert_eq!(sidecar.name, "sidecar-proxy");
        assert_eq!(sidecar.image.as_deref(), Some(IMAGE));
        let env = env_of(sidecar);
        for (name, value) in [
            ("PROXY_TYPE", "dual"),
            ("PROXY_PROTOCOL", "tcp:http"),
            ("PROXY_PORT", "8080"),
            ("PROXY_IN_PORT", "10000"),
            ("PROXY_OUT_PORT", "10001"),
        ] {
            assert_eq!(
                env.get(name).map(String::as_str),
                Some(value),
                "{name} in {env:?}"
            );
        }
        let ports: Vec<i32> = sidecar
            .ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect();
        assert!(
            ports.contains(&10000) && ports.contains(&10001),
            "{ports:?}"
        );
        assert_eq!(
            containers[1].name, "web",
            "the app container stays, after the sidecar"
        );
    }
    webhook.stop().await;
}

#[tokio::test]
async fn an_invalid_combination_is_denied_with_the_proxys_own_message() {
    let webhook = Webhook::start().await;
    let annotations = [
        ("inject", "true"),
        ("proxy-type", "forward"),
        ("proxy-protocol", "tcp"),
    ];
    let uid = "7b1d5c9e-0f7a-4c0e-8d7e-3f1a2b3c4d5e";
    let answer = webhook
        .client()
        .post_review(Protocol::H2, &admission_review(uid, &pod(&annotations)))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let response = &answer.json()["response"];
    assert_eq!(response["uid"], uid);
    assert_eq!(response["allowed"], false);
    assert!(response.get("patch").is_none(), "{response}");

    let keys: Vec<(String, &str)> = annotations
        .iter()
        .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), *v))
        .collect();
    let raw = RawSettings::from_annotations(keys.iter().map(|(k, v)| (k.as_str(), *v)));
    let proxys_message = ProxyConfig::from_settings(&raw).unwrap_err().to_string();
    assert_eq!(response["status"]["message"], proxys_message.as_str());
    assert!(!proxys_message.contains('\n'), "one line: {proxys_message}");
    webhook.stop().await;
}

/// A value of megabytes comes back as its beginning and its length, in the denial the API server shows
/// (and stores in events) and in the webhook's log line, whichever check refuses it.
#[tokio::test]
async fn a_denial_quotes_only_the_beginning_of_a_huge_value() {
    let webhook = Webhook::start().await;
    // Within the webhook's 4 MiB body limit, with the rest of the review; the slash makes it no host name.
    let huge = format!("{}/", "y".repeat(2_999_999));
    let uid = "0c5e9a7b-5555-4444-8888-9999aaaabbbb";
    for (annotations, expected) in [
        (
            vec![("inject", "true"), ("proxy-memory-limit", huge.as_str())],
            "sidecar.speedscale.com/proxy-memory-limit: \"yyyy",
        ),
        (
            vec![("inject", "true"), ("proxy-type", huge.as_str())],
            "invalid sidecar.speedscale.com/proxy-type \"yyyy",
        ),
        (
            vec![
                ("inject", "true"),
                ("proxy-type", "forward"),
                ("tls-out", "true"),
                ("tls-out-exclude", huge.as_str()),
            ],
            "invalid sidecar.speedscale.com/tls-out-exclude \"yyyy",
        ),
    ] {
        let answer = webhook
            .client()
            .post_review(Protocol::Http1, &admission_review(uid, &pod(&annotations)))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            answer.body.len() < 2048,
            "{expected}: an answer of {} bytes",
            answer.body.len()
        );
        let response = &answer.json()["response"];
        assert_eq!(response["allowed"], false, "{response}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.starts_with(expected), "{message}");
        assert!(
            message.contains("…\" (3000000 bytes; the first 200 shown)"),
            "{message}"
        );
    }
    webhook.stop().await;
}

#[tokio::test]
async fn a_pod_not_asking_for_injection_passes_unchanged() {
    let webhook = Webhook::start().await;
    let uid = "a4c2e1f0-1111-2222-3333-444455556666";
    for annotations in [&[][..], &[("inject", "false")][..]] {
        let answer = webhook
            .client()
            .post_review(Protocol::Http1, &admission_review(uid, &pod(annotations)))
            .await;
        assert_eq!(answer.status, StatusCode::OK);
        let response = &answer.json()["response"];
        assert_eq!(response["uid"], uid);
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none(), "{response}");
        assert!(response.get("patchType").is_none(), "{response}");
    }
    webhook.stop().await;
}

#[tokio::test]
async fn a_malformed_body_gets_a_clear_answer_and_the_connection_keeps_serving() {
    let webhook = Webhook::start().await;
    let stream = webhook.client().tls(&[b"http/1.1"]).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);

    for body in [&b"{\"kind\": \"AdmissionRev"[..], b"[1, 2, 3]", b"{}"] {
        let response = sender.send_request(post("/mutate", body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let json: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_eq!(json["response"]["allowed"], false, "{json}");
        let message = json["response"]["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("sidecar-injector: "), "{message}");
    }

    // Same connection, a real review: answered normally.
    let uid = "d2a1b0c9-aaaa-bbbb-cccc-ddddeeeeffff";
    let good = admission_review(uid, &pod(&[("inject", "true"), ("proxy-type", "reverse")]));
    let response = sender
        .send_request(post("/mutate", serde_json::to_vec(&good).unwrap()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(json["response"]["uid"], uid);
    assert_eq!(json["response"]["allowed"], true);
    webhook.stop().await;
}

#[tokio::test]
async fn wrong_content_type_and_oversized_bodies_are_refused() {
    let webhook = Webhook::start_with(|mut settings| {
        settings.body_limit = 64 * 1024;
        settings
    })
    .await;
    let client = webhook.client();
    let review = serde_json::to_vec(&admission_review("u", &pod(&[]))).unwrap();
    let request = Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(review)))
        .unwrap();
    let answer = client.send(Protocol::Http1, request).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let answer = client
        .send(Protocol::Http1, post("/mutate", vec![b' '; 100 * 1024]))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text()
    );
    // Without a declared length the limit holds while reading.
    let (body, chunks) = ChannelBody::new();
    let request = Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    tokio::spawn(async move {
        for _ in 0..10 {
            if chunks
                .send(Bytes::from(vec![b' '; 16 * 1024]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let answer = client.send(Protocol::H2, request).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text()
    );
    webhook.stop().await;
}

#[tokio::test]
async fn healthz_unknown_paths_and_wrong_methods() {
    let webhook = Webhook::start().await;
    let client = webhook.client();
    let answer = client.get("/healthz").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.text(), "ok");

    let answer = client.get("/nope").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    let answer = client.get("/mutate").await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers["allow"], "POST");

    let answer = client.send(Protocol::H2, post("/healthz", "{}")).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.headers["allow"], "GET, HEAD");

    let request = Request::builder()
        .method(Method::HEAD)
        .uri("/healthz")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = client.send(Protocol::Http1, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.is_empty());
    webhook.stop().await;
}

/// Polls until `connect` trusting `ca_pem` succeeds, or `limit` passes.
async fn handshake_succeeds_within(addr: SocketAddr, ca_pem: &str, limit: Duration) -> bool {
    let client = Client::new(addr, ca_pem);
    let deadline = Instant::now() + limit;
    loop {
        if client.tls(&[b"http/1.1"]).await.is_ok() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let interval = Duration::from_millis(100);
    let webhook = Webhook::start_with(|mut settings| {
        settings.reload_interval = interval;
        settings
    })
    .await;
    assert!(webhook.client().tls(&[b"h2"]).await.is_ok());

    // cert-manager renews: a new CA and a new pair under the same file names.
    let renewed = mint_for_localhost();
    renewed.write(&webhook.dir).unwrap();
    assert!(
        handshake_succeeds_within(webhook.addr, &renewed.ca_pem, interval * 30).await,
        "the renewed certificate is served within the reload interval"
    );
    let old = Client::new(webhook.addr, &webhook.ca_pem);
    assert!(
        old.tls(&[b"h2"]).await.is_err(),
        "the old certificate is gone"
    );
    let answer = Client::new(webhook.addr, &renewed.ca_pem)
        .get("/healthz")
        .await;
    assert_eq!(answer.status, StatusCode::OK);

    // A broken file (say, a half-written copy) keeps the current pair in service.
    std::fs::write(webhook.dir.join(certs::CERT_FILE), "not a certificate").unwrap();
    tokio::time::sleep(interval * 5).await;
    let current = Client::new(webhook.addr, &renewed.ca_pem);
    assert!(
        current.tls(&[b"h2"]).await.is_ok(),
        "still serving the last good pair"
    );
    // A mismatched pair too: a new certificate whose key has not arrived yet.
    let next = mint_for_localhost();
    std::fs::write(webhook.dir.join(certs::CERT_FILE), &next.cert_pem).unwrap();
    tokio::time::sleep(interval * 5).await;
    assert!(
        current.tls(&[b"h2"]).await.is_ok(),
        "still serving the last good pair"
    );
    // Once the key arrives, the pair is taken.
    std::fs::write(webhook.dir.join(certs::KEY_FILE), &next.key_pem).unwrap();
    assert!(handshake_succeeds_within(webhook.addr, &next.ca_pem, interval * 30).await);
    webhook.stop().await;
}

#[tokio::test]
async fn startup_refuses_a_pair_it_cannot_serve() {
    let dir = scratch_dir();
    let one = mint_for_localhost();
    let other = mint_for_localhost();
    one.write(&dir).unwrap();
    std::fs::write(dir.join("other.key"), &other.key_pem).unwrap();
    let settings = |cert: &str, key: &str| {
        ServerSettings::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.join(cert),
            dir.join(key),
            SidecarOptions::new(IMAGE),
        )
    };
    for (cert, key, expected) in [
        ("missing.crt", certs::KEY_FILE, "cannot read"),
        (
            certs::CERT_FILE,
            "other.key",
            "does not belong to the certificate",
        ),
        (certs::KEY_FILE, certs::KEY_FILE, "holds no PEM certificate"),
        (
            certs::CERT_FILE,
            certs::CERT_FILE,
            "no usable PEM private key",
        ),
    ] {
        match Server::bind(settings(cert, key)).await {
            Err(error @ ServerError::Tls(_)) => {
                let message = error.to_string();
                assert!(message.contains(expected), "{cert}/{key}: {message}");
                assert!(!message.contains('\n'), "{message}");
            }
            Err(other) => panic!("{cert}/{key}: not a certificate error: {other}"),
            Ok(_) => panic!("{cert}/{key}: started"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_review_finish_and_stops_accepting() {
    let webhook = Webhook::start().await;
    let client = webhook.client();
    let uid = "f00dfeed-0000-4000-8000-000000000001";
    let review = serde_json::to_vec(&admission_review(uid, &pod(&[("inject", "true")]))).unwrap();
    let (first, rest) = review.split_at(review.len() / 2);
    let (first, rest) = (Bytes::copy_from_slice(first), Bytes::copy_from_slice(rest));

    let (body, chunks) = ChannelBody::new();
    let request = Request::post("/mutate")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    chunks.send(first).await.unwrap();
    let in_flight = tokio::spawn(async move { client.send(Protocol::Http1, request).await });
    // The request head has arrived and its body is being read when shutdown starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    webhook.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(webhook.addr).await.is_err(),
        "no new connections once shutdown started"
    );
    chunks.send(rest).await.unwrap();
    drop(chunks);
    let answer = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight review is answered")
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.json()["response"]["uid"], uid);
    webhook.stop().await;
}

/// A request body fed chunk by chunk, with no declared length.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl ChannelBody {
    fn new() -> (ChannelBody, mpsc::Sender<Bytes>) {
        let (sender, receiver) = mpsc::channel(16);
        (ChannelBody(receiver), sender)
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|data| Ok(Frame::data(data))))
    }
}

// ---------------------------------------------------------------------------------------------------------
// `native-sidecar: auto`: the webhook asks the (stand-in) API server for the versions.

/// The webhook started with `--native-sidecar auto`, asking `api_server` with the stand-in's
/// ServiceAccount files.
async fn auto_webhook(api_server: &str, stand_in: &StandInApiServer) -> Webhook {
    let access = ClusterAccess {
        api_server: Some(api_server.to_owned()),
        token_file: stand_in.service_account_dir.join("token"),
        ca_file: stand_in.service_account_dir.join("ca.crt"),
        timeout: Duration::from_secs(5),
    };
    Webhook::start_with(|settings| ServerSettings {
        auto_layout: AutoLayoutSource::AskCluster(access),
        ..settings
    })
    .await
}

/// The pod as the webhook patched it: its layout (where the sidecar is) and its layout annotations.
async fn layout_of(webhook: &Webhook, annotations: &[(&str, &str)]) -> (&'static str, String) {
    let pod = pod(annotations);
    let answer = webhook
        .client()
        .post_review(
            Protocol::Http1,
            &admission_review("3b8f4a52-7c1e-4d0b-9a6e-5f2c8d1e0a71", &pod),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let response = &answer.json()["response"];
    assert_eq!(response["allowed"], true, "{response}");
    let patch_json = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch_json).expect("RFC 6902");
    let mut patched = serde_json::to_value(&pod).unwrap();
    json_patch::patch(&mut patched, &patch).expect("the patch applies");
    let patched: Pod = serde_json::from_value(patched).expect("still a Pod");
    let spec = patched.spec.as_ref().unwrap();
    let native = spec.init_containers.iter().flatten().any(|container| {
        container.name == "sidecar-proxy" && container.restart_policy.as_deref() == Some("Always")
    });
    let classic = spec.containers[0].name == "sidecar-proxy";
    let layout = match (native, classic) {
        (true, false) => "native",
        (false, true) => "classic",
        other => panic!("the sidecar is in neither layout (native, classic) = {other:?}: {spec:?}"),
    };
    let annotations = patched.metadata.annotations.unwrap();
    assert_eq!(
        annotations["sidecar.speedscale.com/sidecar-layout"], layout,
        "the layout annotation names the layout the pod has"
    );
    let reason = annotations["sidecar.speedscale.com/sidecar-layout-reason"].clone();
    (layout, reason)
}

fn cluster(server: &'static str, nodes: &[(&'static str, &'static str)]) -> Cluster {
    Cluster {
        server,
        nodes: nodes.to_vec(),
        nodes_forbidden: false,
    }
}

#[tokio::test]
async fn auto_is_native_when_the_api_server_and_every_kubelet_are_1_29_or_later() {
    let stand_in = StandInApiServer::start(
        cluster(
            "v1.30.2",
            &[
                ("cp-1", "v1.30.2"),
                ("worker-1", "v1.29.3+k3s1"),
                ("worker-2", "v1.30.0-eks-123"),
            ],
        ),
        scratch_dir(),
    )
    .await;
    let webhook = auto_webhook(&stand_in.url, &stand_in).await;

    let (layout, reason) = layout_of(&webhook, &[("inject", "true")]).await;
    assert_eq!(layout, "native");
    assert_eq!(
        reason,
        "auto: the API server is v1.30.2 (1.29 or later) and the kubelets of all 3 nodes are too"
    );
    // Asked once at startup, with the ServiceAccount token, through both pages of the node list; the
    // admission itself asked nothing.
    let requests = stand_in.requests();
    let paths: Vec<&str> = requests.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/version",
            "/api/v1/nodes?limit=500",
            "/api/v1/nodes?limit=500&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEi%2B%2F1%3D%3D"
        ]
    );
    assert!(
        requests.iter().all(|(_, authorized)| *authorized),
        "{requests:?}"
    );

    // The pod's own annotation still decides.
    let (layout, reason) =
        layout_of(&webhook, &[("inject", "true"), ("native-sidecar", "false")]).await;
    assert_eq!(layout, "classic");
    assert_eq!(
        reason,
        "the pod's annotation sidecar.speedscale.com/native-sidecar is \"false\""
    );
    webhook.stop().await;
}

#[tokio::test]
async fn auto_is_classic_when_one_node_runs_an_older_kubelet_and_names_it() {
    let stand_in = StandInApiServer::start(
        cluster(
            "v1.31.1",
            &[
                ("cp-1", "v1.31.1"),
                ("worker-1", "v1.31.1"),
                ("worker-2", "v1.28.5"),
            ],
        ),
        scratch_dir(),
    )
    .await;
    let webhook = auto_webhook(&stand_in.url, &stand_in).await;
    let (layout, reason) = layout_of(&webhook, &[("inject", "true")]).await;
    assert_eq!(layout, "classic");
    assert_eq!(
        reason,
        "auto: node worker-2 reports kubelet version v1.28.5, older than 1.29; native sidecars need 1.29 on the API server and every node"
    );
    webhook.stop().await;
}

#[tokio::test]
async fn auto_is_classic_when_the_api_server_is_older_than_1_29() {
    let stand_in =
        StandInApiServer::start(cluster("v1.28.15", &[("cp-1", "v1.29.0")]), scratch_dir()).await;
    let webhook = auto_webhook(&stand_in.url, &stand_in).await;
    let (layout, reason) = layout_of(&webhook, &[("inject", "true")]).await;
    assert_eq!(layout, "classic");
    assert_eq!(
        reason,
        "auto: the API server reports version v1.28.15, older than 1.29; native sidecars need 1.29 on the API server and every node"
    );
    webhook.stop().await;
}

#[tokio::test]
async fn auto_is_classic_with_the_reason_when_the_api_server_refuses_or_is_unreachable() {
    // A ServiceAccount without the ClusterRole: /version answers, the node list is forbidden.
    let forbidding = StandInApiServer::start(
        Cluster {
            nodes_forbidden: true,
            ..cluster("v1.31.1", &[("cp-1", "v1.31.1")])
        },
        scratch_dir(),
    )
    .await;
    let webhook = auto_webhook(&forbidding.url, &forbidding).await;
    let (layout, reason) = layout_of(&webhook, &[("inject", "true")]).await;
    assert_eq!(layout, "classic");
    assert_eq!(
        reason,
        "auto: cannot ask the API server for the Kubernetes versions (GET /api/v1/nodes?limit=500: 403 Forbidden: nodes is forbidden: User \"system:serviceaccount:sidecar-injector:sidecar-injector\" cannot list resource \"nodes\" in API group \"\" at the cluster scope) (the injector's ServiceAccount needs get on /version and get, list on nodes: deploy/rbac.yaml); classic runs on any version"
    );
    // Forcing native still works without the API server.
    let (layout, _) = layout_of(&webhook, &[("inject", "true"), ("native-sidecar", "true")]).await;
    assert_eq!(layout, "native");
    webhook.stop().await;

    // Nothing listens: a port that was just free.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let address = format!("https://127.0.0.1:{port}");
    let webhook = auto_webhook(&address, &forbidding).await;
    let (layout, reason) = layout_of(&webhook, &[("inject", "true")]).await;
    assert_eq!(layout, "classic");
    let expected = format!(
        "auto: cannot ask the API server for the Kubernetes versions (cannot reach the API server at 127.0.0.1:{port}: Connection refused"
    );
    assert!(reason.starts_with(&expected), "{reason}");
    assert!(
        reason.ends_with("; classic runs on any version"),
        "{reason}"
    );
    webhook.stop().await;
}
