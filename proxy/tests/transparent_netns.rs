//! Transparent mode for real: in network namespaces this test creates, `init-iptables` installs the rules,
//! the sidecar runs as uid 2102, and clients with no proxy settings reach their destinations through it,
//! half-closes included.
//!
//! Two namespaces this test creates (`support/netns.rs`) stand for a pod (198.18.0.1) and the rest of the
//! cluster (198.18.0.2). No traffic leaves them. Needs root
//! (CI runs as root), `ip`, `iptables`, `setpriv`, `curl` and `python3`; without them the test fails saying
//! what is missing rather than passing vacuously.

#[path = "support/env.rs"]
mod env;
#[path = "support/netns.rs"]
mod netns;

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use netns::{ipv6_enabled, run, PodNetwork, PEER_IP, PEER_IP6, POD_IP};
use sidecar_proxy::capture::record::{Detail, Record};

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");
const SIDECAR_UID: &str = "2102";

/// The two namespaces, with the servers and the sidecar of a test.
struct Pod(PodNetwork);

impl Deref for Pod {
    type Target = PodNetwork;
    fn deref(&self) -> &PodNetwork {
        &self.0
    }
}

impl DerefMut for Pod {
    fn deref_mut(&mut self) -> &mut PodNetwork {
        &mut self.0
    }
}

impl Pod {
    fn create() -> Pod {
        Pod(PodNetwork::create(
            "sp",
            "creates network namespaces and iptables rules",
        ))
    }

    fn curl(&self, ns: &str, url: &str) -> String {
        self.curl_as(ns, url, "curl/8")
    }

    /// [`Pod::curl`] with `agent` as the User-Agent.
    fn curl_as(&self, ns: &str, url: &str, agent: &str) -> String {
        let output = run(self.exec(ns).args([
            "curl",
            "-sS",
            "-g",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "--user-agent",
            agent,
            url,
        ]));
        String::from_utf8(output.stdout).unwrap()
    }

