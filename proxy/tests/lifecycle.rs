//! The real `sidecar-proxy` binary as a subprocess: how it refuses a bad configuration, how it reads its
//! settings (flags, environment, downward-API annotations file), what it says when it starts, and how it
//! stops on SIGTERM/SIGINT while traffic is in flight.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rstest::rstest;
use sha2::{Digest, Sha256};
use support::data::{hex, pattern_sha256};
use support::env::remove_proxy_vars;
use support::start_app;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// A loopback port nothing listens on (bound by the OS, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A file removed when the test ends.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, contents: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "sidecar-lifecycle-{}-{tag}-{}.txt",
            std::process::id(),
            free_port()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The binary, running; killed when dropped so no test leaves a process behind.
struct Sidecar {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdout: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Sidecar {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        let mut command = Command::new(BIN);
        remove_proxy_vars(&mut command);
        // No capture file in the source tree, and no two sidecars on the default admin port; a test's
        // own `env` still wins.
        command
            .env("RUST_LOG", "info")
            .env("PROXY_CAPTURE", "off")
            .env("PROXY_ADMIN_BIND", "127.0.0.1")
            .env("PROXY_ADMIN_PORT", free_port().to_string())
            .envs(env.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start sidecar-proxy");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stderr.take().unwrap(), stderr.clone()),
            collect(child.stdout.take().unwrap(), stdout.clone()),
        ];
        Sidecar {
            child,
            stderr,
            stdout,
            readers,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn stderr_bytes(&self) -> Vec<u8> {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// The `listening` lines logged so far.
    /// The proxy listeners' start lines (the admin listener announces itself separately).
    fn listening_lines(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|line| line.contains(": listening ") && line.contains(" direction="))
            .map(str::to_owned)
            .collect()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits until `listeners` listeners are announced; fails if the process exits first.
    async fn ready(&mut self, listeners: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.listening_lines();
            if lines.len() >= listeners {
                return lines;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "sidecar exited ({status}) before listening; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "sidecar never announced {listeners} listeners; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a signal with `kill -<name> <pid>`.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits for the process to exit (at most `limit`, a bound far above the expected time), then for
    /// its output to be fully read.
    async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    reader.join().unwrap();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sidecar still running after {limit:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect(addr).await {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{addr}: {e}"
        ),
        Ok(_) => panic!("something is listening on {addr}"),
    }
}

/// One request with `connection: close`; the whole reply.
async fn http_exchange(addr: SocketAddr, request: String) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut reply))
        .await
        .expect("reply within 30s")
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

fn origin_form(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n")
}

fn absolute_form(app: SocketAddr, path: &str) -> String {
    format!("GET http://{app}{path} HTTP/1.1\r\nhost: {app}\r\nconnection: close\r\n\r\n")
}

fn assert_reached_app(reply: &str, path: &str) {
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains(&format!("\r\n\r\nGET {path} HTTP/1.1\n")),
        "{reply}"
    );
}

// ---------------------------------------------------------------------------------------------------
// A configuration the sidecar refuses: exit 2, nothing listening, one line on stderr
// ---------------------------------------------------------------------------------------------------

enum Given {
    Args(&'static [&'static str]),
    Env(&'static [(&'static str, &'static str)]),
    /// The annotations file's contents; `{file}` in the message is its path.
    File(&'static str),
    MissingFile,
}

#[rstest]
#[case::flag(
    Given::Args(&["--proxy-type", "reverse", "--proxy-port", "0"]),
    "invalid --proxy-port \"0\": allowed values are port numbers 1-65535"
)]
#[case::flag_host(
    Given::Args(&["--proxy-type", "reverse", "--proxy-host", "http://app"]),
    "invalid --proxy-host \"http://app\": allowed values are a host name or an IP address, without scheme, port or path"
)]
#[case::env(
    Given::Env(&[("PROXY_TYPE", "forward"), ("PROXY_PROTOCOL", "tcp")]),
    "invalid PROXY_PROTOCOL \"tcp\" for PROXY_TYPE \"forward\": a forward proxy serves many destinations and needs a proxy protocol (tcp applies only to reverse proxies); allowed for forward: http, socks"
)]
#[case::env_port(
    Given::Env(&[("PROXY_TYPE", "dual"), ("PROXY_PORT", "80a")]),
    "invalid PROXY_PORT \"80a\": allowed values are port numbers 1-65535"
)]
#[case::annotations_file(
    Given::File("kubernetes.io/config.seen=\"2026-11-26T10:00:00Z\"\nsidecar.speedscale.com/inject=\"true\"\nsidecar.speedscale.com/proxy-type=\"proxy\"\n"),
    "invalid sidecar.speedscale.com/proxy-type \"proxy\": allowed values are transparent, reverse, forward, dual"
)]
#[case::annotations_file_combined_protocol(
    Given::File("sidecar.speedscale.com/proxy-type=\"reverse\"\nsidecar.speedscale.com/proxy-protocol=\"tcp:socks\"\n"),
    "invalid sidecar.speedscale.com/proxy-protocol \"tcp:socks\" for sidecar.speedscale.com/proxy-type \"reverse\": combined protocols apply only to dual proxies; allowed for reverse: tcp, http, socks"
)]
#[case::annotations_file_not_downward_api_format(
    Given::File("sidecar.speedscale.com/proxy-type: dual\n"),
    "{file}: annotations file line 1: no '=' found; expected key=\"value\" as the Kubernetes downward API writes it"
)]
#[case::drain_duration_annotation(
    Given::File("sidecar.speedscale.com/proxy-type=\"reverse\"\nsidecar.speedscale.com/drain-duration=\"5\"\n"),
    "invalid sidecar.speedscale.com/drain-duration \"5\": allowed values are durations from 0s to 1h, like 5s, 500ms or 1m (0s closes the listeners at once)"
)]
#[case::drain_duration_flag(
    Given::Args(&["--proxy-type", "reverse", "--drain-duration", "soon"]),
    "invalid --drain-duration \"soon\": allowed values are durations from 0s to 1h, like 5s, 500ms or 1m (0s closes the listeners at once)"
)]
#[case::annotations_file_missing(
    Given::MissingFile,
    "cannot read annotations file {file}: No such file or directory (os error 2)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_exits_2_with_one_line(
    #[case] given: Given,
    #[case] message: &str,
) {
    let (in_port, out_port) = (free_port(), free_port());
    let (in_arg, out_arg) = (in_port.to_string(), out_port.to_string());
    let mut args = vec![
        "--proxy-in-bind",
        "127.0.0.1",
        "--proxy-in-port",
        &in_arg,
        "--proxy-out-port",
        &out_arg,
    ];
    let mut env: &[(&str, &str)] = &[];
    let file;
    let mut file_path = String::new();
    match given {
        Given::Args(extra) => args.extend_from_slice(extra),
        Given::Env(vars) => env = vars,
        Given::File(text) => {
            file = TempFile::new("invalid", text);
            file_path = file.path().to_owned();
        }
        Given::MissingFile => {
            file_path = std::env::temp_dir()
                .join(format!("sidecar-lifecycle-absent-{}", free_port()))
                .to_str()
                .unwrap()
                .to_owned();
        }
    }
    if !file_path.is_empty() {
        args.extend_from_slice(&["--annotations", &file_path]);
    }

    let mut sidecar = Sidecar::spawn(&args, env);
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "stderr:\n{}", sidecar.stderr());
    assert_eq!(
        sidecar.stderr(),
        format!("sidecar-proxy: {}\n", message.replace("{file}", &file_path))
    );
    assert_eq!(sidecar.stdout(), "");
    assert_refused(loopback(in_port)).await;
    assert_refused(loopback(out_port)).await;
}

