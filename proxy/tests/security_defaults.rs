//! The sidecar's security defaults (docs/security.md), each proven against the real binary or the source:
//!
//! - the forward (outbound) listener binds loopback unless told otherwise, in every mode that has one
//!   (from another network namespace: open_proxy_netns.rs);
//! - the admin port serves /healthz, /readyz and /metrics and nothing else, and after traffic full of a
//!   distinctive secret, nothing it serves (nor the sidecar's log) contains that secret; metric labels
//!   come from a fixed vocabulary, never from traffic;
//! - capture files, rotated ones included, are created 0600 even under umask 0000;
//! - no crate of the workspace contains `unsafe` (SO_ORIGINAL_DST is read through socket2's safe API),
//!   and every crate root forbids it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;

use support::admin::{get, parse_openmetrics, request};
use support::capture::{connect_tunnel, free_port, parse_records, RawHttp, TempDir, BIN};
use support::env::remove_proxy_vars;
use support::start_app;

// ---------------------------------------------------------------------------------------------------------
// The binary as a subprocess

/// `sidecar-proxy` with `args` and no inherited `PROXY_*` settings, its stderr kept; killed when dropped.
struct Process {
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    fn start(args: &[String]) -> Process {
        Process::spawn(Command::new(binary()), args)
    }

    /// Starts the binary from `sh`, after `umask 0000` and after creating `control` (whose mode then
    /// shows the umask the binary inherited).
    fn start_with_open_umask(control: &Path, args: &[String]) -> Process {
        let mut command = Command::new("sh");
        command
            .args(["-c", r#"umask 0000 && : > "$0" && exec "$@""#])
            .arg(control)
            .arg(binary());
        Process::spawn(command, args)
    }

    fn spawn(mut command: Command, args: &[String]) -> Process {
        remove_proxy_vars(&mut command);
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start sidecar-proxy");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Process {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until `addr` accepts connections.
    async fn wait_for(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).await.is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("sidecar exited ({status}); stderr:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "nothing listens on {addr}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the exit (every record flushed) and the end of its stderr.
    async fn stop(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.reader.take() {
                    reader.join().unwrap();
                }
                return status;
            }
            assert!(Instant::now() < deadline, "sidecar still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Absolute, because some children run from `sh`: Cargo gives an absolute path, Bazel a relative one.
fn binary() -> PathBuf {
    std::fs::canonicalize(BIN).expect("the sidecar-proxy binary exists")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The uid this test runs as, for transparent mode's `--proxy-uid` check.
fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

// ---------------------------------------------------------------------------------------------------------
// The forward listener binds loopback

/// The addresses the kernel has listening TCP sockets on for `port`, in this network namespace, from
/// /proc/net/tcp and /proc/net/tcp6 (so what is checked is the bound socket, not what the sidecar logs).
fn listening_addresses(port: u16) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for (table, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue; // No IPv6 in this kernel.
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ...; 0A is TCP_LISTEN.
            if fields.len() < 4 || fields[3] != "0A" {
                continue;
            }
            let (address, local_port) = fields[1].split_once(':').unwrap();
            if u16::from_str_radix(local_port, 16).unwrap() != port {
                continue;
            }
            found.push(parse_proc_address(address, v6));
        }
    }
    found
}

/// /proc/net/tcp* print an address as its 32-bit words, each in the machine's byte order.
fn parse_proc_address(hex: &str, v6: bool) -> IpAddr {
    let words: Vec<[u8; 4]> = (0..hex.len() / 8)
        .map(|i| {
            u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16)
                .unwrap()
                .to_ne_bytes()
        })
        .collect();
    let bytes: Vec<u8> = words.concat();
    if v6 {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap()))
    } else {
        IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap()))
    }
}

#[test]
fn proc_addresses_are_read_in_network_order() {
    let here = if cfg!(target_endian = "little") {
        ("0100007F", "00000000000000000000000001000000")
    } else {
        ("7F000001", "00000000000000000000000000000001")
    };
    assert_eq!(
        parse_proc_address(here.0, false),
        IpAddr::from([127, 0, 0, 1])
    );
    assert_eq!(
        parse_proc_address(here.1, true),
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    );
}

