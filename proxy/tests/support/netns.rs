//! A pod and the rest of the cluster as two network namespaces the test creates, joined by a veth pair,
//! for the tests that need a real network stack of their own (iptables rules, addresses other than
//! loopback). The pod is 198.18.0.1 and the peer 198.18.0.2, in 198.18.0.0/24, the range reserved for such
//! tests, plus fd00:5ca1::1 and ::2 where the kernel has IPv6. No traffic leaves the two namespaces.
//!
//! Everything the test starts in them is killed, and the namespaces and the scratch directory removed,
//! when the [`PodNetwork`] is dropped. A failing test prints the end of each process's stderr first, since
//! that is usually where the reason is.
//!
//! Uses `super::env`, so it is included next to `support/env.rs`, either with the rest of `support` or on
//! its own: `#[path = "support/env.rs"] mod env; #[path = "support/netns.rs"] mod netns;`.
// Each test file uses a part of it.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::env;

pub const POD_IP: &str = "198.18.0.1";
pub const PEER_IP: &str = "198.18.0.2";
/// A unique-local IPv6 prefix, used only inside the two namespaces.
pub const POD_IP6: &str = "fd00:5ca1::1";
pub const PEER_IP6: &str = "fd00:5ca1::2";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `command` to completion and returns its output; panics with both streams when it fails.
pub fn run(command: &mut Command) -> Output {
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

/// Whether the kernel has IPv6 at all (it can be turned off at boot); where it has, IPv6 is tested too.
pub fn ipv6_enabled() -> bool {
    Path::new("/proc/net/if_inet6").exists()
}

/// The pod namespace, the peer namespace, the processes started in them and a scratch directory.
pub struct PodNetwork {
    pub pod: String,
    pub peer: String,
    /// Scratch files of the test; world-writable, since a sidecar may run as uid 2102 and write here.
    pub dir: PathBuf,
    children: Vec<(Child, PathBuf)>,
}

impl PodNetwork {
    /// Creates both namespaces; `tag` (two letters) keeps the names of concurrently running test files
    /// apart, `needs` says what the test does with root, for the message when it runs without.
    pub fn create(tag: &str, needs: &str) -> PodNetwork {
        assert_eq!(
            Command::new("id")
                .arg("-u")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default(),
            b"0\n",
            "this test {needs}: run it as root (CI does)"
        );
        let unique = format!(
            "{}{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let network = PodNetwork {
            pod: format!("{tag}-pod-{unique}"),
            peer: format!("{tag}-peer-{unique}"),
            dir: std::env::temp_dir().join(format!("sidecar-netns-{tag}-{unique}")),
            children: Vec::new(),
        };
        // Interface names are at most 15 bytes: "xxa" plus at most 11 digits.
        let (pod_if, peer_if) = (format!("{tag}a{unique}"), format!("{tag}b{unique}"));
        run(Command::new("ip").args(["netns", "add", &network.pod]));
        run(Command::new("ip").args(["netns", "add", &network.peer]));
        run(Command::new("ip").args([
            "link", "add", &pod_if, "type", "veth", "peer", "name", &peer_if,
        ]));
        run(Command::new("ip").args(["link", "set", &pod_if, "netns", &network.pod]));
        run(Command::new("ip").args(["link", "set", &peer_if, "netns", &network.peer]));
        let ends = [
            (&network.pod, &pod_if, POD_IP, POD_IP6),
            (&network.peer, &peer_if, PEER_IP, PEER_IP6),
        ];
        for (ns, interface, ip, ip6) in ends {
            let (v4, v6) = (format!("{ip}/24"), format!("{ip6}/64"));
            run(Command::new("ip").args(["-n", ns, "addr", "add", &v4, "dev", interface]));
            if ipv6_enabled() {
                // nodad: usable at once, without waiting out duplicate address detection.
                run(Command::new("ip")
                    .args(["-n", ns, "addr", "add", &v6, "dev", interface, "nodad"]));
            }
            run(Command::new("ip").args(["-n", ns, "link", "set", interface, "up"]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        std::fs::create_dir_all(&network.dir).unwrap();
        run(Command::new("chmod").args(["0777", network.dir.to_str().unwrap()]));
        network
    }

    /// A command run in `ns`, without this process's proxy settings (`http_proxy` and the like, and every
    /// `PROXY_*` variable), which would otherwise change what curl or the sidecar does.
    pub fn exec(&self, ns: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]);
        env::remove_all_proxy_vars(&mut command);
        command
    }

    /// Starts `command` in the background; its stderr goes to a file shown if the test fails (and read by
    /// [`PodNetwork::stderr`] with the index returned here).
    pub fn spawn(&mut self, mut command: Command) -> usize {
        let log = self
            .dir
            .join(format!("process-{}.stderr", self.children.len()));
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("a stderr file in the scratch directory"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        self.children.push((child, log));
        self.children.len() - 1
    }

    /// What the process started `index`-th has written to its stderr so far.
    pub fn stderr(&self, index: usize) -> String {
        std::fs::read_to_string(&self.children[index].1).unwrap_or_default()
    }

    /// Waits (up to 20 s) until the stderr of process `index` contains `text`, and returns all of it.
    pub fn wait_for_stderr(&self, index: usize, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let stderr = self.stderr(index);
            if stderr.contains(text) {
                return stderr;
            }
            assert!(
                Instant::now() < deadline,
                "process {index} never wrote {text:?}; its stderr:\n{stderr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process started `index`-th (a dependency that goes away).
    pub fn kill(&mut self, index: usize) {
        let child = &mut self.children[index].0;
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The process started last (a test's sidecar, typically).
    pub fn last_child(&mut self) -> &mut Child {
        &mut self.children.last_mut().expect("a process was started").0
    }

    /// A TCP connection from `ns` to `ip:port` (bash's /dev/tcp), or why it failed.
    pub fn connect(&self, ns: &str, ip: &str, port: u16) -> Result<(), String> {
        let output = self
            .exec(ns)
            .args(["bash", "-c", &format!("exec 3<>/dev/tcp/{ip}/{port}")])
            .output()
            .expect("run bash");
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Waits (up to 20 s) until something in `ns` accepts connections on `ip:port`.
    pub fn wait_for_port(&self, ns: &str, ip: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.connect(ns, ip, port).is_err() {
            assert!(
                Instant::now() < deadline,
                "nothing listens on {ip}:{port} in {ns}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An HTTP server (Python's) in `ns` on `ip:port`, serving `body` as /hello.txt; returns its index
    /// for [`PodNetwork::kill`].
    pub fn http_server(&mut self, ns: &str, ip: &str, port: u16, body: &str) -> usize {
        let root = self.dir.join(format!("www-{ns}-{port}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("hello.txt"), body).unwrap();
        let mut command = self.exec(ns);
        command
            .args(["python3", "-m", "http.server", &port.to_string()])
            .args(["--bind", ip, "--directory"])
            .arg(&root);
        let index = self.spawn(command);
        self.wait_for_port(ns, ip, port);
        index
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        for (child, log) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                let text = std::fs::read_to_string(&*log).unwrap_or_default();
                let start = text.len().saturating_sub(4000);
                let tail = text.get(start..).unwrap_or(&text);
                if !tail.is_empty() {
                    eprintln!(
                        "--- stderr of process {} (its end) ---\n{tail}",
                        log.display()
                    );
                }
            }
        }
        for ns in [&self.pod, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