/// The spec's default type: both listeners start, and a connection that reaches them without an iptables
/// redirect is refused (relaying it would loop back into the sidecar) while the sidecar keeps serving.
#[rstest]
#[case::nothing_set(&[])]
#[case::explicit(&["--proxy-type", "transparent"])]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_listens_and_refuses_connections_that_were_not_redirected(
    #[case] extra: &[&str],
) {
    let (in_port, out_port) = (free_port(), free_port());
    let (in_arg, out_arg) = (in_port.to_string(), out_port.to_string());
    let uid = own_uid().to_string();
    let mut args = vec![
        "--proxy-in-bind",
        "127.0.0.1",
        "--proxy-in-port",
        &in_arg,
        "--proxy-out-port",
        &out_arg,
        "--proxy-uid",
        &uid,
    ];
    args.extend_from_slice(extra);
    let mut sidecar = Sidecar::spawn(&args, &[]);
    // IPv4 listeners, and IPv6 ones beside them where the machine has IPv6.
    let has_ipv6 =
        std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|t| !t.trim().is_empty());
    let expected = if has_ipv6 { 4 } else { 2 };
    let lines = sidecar.ready(expected).await;
    assert_eq!(lines.len(), expected, "{lines:?}");
    for line in &lines {
        assert!(line.contains("protocol=\"transparent\""), "{line}");
    }

    for port in [in_port, out_port] {
        let mut direct = TcpStream::connect(loopback(port)).await.unwrap();
        let _ = direct.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut reply = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), direct.read_to_end(&mut reply)).await;
        assert!(
            read.is_ok(),
            "a direct connection to {port} is closed, not held"
        );
        assert!(
            reply.is_empty(),
            "nothing is relayed for a direct connection: {reply:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sidecar.stderr().contains("not redirected by iptables") {
        assert!(
            Instant::now() < deadline,
            "no warning; stderr:\n{}",
            sidecar.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sidecar.running(), "the sidecar keeps serving");
    sidecar.signal("TERM");
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());
}

fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// Under any uid but the one init-iptables exempts, the sidecar's own connections would be redirected back
/// into it; it refuses to start instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_refuses_to_run_under_the_wrong_uid() {
    let (in_port, out_port) = (free_port(), free_port());
    let other_uid = (own_uid() + 1).to_string();
    let (in_arg, out_arg) = (in_port.to_string(), out_port.to_string());
    let args = [
        "--proxy-in-bind",
        "127.0.0.1",
        "--proxy-in-port",
        &in_arg,
        "--proxy-out-port",
        &out_arg,
        "--proxy-uid",
        &other_uid,
    ];
    let mut sidecar = Sidecar::spawn(&args, &[]);
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "stderr:\n{}", sidecar.stderr());
    assert_eq!(
        sidecar.stderr(),
        format!(
            "sidecar-proxy: transparent mode must run as uid {other_uid} (--proxy-uid / PROXY_UID), the uid init-iptables exempts, but runs as uid {}; its own connections would be redirected back into it. Transparent mode is for a pod whose init container set up iptables (sidecar-injector adds both); to try the sidecar here without root, run an inline mode, e.g. sidecar-proxy --proxy-type dual --proxy-protocol tcp:http --proxy-port 8080\n",
            own_uid()
        )
    );
    assert_refused(loopback(in_port)).await;
}

/// A value clap refuses that came from an environment variable is named by the variable, not by a flag
/// nobody passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_environment_value_names_its_variable() {
    let mut sidecar = Sidecar::spawn(
        &["--proxy-type", "reverse"],
        &[("PROXY_CAPTURE_PAYLOAD", "1")],
    );
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "stderr:\n{}", sidecar.stderr());
    let stderr = sidecar.stderr();
    assert!(
        stderr.starts_with(
            "error: invalid value '1' in environment variable PROXY_CAPTURE_PAYLOAD (the variable of '--capture-payload')\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: true, false]"),
        "{stderr}"
    );
}

/// `--port`, the flag newcomers guess, gets a tip naming the port settings rather than clap's nearest
/// spelling (`--proxy-type`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_port_flag_gets_a_tip_naming_the_port_settings() {
    let mut sidecar = Sidecar::spawn(&["--port", "8080"], &[]);
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "stderr:\n{}", sidecar.stderr());
    let stderr = sidecar.stderr();
    assert!(
        stderr.starts_with("error: unexpected argument '--port' found\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("tip: the app's port is --proxy-port (PROXY_PORT); the ports the sidecar listens on are --proxy-in-port and --proxy-out-port\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("--proxy-type'"), "{stderr}");
}

/// The admin port on a listener's port is refused at start, naming both settings, instead of one of the
/// two failing with "address in use".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_port_on_a_listeners_port_is_refused_naming_both() {
    let port = free_port().to_string();
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-type",
            "reverse",
            "--proxy-in-bind",
            "127.0.0.1",
            "--proxy-in-port",
            &port,
        ],
        &[("PROXY_ADMIN_PORT", &port)],
    );
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "stderr:\n{}", sidecar.stderr());
    assert_eq!(
        sidecar.stderr(),
        format!("sidecar-proxy: PROXY_ADMIN_PORT {port} is also the inbound listener's port: the admin port (health, readiness, metrics) needs a port of its own; set --admin-port / PROXY_ADMIN_PORT to another one, or move the inbound listener (--proxy-in-port)\n")
    );
}