#[tokio::test]
async fn the_forward_listener_binds_only_loopback_unless_told_otherwise() {
    // Every mode with an outbound listener, with no bind address given: the binary's own default.
    let modes: &[&[&str]] = &[
        &["--proxy-type", "forward", "--proxy-protocol", "http"],
        &["--proxy-type", "forward", "--proxy-protocol", "socks"],
        &["--proxy-type", "dual", "--proxy-protocol", "tcp:http"],
        &["--proxy-type", "dual", "--proxy-protocol", "socks"],
        &["--proxy-type", "transparent"],
    ];
    for mode in modes {
        let (in_port, out_port) = (free_port(), free_port());
        let mut list = args(mode);
        list.extend(args(&["--proxy-host", "127.0.0.1", "--proxy-port"]));
        list.push(free_port().to_string());
        list.extend(args(&["--proxy-in-port", &in_port.to_string()]));
        list.extend(args(&["--proxy-out-port", &out_port.to_string()]));
        list.extend(args(&["--admin-bind", "127.0.0.1", "--admin-port"]));
        list.push(free_port().to_string());
        list.extend(args(&["--capture", "off"]));
        if mode.contains(&"transparent") {
            // The uid check is transparent mode's, not this test's: let it pass for whoever runs the test.
            list.extend(args(&["--proxy-uid", &own_uid().to_string()]));
        }
        let mut sidecar = Process::start(&list);
        sidecar.wait_for(loopback(out_port)).await;

        let outbound = listening_addresses(out_port);
        assert!(!outbound.is_empty(), "{mode:?}: no listener on {out_port}");
        assert!(
            outbound.iter().all(IpAddr::is_loopback),
            "{mode:?}: the forward listener is bound to {outbound:?}"
        );
        // The same probe sees a listener bound wider: the inbound one, on all addresses by design
        // (callers reach it on the pod IP). So the assertion above could fail.
        if !mode.contains(&"forward") {
            let inbound = listening_addresses(in_port);
            assert!(
                inbound.iter().any(IpAddr::is_unspecified),
                "{mode:?}: inbound on {inbound:?}"
            );
        }
        sidecar.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------------------
// The admin port exposes no captured data

/// A token no request would carry by chance, made only of characters valid in a host name, a path and a
/// header value, so one token can go everywhere.
fn canary(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("canary{tag}{}x{nanos}", std::process::id())
}

/// Every label a metric may have, and every value each may take: all fixed by the sidecar's code
/// (proxy/src/metrics.rs holds them as `&'static str`), none taken from traffic.
fn label_vocabulary() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    BTreeMap::from([
        ("direction", BTreeSet::from(["inbound", "outbound"])),
        (
            "protocol",
            BTreeSet::from(["tcp", "http", "socks", "transparent"]),
        ),
        (
            "flow",
            BTreeSet::from(["client_to_target", "target_to_client"]),
        ),
        (
            "reason",
            BTreeSet::from([
                "timeout",
                "malformed",
                "too_large",
                "not_socks",
                "unsupported_command",
                "truncated",
                "empty",
                "not_redirected",
                "socks_on_http",
                "tls_on_http",
            ]),
        ),
        ("kind", BTreeSet::from(["http", "stream"])),
        (
            "purpose",
            BTreeSet::from([
                "relay_buffer",
                "request_head",
                "capture_copy",
                "queued_for_peer",
                "connection",
            ]),
        ),
    ])
}

#[tokio::test]
async fn the_admin_port_serves_only_probes_and_metrics_and_no_captured_data() {
    let app = start_app().await;
    let dir = TempDir::new("admin-secrets");
    let capture = dir.0.join("capture.jsonl");
    let (in_port, out_port, admin_port) = (free_port(), free_port(), free_port());
    let mut list = args(&["--proxy-type", "dual", "--proxy-protocol", "http"]);
    list.extend(args(&["--proxy-host", "127.0.0.1", "--proxy-port"]));
    list.push(app.addr.port().to_string());
    list.extend(args(&["--proxy-in-bind", "127.0.0.1", "--proxy-in-port"]));
    list.push(in_port.to_string());
    list.extend(args(&["--proxy-out-port", &out_port.to_string()]));
    list.extend(args(&["--admin-bind", "127.0.0.1", "--admin-port"]));
    list.push(admin_port.to_string());
    list.push("--capture".into());
    list.push(capture.to_string_lossy().into_owned());
    let mut sidecar = Process::start(&list);
    sidecar.wait_for(loopback(in_port)).await;
    sidecar.wait_for(loopback(out_port)).await;
    let admin = loopback(admin_port);
    sidecar.wait_for(admin).await;

    // The secret in every place a request or response can carry it: host name, path, query, headers,
    // cookie, body (the app echoes the request's head and body back, so responses carry it too). The
    // credential goes in `authorization` alone, which capture redacts by default.
    let secret = canary("data");
    let credential = canary("credential");
    let head = |target: &str, host: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nhost: {host}\r\nx-api-key: {secret}\r\n\
             authorization: Bearer {credential}\r\ncookie: session={secret}\r\n\
             content-type: text/plain\r\ncontent-length: {}\r\n\r\n{secret}",
            secret.len()
        )
    };
    let app_authority = app.addr.to_string();
    // Inbound (reverse): the Host names a service of the secret's name.
    let mut inbound = RawHttp::new(TcpStream::connect(loopback(in_port)).await.unwrap());
    let request_head = head(
        &format!("/orders/{secret}?q={secret}"),
        &format!("{secret}.shop.svc"),
    );
    let answer = inbound.exchange(request_head.as_bytes()).await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = inbound
        .exchange(head("/echo", &format!("{secret}.shop.svc")).as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.body, secret.as_bytes());
    // Outbound, absolute-form through the forward proxy.
    let mut forward = RawHttp::new(TcpStream::connect(loopback(out_port)).await.unwrap());
    let target = format!("http://{app_authority}/items/{secret}?q={secret}");
    let answer = forward
        .exchange(head(&target, &app_authority).as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    // Outbound, plain HTTP inside a CONNECT tunnel.
    let tunnel = connect_tunnel(loopback(out_port), &app_authority).await;
    let mut tunnelled = RawHttp::new(tunnel);
    let answer = tunnelled
        .exchange(head(&format!("/tunnel/{secret}"), &app_authority).as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    drop((inbound, forward, tunnelled));

    // The records hold the secret (so it really passed through and was kept)...
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&capture).unwrap_or_default();
        if text.matches(&secret).count() >= 4 && text.lines().count() >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "not captured: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // ...and nothing the admin port serves does.
    let served = ["/healthz", "/readyz", "/metrics"];
    let not_served = [
        "/".to_owned(),
        "/capture".to_owned(),
        "/capture.jsonl".to_owned(),
        "/records".to_owned(),
        "/debug".to_owned(),
        "/debug/pprof".to_owned(),
        "/config".to_owned(),
        "/env".to_owned(),
        "/admin".to_owned(),
        "/metrics/".to_owned(),
        "/metrics/../capture".to_owned(),
        "/healthz/x".to_owned(),
        // A path naming the secret is not reflected either.
        format!("/{secret}"),
    ];
    let mut everything = String::new();
    for path in served {
        let reply = get(admin, path).await;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        everything.push_str(&format!("{reply:?}\n"));
    }
    for path in &not_served {
        let reply = get(admin, path).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
        everything.push_str(&format!("{reply:?}\n"));
    }
    let reply = request(admin, "POST", "/metrics").await;
    assert_eq!(reply.status, 405, "{reply:?}");
    everything.push_str(&format!("{reply:?}\n"));
    for token in [&secret, &credential] {
        assert!(
            !everything.contains(token.as_str()),
            "the admin port serves {token}:\n{everything}"
        );
    }

    // Metric labels come from the code's fixed vocabulary, never from a host, path or header.
    let metrics = get(admin, "/metrics").await;
    let exposition = parse_openmetrics(&metrics.body).unwrap();
    let vocabulary = label_vocabulary();
    assert!(exposition.samples.len() > 10, "{}", metrics.body);
    for sample in &exposition.samples {
        for (name, value) in &sample.labels {
            if name == "le" {
                // A histogram bucket bound: a number, never anything else.
                assert!(
                    value == "+Inf" || value.parse::<f64>().is_ok(),
                    "{sample:?}"
                );
                continue;
            }
            let allowed = vocabulary
                .get(name.as_str())
                .unwrap_or_else(|| panic!("label {name} is not in the vocabulary: {sample:?}"));
            assert!(allowed.contains(value.as_str()), "{sample:?}");
        }
    }
    // The traffic above did register: the probe is not reading an idle sidecar.
    assert!(
        exposition.count(
            "sidecar_connections_accepted_total",
            &[("direction", "outbound"), ("protocol", "http")]
        ) >= 2.0
    );

    sidecar.stop().await;
    // The log carries addresses and errors, never what the traffic said.
    let log = sidecar.stderr();
    for token in [&secret, &credential] {
        assert!(
            !log.contains(token.as_str()),
            "the log carries {token}:\n{log}"
        );
    }
    // The default redaction held in the records: the credential is not on disk.
    // Redaction is of header values; bodies are kept as the parties sent them (docs/capture.md), and this
    // app echoes the request's head in its response body, so the credential is in that body (as `text`
    // since bodies that are UTF-8 carry one, as base64 before). Outside bodies it must be nowhere.
    let records = parse_records(&std::fs::read_to_string(&capture).unwrap());
    let text = std::fs::read_to_string(&capture).unwrap();
    let outside_bodies: Vec<serde_json::Value> = records
        .iter()
        .map(|record| {
            let mut value = serde_json::to_value(record).unwrap();
            for side in ["request", "response"] {
                if let Some(message) = value[side].as_object_mut() {
                    message.remove("body");
                }
            }
            value
        })
        .collect();
    let outside_bodies = serde_json::to_string(&outside_bodies).unwrap();
    assert!(
        !outside_bodies.contains(&credential),
        "the capture holds the credential outside a body: {outside_bodies}"
    );
    let redacted = records
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter(|r| r["kind"] == "http")
        .all(|r| {
            r["request"]["headers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h[0] == "authorization" || h[0] == "cookie")
                .all(|h| h[1] == sidecar_proxy::capture::REDACTED)
        });
    assert!(redacted, "{text}");
}

// ---------------------------------------------------------------------------------------------------------
// Capture files are 0600

#[tokio::test]
async fn capture_files_are_created_0600_even_under_umask_0000_rotated_ones_too() {
    let app = start_app().await;
    let dir = TempDir::new("capture-mode");
    let capture = dir.0.join("capture.jsonl");
    let control = dir.0.join("created-under-the-same-umask");
    let (in_port, admin_port) = (free_port(), free_port());
    let mut list = args(&["--proxy-type", "reverse", "--proxy-protocol", "http"]);
    list.extend(args(&["--proxy-host", "127.0.0.1", "--proxy-port"]));
    list.push(app.addr.port().to_string());
    list.extend(args(&["--proxy-in-bind", "127.0.0.1", "--proxy-in-port"]));
    list.push(in_port.to_string());
    list.extend(args(&["--admin-bind", "127.0.0.1", "--admin-port"]));
    list.push(admin_port.to_string());
    list.push("--capture".into());
    list.push(capture.to_string_lossy().into_owned());
    // Small files, so the traffic below rotates several times and the oldest are deleted.
    list.extend(args(&[
        "--capture-rotate-size",
        "4KiB",
        "--capture-rotate-keep",
        "3",
    ]));
    let mut sidecar = Process::start_with_open_umask(&control, &list);
    sidecar.wait_for(loopback(in_port)).await;

    // Each record is over 1 KiB (the body twice, base64): 40 of them rotate the file about a dozen times.
    let body = "x".repeat(512);
    let mut client = RawHttp::new(TcpStream::connect(loopback(in_port)).await.unwrap());
    for _ in 0..40 {
        let request = format!(
            "POST /echo HTTP/1.1\r\nhost: app\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = client.exchange(request.as_bytes()).await.unwrap();
        assert_eq!(answer.status, 200);
    }
    drop(client);
    assert!(sidecar.stop().await.success(), "{}", sidecar.stderr());

    let mode = |path: &Path| {
        let mode = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        format!("{:o}", mode & 0o777)
    };
    // The umask really was open: a file made the ordinary way is world-readable.
    assert_eq!(mode(&control), "666", "the umask was not 0000");
    let mut names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("capture.jsonl"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "capture.jsonl",
            "capture.jsonl.1",
            "capture.jsonl.2",
            "capture.jsonl.3"
        ],
        "rotation did not happen as configured"
    );
    for name in &names {
        assert_eq!(mode(&dir.0.join(name)), "600", "{name}");
    }
}

// ---------------------------------------------------------------------------------------------------------
// No unsafe code

/// The workspace's Rust packages, relative to the workspace root.
const PACKAGES: [&str; 6] = ["proxy", "injector", "conformance", "bench", "soak", "fuzz"];

/// Identifiers that mean memory-unsafe code, or what the `unsafe_code` lint treats alike (symbols
/// exported unchecked under a chosen name or section).
const UNSAFE_WORDS: [&str; 4] = ["unsafe", "no_mangle", "export_name", "link_section"];

/// The identifiers of Rust source, with comments, strings and character literals skipped: enough to tell
/// a keyword in code from the same word in prose.
fn code_identifiers(source: &str) -> Vec<(usize, String)> {
    let chars: Vec<char> = source.chars().collect();
    let mut found = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count_lines = |from: &[char]| from.iter().filter(|c| **c == '\n').count();
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let (start, mut depth) = (i, 0);
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count_lines(&chars[start..i]);
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            line += count_lines(&chars[start..i.min(chars.len())]);
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former is skipped.
            if next == Some('\\') {
                // Past the quote, the backslash and the escaped character (which may be a quote).
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Raw strings: r"..", r#".."#, br#".."# (the prefix is lexed as an identifier first).
            if (word == "r" || word == "br") && matches!(chars.get(i), Some('"') | Some('#')) {
                let hashes = chars[i..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + hashes) == Some(&'"') {
                    let start = i;
                    i += hashes + 1;
                    let close: Vec<char> = std::iter::once('"')
                        .chain(std::iter::repeat_n('#', hashes))
                        .collect();
                    while i < chars.len() && !chars[i..].starts_with(&close) {
                        i += 1;
                    }
                    i += close.len();
                    line += count_lines(&chars[start..i.min(chars.len())]);
                    continue;
                }
            }
            found.push((line, word));
        } else {
            i += 1;
        }
    }
    found
}