    /// A TCP server (Python's) in `ns` on `ip:port` for half-closes. The client's first byte picks who
    /// shuts down writing first: `c`, the client (the server reads to EOF, then answers `got N` and
    /// closes); `u`, the server (it sends `upstream first`, shuts down writing, reads to EOF, and writes
    /// `got N` to `report` since it can no longer answer).
    fn half_close_server(&mut self, ns: &str, ip: &str, port: u16, report: &Path) {
        let script = format!(
            r#"
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("{ip}", {port}))
server.listen()
def serve(conn):
    mode = conn.recv(1)
    if not mode:
        return  # a readiness probe
    if mode == b"u":
        conn.sendall(b"upstream first")
        conn.shutdown(socket.SHUT_WR)
    got = 0
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    if mode == b"u":
        open("{report}", "w").write("got %d" % got)
    else:
        conn.sendall(b"got %d" % got)
while True:
    conn, _ = server.accept()
    try:
        serve(conn)
    except OSError:
        pass
    conn.close()
"#,
            report = report.display()
        );
        let mut command = self.exec(ns);
        command.args(["python3", "-c", &script]);
        self.spawn(command);
        self.wait_for_port(ns, ip, port);
    }

    /// Runs a Python client in `ns` against `ip:port`: mode byte `c` or `u` (see `half_close_server`),
    /// 100000 bytes, and its half-close, in the order the mode asks for. Returns what it read.
    fn half_close_client(&self, ns: &str, ip: &str, port: u16, mode: char) -> String {
        let script = format!(
            r#"
import socket, sys
conn = socket.create_connection(("{ip}", {port}), timeout=20)
conn.sendall(b"{mode}")
def read_all():
    data = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
if "{mode}" == "u":
    first = read_all()
    conn.sendall(b"x" * 100000)
    conn.shutdown(socket.SHUT_WR)
    sys.stdout.write(first.decode())
else:
    conn.sendall(b"x" * 100000)
    conn.shutdown(socket.SHUT_WR)
    sys.stdout.write(read_all().decode())
"#
        );
        let output = run(self.exec(ns).args(["python3", "-c", &script]));
        String::from_utf8(output.stdout).unwrap()
    }

    /// The sidecar in the pod's namespace, transparent, as uid 2102, capturing into a file whose path it
    /// returns; `extra` are more flags. A copy of the binary, since uid 2102 may not be able to reach the
    /// build directory (a checkout under /root, say). The rules must be installed already.
    fn start_sidecar(&mut self, extra: &[&str]) -> PathBuf {
        let binary = self.dir.join("sidecar-proxy");
        if !binary.exists() {
            std::fs::copy(BIN, &binary).unwrap();
            run(Command::new("chmod").args(["0755", binary.to_str().unwrap()]));
            wait_until_executable(&binary);
        }
        let capture = self.dir.join("capture.jsonl");
        let mut sidecar = self.exec(&self.pod);
        sidecar
            .args([
                "setpriv",
                "--reuid",
                SIDECAR_UID,
                "--regid",
                SIDECAR_UID,
                "--clear-groups",
            ])
            .arg(&binary)
            .args(["--proxy-type", "transparent", "--capture"])
            .arg(&capture)
            .args(["--admin-bind", "127.0.0.1", "--shutdown-grace", "2s"])
            .args(extra)
            .env("RUST_LOG", "info");
        self.spawn(sidecar);
        let pod = self.pod.clone();
        self.wait_for_port(&pod, "127.0.0.1", 4140);
        self.wait_for_port(&pod, "127.0.0.1", 4143);
        capture
    }

    /// Stops the sidecar (the last process started) the way Kubernetes does, so every record is flushed.
    fn stop_sidecar(&mut self) {
        let sidecar = self.last_child();
        run(Command::new("kill").args(["-TERM", &sidecar.id().to_string()]));
        let status = sidecar.wait().unwrap();
        assert!(status.success(), "sidecar exit: {status}");
    }

    /// An HTTPS server (Python's) in `ns` on `ip:port` with the certificate and key in `tls`
    /// (`cert.pem`, `key.pem`), serving a file whose body is `body`.
    fn https_server(&mut self, ns: &str, ip: &str, port: u16, tls: &Path, body: &str) -> usize {
        let root = self.dir.join(format!("www-tls-{ns}-{port}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), body).unwrap();
        let script = format!(
            r#"
import functools, http.server, ssl
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="{root}")
server = http.server.ThreadingHTTPServer(("{ip}", {port}), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("{tls}/cert.pem", "{tls}/key.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#,
            root = root.display(),
            tls = tls.display()
        );
        let mut command = self.exec(ns);
        command.args(["python3", "-c", &script]);
        let index = self.spawn(command);
        self.wait_for_port(ns, ip, port);
        index
    }

    fn nat_rules(&self) -> String {
        let output = run(self.exec(&self.pod).args(["iptables-save", "-t", "nat"]));
        // Counters and the generation comment change between dumps; the rules themselves must not.
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                if l.starts_with(':') {
                    l.split(' ').take(2).collect::<Vec<_>>().join(" ")
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An outbound HTTP/2 exchange as a capture line: GET `url`, answered 200 with a body and a gRPC status
/// in the trailers.
fn h2_outbound_record(url: &str) -> String {
    let target = url.trim_start_matches("http://").split('/').next().unwrap();
    serde_json::json!({
        "schema": "sidecar.capture/v1", "kind": "http", "id": 90, "uid": "0123456789abcdef-90",
        "connection": 90, "direction": "outbound", "proxy_type": "transparent",
        "protocol": "transparent", "transport": "iptables", "client": "198.18.0.1:40000",
        "target": target, "start": "2026-12-07T00:00:00.000000Z", "duration_ms": 1.5,
        "request": {"method": "GET", "url": url, "version": "HTTP/2.0", "headers": [],
            "body": {"size": 0, "truncated": false, "base64": "", "complete": true}},
        "response": {"status": 200, "version": "HTTP/2.0",
            "headers": [["content-type", "application/grpc"]],
            "body": {"size": 11, "truncated": false, "base64": "cHJpY2U6YXBwbGU=", "complete": true},
            "trailers": [["grpc-status", "0"]]}
    })
    .to_string()
        + "\n"
}

/// A process another test thread forked while the copy was open for writing holds that descriptor until
/// it execs, and until then running the copy fails with "Text file busy" (ETXTBSY): wait that out.
fn wait_until_executable(binary: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Command::new(binary).arg("--version").output() {
            Ok(output) if output.status.success() => return,
            Err(e) if e.raw_os_error() == Some(26) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("cannot run the copy {}: {other:?}", binary.display()),
        }
    }
}

fn records(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn transparent_mode_relays_and_records_both_directions_with_no_app_settings() {
    let mut pod = Pod::create();
    // The upstream elsewhere in the "cluster", and the pod's own app.
    let (peer_ns, pod_ns) = (pod.peer.clone(), pod.pod.clone());
    pod.http_server(&peer_ns, PEER_IP, 8080, "upstream in the peer namespace\n");
    let ipv6 = ipv6_enabled();
    if ipv6 {
        pod.http_server(
            &peer_ns,
            PEER_IP6,
            8086,
            "upstream in the peer namespace, over IPv6\n",
        );
    } else {
        eprintln!("this kernel has IPv6 turned off: checking transparent mode over IPv4 only");
    }
    pod.http_server(&pod_ns, "0.0.0.0", 9090, "the pod's app\n");
    let report = pod.dir.join("half-close-report");
    pod.half_close_server(&peer_ns, PEER_IP, 8082, &report);

    // The init container's job, then the same again: a re-run converges to the same rules.
    run(pod.exec(&pod_ns).args([BIN, "init-iptables"]));
    let rules = pod.nat_rules();
    assert!(rules.contains("--to-ports 4143"), "{rules}");
    assert!(rules.contains("--to-ports 4140"), "{rules}");
    run(pod.exec(&pod_ns).args([BIN, "init-iptables"]));
    assert_eq!(
        pod.nat_rules(),
        rules,
        "a second init-iptables changed the rules"
    );

    let capture = pod.start_sidecar(&[]);

    // Outbound: the app dials the upstream directly; the rules take it through the sidecar.
    let outbound = pod.curl(&pod_ns, &format!("http://{PEER_IP}:8080/hello.txt"));
    assert_eq!(outbound, "upstream in the peer namespace\n");
    // The same over IPv6: ip6tables redirects to the sidecar's IPv6 listener.
    if ipv6 {
        let outbound6 = pod.curl(&pod_ns, &format!("http://[{PEER_IP6}]:8086/hello.txt"));
        assert_eq!(outbound6, "upstream in the peer namespace, over IPv6\n");
    }
    // Inbound: a caller dials the pod's IP; the rules take it through the sidecar to the app.
    let inbound = pod.curl(&peer_ns, &format!("http://{POD_IP}:9090/hello.txt"));
    assert_eq!(inbound, "the pod's app\n");
    // A kubelet probe takes the same way to the app, and is answered by it, but is not recorded.
    let probe = pod.curl_as(
        &peer_ns,
        &format!("http://{POD_IP}:9090/hello.txt?probe"),
        "kube-probe/1.33",
    );
    assert_eq!(probe, "the pod's app\n");

    // A half-close through the redirect, either side first: the other direction keeps flowing.
    let client_first = pod.half_close_client(&pod_ns, PEER_IP, 8082, 'c');
    assert_eq!(
        client_first, "got 100000",
        "the client's half-close, then the answer"
    );
    let upstream_first = pod.half_close_client(&pod_ns, PEER_IP, 8082, 'u');
    assert_eq!(upstream_first, "upstream first");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&report).unwrap_or_default() != "got 100000" {
        assert!(
            Instant::now() < deadline,
            "after its own half-close, the upstream never read the client's bytes to EOF: {:?}",
            std::fs::read_to_string(&report)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    pod.stop_sidecar();
    let records = records(&capture);
    let http: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.detail {
            Detail::Http(exchange) => Some((r, exchange)),
            Detail::Stream(_) => None,
        })
        .collect();
    let find = |direction: &str| {
        http.iter()
            .find(|(r, _)| r.direction == direction)
            .unwrap_or_else(|| panic!("no {direction} http record in {records:#?}"))
    };
    if ipv6 {
        let out6 = http
            .iter()
            .find(|(r, _)| r.target == format!("[{PEER_IP6}]:8086"))
            .unwrap_or_else(|| panic!("no IPv6 outbound record in {records:#?}"));
        assert_eq!(out6.0.direction, "outbound");
        assert_eq!(out6.1.response.as_ref().map(|r| r.status), Some(200));
    }
    let (out_record, out_exchange) = http
        .iter()
        .find(|(r, _)| r.direction == "outbound" && r.target == format!("{PEER_IP}:8080"))
        .unwrap_or_else(|| panic!("no IPv4 outbound record in {records:#?}"));
    assert_eq!(
        out_record.target,
        format!("{PEER_IP}:8080"),
        "the original destination"
    );
    assert_eq!(out_record.protocol, "transparent");
    assert_eq!(out_record.transport, "iptables");
    assert_eq!(
        out_exchange.request.url,
        format!("http://{PEER_IP}:8080/hello.txt")
    );
    assert_eq!(out_exchange.response.as_ref().map(|r| r.status), Some(200));

    assert!(
        !http
            .iter()
            .any(|(_, exchange)| exchange.request.url.ends_with("?probe")),
        "the kubelet probe was recorded: {records:#?}"
    );
    let (in_record, in_exchange) = find("inbound");
    assert_eq!(
        in_record.target,
        format!("{POD_IP}:9090"),
        "the original destination"
    );
    assert!(
        in_record.client.starts_with(PEER_IP),
        "{}",
        in_record.client
    );
    assert_eq!(
        in_exchange.request.url,
        format!("http://{POD_IP}:9090/hello.txt")
    );
    assert_eq!(in_exchange.response.as_ref().map(|r| r.status), Some(200));
}

/// tls-out in transparent mode: the app calls an HTTPS upstream with no proxy settings, trusting the
/// capture CA only through `CURL_CA_BUNDLE` and the trust files the sidecar wrote; the sidecar decrypts the
/// redirected connection, verifies the real upstream against its CA, and records the exchange.
#[test]
fn transparent_mode_with_tls_out_records_the_apps_https() {
    let mut pod = Pod::create();
    let (peer_ns, pod_ns) = (pod.peer.clone(), pod.pod.clone());

    // The upstream's own CA and certificate (for its name and its address), as another team's service has.
    let upstream_tls = pod.dir.join("upstream-tls");
    std::fs::create_dir_all(&upstream_tls).unwrap();
    let upstream_ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "upstream team CA");
    let upstream_ca = ca_params.self_signed(&upstream_ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, upstream_ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["upstream.test".to_owned(), PEER_IP.to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(upstream_tls.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(upstream_tls.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    let upstream_ca_file = pod.dir.join("upstream-ca.pem");
    std::fs::write(&upstream_ca_file, upstream_ca.pem()).unwrap();
    let upstream = pod.https_server(&peer_ns, PEER_IP, 8443, &upstream_tls, "secret upstream\n");

    // The capture CA, made by the real command, readable by the sidecar's uid as a Secret mount would be.
    let ca_dir = pod.dir.join("capture-ca");
    run(Command::new(BIN)
        .args(["ca", "create", "--out"])
        .arg(&ca_dir));
    run(Command::new("chown")
        .args(["-R", &format!("{SIDECAR_UID}:{SIDECAR_UID}")])
        .arg(&ca_dir));
    let trust_dir = pod.dir.join("trust");
    std::fs::create_dir_all(&trust_dir).unwrap();
    run(Command::new("chown")
        .arg(format!("{SIDECAR_UID}:{SIDECAR_UID}"))
        .arg(&trust_dir));

    run(pod.exec(&pod_ns).args([BIN, "init-iptables"]));
    let tls_out = [
        "--tls-out",
        "--tls-ca-dir",
        ca_dir.to_str().unwrap(),
        "--tls-upstream-ca",
        upstream_ca_file.to_str().unwrap(),
        "--tls-trust-dir",
        trust_dir.to_str().unwrap(),
    ];
    let capture = pod.start_sidecar(&tls_out);

    // The app: curl with no proxy settings, trusting what CURL_CA_BUNDLE names (the injector points it at
    // the bundle the sidecar wrote). `extra` goes before the URL.
    let https_get = |pod: &Pod, trusted: &Path, extra: &[&str], url: &str| {
        pod.exec(&pod_ns)
            .env("CURL_CA_BUNDLE", trusted)
            .args(["curl", "-sS", "--noproxy", "*", "--max-time", "20"])
            .args(extra)
            .arg(url)
            .output()
            .unwrap()
    };
    let bundle = trust_dir.join("ca-bundle.crt");
    let resolve = format!("upstream.test:8443:{PEER_IP}");
    let by_address_url = format!("https://{PEER_IP}:8443/hello.txt");
    for (extra, url) in [
        (
            &["--resolve", resolve.as_str()][..],
            "https://upstream.test:8443/hello.txt",
        ),
        (&[][..], by_address_url.as_str()),
    ] {
        let got = https_get(&pod, &bundle, extra, url);
        assert!(
            got.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&got.stdout),
            "secret upstream\n",
            "{url}"
        );
    }
    // Without the capture CA the app's TLS fails: the sidecar's leaf is not the upstream's certificate.
    let untrusting = https_get(&pod, &upstream_ca_file, &[], &by_address_url);
    assert!(!untrusting.status.success(), "the leaf is the capture CA's");

    pod.stop_sidecar();
    let recorded_records = records(&capture);
    let decrypted: Vec<_> = recorded_records
        .iter()
        .filter_map(|r| match &r.detail {
            Detail::Http(exchange) if r.tls.is_some() => Some((r, exchange)),
            _ => None,
        })
        .collect();
    assert_eq!(decrypted.len(), 2, "{recorded_records:#?}");
    for (record, exchange) in &decrypted {
        assert_eq!(record.direction, "outbound");
        assert_eq!(record.transport, "iptables");
        assert_eq!(
            record.target,
            format!("{PEER_IP}:8443"),
            "the original destination"
        );
        let response = exchange.response.as_ref().unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(&response.body.base64[..], b"secret upstream\n");
    }
    let urls: Vec<_> = decrypted
        .iter()
        .map(|(_, e)| e.request.url.as_str())
        .collect();
    assert_eq!(
        urls,
        [
            "https://upstream.test:8443/hello.txt".to_owned(),
            format!("https://{PEER_IP}:8443/hello.txt")
        ]
    );
    assert_eq!(
        decrypted[0].0.tls.as_ref().unwrap().sni.as_deref(),
        Some("upstream.test")
    );
    assert_eq!(decrypted[1].0.tls.as_ref().unwrap().sni, None);

    // Mock mode with tls-out: the upstream is gone, and the app's HTTPS is answered from this capture,
    // decrypted with the capture CA's leaf as before.
    let recorded = pod.dir.join("recorded-https.jsonl");
    std::fs::rename(&capture, &recorded).unwrap();
    pod.kill(upstream);
    let mocked_capture =
        pod.start_sidecar(&[&tls_out[..], &["--mock", recorded.to_str().unwrap()]].concat());
    let got = https_get(
        &pod,
        &bundle,
        &["--resolve", resolve.as_str()],
        "https://upstream.test:8443/hello.txt",
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&got.stdout),
        "secret upstream\n",
        "answered from the capture"
    );
    let miss = https_get(
        &pod,
        &bundle,
        &["--resolve", resolve.as_str()],
        "https://upstream.test:8443/other.txt",
    );
    assert!(
        String::from_utf8_lossy(&miss.stdout)
            .contains("no recorded exchange matches GET https://upstream.test:8443/other.txt"),
        "{}",
        String::from_utf8_lossy(&miss.stdout)
    );
    pod.stop_sidecar();
    let answered: Vec<_> = records(&mocked_capture)
        .into_iter()
        .filter_map(|r| match r.detail {
            Detail::Http(exchange) => Some(exchange),
            _ => None,
        })
        .collect();
    assert_eq!(answered.len(), 2, "{answered:#?}");
    assert_eq!(
        answered[0].request.url,
        "https://upstream.test:8443/hello.txt"
    );
    assert!(answered[0].mock.as_ref().is_some_and(|m| m.matched));
    assert!(answered[1].mock.as_ref().is_some_and(|m| !m.matched));
}

#[test]
fn transparent_mode_answers_the_apps_calls_from_a_capture_once_the_dependency_is_gone() {
    let mut pod = Pod::create();
    let (peer_ns, pod_ns) = (pod.peer.clone(), pod.pod.clone());
    let dependency = pod.http_server(&peer_ns, PEER_IP, 8080, "as the dependency answered\n");
    run(pod.exec(&pod_ns).args([BIN, "init-iptables"]));

    // Recording: the app's call reaches the real dependency.
    let capture = pod.start_sidecar(&[]);
    let url = format!("http://{PEER_IP}:8080/hello.txt");
    assert_eq!(pod.curl(&pod_ns, &url), "as the dependency answered\n");
    pod.stop_sidecar();
    let recorded = pod.dir.join("recorded.jsonl");
    std::fs::rename(&capture, &recorded).unwrap();
    let recorded_uid = records(&recorded)
        .iter()
        .find(|r| r.direction == "outbound" && matches!(r.detail, Detail::Http(_)))
        .map(|r| r.uid.clone())
        .expect("the recorded call");

    // An HTTP/2 call with trailers (a gRPC status) in the same capture, as the tap records one.
    let mut lines = std::fs::read_to_string(&recorded).unwrap();
    lines.push_str(&h2_outbound_record(&format!(
        "http://{PEER_IP}:8080/shop.Prices/Get"
    )));
    std::fs::write(&recorded, lines).unwrap();

    // The dependency is gone; the app, unchanged and with no settings, gets its answer from the mock.
    pod.kill(dependency);
    assert!(
        pod.connect(&peer_ns, PEER_IP, 8080).is_err(),
        "still listening"
    );
    let capture = pod.start_sidecar(&["--mock", recorded.to_str().unwrap()]);
    assert_eq!(pod.curl(&pod_ns, &url), "as the dependency answered\n");
    // A call nothing recorded is answered 502, naming the nearest recorded request and what differs.
    let miss = pod.curl(&pod_ns, &format!("http://{PEER_IP}:8080/hello.txt?lang=fr"));
    assert!(
        miss.contains("no recorded exchange matches GET")
            && miss.contains(&format!("nearest recorded request: record {recorded_uid}")),
        "{miss}"
    );
    // HTTP/2 with prior knowledge (how gRPC speaks in cleartext) is served as HTTP/2: the recorded body,
    // then the recorded trailers.
    let h2 = run(pod.exec(&pod_ns).args([
        "curl",
        "-sS",
        "-i",
        "--http2-prior-knowledge",
        "--noproxy",
        "*",
        "--max-time",
        "20",
        &format!("http://{PEER_IP}:8080/shop.Prices/Get"),
    ]));
    let h2 = String::from_utf8_lossy(&h2.stdout).replace("\r\n", "\n");
    assert!(h2.starts_with("HTTP/2 200"), "{h2}");
    // curl -i prints the trailers right after the body, which has no newline of its own.
    assert!(h2.ends_with("\n\nprice:applegrpc-status: 0\n"), "{h2:?}");
    // A stream that is not HTTP cannot be answered from HTTP records: closed at once (the default
    // --mock-unmatched 502), rather than left waiting for a destination that is not there.
    let opaque = run(pod.exec(&pod_ns).args([
        "python3",
        "-c",
        &format!(
            "import socket; s = socket.create_connection(('{PEER_IP}', 6379), timeout=10); \
             s.sendall(b'PING\\r\\n'); print(repr(s.recv(100)))"
        ),
    ]));
    assert_eq!(String::from_utf8_lossy(&opaque.stdout).trim(), "b''");
    pod.stop_sidecar();

    let records = records(&capture);
    let mocked: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.detail {
            Detail::Http(exchange) if r.direction == "outbound" => Some((r, exchange)),
            _ => None,
        })
        .collect();
    assert_eq!(mocked.len(), 3, "{records:#?}");
    let (hit, hit_exchange) = mocked[0];
    assert_eq!(hit.transport, "iptables");
    assert_eq!(
        hit.target,
        format!("{PEER_IP}:8080"),
        "the original destination"
    );
    assert_eq!(hit_exchange.request.url, url);
    let answer = hit_exchange.mock.as_ref().expect("a mock field");
    assert!(answer.matched);
    assert_eq!(answer.served_from.as_deref(), Some(recorded_uid.as_str()));
    assert_eq!(
        &hit_exchange.response.as_ref().unwrap().body.base64[..],
        b"as the dependency answered\n"
    );
    let (_, miss_exchange) = mocked[1];
    let answer = miss_exchange.mock.as_ref().expect("a mock field");
    assert!(!answer.matched);
    assert_eq!(answer.nearest.as_deref(), Some(recorded_uid.as_str()));
    assert_eq!(miss_exchange.response.as_ref().unwrap().status, 502);
    let (_, h2_exchange) = mocked[2];
    assert_eq!(h2_exchange.request.version, "HTTP/2.0");
    assert!(h2_exchange.mock.as_ref().is_some_and(|m| m.matched));
    assert_eq!(
        h2_exchange.response.as_ref().unwrap().trailers,
        [("grpc-status".to_owned(), "0".to_owned())]
    );
    let refused = records
        .iter()
        .find_map(|r| match &r.detail {
            Detail::Stream(stream) if r.target == format!("{PEER_IP}:6379") => Some(stream),
            _ => None,
        })
        .expect("the refused stream is recorded");
    assert_eq!(refused.end, "refused");
    assert!(
        refused
            .error
            .as_deref()
            .is_some_and(|e| e.contains("mock mode answers HTTP only")),
        "{refused:?}"
    );
}