/// A setting the mode has no use for is warned about, named as given, and the sidecar still starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_the_mode_ignores_is_warned_about() {
    let out_port = free_port().to_string();
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-type",
            "forward",
            "--proxy-protocol",
            "http",
            "--proxy-out-port",
            &out_port,
        ],
        &[("PROXY_PORT", "8080")],
    );
    sidecar.ready(1).await;
    assert!(
        sidecar.stderr().contains(
            "PROXY_PORT \"8080\" is ignored: a forward proxy has no app behind it (the app's address is for reverse and dual)"
        ),
        "{}",
        sidecar.stderr()
    );
}

/// The listeners take a burst of connects while the sidecar is busy: their listen backlog is 1024, not the
/// 128 tokio asks for by default (a larger burst overflowed it and, with SYN cookies, left clients
/// connected to nothing). Read with `ss`, whose Send-Q of a listening socket is its backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listeners_backlog_takes_a_burst() {
    let in_port = free_port().to_string();
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-type",
            "reverse",
            "--proxy-in-bind",
            "127.0.0.1",
            "--proxy-in-port",
            &in_port,
        ],
        &[],
    );
    sidecar.ready(1).await;
    let output = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{in_port}")])
        .output()
        .expect("run ss (iproute2)");
    let listing = String::from_utf8_lossy(&output.stdout);
    let backlog: Vec<&str> = listing
        .lines()
        .filter_map(|line| line.split_whitespace().nth(2))
        .collect();
    assert_eq!(backlog, ["1024"], "{listing}");
}

