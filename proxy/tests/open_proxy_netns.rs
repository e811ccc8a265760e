//! The sidecar is never an open proxy: seen from another host on the network, with its defaults.
//!
//! Two network namespaces this test creates (`support/netns.rs`) stand for a pod (198.18.0.1) and
//! another pod of the cluster (198.18.0.2); no traffic leaves them. In the pod: an app on 127.0.0.1:8080
//! and the sidecar started as the injector starts it (settings as `PROXY_*` variables, no bind address,
//! default ports). From the peer, the inbound listener and the admin port answer (that is their job), and
//! the forward listener, HTTP or SOCKS, refuses the connection. A second sidecar told
//! `PROXY_OUT_BIND=0.0.0.0` shows what the default prevents: the peer then reaches the pod's
//! loopback-only app through it, and that sidecar says so in a warning at start (the others do not).
//!
//! Needs root (CI runs as root), `ip`, `curl` and `python3`; without them the test fails saying what is
//! missing rather than passing vacuously.

#[path = "support/env.rs"]
mod env;
#[path = "support/netns.rs"]
mod netns;

use std::process::Command;

use netns::{PodNetwork, POD_IP};

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");
const APP_PORT: u16 = 8080;
const BODY: &str = "the app, which listens on the pod's loopback only\n";

/// The app: Python's HTTP server on the pod's 127.0.0.1:8080, serving BODY as /hello.txt.
fn start_app(network: &mut PodNetwork) {
    let pod = network.pod.clone();
    network.http_server(&pod, "127.0.0.1", APP_PORT, BODY);
}

/// A sidecar in the pod, configured only by `settings` (as the injector configures it). Returns what it
/// logged up to being ready.
fn start_sidecar(network: &mut PodNetwork, settings: &[(&str, &str)], ports: &[u16]) -> String {
    let mut command: Command = network.exec(&network.pod);
    command
        .arg(BIN)
        .env("PROXY_CAPTURE", "off")
        .env("RUST_LOG", "info");
    for (name, value) in settings {
        command.env(name, value);
    }
    let index = network.spawn(command);
    for port in ports {
        network.wait_for_port(&network.pod, "127.0.0.1", *port);
    }
    network.wait_for_stderr(index, "ready: every listener is bound")
}

/// The start-up warning of a forward listener any host can reach.
const OPEN_PROXY_WARNING: &str =
    "which is not a loopback address: anything that can reach it can use this pod as an open proxy";

/// The WARN lines of a sidecar's start-up log that say it is an open proxy.
fn open_proxy_warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains(" WARN ") && line.contains(OPEN_PROXY_WARNING))
        .collect()
}

/// curl in `ns` with `args`: its exit code and output.
fn curl(network: &PodNetwork, ns: &str, args: &[&str]) -> (Option<i32>, String) {
    let output = network
        .exec(ns)
        .args(["curl", "-sS", "-g", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// curl's exit code when it cannot connect (here: to the proxy).
const CURL_COULDNT_CONNECT: i32 = 7;

#[test]
fn another_pod_cannot_use_the_forward_listener_but_reaches_inbound_and_admin() {
    let mut network = PodNetwork::create("op", "creates network namespaces");
    start_app(&mut network);
    let app_url = format!("http://127.0.0.1:{APP_PORT}/hello.txt");
    let app_port = APP_PORT.to_string();
    // Default ports: 4143 in, 4140 out, 4191 admin. And a SOCKS forward proxy beside it.
    let dual = start_sidecar(
        &mut network,
        &[
            ("PROXY_TYPE", "dual"),
            ("PROXY_PROTOCOL", "http"),
            ("PROXY_HOST", "127.0.0.1"),
            ("PROXY_PORT", &app_port),
        ],
        &[4143, 4140, 4191],
    );
    let socks = start_sidecar(
        &mut network,
        &[
            ("PROXY_TYPE", "forward"),
            ("PROXY_PROTOCOL", "socks"),
            ("PROXY_OUT_PORT", "6140"),
            ("PROXY_ADMIN_PORT", "6191"),
        ],
        &[6140],
    );
    // Bound to loopback, as by default: nothing to warn about.
    for (name, stderr) in [("dual", &dual), ("socks", &socks)] {
        assert_eq!(
            open_proxy_warnings(stderr),
            Vec::<&str>::new(),
            "{name}: {stderr}"
        );
    }
    let (pod, peer) = (network.pod.clone(), network.peer.clone());

    // The app in the pod uses both forward proxies: they are up and they work.
    let (code, out) = curl(
        &network,
        &pod,
        &["--proxy", "http://127.0.0.1:4140", &app_url],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "http forward, from the pod"
    );
    let (code, out) = curl(
        &network,
        &pod,
        &["--socks5-hostname", "127.0.0.1:6140", &app_url],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "socks forward, from the pod"
    );

    // Another pod reaches what it should: the inbound listener (to the app) and the admin port.
    let (code, out) = curl(
        &network,
        &peer,
        &[&format!("http://{POD_IP}:4143/hello.txt")],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "inbound, from the peer"
    );
    let (code, out) = curl(&network, &peer, &[&format!("http://{POD_IP}:4191/healthz")]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "ok"),
        "admin, from the peer"
    );

    // But neither forward listener: the pod's kernel refuses the connection itself (nothing listens on
    // the pod IP at that port), so no proxy protocol is ever spoken.
    for port in [4140, 6140] {
        match network.connect(&peer, POD_IP, port) {
            Ok(()) => panic!("the peer connected to {POD_IP}:{port}"),
            Err(error) => assert!(error.contains("Connection refused"), "{port}: {error}"),
        }
    }
    let (code, out) = curl(
        &network,
        &peer,
        &["--proxy", &format!("http://{POD_IP}:4140"), &app_url],
    );
    assert_eq!(
        code,
        Some(CURL_COULDNT_CONNECT),
        "http forward, from the peer: {out}"
    );
    let (code, out) = curl(
        &network,
        &peer,
        &["--socks5-hostname", &format!("{POD_IP}:6140"), &app_url],
    );
    assert_eq!(
        code,
        Some(CURL_COULDNT_CONNECT),
        "socks forward, from the peer: {out}"
    );

    // What the default prevents: told to bind all addresses, the forward listener serves the peer,
    // which then reads the pod's loopback-only app through it.
    let open = start_sidecar(
        &mut network,
        &[
            ("PROXY_TYPE", "forward"),
            ("PROXY_PROTOCOL", "http"),
            ("PROXY_OUT_PORT", "5140"),
            ("PROXY_ADMIN_PORT", "5191"),
            ("PROXY_OUT_BIND", "0.0.0.0"),
        ],
        &[5140],
    );
    // Which the sidecar says at start, once, naming the address and the way back to the default.
    let warnings = open_proxy_warnings(&open);
    assert_eq!(warnings.len(), 1, "{open}");
    assert!(
        warnings[0].contains("bound to 0.0.0.0:5140")
            && warnings[0].contains(
                "bind it to 127.0.0.1 (the default: remove --proxy-out-bind / PROXY_OUT_BIND)"
            ),
        "{}",
        warnings[0]
    );
    let (code, out) = curl(
        &network,
        &peer,
        &["--proxy", &format!("http://{POD_IP}:5140"), &app_url],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "an open proxy, overridden on purpose"
    );
}
