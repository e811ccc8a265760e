//! The `sidecar-injector` binary as an operator runs it: `certs`, `inject`, `serve`, and what bad flags and
//! bad configuration do (exit status, one line on stderr, nothing stray on stdout).

#[path = "support/stand_in_api_server.rs"]
mod stand_in_api_server;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;
use stand_in_api_server::{Cluster, StandInApiServer};

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-injector");

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cli-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs the binary with no inherited `SIDECAR_*` configuration, feeding `stdin`.
fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("SIDECAR_IMAGE")
        .env_remove("SIDECAR_IMAGE_PULL_POLICY")
        .env_remove("SIDECAR_NATIVE_SIDECAR")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A configuration error: status 2, exactly one line on stderr starting with the program name.
fn assert_one_line_error(output: &Output, status: i32, expected: &str) {
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("sidecar-injector: "), "{stderr}");
    assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    assert!(output.stdout.is_empty(), "stdout: {}", text(&output.stdout));
}

#[test]
fn certs_writes_the_pair_and_prints_only_the_ca_bundle() {
    let dir = scratch_dir();
    let output = run(
        &[
            "certs",
            "--service",
            "sidecar-injector",
            "--namespace",
            "tools",
            "--out-dir",
            dir.to_str().unwrap(),
            "--days",
            "30",
        ],
        "",
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    assert!(stdout.ends_with('\n'));

    let ca_pem = std::fs::read(dir.join("ca.crt")).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(stdout.trim_end())
        .expect("the line is base64");
    assert_eq!(bundle, ca_pem, "the caBundle is ca.crt's PEM");
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("tls.key"), 0o600);
    assert_eq!(mode("tls.crt") & 0o600, 0o600);

    // The certificate is what the API server accepts for the Service, under every name it may use.
    let verifier = verifier_trusting(&ca_pem);
    let chain = pem_certs(&dir.join("tls.crt"));
    for name in [
        "sidecar-injector",
        "sidecar-injector.tools",
        "sidecar-injector.tools.svc",
        "sidecar-injector.tools.svc.cluster.local",
    ] {
        verify(&verifier, &chain, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify(&verifier, &chain, "sidecar-injector.other.svc").is_err());
    assert!(std::fs::read_to_string(dir.join("tls.key"))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn verifier_trusting(ca_pem: &[u8]) -> Arc<WebPkiServerVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap()
}

fn verify(
    verifier: &WebPkiServerVerifier,
    chain: &[CertificateDer<'static>],
    name: &str,
) -> Result<(), rustls::Error> {
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn certs_refuses_a_service_name_that_is_not_a_dns_label() {
    let dir = scratch_dir();
    let output = run(
        &[
            "certs",
            "--service",
            "Sidecar_Injector",
            "--namespace",
            "tools",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
        "",
    );
    assert_one_line_error(&output, 2, "\"Sidecar_Injector\" is not a DNS label");
    assert!(!dir.exists(), "nothing written");
}

#[test]
fn bad_flags_get_clap_errors() {
    for args in [
        &["serve", "--bogus"][..],
        &["serve", "--native-sidecar", "maybe"],
        &["certs", "--namespace", "tools", "--out-dir", "x"],
        &[
            "certs",
            "--service",
            "a",
            "--namespace",
            "b",
            "--out-dir",
            "x",
            "--days",
            "0",
        ],
        &["inject", "--sidecar-image", "img"],
        &["inject", "-f", "-", "--sidecar-image", ""],
        &["frobnicate"],
        &[],
    ] {
        let output = run(args, "");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    let output = run(
        &[
            "inject",
            "-f",
            "-",
            "--sidecar-image",
            "img",
            "--sidecar-image-pull-policy",
            "Sometimes",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("Always, IfNotPresent, Never"), "{stderr}");
}

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        sidecar.speedscale.com/inject: "true"
        sidecar.speedscale.com/proxy-type: "reverse"
        sidecar.speedscale.com/proxy-protocol: "http"
        sidecar.speedscale.com/proxy-port: "8888"
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
"#;

#[test]
fn inject_reads_stdin_and_writes_the_injected_manifest() {
    let output = run(
        &[
            "inject",
            "-f",
            "-",
            "--sidecar-image",
            "registry.example.com/sidecar-proxy:0.1.0",
            "--sidecar-image-pull-policy",
            "IfNotPresent",
        ],
        MANIFEST,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_slice(&output.stdout)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML out"))
        .collect();
    assert_eq!(documents.len(), 2, "{}", text(&output.stdout));
    // By default a native sidecar: the first init container, restarted always, the app's containers
    // untouched.
    let pod = &documents[0]["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"]["sidecar.speedscale.com/sidecar-layout"],
        "native"
    );
    let containers = &pod["spec"]["containers"];
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "sidecar-proxy");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["image"], "registry.example.com/sidecar-proxy:0.1.0");
    assert_eq!(sidecar["imagePullPolicy"], "IfNotPresent");
    let env: Vec<(&str, &str)> = sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|var| {
            (
                var["name"].as_str().unwrap(),
                var["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for expected in [
        ("PROXY_TYPE", "reverse"),
        ("PROXY_PROTOCOL", "http"),
        ("PROXY_PORT", "8888"),
    ] {
        assert!(env.contains(&expected), "{expected:?} in {env:?}");
    }
    assert_eq!(containers.as_array().map(Vec::len), Some(1));
    assert_eq!(containers[0]["name"], "web");
    assert_eq!(documents[1]["kind"], "Service");
}

/// `--native-sidecar false` (or its variable) gives the classic layout: the sidecar first among the
/// containers, waiting for readiness in its postStart hook; a pod's own annotation still wins.
#[test]
fn inject_native_sidecar_false_gives_the_classic_layout() {
    let classic = |output: &Output| {
        assert!(output.status.success(), "{}", text(&output.stderr));
        let document: Value = serde_yaml_ng::Deserializer::from_slice(&output.stdout)
            .map(|document| serde::Deserialize::deserialize(document).expect("YAML out"))
            .next()
            .expect("a document");
        let pod = &document["spec"]["template"];
        let layout =
            pod["metadata"]["annotations"]["sidecar.speedscale.com/sidecar-layout"].clone();
        let first = pod["spec"]["containers"][0].clone();
        (
            layout,
            first["name"].clone(),
            first["lifecycle"]["postStart"]["exec"]["command"][1].clone(),
            pod["spec"]["initContainers"].clone(),
        )
    };
    let image = "registry.example.com/sidecar-proxy:0.1.0";
    let by_flag = run(
        &[
            "inject",
            "-f",
            "-",
            "--sidecar-image",
            image,
            "--native-sidecar",
            "false",
        ],
        MANIFEST,
    );
    let expected = (
        Value::from("classic"),
        Value::from("sidecar-proxy"),
        Value::from("wait-ready"),
        Value::Null,
    );
    assert_eq!(classic(&by_flag), expected);
    let mut child = Command::new(BIN)
        .args(["inject", "-f", "-", "--sidecar-image", image])
        .env("SIDECAR_NATIVE_SIDECAR", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(MANIFEST.as_bytes())
        .unwrap();
    assert_eq!(classic(&child.wait_with_output().unwrap()), expected);

    let annotated = MANIFEST.replace(
        "sidecar.speedscale.com/proxy-port: \"8888\"",
        "sidecar.speedscale.com/proxy-port: \"8888\"\n        sidecar.speedscale.com/native-sidecar: \"true\"",
    );
    assert_ne!(annotated, MANIFEST);
    let output = run(
        &[
            "inject",
            "-f",
            "-",
            "--sidecar-image",
            image,
            "--native-sidecar",
            "false",
        ],
        &annotated,
    );
    assert_eq!(classic(&output).0, Value::from("native"));
}

#[test]
fn inject_fails_with_one_line_and_writes_nothing() {
    let denied = MANIFEST.replace("\"http\"", "\"bogus\"");
    let output = run(&["inject", "-f", "-", "--sidecar-image", "img"], &denied);
    assert_one_line_error(&output, 1, "sidecar.speedscale.com/proxy-protocol");

    let output = run(
        &[
            "inject",
            "-f",
            "/nonexistent/manifest.yaml",
            "--sidecar-image",
            "img",
        ],
        "",
    );
    assert_one_line_error(&output, 1, "cannot read /nonexistent/manifest.yaml");
}

/// A bad value of megabytes (pasted by mistake, or sent to make the logs and events huge) is quoted by its
/// beginning and its length, whichever check refuses it: the injector's own annotations, the proxy's
/// settings, an annotation it does not know.
#[test]
fn inject_quotes_only_the_beginning_of_a_huge_bad_value() {
    let huge = "x".repeat(4 << 20);
    for (annotation, value, expected) in [
        (
            "sidecar.speedscale.com/proxy-memory-limit",
            huge.clone(),
            "sidecar.speedscale.com/proxy-memory-limit: \"xxxx",
        ),
        (
            "sidecar.speedscale.com/proxy-type",
            huge.clone(),
            "invalid sidecar.speedscale.com/proxy-type \"xxxx",
        ),
        (
            "sidecar.speedscale.com/inject",
            huge.clone(),
            "sidecar.speedscale.com/inject: \"xxxx",
        ),
    ] {
        // The manifest with this annotation's line (if any) replaced by the huge value.
        let manifest: String = MANIFEST
            .lines()
            .filter(|line| !line.trim_start().starts_with(&format!("{annotation}:")))
            .map(|line| {
                if line
                    .trim_start()
                    .starts_with("sidecar.speedscale.com/proxy-port:")
                {
                    format!("{line}\n        {annotation}: \"{value}\"\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        let output = run(&["inject", "-f", "-", "--sidecar-image", "img"], &manifest);
        let stderr = text(&output.stderr);
        assert!(
            stderr.len() < 1024,
            "{annotation}: {} bytes of error: {}...",
            stderr.len(),
            &stderr[..300.min(stderr.len())]
        );
        assert_one_line_error(&output, 1, expected);
        assert!(
            stderr.contains("…\" (4194304 bytes; the first 200 shown)"),
            "{stderr}"
        );
    }
}

/// YAML nested a hundred thousand levels deep (flow sequences `[[[[...]]]]`, or block sequences `- - - -`) is
/// refused by its depth, before the YAML parser spends its time on it (21 s for the flow case before).
#[test]
fn inject_refuses_absurdly_nested_yaml_by_its_depth() {
    const DEPTH: usize = 100_000;
    let flow = format!(
        "apiVersion: v1\nkind: ConfigMap\ndata: {}{}\n",
        "[".repeat(DEPTH),
        "]".repeat(DEPTH)
    );
    let block = format!("{}x\n", "- ".repeat(DEPTH));
    let mappings = format!("---\nkind: List\n---\n{}\n", "{a: ".repeat(DEPTH));
    for (name, manifest, document) in [
        ("flow", flow, 1),
        ("block", block, 1),
        ("mappings", mappings, 2),
    ] {
        let output = run(&["inject", "-f", "-", "--sidecar-image", "img"], &manifest);
        assert_one_line_error(
            &output,
            1,
            &format!("document {document}: nested more than 128 levels deep"),
        );
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains("allowed: at most 128 levels of nested mappings and sequences"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn serve_refuses_a_certificate_it_cannot_read() {
    let dir = scratch_dir();
    let output = run(
        &[
            "serve",
            "--tls-cert",
            dir.join("tls.crt").to_str().unwrap(),
            "--tls-key",
            dir.join("tls.key").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--sidecar-image",
            "img",
        ],
        "",
    );
    assert_one_line_error(&output, 2, "cannot read");
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn serve_is_configured_from_the_environment_and_stops_cleanly_on_sigterm() {
    let dir = scratch_dir();
    let minted = sidecar_injector::certs::mint(&["localhost".to_owned()], 1).unwrap();
    minted.write(&dir).unwrap();
    let addr = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("SIDECAR_INJECTOR_TLS_CERT", dir.join("tls.crt"))
        .env("SIDECAR_INJECTOR_TLS_KEY", dir.join("tls.key"))
        .env("SIDECAR_INJECTOR_LISTEN", addr.to_string())
        .env("SIDECAR_IMAGE", "img")
        .env("SIDECAR_IMAGE_PULL_POLICY", "Always")
        // native-sidecar auto (the default) asks the API server: not a real one from a CI pod.
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait for the listener, then one request over TLS trusting the minted CA.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the webhook never listened");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = healthz(addr, &minted.ca_pem).await;
    assert_eq!(body, "ok");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(0), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "logs go to stderr");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("SIGTERM"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn healthz(addr: SocketAddr, ca_pem: &str) -> String {
    let (status, body) = https(addr, ca_pem, "GET", "/healthz", String::new()).await;
    assert_eq!(status, 200);
    body
}

/// One HTTP/1.1 request to the webhook over TLS, trusting `ca_pem`: the status and the body.
async fn https(
    addr: SocketAddr,
    ca_pem: &str,
    method: &str,
    path: &str,
    body: String,
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS with the minted CA");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        text(&response.into_body().collect().await.unwrap().to_bytes()),
    )
}

/// The patch the `serve` binary answers for a pod annotated only `inject: "true"`, with `env` set.
async fn served_patch(env: &[(&str, &str)]) -> Vec<Value> {
    let dir = scratch_dir();
    let minted = sidecar_injector::certs::mint(&["localhost".to_owned()], 1).unwrap();
    minted.write(&dir).unwrap();
    let addr = free_port();
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("SIDECAR_INJECTOR_TLS_CERT", dir.join("tls.crt"))
        .env("SIDECAR_INJECTOR_TLS_KEY", dir.join("tls.key"))
        .env("SIDECAR_INJECTOR_LISTEN", addr.to_string())
        .env_remove("SIDECAR_NATIVE_SIDECAR")
        // Never the API server of a CI pod: only the stand-in a test names.
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("SIDECAR_KUBE_API_SERVER")
        .env_remove("SIDECAR_KUBE_TOKEN_FILE")
        .env_remove("SIDECAR_KUBE_CA_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the webhook never listened");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("serve exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "web",
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "web",
                    "namespace": "shop",
                    "annotations": {"sidecar.speedscale.com/inject": "true"},
                },
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
            },
            "dryRun": false,
        },
    });
    let (status, body) = https(addr, &minted.ca_pem, "POST", "/mutate", review.to_string()).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let patch = answer["response"]["patch"].as_str().expect("a patch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    serde_json::from_slice(&patch).unwrap()
}

/// The webhook's layout for pods that do not choose: by default (`--native-sidecar auto`) what the API
/// server's versions allow, classic when it cannot be asked; `SIDECAR_NATIVE_SIDECAR=true|false` decides
/// without asking. The pod is told which it got, and why.
#[tokio::test]
async fn serve_asks_the_api_server_by_default_unless_told_the_layout() {
    let op = |patch: &[Value], path: &str| {
        patch
            .iter()
            .find(|op| op["path"] == path)
            .map(|op| op["value"].clone())
    };
    let layout_of = |patch: &[Value]| {
        let reason = op(
            patch,
            "/metadata/annotations/sidecar.speedscale.com~1sidecar-layout-reason",
        );
        (
            op(
                patch,
                "/metadata/annotations/sidecar.speedscale.com~1sidecar-layout",
            ),
            reason.and_then(|reason| reason.as_str().map(str::to_owned)),
        )
    };
    // Not in a pod: no KUBERNETES_SERVICE_HOST.
    let classic = served_patch(&[]).await;
    assert_eq!(
        layout_of(&classic),
        (
            Some(Value::from("classic")),
            Some("auto: cannot ask the API server for the Kubernetes versions (KUBERNETES_SERVICE_HOST is not set (not running in a pod?) and no --kube-api-server was given); classic runs on any version".to_owned())
        )
    );
    assert_eq!(
        op(&classic, "/spec/containers/0").map(|c| c["name"].clone()),
        Some(Value::from("sidecar-proxy"))
    );

    // The stand-in API server, through the flags' variables.
    let stand_in = StandInApiServer::start(
        Cluster {
            server: "v1.29.3+k3s1",
            nodes: vec![("k3s-server", "v1.29.3+k3s1")],
            nodes_forbidden: false,
        },
        scratch_dir(),
    )
    .await;
    let token = stand_in.service_account_dir.join("token");
    let ca = stand_in.service_account_dir.join("ca.crt");
    let asked = served_patch(&[
        ("SIDECAR_KUBE_API_SERVER", stand_in.url.as_str()),
        ("SIDECAR_KUBE_TOKEN_FILE", token.to_str().unwrap()),
        ("SIDECAR_KUBE_CA_FILE", ca.to_str().unwrap()),
    ])
    .await;
    assert_eq!(
        layout_of(&asked),
        (
            Some(Value::from("native")),
            Some("auto: the API server is v1.29.3+k3s1 (1.29 or later) and the kubelet of its 1 node is too".to_owned())
        )
    );

    let forced = served_patch(&[("SIDECAR_NATIVE_SIDECAR", "false")]).await;
    assert_eq!(
        layout_of(&forced),
        (
            Some(Value::from("classic")),
            Some("auto: sidecar-injector serve --native-sidecar false".to_owned())
        )
    );

    let native = served_patch(&[("SIDECAR_NATIVE_SIDECAR", "true")]).await;
    assert_eq!(
        op(
            &native,
            "/metadata/annotations/sidecar.speedscale.com~1sidecar-layout"
        ),
        Some(Value::from("native"))
    );
    assert_eq!(op(&native, "/spec/containers/0"), None);
    let init = op(&native, "/spec/initContainers").expect("init containers added");
    let names: Vec<&str> = init
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sidecar-init-iptables", "sidecar-proxy"]);
    assert_eq!(init[1]["restartPolicy"], "Always");
    assert_eq!(init[1]["startupProbe"]["httpGet"]["path"], "/readyz");
}

/// Without `--sidecar-image`, the image of this release (`sidecar-proxy` unless the build names the
/// repository, tagged with the workspace version); `SIDECAR_IMAGE` and the flag override it. On success,
/// stderr has one line per injected pod, saying where it is, its mode, layout and ports; stdout only the
/// manifest.
#[test]
fn inject_defaults_the_image_and_reports_each_injected_pod_on_stderr() {
    let manifest = format!(
        "{MANIFEST}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: probe\n    annotations:\n      sidecar.speedscale.com/inject: \"true\"\n      sidecar.speedscale.com/native-sidecar: \"false\"\n  spec:\n    containers:\n    - name: probe\n      image: busybox\n"
    );
    let output = run(&["inject", "-f", "-"], &manifest);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let repository = option_env!("SIDECAR_IMAGE_REPOSITORY").unwrap_or("sidecar-proxy");
    let image = format!("{repository}:{}", env!("CARGO_PKG_VERSION"));
    let documents: Vec<Value> = serde_yaml_ng::Deserializer::from_slice(&output.stdout)
        .map(|document| serde::Deserialize::deserialize(document).expect("YAML out"))
        .collect();
    assert_eq!(documents.len(), 3, "{}", text(&output.stdout));
    assert_eq!(
        documents[0]["spec"]["template"]["spec"]["initContainers"][0]["image"],
        Value::from(image.as_str())
    );
    assert_eq!(
        text(&output.stderr),
        "sidecar-injector: injected document 1 (Deployment web): proxy-type reverse (http), native layout, ports sidecar-in 4143, sidecar-admin 4191\n\
         sidecar-injector: injected document 3 (List), item 1 (Pod probe): proxy-type transparent, classic layout, ports sidecar-in 4143, sidecar-out 4140, sidecar-admin 4191\n"
    );

    let mut child = Command::new(BIN)
        .args(["inject", "-f", "-"])
        .env(
            "SIDECAR_IMAGE",
            "registry.example.com/mirror/sidecar-proxy:9.9.9",
        )
        .env_remove("SIDECAR_NATIVE_SIDECAR")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(MANIFEST.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("image: registry.example.com/mirror/sidecar-proxy:9.9.9"),
        "{}",
        text(&output.stdout)
    );

    // Nothing annotated: the manifest unchanged on stdout, and stderr says so in one line.
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n";
    let output = run(&["inject", "-f", "-"], service);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), service);
    assert_eq!(
        text(&output.stderr),
        "sidecar-injector: injected nothing: no pod or pod template is annotated sidecar.speedscale.com/inject: \"true\" (or every one already has the sidecar)\n"
    );
}

const DUAL_WITH_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
  - name: metrics
    port: 9090
    targetPort: 9090
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        sidecar.speedscale.com/inject: "true"
        sidecar.speedscale.com/proxy-type: "dual"
        sidecar.speedscale.com/proxy-protocol: "tcp:http"
        sidecar.speedscale.com/proxy-port: "8080"
    spec:
      containers:
      - name: web
        image: registry.example.com/web:1.0
        ports:
        - name: http
          containerPort: 8080
"#;

/// A Service in the input that sends the callers of a dual pod to the app's port (here by name, and
/// before the Deployment) is reported on stderr and left as it is; `--retarget-services` rewrites that
/// targetPort to the sidecar's inbound port, and only that one.
#[test]
fn inject_reports_a_service_that_bypasses_the_sidecar_and_retargets_it_when_asked() {
    let service_ports = |output: &Output| -> Vec<Value> {
        assert!(output.status.success(), "{}", text(&output.stderr));
        let first: Value = serde_yaml_ng::Deserializer::from_slice(&output.stdout)
            .map(|document| serde::Deserialize::deserialize(document).expect("YAML out"))
            .next()
            .unwrap();
        assert_eq!(first["kind"], "Service");
        first["spec"]["ports"].as_array().unwrap().clone()
    };

    let reported = run(&["inject", "-f", "-"], DUAL_WITH_SERVICE);
    let ports = service_ports(&reported);
    assert_eq!(ports[0]["targetPort"], "http", "not rewritten unasked");
    let stderr = text(&reported.stderr);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("sidecar-injector: warning: "))
        .collect();
    assert_eq!(
        warnings,
        ["sidecar-injector: warning: document 1 (Service web): Service web port http (80) targets \"http\" (8080), the app's own port in document 2 (Deployment web): its callers reach the app past the sidecar and are not captured; set targetPort: 4143 (the sidecar's inbound port), or run inject with --retarget-services"],
        "{stderr}"
    );

    let retargeted = run(
        &["inject", "-f", "-", "--retarget-services"],
        DUAL_WITH_SERVICE,
    );
    let ports = service_ports(&retargeted);
    assert_eq!(ports[0]["targetPort"], 4143);
    assert_eq!(
        ports[1]["targetPort"], 9090,
        "a port the app does not serve on is kept"
    );
    let stderr = text(&retargeted.stderr);
    assert!(!stderr.contains("warning:"), "{stderr}");
    assert!(
        stderr.contains("sidecar-injector: retargeted document 1 (Service web): Service web port http (80): targetPort \"http\" (8080) → 4143 (the sidecar's inbound port in document 2 (Deployment web))"),
        "{stderr}"
    );
}