/// The start-up log says where records go and how to read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_log_names_the_capture_file() {
    let capture = std::env::temp_dir().join(format!("sidecar-lifecycle-{}.jsonl", free_port()));
    let capture = capture.to_str().unwrap().to_owned();
    let out_port = free_port().to_string();
    let mut sidecar = Sidecar::spawn(
        &["--proxy-type", "forward", "--proxy-out-port", &out_port],
        &[("PROXY_CAPTURE", &capture)],
    );
    sidecar.ready(1).await;
    let stderr = sidecar.stderr();
    let _ = std::fs::remove_file(&capture);
    assert!(
        stderr.contains(&format!(
            "capturing to a file; read it with: sidecar-proxy capture show {capture}"
        )),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------------
// Where settings come from
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_downward_api_annotations_file_configures_a_dual_tcp_http_proxy() {
    let app = start_app().await;
    let (in_port, out_port) = (free_port(), free_port());
    // As the kubelet writes it: Go-quoted values, annotations of other owners alongside.
    let file = TempFile::new(
        "dual",
        &format!(
            "kubectl.kubernetes.io/last-applied-configuration=\"{{\\\"kind\\\":\\\"Pod\\\"}}\\n\"\n\
             kubernetes.io/config.seen=\"2026-11-26T10:00:00.000000000Z\"\n\
             sidecar.speedscale.com/inject=\"true\"\n\
             sidecar.speedscale.com/proxy-host=\"127.0.0.1\"\n\
             sidecar.speedscale.com/proxy-in-port=\"{in_port}\"\n\
             sidecar.speedscale.com/proxy-out-port=\"{out_port}\"\n\
             sidecar.speedscale.com/proxy-port=\"{}\"\n\
             sidecar.speedscale.com/proxy-protocol=\"tcp:http\"\n\
             sidecar.speedscale.com/proxy-type=\"dual\"\n",
            app.addr.port()
        ),
    );
    let mut sidecar = Sidecar::spawn(
        &["--proxy-in-bind", "127.0.0.1", "--annotations", file.path()],
        &[],
    );
    let lines = sidecar.ready(2).await;
    assert!(
        lines[0].contains("direction=\"inbound\" protocol=\"tcp\""),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("direction=\"outbound\" protocol=\"http\""),
        "{lines:?}"
    );

    // Inbound tcp: opaque bytes to the app.
    let reply = http_exchange(loopback(in_port), origin_form("/via-inbound")).await;
    assert_reached_app(&reply, "/via-inbound");
    // Outbound http: an absolute-form request for any destination.
    let reply = http_exchange(loopback(out_port), absolute_form(app.addr, "/via-outbound")).await;
    assert_reached_app(&reply, "/via-outbound");
    assert_eq!(app.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flag_beats_the_environment() {
    let app = start_app().await;
    let (in_port, out_port, nowhere) = (free_port(), free_port(), free_port());
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-in-bind",
            "127.0.0.1",
            "--proxy-type",
            "reverse",
            "--proxy-protocol",
            "tcp",
            "--proxy-host",
            "127.0.0.1",
            "--proxy-port",
            &app.addr.port().to_string(),
            "--proxy-in-port",
            &in_port.to_string(),
        ],
        &[
            ("PROXY_TYPE", "forward"),
            ("PROXY_PROTOCOL", "socks"),
            ("PROXY_PORT", &nowhere.to_string()),
            ("PROXY_OUT_PORT", &out_port.to_string()),
        ],
    );
    let lines = sidecar.ready(1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!(
            "direction=\"inbound\" protocol=\"tcp\" target=127.0.0.1:{}",
            app.addr.port()
        )),
        "{lines:?}"
    );
    let reply = http_exchange(loopback(in_port), origin_form("/flag-won")).await;
    assert_reached_app(&reply, "/flag-won");
    assert_refused(loopback(out_port)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_beats_the_annotations_file() {
    let app = start_app().await;
    let (in_port, nowhere) = (free_port(), free_port());
    let file = TempFile::new(
        "env-wins",
        &format!(
            "sidecar.speedscale.com/proxy-type=\"reverse\"\n\
             sidecar.speedscale.com/proxy-protocol=\"tcp\"\n\
             sidecar.speedscale.com/proxy-host=\"127.0.0.1\"\n\
             sidecar.speedscale.com/proxy-port=\"{nowhere}\"\n"
        ),
    );
    let mut sidecar = Sidecar::spawn(
        &["--proxy-in-bind", "127.0.0.1"],
        &[
            ("PROXY_ANNOTATIONS", file.path()),
            ("PROXY_PORT", &app.addr.port().to_string()),
            ("PROXY_IN_PORT", &in_port.to_string()),
        ],
    );
    sidecar.ready(1).await;
    let reply = http_exchange(loopback(in_port), origin_form("/env-won")).await;
    assert_reached_app(&reply, "/env-won");
}

// ---------------------------------------------------------------------------------------------------
// Start-up: one info line per listener
// ---------------------------------------------------------------------------------------------------

#[rstest]
#[case::reverse_http("reverse", "http", &[("inbound", "http", true)])]
#[case::forward_socks("forward", "socks", &[("outbound", "socks", false)])]
#[case::dual_tcp_socks("dual", "tcp:socks", &[("inbound", "tcp", true), ("outbound", "socks", false)])]
#[case::dual_http("dual", "http", &[("inbound", "http", true), ("outbound", "http", false)])]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_info_line_per_listener(
    #[case] proxy_type: &str,
    #[case] protocol: &str,
    #[case] listeners: &[(&str, &str, bool)],
) {
    let (in_port, out_port, app_port) = (free_port(), free_port(), free_port());
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-in-bind",
            "127.0.0.1",
            "--proxy-type",
            proxy_type,
            "--proxy-protocol",
            protocol,
            "--proxy-host",
            "127.0.0.1",
            "--proxy-port",
            &app_port.to_string(),
            "--proxy-in-port",
            &in_port.to_string(),
            "--proxy-out-port",
            &out_port.to_string(),
        ],
        &[],
    );
    sidecar.ready(listeners.len()).await;
    sidecar.signal("TERM");
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());

    let lines = sidecar.listening_lines();
    assert_eq!(lines.len(), listeners.len(), "{lines:?}");
    for (line, (direction, protocol, inbound)) in lines.iter().zip(listeners) {
        let (port, target) = if *inbound {
            (in_port, format!("target=127.0.0.1:{app_port}"))
        } else {
            (out_port, "target=\"as requested by the client\"".to_owned())
        };
        for part in [
            " INFO ".to_owned(),
            format!("listening address=127.0.0.1:{port} "),
            format!("direction=\"{direction}\" "),
            format!("protocol=\"{protocol}\" "),
        ] {
            assert!(line.contains(&part), "{part:?} missing from {line:?}");
        }
        assert!(line.ends_with(&target), "{target:?} missing from {line:?}");
    }
    assert!(
        sidecar
            .stderr()
            .contains("a second SIGTERM exits at once signal=\"SIGTERM\""),
        "{}",
        sidecar.stderr()
    );
}

// ---------------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------------

const BIG: u64 = 64 * 1024 * 1024;
const FIRST_READ: usize = 1024 * 1024;

/// A download of `/bytes/BIG` through the proxy, read only as far as the test asks.
struct Download {
    stream: TcpStream,
    hasher: Sha256,
    received: u64,
    content_length: u64,
}