#[test]
fn the_scanner_finds_unsafe_in_code_and_only_there() {
    let source = concat!(
        "// unsafe in a comment\n",
        "/* unsafe /* nested unsafe */ still comment */\n",
        "let s = \"unsafe \\\" unsafe\";\n",
        "let r = r#\"unsafe \"quoted\" unsafe\"#;\n",
        "let c = '\"'; let q = '\\''; let l: &'static str = \"x\";\n",
        "fn f() { uns",
        "afe { g() } }\n",
        "#[no_",
        "mangle] pub extern \"C\" fn h() {}\n",
    );
    let hits: Vec<(usize, String)> = code_identifiers(source)
        .into_iter()
        .filter(|(_, word)| UNSAFE_WORDS.contains(&word.as_str()))
        .collect();
    assert_eq!(
        hits,
        [(6, "unsafe".to_owned()), (7, "no_mangle".to_owned())]
    );
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The `members` of the root Cargo.toml's `[workspace]`, as written there on one line.
fn workspace_members(manifest: &str) -> BTreeSet<String> {
    let line = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("members"))
        .expect("the root Cargo.toml has a members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// A crate added to the workspace but not to [`PACKAGES`] would escape the check below unseen.
#[test]
fn the_unsafe_check_covers_every_workspace_member() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = workspace_members(&manifest);
    assert!(members.contains("proxy"), "members read: {members:?}");
    let checked: BTreeSet<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(checked, members, "PACKAGES against the workspace's members");
}

#[test]
fn no_crate_contains_unsafe_and_every_crate_root_forbids_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offences = Vec::new();
    for package in PACKAGES {
        let dir = root.join(package);
        // Every crate root: the library, the binaries. `forbid` (not `deny`) so that no `#[allow]` deeper
        // down can switch it off.
        let mut roots: Vec<PathBuf> = ["src/lib.rs", "src/main.rs"]
            .iter()
            .map(|file| dir.join(file))
            .filter(|path| path.exists())
            .collect();
        rust_files(&dir.join("src/bin"), &mut roots);
        assert!(!roots.is_empty(), "no crate root in {}", dir.display());
        for crate_root in &roots {
            let text = std::fs::read_to_string(crate_root).unwrap();
            assert!(
                text.lines()
                    .any(|line| line.trim() == "#![forbid(unsafe_code)]"),
                "{} lacks #![forbid(unsafe_code)]",
                crate_root.display()
            );
        }
        // Everything else too (tests, benches, examples), which no crate-root attribute covers.
        let mut files = Vec::new();
        for sub in ["src", "tests", "benches", "examples"] {
            rust_files(&dir.join(sub), &mut files);
        }
        assert!(files.len() >= roots.len(), "{package}: sources not found");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (line, word) in code_identifiers(&text) {
                if UNSAFE_WORDS.contains(&word.as_str()) {
                    offences.push(format!("{}:{line}: {word}", file.display()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "unsafe code (the SO_ORIGINAL_DST read goes through socket2's safe API; see \
         proxy/src/transparent/original_dst.rs):\n{}",
        offences.join("\n")
    );
}
