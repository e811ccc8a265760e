//! Capture under test: the sidecar in-process with a capture sink writing to a fresh temporary file, a
//! strict reader for the JSON lines it writes, a bare HTTP/1.1 client whose bytes on the wire are exactly
//! what a record is checked against, and the real binary as a subprocess.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sidecar_proxy::capture::record::{Record, SCHEMA};
use sidecar_proxy::capture::{
    CaptureSettings, CaptureSink, CaptureWriter, Destination, SinkOptions,
};
use sidecar_proxy::metrics::Metrics;
use sidecar_proxy::options::RuntimeOptions;
use sidecar_proxy::server::Services;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::env::remove_proxy_vars;
use super::proxy::{start_proxy_serving, start_proxy_with_services, RunningProxy};

/// A path in the temporary directory no other test (or test process) uses.
pub fn temp_path(tag: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "sidecar-capture-test-{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The records of one in-process proxy: read once the proxy has stopped and the writer has flushed.
pub struct CaptureLog {
    pub path: PathBuf,
    pub metrics: Arc<Metrics>,
    writer: Option<CaptureWriter>,
}

impl CaptureLog {
    /// Stops the proxy (open connections get its grace period), flushes the writer, and parses every line.
    pub async fn records(mut self, proxy: RunningProxy) -> Vec<Record> {
        self.stop(proxy).await;
        let text = std::fs::read_to_string(&self.path).expect("read the capture file");
        parse_records(&text)
    }

    /// Stops the proxy and flushes the writer, without reading the destination.
    pub async fn stop(&mut self, proxy: RunningProxy) {
        proxy.stop().await;
        if let Some(writer) = self.writer.take() {
            tokio::time::timeout(Duration::from_secs(30), writer.finish())
                .await
                .expect("the capture writer flushes");
        }
    }
}

impl Drop for CaptureLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts the sidecar (`proxy_type`/`protocol` as a user writes them, reverse traffic to `app`) with capture
/// to a fresh temporary file; `adjust` changes the capture settings from their defaults.
pub async fn start_capturing_proxy(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    adjust: impl FnOnce(&mut CaptureSettings),
) -> (RunningProxy, CaptureLog) {
    start_capturing_proxy_with(proxy_type, protocol, app, |services| {
        let mut settings = CaptureSettings::default();
        adjust(&mut settings);
        services.capture_settings = Arc::new(settings);
    })
    .await
}

/// [`start_capturing_proxy`] with the services (capture settings, tls-out) as `adjust` leaves them.
pub async fn start_capturing_proxy_with(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    adjust: impl FnOnce(&mut Services),
) -> (RunningProxy, CaptureLog) {
    start_capturing_proxy_serving(proxy_type, protocol, app, adjust, |_| {}).await
}

/// [`start_capturing_proxy_with`], with the runtime options (limits, timeouts) as `options` leaves them.
pub async fn start_capturing_proxy_serving(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    adjust: impl FnOnce(&mut Services),
    adjust_options: impl FnOnce(&mut RuntimeOptions),
) -> (RunningProxy, CaptureLog) {
    let path = temp_path("records.jsonl");
    let options = SinkOptions {
        destination: Destination::File(path.clone()),
        queue_capacity: 1024,
        rotation: None,
        nats: None,
    };
    let metrics = Arc::new(Metrics::new());
    let (sink, writer) =
        CaptureSink::start(&options, metrics.clone()).expect("start the capture writer");
    let mut services = Services {
        capture: sink,
        metrics: metrics.clone(),
        ..Services::default()
    };
    adjust(&mut services);
    let proxy = start_proxy_serving(proxy_type, protocol, app, services, adjust_options).await;
    let log = CaptureLog {
        path,
        metrics,
        writer,
    };
    (proxy, log)
}

/// Starts the sidecar recording into `sink`, counting into `metrics`.
pub async fn start_proxy_with_sink(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    sink: CaptureSink,
    metrics: Arc<Metrics>,
    adjust: impl FnOnce(&mut CaptureSettings),
) -> RunningProxy {
    let mut settings = CaptureSettings::default();
    adjust(&mut settings);
    let services = Services {
        capture: sink,
        capture_settings: Arc::new(settings),
        metrics,
        tls_out: None,
        mock: None,
    };
    start_proxy_with_services(proxy_type, protocol, app, services).await
}

/// Parses JSON lines strictly: every line one JSON object of schema v1, which reads as a [`Record`] and
/// writes back to exactly the same object (no field unknown to the schema, none lost).
pub fn parse_records(text: &str) -> Vec<Record> {
    if !text.is_empty() {
        assert!(text.ends_with('\n'), "the last record is cut off: {text:?}");
    }
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON value ({e}): {line}"));
            let object = value
                .as_object()
                .unwrap_or_else(|| panic!("not a JSON object: {line}"));
            assert_eq!(
                object.get("schema"),
                Some(&serde_json::json!(SCHEMA)),
                "{line}"
            );
            let record: Record = serde_json::from_value(value.clone())
                .unwrap_or_else(|e| panic!("not a capture record ({e}): {line}"));
            assert_eq!(
                serde_json::to_value(&record).unwrap(),
                value,
                "the line has fields the schema does not: {line}"
            );
            record
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// A bare HTTP/1.1 client: the exact request bytes, the response as it came off the wire
// ---------------------------------------------------------------------------------------------------

/// A response as the client received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub status: u16,
    /// `HTTP/1.1` as on the status line.
    pub version: String,
    /// Names lower-cased, values as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One client connection speaking HTTP/1.1 over any stream (a socket, a tunnel, a SOCKS stream).
pub struct RawHttp<S> {
    stream: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawHttp<S> {
    pub fn new(stream: S) -> Self {
        RawHttp {
            stream: BufReader::new(stream),
        }
    }

    /// Sends `request` as is and reads one whole response.
    pub async fn exchange(&mut self, request: &[u8]) -> std::io::Result<Received> {
        self.send(request).await?;
        self.read_response().await
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes).await?;
        self.stream.get_mut().flush().await
    }

    pub async fn read_response(&mut self) -> std::io::Result<Received> {
        let status_line = self.line().await?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_owned();
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut received = Received {
            status,
            version,
            headers,
            body: Vec::new(),
        };
        if let Some(length) = received.header("content-length") {
            let length: usize = length.parse().map_err(|_| bad("bad content-length"))?;
            received.body = vec![0; length];
            self.stream.read_exact(&mut received.body).await?;
        } else if received.header("transfer-encoding") == Some("chunked") {
            loop {
                let size_line = self.line().await?;
                let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
                let mut chunk = vec![0; size];
                self.stream.read_exact(&mut chunk).await?;
                received.body.extend_from_slice(&chunk);
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let end = self.line().await?;
                if !end.is_empty() {
                    return Err(bad("chunk not followed by CRLF"));
                }
            }
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            self.stream.read_to_end(&mut received.body).await?;
        }
        Ok(received)
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    pub fn into_inner(self) -> S {
        self.stream.into_inner()
    }
}

fn bad(message: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.into())
}

/// Opens a CONNECT tunnel to `target` through the forward proxy at `proxy`.
pub async fn connect_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "tunnel answer cut off"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

// ---------------------------------------------------------------------------------------------------
// Upstreams for streams: exact byte counts each way
// ---------------------------------------------------------------------------------------------------

/// A TCP server that reads everything the client sends until its half-close, then answers `reply` and
/// closes. Byte counts differ each way, so a swapped direction shows.
pub async fn start_reply_after_eof(reply: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A server that speaks first (an SMTP-like banner), then reads until the client's half-close and closes.
pub async fn start_banner_server(banner: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(banner).await;
                let mut sink = Vec::new();
                let _ = stream.read_to_end(&mut sink).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An HTTP/1.1 upstream answering every request (keep-alive) with exactly `response`.
pub async fn start_fixed_responder(response: &'static [u8]) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    // Request heads only (no bodies): read up to the empty line.
                    loop {
                        line.clear();
                        match stream.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if stream.get_mut().write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------------------------------

pub const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// A loopback port nothing listens on (bound by the OS, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary as a reverse http proxy to `app` on loopback, killed when dropped.
pub struct Sidecar {
    child: Child,
    pub inbound: SocketAddr,
    /// The outbound (forward) listener.
    pub outbound: SocketAddr,
    /// The admin listener (`/metrics`, `/readyz`).
    pub admin: SocketAddr,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

/// Whether process `pid` holds a listening TCP socket on `port` of this network namespace: the socket's
/// inode, from /proc/net/tcp and tcp6, is among the process's descriptors.
fn listens_on(pid: u32, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    let listening = u16::from_str_radix(local_port, 16).ok()? == port
                        && *fields.get(3)? == LISTEN;
                    if !listening {
                        return None;
                    }
                    Some(format!("socket:[{}]", fields.get(9)?))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let Ok(descriptors) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    descriptors
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .any(|target| {
            inodes
                .iter()
                .any(|inode| target.to_string_lossy() == *inode)
        })
}

impl Sidecar {
    /// Starts `sidecar-proxy --proxy-type reverse --proxy-protocol http` with `capture_args`, in `cwd`,
    /// and waits until the inbound port accepts connections.
    pub async fn reverse_http(app: SocketAddr, capture_args: &[&str], cwd: &Path) -> Sidecar {
        Sidecar::reverse("http", app, capture_args, cwd).await
    }

    /// Starts `sidecar-proxy --proxy-type reverse --proxy-protocol <protocol>` with `extra_args` (which may
    /// set `--shutdown-grace`; 10s otherwise), in `cwd`, and waits until the inbound port accepts.
    pub async fn reverse(
        protocol: &str,
        app: SocketAddr,
        extra_args: &[&str],
        cwd: &Path,
    ) -> Sidecar {
        Sidecar::reverse_under(&[], protocol, app, extra_args, cwd).await
    }

    /// Like [`Sidecar::reverse`], run by `launcher` (a command that execs the rest of its arguments, such as
    /// `prlimit --nofile=64 --`), so the process is still the sidecar itself.
    pub async fn reverse_under(
        launcher: &[&str],
        protocol: &str,
        app: SocketAddr,
        extra_args: &[&str],
        cwd: &Path,
    ) -> Sidecar {
        let app_port = app.port().to_string();
        let mode = [
            "--proxy-type",
            "reverse",
            "--proxy-protocol",
            protocol,
            "--proxy-host",
            "127.0.0.1",
            "--proxy-port",
            &app_port,
        ];
        Sidecar::start(launcher, &mode, extra_args, cwd).await
    }

    /// Starts `sidecar-proxy --proxy-type forward --proxy-protocol <protocol>` with `extra_args`, in `cwd`,
    /// and waits until the outbound port (`outbound`) accepts connections.
    pub async fn forward(protocol: &str, extra_args: &[&str], cwd: &Path) -> Sidecar {
        let mode = ["--proxy-type", "forward", "--proxy-protocol", protocol];
        Sidecar::start(&[], &mode, extra_args, cwd).await
    }

    /// Starts `sidecar-proxy --proxy-type dual --proxy-protocol http` in front of `app` with `extra_args`,
    /// in `cwd`, and waits until the inbound port accepts connections.
    pub async fn dual_http(app: SocketAddr, extra_args: &[&str], cwd: &Path) -> Sidecar {
        let app_port = app.port().to_string();
        let mode = [
            "--proxy-type",
            "dual",
            "--proxy-protocol",
            "http",
            "--proxy-host",
            "127.0.0.1",
            "--proxy-port",
            &app_port,
        ];
        Sidecar::start(&[], &mode, extra_args, cwd).await
    }

    /// Starts the sidecar with ports from [`free_port`], retrying with new ones when another test took one
    /// of them between its choice and the sidecar's bind (the sidecar then exits: "address in use").
    async fn start(launcher: &[&str], mode: &[&str], extra_args: &[&str], cwd: &Path) -> Sidecar {
        for _ in 0..4 {
            if let Some(sidecar) = Sidecar::try_start(launcher, mode, extra_args, cwd).await {
                return sidecar;
            }
        }
        panic!("the sidecar lost its ports to other listeners four times in a row");
    }

    /// One start: `None` when a port was taken by another listener before the sidecar bound it.
    async fn try_start(
        launcher: &[&str],
        mode: &[&str],
        extra_args: &[&str],
        cwd: &Path,
    ) -> Option<Sidecar> {
        let in_port = free_port();
        let out_port = free_port();
        let admin_port = free_port();
        let grace: &[&str] = if extra_args.contains(&"--shutdown-grace") {
            &[]
        } else {
            &["--shutdown-grace", "10s"]
        };
        // Absolute, because the child runs in `cwd`: Cargo gives an absolute path, Bazel a relative one.
        let binary = std::fs::canonicalize(BIN).expect("the sidecar-proxy binary exists");
        let mut command = match launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        remove_proxy_vars(&mut command);
        let forward = mode.contains(&"forward");
        if !forward {
            command
                .args(["--proxy-in-bind", "127.0.0.1", "--proxy-in-port"])
                .arg(in_port.to_string());
        }
        // Only the ports of listeners the mode has: the sidecar warns about the others, and the flood tests
        // count its warnings.
        if !mode.contains(&"reverse") {
            command
                .args(["--proxy-out-bind", "127.0.0.1", "--proxy-out-port"])
                .arg(out_port.to_string());
        }
        command
            .env("RUST_LOG", "info")
            .args(mode)
            .args(["--admin-bind", "127.0.0.1", "--admin-port"])
            .arg(admin_port.to_string())
            .args(grace)
            .args(extra_args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start sidecar-proxy");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        let mut sidecar = Sidecar {
            child,
            inbound: SocketAddr::from(([127, 0, 0, 1], in_port)),
            outbound: SocketAddr::from(([127, 0, 0, 1], out_port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            stdout,
            stderr,
            readers,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        // Under a launcher, the port is probed only once the launcher has exec'd the sidecar: a listener of
        // another test that took the same free port would otherwise answer for it, and the caller would
        // look at the launcher's process.
        let sidecar_exe = std::fs::canonicalize(BIN).expect("the sidecar-proxy binary exists");
        while !launcher.is_empty()
            && std::fs::read_link(format!("/proc/{}/exe", sidecar.child.id())).ok()
                != Some(sidecar_exe.clone())
        {
            if let Some(status) = sidecar.child.try_wait().unwrap() {
                panic!("sidecar exited ({status}); stderr:\n{}", sidecar.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "the launcher never started the sidecar"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let listening = if forward {
            sidecar.outbound
        } else {
            sidecar.inbound
        };
        // The port counts as ready once this very process listens on it: a listener of another test given
        // the same free port would otherwise answer for it, and the test would talk to a stranger.
        while !listens_on(sidecar.child.id(), listening.port()) {
            if let Some(status) = sidecar.child.try_wait().unwrap() {
                let stderr = sidecar.stderr();
                if stderr.contains("in use") {
                    return None;
                }
                panic!("sidecar exited ({status}); stderr:\n{stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "sidecar never listened; stderr:\n{}",
                sidecar.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // As before: one connection that proves the listener accepts (it is recorded like any other).
        while TcpStream::connect(listening).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "sidecar never accepted; stderr:\n{}",
                sidecar.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(sidecar)
    }

    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    /// The process id (the sidecar's own, also when started through a launcher that execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Sends a signal with `kill -<name> <pid>`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Waits for the process to exit (a bound far above the expected time), then for its output.
    pub async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    reader.join().unwrap();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sidecar still running; stderr:\n{}",
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

/// A fresh, empty directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = temp_path(tag);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