impl Download {
    async fn start(addr: SocketAddr, request: String) -> Download {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        // The head, byte by byte, so no body byte is consumed with it.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.unwrap();
            assert_eq!(
                n,
                1,
                "closed inside the head: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        let content_length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<u64>().unwrap())
            })
            .unwrap_or_else(|| panic!("no content-length in {head}"));
        Download {
            stream,
            hasher: Sha256::new(),
            received: 0,
            content_length,
        }
    }

    /// Reads up to `limit` more body bytes; stops early at EOF or a reset.
    async fn read(&mut self, limit: u64) {
        let mut buf = vec![0u8; 64 * 1024];
        let goal = self.received + limit;
        while self.received < goal {
            let want = buf.len().min((goal - self.received) as usize);
            match self.stream.read(&mut buf[..want]).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    self.hasher.update(&buf[..n]);
                    self.received += n as u64;
                }
            }
        }
    }

    fn sha256(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

enum Mode {
    ReverseTcp,
    ReverseHttp,
    ForwardHttp,
}

/// Starts a sidecar for `mode` in front of `app`; returns it and the listener port the download uses.
async fn sidecar_for(mode: &Mode, app: SocketAddr, grace: &str) -> (Sidecar, u16) {
    let port = free_port();
    let (proxy_type, protocol, port_flag) = match mode {
        Mode::ReverseTcp => ("reverse", "tcp", "--proxy-in-port"),
        Mode::ReverseHttp => ("reverse", "http", "--proxy-in-port"),
        Mode::ForwardHttp => ("forward", "http", "--proxy-out-port"),
    };
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-in-bind",
            "127.0.0.1",
            "--proxy-type",
            proxy_type,
            "--proxy-protocol",
            protocol,
            "--proxy-host",
            "127.0.0.1",
            "--proxy-port",
            &app.port().to_string(),
            port_flag,
            &port.to_string(),
            "--shutdown-grace",
            grace,
            // No drain: these tests are about what follows it (proxy/tests/capture/drain.rs tests the drain).
            "--drain-duration",
            "0s",
        ],
        &[],
    );
    sidecar.ready(1).await;
    (sidecar, port)
}

fn download_request(mode: &Mode, app: SocketAddr) -> String {
    let path = format!("/bytes/{BIG}");
    match mode {
        Mode::ReverseTcp | Mode::ReverseHttp => origin_form(&path),
        Mode::ForwardHttp => absolute_form(app, &path),
    }
}

