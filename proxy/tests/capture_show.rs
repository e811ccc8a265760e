//! `sidecar-proxy capture show` and `capture tail`, through the real binary: records as readable blocks
//! (bodies decoded), the filters, `--json` passing lines through unchanged, colours only on a terminal,
//! and `tail` following a growing file across a real rename and the sidecar's own rotation.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::capture::{start_fixed_responder, Sidecar, TempDir, BIN};

fn capture(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("capture")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn body(bytes: &[u8]) -> Value {
    json!({"size": bytes.len(), "truncated": false, "base64": STANDARD.encode(bytes), "complete": true})
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// An `http` record as the sidecar writes it.
fn http_record(
    id: u64,
    direction: &str,
    method: &str,
    url: &str,
    status: u16,
    response_headers: &[(&str, &str)],
    response_body: &[u8],
) -> Value {
    let host = url.split('/').nth(2).unwrap();
    json!({
        "schema": "sidecar.capture/v1", "id": id, "connection": id, "direction": direction,
        "proxy_type": "dual", "protocol": "http", "transport": "http", "client": "127.0.0.1:40000",
        "target": format!("{host}:80"), "start": "2026-12-06T10:00:00.000000Z", "duration_ms": 12.5,
        "kind": "http",
        "request": {"method": method, "url": url, "version": "HTTP/1.1",
                    "headers": [["host", host], ["x-request-id", format!("req-{id}")]], "body": body(b"")},
        "response": {"status": status, "version": "HTTP/1.1",
                     "headers": response_headers, "body": body(response_body)},
    })
}

fn stream_record(id: u64) -> Value {
    json!({
        "schema": "sidecar.capture/v1", "id": id, "connection": id, "direction": "outbound",
        "proxy_type": "forward", "protocol": "http", "transport": "connect", "client": "127.0.0.1:40001",
        "target": "secure.test:443", "start": "2026-12-06T10:00:01.000000Z", "duration_ms": 300.0,
        "kind": "stream", "protocol_seen": "tls", "bytes_client_to_target": 517,
        "bytes_target_to_client": 4200, "sni": "secure.test", "end": "closed",
        "payload": {"client_to_target": body(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]),
                    "target_to_client": body(b"")},
    })
}

/// Five records of different kinds, directions, hosts and statuses.
fn sample_lines() -> Vec<String> {
    let mut future = http_record(
        5,
        "inbound",
        "DELETE",
        "http://shop.test/cart/9",
        404,
        &[],
        b"",
    );
    // A field a later v1 sidecar may add: readers ignore it, `--json` keeps it.
    future["added_later"] = json!({"anything": [1, 2]});
    [
        http_record(
            1,
            "outbound",
            "GET",
            "http://api.test/v1/items?page=2",
            200,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            &gzip(br#"{"zeta":1,"alpha":{"needle":"found in gzip"}}"#),
        ),
        http_record(
            2,
            "inbound",
            "GET",
            "http://web.test/",
            503,
            &[("content-type", "text/plain")],
            b"upstream down\n\x1b[31mpainted",
        ),
        http_record(
            3,
            "outbound",
            "GET",
            "http://img.test/logo.png",
            200,
            &[("content-type", "image/png")],
            &(0..40).collect::<Vec<u8>>(),
        ),
        stream_record(4),
        future,
    ]
    .iter()
    .map(|record| serde_json::to_string(record).unwrap())
    .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// The ids of the blocks `capture show` printed, in order.
fn shown_ids(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn show_prints_one_readable_block_per_record_with_bodies_decoded() {
    let dir = TempDir::new("show-blocks");
    let file = dir.0.join("capture.jsonl");
    write_lines(&file, &sample_lines());
    let out = capture(&["show", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(shown_ids(&text), [1, 2, 3, 4, 5], "{text}");

    // Heading and summary line: method, URL, status with its reason, time, direction, duration, sizes.
    assert!(
        text.contains("#1 GET http://api.test/v1/items?page=2 -> 200 OK\n"),
        "{text}"
    );
    let gzipped = gzip(br#"{"zeta":1,"alpha":{"needle":"found in gzip"}}"#).len();
    assert!(
        text.contains(&format!(
            "  2026-12-06T10:00:00.000000Z outbound 12.5 ms  request 0 B  response {gzipped} B"
        )),
        "{text}"
    );
    // gzip undone, then JSON pretty-printed with its keys in the order sent.
    assert!(
        text.contains(
            "    {\n      \"zeta\": 1,\n      \"alpha\": {\n        \"needle\": \"found in gzip\"\n      }\n    }\n    [decoded from gzip]\n"
        ),
        "{text}"
    );
    // Text as text, the escape sequence a body carried made visible instead of sent to the terminal.
    assert!(
        text.contains("    upstream down\n    \\u{1b}[31mpainted\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(
        text.contains("#2 GET http://web.test/ -> 503 Service Unavailable"),
        "{text}"
    );
    // Binary as a hex dump.
    assert!(
        text.contains(
            "    0000  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  ................\n"
        ),
        "{text}"
    );
    assert!(text.contains("[binary, 40 bytes]"), "{text}");
    // A stream: target, what was seen, bytes each way, how it ended, its payload.
    assert!(
        text.contains("#4 stream secure.test:443 (tls, server name secure.test) -> closed\n"),
        "{text}"
    );
    assert!(
        text.contains("client->target 517 B  target->client 4.1 KiB"),
        "{text}"
    );
    assert!(text.contains("    0000  16 03 01 02 00 01 "), "{text}");
    assert_eq!(
        stderr(&out),
        "sidecar-proxy: 5 of 5 records matched\n",
        "the summary goes to stderr"
    );
}

#[test]
fn filters_select_records_and_json_passes_the_lines_through_unchanged() {
    let dir = TempDir::new("show-filters");
    let file = dir.0.join("capture.jsonl");
    let lines = sample_lines();
    write_lines(&file, &lines);
    let path = file.to_str().unwrap();
    for (filters, expected) in [
        (&["--direction", "inbound"][..], &[2, 5][..]),
        (&["--direction", "outbound"], &[1, 3, 4]),
        (&["--host", "API.test"], &[1]),
        (&["--host", "secure.test"], &[4]),
        (&["--status", "503"], &[2]),
        (&["--status", "5xx"], &[2]),
        (&["--status", "2xx"], &[1, 3]),
        (&["--status", "4XX"], &[5]),
        // In a body, after gzip is undone; in a header value; in the URL.
        (&["--grep", "found in gzip"], &[1]),
        (&["--grep", "req-3"], &[3]),
        (&["--grep", "/cart/"], &[5]),
        (
            &[
                "--direction",
                "outbound",
                "--status",
                "200",
                "--host",
                "img.test",
            ],
            &[3],
        ),
        (&["--grep", "nowhere at all"], &[]),
    ] {
        let mut args = vec!["show"];
        args.extend_from_slice(filters);
        args.push(path);
        let out = capture(&args);
        assert!(out.status.success(), "{filters:?}: {}", stderr(&out));
        assert_eq!(shown_ids(&stdout(&out)), expected, "{filters:?}");

        args.insert(1, "--json");
        let out = capture(&args);
        assert!(out.status.success(), "{filters:?}: {}", stderr(&out));
        let expected_lines: String = expected
            .iter()
            .map(|&id| format!("{}\n", lines[id as usize - 1]))
            .collect();
        assert_eq!(stdout(&out), expected_lines, "{filters:?}");
    }
    let out = capture(&["show", "--json", "--status", "404", path]);
    assert!(stdout(&out).contains(r#""added_later":{"anything":[1,2]}"#));
}

/// `--caused-by UID` keeps the outbound calls linked to that inbound request, and each linked call's
/// block names the request it was made for.
#[test]
fn caused_by_lists_the_calls_one_inbound_request_caused() {
    let dir = TempDir::new("show-caused-by");
    let file = dir.0.join("capture.jsonl");
    let mut inbound = http_record(
        1,
        "inbound",
        "GET",
        "http://shop.test/checkout",
        200,
        &[],
        b"",
    );
    inbound["uid"] = json!("00000000000000aa-1");
    let mut records = vec![inbound];
    for (id, cause) in [
        (2, Some("00000000000000aa-1")),
        (3, Some("00000000000000bb-9")),
        (4, None),
    ] {
        let mut call = http_record(
            id,
            "outbound",
            "GET",
            "http://prices.test/price",
            200,
            &[],
            b"",
        );
        if let Some(cause) = cause {
            call["caused_by"] = json!(cause);
        }
        records.push(call);
    }
    let lines: Vec<String> = records.iter().map(Value::to_string).collect();
    write_lines(&file, &lines);
    let path = file.to_str().unwrap();

    let output = capture(&["show", "--caused-by", "00000000000000aa-1", path]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(shown_ids(&text), [2], "{text}");
    assert!(
        text.contains("made for inbound request 00000000000000aa-1"),
        "{text}"
    );
    let json = capture(&["show", "--json", "--caused-by", "00000000000000bb-9", path]);
    assert_eq!(stdout(&json), format!("{}\n", lines[2]));
}

#[test]
fn bad_filter_values_are_refused_with_what_is_allowed() {
    for (flag, value, allowed) in [
        (
            "--status",
            "6xx",
            "allowed: a status code like 404, or a class like 5xx",
        ),
        ("--status", "ok", "a class like 5xx"),
        (
            "--direction",
            "sideways",
            "[possible values: inbound, outbound]",
        ),
    ] {
        let out = capture(&["show", flag, value, "capture.jsonl"]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let message = stderr(&out);
        assert!(
            message.contains(flag) && message.contains(allowed),
            "{message}"
        );
    }
}

#[test]
fn unreadable_lines_are_named_and_skipped_or_refused_with_strict() {
    let dir = TempDir::new("show-torn");
    let file = dir.0.join("capture.jsonl");
    let lines = sample_lines();
    write_lines(
        &file,
        &[
            lines[0].clone(),
            lines[1][..40].to_owned(),
            lines[2].clone(),
        ],
    );
    let path = file.to_str().unwrap();
    let out = capture(&["show", path]);
    assert!(out.status.success());
    assert_eq!(shown_ids(&stdout(&out)), [1, 3]);
    let message = stderr(&out);
    assert!(
        message.starts_with(&format!(
            "sidecar-proxy: skipped {path} line 2: not a sidecar.capture/v1 record: "
        )),
        "{message}"
    );
    assert!(
        message.ends_with("sidecar-proxy: 2 of 2 records matched; skipped 1 unreadable line\n"),
        "{message}"
    );

    let out = capture(&["show", "--strict", path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(&format!(
            "sidecar-proxy: {path} line 2: not a sidecar.capture/v1 record: "
        )),
        "{}",
        stderr(&out)
    );

    let out = capture(&["show", dir.0.join("missing.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("missing.jsonl: No such file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn show_reads_stdin_and_a_reader_that_goes_away_ends_it_quietly() {
    let lines = sample_lines();
    let mut child = Command::new(BIN)
        .args(["capture", "show", "--json", "--direction", "inbound", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = lines.join("\n");
    input.push('\n');
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), format!("{}\n{}\n", lines[1], lines[4]));

    // `| head -n 1`: the reader leaves after the first line; no panic, no error, status 0.
    let dir = TempDir::new("show-pipe");
    let file = dir.0.join("capture.jsonl");
    let many: Vec<String> = (0..2000).flat_map(|_| lines.clone()).collect();
    write_lines(&file, &many);
    let mut child = Command::new(BIN)
        .args(["capture", "show", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0; 64];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let message = stderr(&out);
    assert!(out.status.success(), "{:?} {message}", out.status);
    assert!(!message.contains("panicked"), "{message}");
    assert!(!message.contains("cannot write"), "{message}");
}

/// Runs `capture show` on a terminal (a pseudo-terminal from `script`), with `extra_env`.
fn show_on_a_terminal(path: &str, no_color: Option<&str>) -> String {
    let binary = std::fs::canonicalize(BIN).unwrap();
    let mut command = Command::new("script");
    command
        .args(["-qec"])
        .arg(format!(
            "\"{}\" capture show --status 503 \"{path}\"",
            binary.display()
        ))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null());
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let out = command.output().expect("script(1) runs");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let dir = TempDir::new("show-colours");
    let file = dir.0.join("capture.jsonl");
    write_lines(&file, &sample_lines());
    let path = file.to_str().unwrap();

    let coloured = show_on_a_terminal(path, None);
    assert!(
        coloured.contains("\x1b[1m#2 GET http://web.test/\x1b[0m"),
        "{coloured:?}"
    );
    let plain = show_on_a_terminal(path, Some("1"));
    assert!(
        plain.contains("#2 GET http://web.test/ -> 503"),
        "{plain:?}"
    );
    assert!(!plain.contains("\x1b["), "{plain:?}");
    // Piped: no colour either.
    let piped = stdout(&capture(&["show", "--status", "503", path]));
    assert!(!piped.contains('\x1b'), "{piped:?}");
}

// --- capture tail --------------------------------------------------------------------------------------

/// `capture tail` running, its stdout and stderr gathered as they come.
struct Tail {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

fn gather(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buffer = [0; 8192];
        while let Ok(read @ 1..) = from.read(&mut buffer) {
            into.lock().unwrap().extend_from_slice(&buffer[..read]);
        }
    });
}

impl Tail {
    fn start(args: &[&str]) -> Tail {
        let mut child = Command::new(BIN)
            .args(["capture", "tail"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Arc::default();
        let stderr = Arc::default();
        gather(child.stdout.take().unwrap(), Arc::clone(&stdout));
        gather(child.stderr.take().unwrap(), Arc::clone(&stderr));
        let tail = Tail {
            child,
            stdout,
            stderr,
        };
        // It says so once the file is open: lines appended from then on are its to print.
        tail.wait_for_stderr("sidecar-proxy: following ");
        tail
    }

    fn stdout(&self) -> String {
        String::from_utf8(self.stdout.lock().unwrap().clone()).unwrap()
    }

    fn stderr(&self) -> String {
        String::from_utf8(self.stderr.lock().unwrap().clone()).unwrap()
    }

    fn wait_for(&self, what: &str, text: impl Fn() -> String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "never saw {what:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for_stdout(&self, what: &str) {
        self.wait_for(what, || self.stdout());
    }

    fn wait_for_stderr(&self, what: &str) {
        self.wait_for(what, || self.stderr());
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn tail_record(id: u64, host: &str) -> String {
    let record = http_record(
        id,
        "outbound",
        "GET",
        &format!("http://{host}/n/{id}"),
        200,
        &[],
        b"",
    );
    format!("{}\n", serde_json::to_string(&record).unwrap())
}

#[test]
fn tail_prints_appended_records_and_follows_a_rename() {
    let dir = TempDir::new("tail-rename");
    let file = dir.0.join("capture.jsonl");
    let rotated = dir.0.join("capture.jsonl.1");
    std::fs::write(&file, tail_record(1, "api.test")).unwrap();
    let tail = Tail::start(&["--host", "api.test", file.to_str().unwrap()]);

    // A record written in two pieces is printed once it is whole.
    let second = tail_record(2, "api.test");
    append(&file, &second[..50]);
    std::thread::sleep(Duration::from_millis(500));
    append(&file, &second[50..]);
    tail.wait_for_stdout("#2 GET http://api.test/n/2 -> 200 OK");
    // Filtered out.
    append(&file, &tail_record(3, "other.test"));

    // Rotation: renamed away, the writer's last record still lands in the old file, then a new file.
    std::fs::rename(&file, &rotated).unwrap();
    append(&rotated, &tail_record(4, "api.test"));
    append(&file, &tail_record(5, "api.test"));
    tail.wait_for_stdout("#5 GET");
    tail.wait_for_stderr("was rotated; following the new file");
    append(&file, &tail_record(6, "api.test"));
    tail.wait_for_stdout("#6 GET");

    assert_eq!(shown_ids(&tail.stdout()), [2, 4, 5, 6], "{}", tail.stdout());
    assert!(!tail.stderr().contains("skipped"), "{}", tail.stderr());
}

#[test]
fn tail_from_start_and_as_json() {
    let dir = TempDir::new("tail-json");
    let file = dir.0.join("capture.jsonl");
    let first = tail_record(1, "api.test");
    std::fs::write(&file, &first).unwrap();
    let tail = Tail::start(&["--from-start", "--json", file.to_str().unwrap()]);
    let second = tail_record(2, "api.test");
    append(&file, &second);
    tail.wait_for_stdout("\"id\":2");
    assert_eq!(tail.stdout(), format!("{first}{second}"));

    let out = capture(&["tail", dir.0.join("missing.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

/// The real sidecar rotating its own capture file (a tiny `--capture-rotate-size`, so every record starts
/// a new file) while `capture tail` follows it: every exchange is printed, decoded.
#[tokio::test(flavor = "multi_thread")]
async fn tail_follows_the_sidecars_own_rotation() {
    let dir = TempDir::new("tail-sidecar");
    let json = br#"{"order":17,"state":"shipped"}"#;
    let gz = gzip(json);
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    response.extend_from_slice(&gz);
    let app = start_fixed_responder(Box::leak(response.into_boxed_slice())).await;
    let file: PathBuf = dir.0.join("capture.jsonl");
    let mut sidecar = Sidecar::reverse_http(
        app,
        &[
            "--capture",
            file.to_str().unwrap(),
            "--capture-rotate-size",
            "100",
        ],
        &dir.0,
    )
    .await;
    // The sidecar opens its capture file as it starts.
    assert!(file.exists(), "{}", sidecar.stderr());
    let tail = tokio::task::spawn_blocking({
        let file = file.clone();
        move || Tail::start(&["--from-start", file.to_str().unwrap()])
    })
    .await
    .unwrap();
    for n in 0..=4 {
        one_request(sidecar.inbound, &format!("/orders/{n}")).await;
    }
    let tail = tokio::task::spawn_blocking(move || {
        tail.wait_for_stdout("/orders/4 -> 200 OK");
        tail
    })
    .await
    .unwrap();
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let text = tail.stdout();
    for n in 0..=4 {
        assert!(text.contains(&format!("/orders/{n} -> 200 OK")), "{text}");
    }
    assert!(
        text.contains("      \"order\": 17,\n      \"state\": \"shipped\"\n"),
        "{text}"
    );
    assert!(dir.0.join("capture.jsonl.1").exists());
    assert!(tail.stderr().contains("was rotated"), "{}", tail.stderr());
}

async fn one_request(to: std::net::SocketAddr, path: &str) {
    let mut stream = TcpStream::connect(to).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

/// A record the real sidecar writes carries its text body as `text` beside `base64` (so `jq` alone reads
/// it), and a compressed body only as `base64`.
#[tokio::test(flavor = "multi_thread")]
async fn records_carry_text_bodies_as_text() {
    let dir = TempDir::new("text-field");
    let app = start_fixed_responder(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 14\r\n\r\ngr\xc3\xbc\xc3\x9fe, world",
    )
    .await;
    let file = dir.0.join("capture.jsonl");
    let mut sidecar =
        Sidecar::reverse_http(app, &["--capture", file.to_str().unwrap()], &dir.0).await;
    one_request(sidecar.inbound, "/hello").await;
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let line = std::fs::read_to_string(&file).unwrap();
    let record: Value = serde_json::from_str(line.trim_end()).unwrap();
    let response = &record["response"]["body"];
    assert_eq!(response["text"], "grüße, world");
    assert_eq!(response["base64"], STANDARD.encode("grüße, world"));
    assert_eq!(record["request"]["body"]["text"], "");

    let mut gzipped = record.clone();
    gzipped["response"]["body"] = body(&gzip(b"x"));
    let reread = capture(&["show", "--json", file.to_str().unwrap()]);
    assert_eq!(stdout(&reread), line, "passed through unchanged");
    let written = serde_json::to_value(
        serde_json::from_value::<sidecar_proxy::capture::record::Record>(gzipped).unwrap(),
    )
    .unwrap();
    assert!(written["response"]["body"].get("text").is_none());
}
