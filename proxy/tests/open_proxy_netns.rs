//! The sidecar is never an open proxy: seen from another host on the network, with its defaults.
//!
//! Two network namespaces this test creates, joined by a veth pair, stand for a pod (198.18.0.1) and
//! another pod of the cluster (198.18.0.2), in 198.18.0.0/24, the range reserved for such tests; no
//! traffic leaves them. In the pod: an app on 127.0.0.1:8080 and the sidecar started as the injector
//! starts it (settings as `PROXY_*` variables, no bind address, default ports). From the peer, the inbound
//! listener and the admin port answer (that is their job), and the forward listener, HTTP or SOCKS,
//! refuses the connection. A second sidecar told `PROXY_OUT_BIND=0.0.0.0` shows what the default
//! prevents: the peer then reaches the pod's loopback-only app through it.
//!
//! Needs root (CI runs as root), `ip`, `curl` and `python3`; without them the test fails saying what is
//! missing rather than passing vacuously.

#[path = "support/env.rs"]
mod env;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");
const POD_IP: &str = "198.18.0.1";
const PEER_IP: &str = "198.18.0.2";
const APP_PORT: u16 = 8080;
const BODY: &str = "the app, which listens on the pod's loopback only\n";

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(command: &mut Command) -> Output {
    let rendered = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {rendered}: {e}"));
    assert!(
        output.status.success(),
        "{rendered} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A pod namespace and a peer namespace joined by a veth pair; removed (with their processes) on drop.
struct Network {
    pod: String,
    peer: String,
    children: Vec<Child>,
    dir: PathBuf,
}

impl Network {
    fn create() -> Network {
        assert_eq!(
            Command::new("id")
                .arg("-u")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default(),
            b"0\n",
            "this test creates network namespaces: run it as root (CI does)"
        );
        let tag = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let network = Network {
            pod: format!("op-pod-{tag}"),
            peer: format!("op-peer-{tag}"),
            children: Vec::new(),
            dir: std::env::temp_dir().join(format!("sidecar-open-proxy-{tag}")),
        };
        let (pod_if, peer_if) = (format!("opa{tag}"), format!("opb{tag}"));
        run(Command::new("ip").args(["netns", "add", &network.pod]));
        run(Command::new("ip").args(["netns", "add", &network.peer]));
        run(Command::new("ip").args([
            "link", "add", &pod_if, "type", "veth", "peer", "name", &peer_if,
        ]));
        run(Command::new("ip").args(["link", "set", &pod_if, "netns", &network.pod]));
        run(Command::new("ip").args(["link", "set", &peer_if, "netns", &network.peer]));
        for (ns, interface, ip) in [
            (&network.pod, &pod_if, POD_IP),
            (&network.peer, &peer_if, PEER_IP),
        ] {
            let address = format!("{ip}/24");
            run(Command::new("ip").args(["-n", ns, "addr", "add", &address, "dev", interface]));
            run(Command::new("ip").args(["-n", ns, "link", "set", interface, "up"]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        std::fs::create_dir_all(&network.dir).unwrap();
        network
    }

    /// A command run in `ns`, with no proxy settings of this process's environment.
    fn exec(&self, ns: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]);
        for var in [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
            "no_proxy",
            "NO_PROXY",
        ] {
            command.env_remove(var);
        }
        env::remove_proxy_vars(&mut command);
        command
    }

    fn spawn(&mut self, mut command: Command) {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        self.children.push(child);
    }

    /// The app: Python's HTTP server on the pod's 127.0.0.1:8080, serving BODY as /hello.txt.
    fn start_app(&mut self) {
        let root = self.dir.join("www");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), BODY).unwrap();
        let mut command = self.exec(&self.pod.clone());
        command
            .args(["python3", "-m", "http.server", &APP_PORT.to_string()])
            .args(["--bind", "127.0.0.1", "--directory"])
            .arg(&root);
        self.spawn(command);
        self.wait_for_port("127.0.0.1", APP_PORT);
    }

    /// The sidecar in the pod, configured only by `settings` (as the injector configures it).
    fn start_sidecar(&mut self, settings: &[(&str, &str)], ports: &[u16]) {
        let mut command = self.exec(&self.pod.clone());
        command.arg(BIN).env("PROXY_CAPTURE", "off");
        for (name, value) in settings {
            command.env(name, value);
        }
        self.spawn(command);
        for port in ports {
            self.wait_for_port("127.0.0.1", *port);
        }
    }

    fn connects(&self, ns: &str, ip: &str, port: u16) -> bool {
        self.connect(ns, ip, port).is_ok()
    }

    /// A TCP connection from `ns` to `ip:port` (bash's /dev/tcp), or why it failed.
    fn connect(&self, ns: &str, ip: &str, port: u16) -> Result<(), String> {
        let output = self
            .exec(ns)
            .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
            .output()
            .unwrap();
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    fn wait_for_port(&self, ip: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.connects(&self.pod, ip, port) {
            assert!(
                Instant::now() < deadline,
                "nothing listens on {ip}:{port} in the pod"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// curl in `ns` with `args`: its exit code and output.
    fn curl(&self, ns: &str, args: &[&str]) -> (Option<i32>, String) {
        let output = self
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
}

impl Drop for Network {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.pod, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// curl's exit code when it cannot connect (here: to the proxy).
const CURL_COULDNT_CONNECT: i32 = 7;

#[test]
fn another_pod_cannot_use_the_forward_listener_but_reaches_inbound_and_admin() {
    let mut network = Network::create();
    network.start_app();
    let app_url = format!("http://127.0.0.1:{APP_PORT}/hello.txt");
    let app_port = APP_PORT.to_string();
    // Default ports: 4143 in, 4140 out, 4191 admin. And a SOCKS forward proxy beside it.
    network.start_sidecar(
        &[
            ("PROXY_TYPE", "dual"),
            ("PROXY_PROTOCOL", "http"),
            ("PROXY_HOST", "127.0.0.1"),
            ("PROXY_PORT", &app_port),
        ],
        &[4143, 4140, 4191],
    );
    network.start_sidecar(
        &[
            ("PROXY_TYPE", "forward"),
            ("PROXY_PROTOCOL", "socks"),
            ("PROXY_OUT_PORT", "6140"),
            ("PROXY_ADMIN_PORT", "6191"),
        ],
        &[6140],
    );
    let (pod, peer) = (network.pod.clone(), network.peer.clone());

    // The app in the pod uses both forward proxies: they are up and they work.
    let (code, out) = network.curl(&pod, &["--proxy", "http://127.0.0.1:4140", &app_url]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "http forward, from the pod"
    );
    let (code, out) = network.curl(&pod, &["--socks5-hostname", "127.0.0.1:6140", &app_url]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "socks forward, from the pod"
    );

    // Another pod reaches what it should: the inbound listener (to the app) and the admin port.
    let (code, out) = network.curl(&peer, &[&format!("http://{POD_IP}:4143/hello.txt")]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "inbound, from the peer"
    );
    let (code, out) = network.curl(&peer, &[&format!("http://{POD_IP}:4191/healthz")]);
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
    let (code, out) = network.curl(
        &peer,
        &["--proxy", &format!("http://{POD_IP}:4140"), &app_url],
    );
    assert_eq!(
        code,
        Some(CURL_COULDNT_CONNECT),
        "http forward, from the peer: {out}"
    );
    let (code, out) = network.curl(
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
    network.start_sidecar(
        &[
            ("PROXY_TYPE", "forward"),
            ("PROXY_PROTOCOL", "http"),
            ("PROXY_OUT_PORT", "5140"),
            ("PROXY_ADMIN_PORT", "5191"),
            ("PROXY_OUT_BIND", "0.0.0.0"),
        ],
        &[5140],
    );
    let (code, out) = network.curl(
        &peer,
        &["--proxy", &format!("http://{POD_IP}:5140"), &app_url],
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), BODY),
        "an open proxy, overridden on purpose"
    );
}