/// SIGTERM while a large download is in flight, with no drain: the listener closes at once, the download
/// completes byte for byte, and the process exits 0 when it is done (long before the grace period).
#[rstest]
#[case::reverse_tcp(Mode::ReverseTcp)]
#[case::reverse_http(Mode::ReverseHttp)]
#[case::forward_http(Mode::ForwardHttp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_inflight_transfer_finish(#[case] mode: Mode) {
    let app = start_app().await;
    let (mut sidecar, port) = sidecar_for(&mode, app.addr, "120s").await;
    let listener = loopback(port);

    let mut download = Download::start(listener, download_request(&mode, app.addr)).await;
    assert_eq!(download.content_length, BIG);
    download.read(FIRST_READ as u64).await;
    assert_eq!(download.received, FIRST_READ as u64);

    sidecar.signal("TERM");
    // New connections are refused as soon as the signal is handled, while the download is still open.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(listener).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // A SYN racing the listener's close is reset rather than refused; look again.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("unexpected connect error: {e}"),
            Ok(_) => {
                assert!(
                    Instant::now() < deadline,
                    "still accepting 10s after SIGTERM; stderr:\n{}",
                    sidecar.stderr()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(
        sidecar.running(),
        "exited with a transfer in flight; stderr:\n{}",
        sidecar.stderr()
    );

    download.read(u64::MAX / 2).await;
    assert_eq!(download.received, BIG, "stderr:\n{}", sidecar.stderr());
    assert_eq!(download.sha256(), pattern_sha256(BIG));
    drop(download);

    // Done: the process exits by itself, well inside the 120s grace period.
    let status = sidecar.exit_within(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());
    let stderr = sidecar.stderr();
    assert!(
        stderr.contains("a second SIGTERM exits at once signal=\"SIGTERM\""),
        "{stderr}"
    );
    assert!(!stderr.contains("grace period over"), "{stderr}");
}

/// A transfer that outlives `--shutdown-grace` does not keep the sidecar up: exit 0 after the grace
/// period, the transfer cut short.
#[rstest]
#[case::reverse_tcp(Mode::ReverseTcp)]
#[case::reverse_http(Mode::ReverseHttp)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_a_stuck_transfer(#[case] mode: Mode) {
    let app = start_app().await;
    let (mut sidecar, port) = sidecar_for(&mode, app.addr, "1s").await;
    let mut download = Download::start(loopback(port), download_request(&mode, app.addr)).await;
    download.read(FIRST_READ as u64).await;

    // The client stops reading: the transfer cannot finish by itself.
    let signalled = Instant::now();
    sidecar.signal("TERM");
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    let waited = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());
    assert!(
        waited >= Duration::from_millis(900),
        "exited after {waited:?}, before the 1s grace period"
    );
    assert!(
        sidecar.stderr().contains("grace period over"),
        "{}",
        sidecar.stderr()
    );

    // What was buffered still drains, then the connection ends short of the full body.
    tokio::time::timeout(Duration::from_secs(30), download.read(u64::MAX / 2))
        .await
        .expect("the connection is closed once the sidecar is gone");
    assert!(download.received < BIG, "received all {BIG} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_it_with_exit_0() {
    let app = start_app().await;
    let (mut sidecar, port) = sidecar_for(&Mode::ReverseTcp, app.addr, "10s").await;
    let reply = http_exchange(loopback(port), origin_form("/before-sigint")).await;
    assert_reached_app(&reply, "/before-sigint");

    sidecar.signal("INT");
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());
    assert!(
        sidecar.stderr().contains("shutting down: not ready from now; serving on for up to 0s (--drain-duration), then open connections get up to 10s to finish (--shutdown-grace); a second SIGINT exits at once signal=\"SIGINT\""),
        "{}",
        sidecar.stderr()
    );
    assert_refused(loopback(port)).await;
}

/// `wait-ready`, the sidecar container's postStart hook: it returns once the sidecar serves `/readyz`,
/// started before the sidecar as the kubelet may run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_returns_once_the_sidecar_is_ready() {
    let admin_port = free_port().to_string();
    let waiting = std::thread::spawn({
        let admin_port = admin_port.clone();
        move || {
            Command::new(BIN)
                .args([
                    "wait-ready",
                    "--admin-port",
                    &admin_port,
                    "--timeout",
                    "20s",
                ])
                .stdin(Stdio::null())
                .output()
                .expect("run wait-ready")
        }
    });
    // The hook polls while the sidecar is not up yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out_port = free_port().to_string();
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-type",
            "forward",
            "--proxy-protocol",
            "http",
            "--proxy-out-port",
            &out_port,
        ],
        &[("PROXY_ADMIN_PORT", &admin_port)],
    );
    sidecar.ready(1).await;
    let output = tokio::task::spawn_blocking(move || waiting.join().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "wait-ready failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_gives_up_with_one_line_when_nothing_answers() {
    let admin_port = free_port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "wait-ready",
                "--admin-port",
                &admin_port,
                "--timeout",
                "500ms",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run wait-ready")
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("/readyz did not answer 200 within 500ms; last try: nothing accepts connections there: is the sidecar running in this pod, and is its admin port"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------------
// Log forging: what a peer sends is escaped in the sidecar's log lines
// ---------------------------------------------------------------------------------------------------

/// A SOCKS5 client names a domain with CR, LF and ESC (a fake log line in red, were it written raw). Every
/// line the sidecar logs about it (the debug line of the request, the warning of the failed connect) shows
/// the name escaped, and its stderr holds no control byte from the peer, even at `RUST_LOG=debug`, where
/// the SOCKS library's own debug line would print the name raw (it stays off unless named).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_in_a_socks_domain_are_escaped_in_the_log() {
    let out_port = free_port();
    let mut sidecar = Sidecar::spawn(
        &[
            "--proxy-type",
            "forward",
            "--proxy-protocol",
            "socks",
            "--proxy-out-port",
            &out_port.to_string(),
            "--connect-timeout",
            "2s",
        ],
        &[("RUST_LOG", "debug")],
    );
    sidecar.ready(1).await;

    let domain = b"evil\r\n\x1b[31mFAKE ERROR forged line";
    let mut socks = TcpStream::connect(loopback(out_port)).await.unwrap();
    socks.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    socks.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    let mut request = vec![5, 1, 0, 3, domain.len() as u8];
    request.extend_from_slice(domain);
    request.extend_from_slice(&80u16.to_be_bytes());
    socks.write_all(&request).await.unwrap();
    let mut reply = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(30), socks.read_exact(&mut reply))
        .await
        .expect("a SOCKS reply within 30s")
        .unwrap();
    assert_eq!(reply[0], 5);
    assert_ne!(reply[1], 0, "the connect cannot have succeeded");

    sidecar.signal("TERM");
    let status = sidecar.exit_within(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", sidecar.stderr());
    let stderr = sidecar.stderr();
    let escaped = r"evil\r\n\x1b[31mFAKE ERROR forged line";
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|line| line.contains(" WARN ")
            && line.contains("SOCKS CONNECT failed")
            && line.contains(escaped)),
        "no warning naming {escaped:?}:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.contains(" DEBUG ")
                && line.contains(&format!("requested={escaped}:80"))),
        "no debug line naming {escaped:?}:\n{stderr}"
    );
    assert!(
        lines
            .iter()
            .filter(|line| line.contains("FAKE ERROR"))
            .all(|line| line.contains(escaped)),
        "a line the peer wrote:\n{stderr}"
    );
    let raw = sidecar.stderr_bytes();
    for control in [b'\r', 0x1b] {
        assert!(
            !raw.contains(&control),
            "a raw 0x{control:02x} in the log:\n{stderr:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------
// A huge bad value is quoted by its beginning only
// ---------------------------------------------------------------------------------------------------

/// A 100 KB bad value (about the most one argument or variable may hold) in a flag clap refuses, in an
/// environment variable, in an option the sidecar refuses itself, and as an unknown flag: the refusal is
/// one short message that names the flag and the value's length, never the whole value.
#[rstest]
#[case::flag_clap_refuses(&["--handshake-timeout", "{huge}"], &[], "--handshake-timeout")]
#[case::environment_variable(&[], &[("PROXY_CAPTURE_QUEUE", "{huge}")], "--capture-queue")]
#[case::option_the_sidecar_refuses(&["--proxy-type", "reverse", "--capture-redact", "{huge}"], &[], "--capture-redact")]
#[case::unknown_flag(&["--{huge}"], &[], "unexpected argument")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_bad_value_is_not_echoed_whole(
    #[case] args: &[&str],
    #[case] env: &[(&str, &str)],
    #[case] named: &str,
) {
    const HUGE: usize = 100_000;
    // Digits for the numeric option, spaces inside for the header list: each is refused for its content.
    let huge = if named == "--capture-redact" {
        "bad name ".repeat(HUGE / 9)
    } else {
        "9".repeat(HUGE)
    };
    let args: Vec<String> = args.iter().map(|a| a.replace("{huge}", &huge)).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.replace("{huge}", &huge)))
        .collect();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(BIN);
        remove_proxy_vars(&mut command);
        command
            .env("PROXY_CAPTURE", "off")
            .envs(env)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run sidecar-proxy")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.len() < 1500,
        "{} bytes of stderr: {}",
        stderr.len(),
        &stderr[..2000.min(stderr.len())]
    );
    assert!(stderr.contains(named), "{stderr}");
    // The value's length (give or take the flag's dashes or trimmed blanks), in place of its end.
    let length = quoted_length(&stderr);
    assert!(
        length.is_some_and(|n| n.abs_diff(HUGE) < 10),
        "the length is given: {stderr}"
    );
}

/// The number before the first " bytes" in `text`.
fn quoted_length(text: &str) -> Option<usize> {
    let before = &text[..text.find(" bytes")?];
    let digits = before.len() - before.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    before[before.len() - digits..].parse().ok()
}

/// `wait-before-stop`, the classic sidecar's preStop hook: it returns 0 once its time is up, and refuses a
/// value that is not a duration with one line naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_before_stop_waits_then_returns_and_refuses_a_bad_duration() {
    let run = |wait: &'static str| {
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let output = Command::new(BIN)
                .args(["wait-before-stop", "--for", wait])
                .stdin(Stdio::null())
                .output()
                .expect("run wait-before-stop");
            (output, started.elapsed())
        })
    };
    let (output, took) = run("300ms").await.unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}"
    );

    let (output, _) = run("10").await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--for")
            && stderr.contains("allowed values are durations from 0s to 1h, like 10s or 1m"),
        "{stderr}"
    );
}
