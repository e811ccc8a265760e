//! `sidecar-proxy replay`, through the real binary: a Python app recorded by a real reverse sidecar, its
//! inbound exchanges replayed against the same app (everything matches, the timestamp learned as noise
//! from repeats, gzip decoded) and against a changed app (exit 1, the changed JSON field named on
//! stdout, in --report and in --junit), and bad usage refused with exit 2. gRPC over h2c is recorded by a
//! reverse tcp sidecar from a real HTTP/2 exchange and replayed as HTTP/2, its trailers compared.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tokio::net::TcpStream;

use support::capture::{RawHttp, Sidecar, TempDir, BIN};
use support::py_service::PyService;

fn replay(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("replay")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends GET `path` to `addr` on a connection of its own; the status.
async fn get(addr: SocketAddr, path: &str) -> u16 {
    let stream = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: users.test\r\nAccept-Encoding: gzip\r\n\r\n");
    RawHttp::new(stream)
        .exchange(request.as_bytes())
        .await
        .unwrap()
        .status
}

/// Records the app's answers to /users/1 (three times: its `updated` differs each time), /report
/// (gzip) and a 404, through a reverse sidecar; returns the capture file.
async fn record(app: &PyService, dir: &Path) -> std::path::PathBuf {
    let capture = dir.join("capture.jsonl");
    let mut sidecar =
        Sidecar::reverse_http(app.addr, &["--capture", capture.to_str().unwrap()], dir).await;
    for path in ["/users/1", "/users/1", "/report", "/missing", "/users/1"] {
        get(sidecar.inbound, path).await;
    }
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    capture
}

#[tokio::test]
async fn the_same_app_matches_and_a_changed_one_is_caught_by_field() {
    let dir = TempDir::new("replay-app");
    let app = PyService::start("app", &[("APP_NAME", "Ann")]);
    let capture = record(&app, &dir.0).await;
    let capture = capture.to_str().unwrap();

    let target = format!("http://{}", app.addr);
    let same = replay(&[capture, "--target", &target]);
    let stdout = text(&same.stdout);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{stdout}{}",
        text(&same.stderr)
    );
    assert!(
        stdout.contains("replayed 5 exchanges")
            && stdout.contains("5 matched, 0 differed, 0 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GET /users/1: $.updated"),
        "learned from the repeats:\n{stdout}"
    );
    app.stop();

    let changed = PyService::start("app", &[("APP_NAME", "Anne")]);
    let report = dir.0.join("report.json");
    let junit = dir.0.join("junit.xml");
    let target = format!("http://{}", changed.addr);
    let differs = replay(&[
        capture,
        "--target",
        &target,
        "--concurrency",
        "2",
        "--report",
        report.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let stdout = text(&differs.stdout);
    assert_eq!(
        differs.status.code(),
        Some(1),
        "{stdout}{}",
        text(&differs.stderr)
    );
    assert!(
        stdout.contains(r#"$.name: recorded "Ann", now "Anne""#),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 matched, 3 differed, 0 failed"),
        "{stdout}"
    );

    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["differed"], 3);
    let differed: Vec<&Value> = report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "differed")
        .collect();
    for exchange in &differed {
        assert_eq!(exchange["path"], "/users/1");
        let fields: Vec<&str> = exchange["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            ["$.name"],
            "only the name, not the learned timestamp"
        );
    }
    let junit = std::fs::read_to_string(&junit).unwrap();
    assert!(
        junit.contains(r#"tests="5" failures="3" errors="0""#),
        "{junit}"
    );
    assert!(
        junit.contains(r#"<failure message="differs in $.name">"#),
        "{junit}"
    );

    // --ignore-json takes the field out: everything matches again.
    let ignored = replay(&[capture, "--target", &target, "--ignore-json", "$.name"]);
    assert_eq!(ignored.status.code(), Some(0), "{}", text(&ignored.stdout));
}

#[tokio::test]
async fn recorded_pace_keeps_the_recorded_gaps() {
    let dir = TempDir::new("replay-pace");
    let app = PyService::start("app", &[]);
    let capture = dir.0.join("capture.jsonl");
    let mut sidecar =
        Sidecar::reverse_http(app.addr, &["--capture", capture.to_str().unwrap()], &dir.0).await;
    get(sidecar.inbound, "/users/1").await;
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    get(sidecar.inbound, "/users/1").await;
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success());
    let target = format!("http://{}", app.addr);
    let capture = capture.to_str().unwrap();
    let measure = |extra: &[&str]| {
        let started = std::time::Instant::now();
        let mut args = vec![capture, "--target", &target];
        args.extend_from_slice(extra);
        let output = replay(&args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
        started.elapsed()
    };
    let paced = measure(&["--pace", "recorded"]);
    assert!(
        paced.as_millis() >= 400,
        "the recorded 400 ms gap was kept: {paced:?}"
    );
    // How much faster --speed makes it is proven without a clock in replay::pace's unit test.
    measure(&["--pace", "recorded", "--speed", "4"]);
}

#[test]
fn bad_usage_exits_2_naming_what_is_allowed() {
    let dir = TempDir::new("replay-usage");
    let empty = dir.0.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    for (args, says) in [
        (
            vec![empty, "--target", "ftp://x"],
            "allowed: an http:// or https:// URL",
        ),
        (
            vec![
                empty,
                "--target",
                "http://127.0.0.1:1",
                "--ignore-json",
                "name",
            ],
            "write paths like $.items[*].updated",
        ),
        (
            vec![empty, "--target", "http://127.0.0.1:1", "--rate", "0"],
            "above zero",
        ),
        (
            vec![empty, "--target", "http://127.0.0.1:1"],
            "holds no inbound HTTP exchange",
        ),
        (
            vec![
                "/nonexistent/capture.jsonl",
                "--target",
                "http://127.0.0.1:1",
            ],
            "cannot read",
        ),
    ] {
        let output = replay(&args);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// One inbound exchange as a capture line: GET `path`, answered 200 with `body`.
fn inbound_record(path: &str, body: &str) -> String {
    use base64::Engine;
    let base64 = base64::engine::general_purpose::STANDARD.encode(body);
    serde_json::json!({
        "schema": "sidecar.capture/v1", "kind": "http", "id": 1, "uid": "0123456789abcdef-1",
        "connection": 1, "direction": "inbound", "proxy_type": "reverse", "protocol": "http",
        "transport": "http", "client": "127.0.0.1:40000", "target": "shop.test:443",
        "start": "2026-12-07T00:00:00.000000Z", "duration_ms": 2.5,
        "request": {"method": "GET", "url": format!("https://shop.test{path}"), "version": "HTTP/1.1",
            "headers": [["host", "shop.test"]],
            "body": {"size": 0, "truncated": false, "base64": "", "complete": true}},
        "response": {"status": 200, "version": "HTTP/1.1", "headers": [["x-upstream-alpn", "http/1.1"]],
            "body": {"size": body.len(), "truncated": false, "base64": base64, "complete": true}}
    })
    .to_string()
        + "\n"
}

// Multi-threaded: the test's own HTTPS server runs while the replay binary is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_target_is_verified_against_the_roots_given() {
    let dir = TempDir::new("replay-https");
    let ca = support::tls::TestCa::new("replay test CA");
    let upstream =
        support::tls::start_https_upstream(ca.server_config(&["127.0.0.1"], &[b"http/1.1"])).await;
    let capture = dir.0.join("capture.jsonl");
    std::fs::write(
        &capture,
        inbound_record(
            "/hello",
            "upstream saw GET /hello over HTTP/1.1, 0 body bytes",
        ),
    )
    .unwrap();
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    let target = format!("https://{upstream}");
    let capture = capture.to_str().unwrap();

    let trusted = replay(&[
        capture,
        "--target",
        &target,
        "--target-ca",
        ca_file.to_str().unwrap(),
    ]);
    let stdout = text(&trusted.stdout);
    assert_eq!(
        trusted.status.code(),
        Some(0),
        "{stdout}{}",
        text(&trusted.stderr)
    );
    assert!(stdout.contains("1 matched"), "{stdout}");

    // Without the CA the certificate does not verify: the exchange failed, exit 1, saying why.
    let untrusted = replay(&[capture, "--target", &target]);
    let stdout = text(&untrusted.stdout);
    assert_eq!(
        untrusted.status.code(),
        Some(1),
        "{stdout}{}",
        text(&untrusted.stderr)
    );
    assert!(stdout.contains("TLS with 127.0.0.1 failed"), "{stdout}");
}

/// An h2c gRPC origin: `/shop.Prices/Get` answers each message with `price:` and the message, then the
/// trailers `grpc-status: <status>`; it counts the HTTP/2 streams it served.
async fn start_grpc_origin(
    status: &'static str,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = streams.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let counted = counted.clone();
                        async move {
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            assert_eq!(request.version(), http::Version::HTTP_2);
                            assert_eq!(request.uri().path(), "/shop.Prices/Get");
                            let message = request.into_body().collect().await.unwrap().to_bytes();
                            let reply =
                                grpc_message(&[b"price:".as_slice(), &message[5..]].concat());
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", status.parse().unwrap());
                            let frames = futures_util::stream::iter([
                                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(reply)),
                                Ok(hyper::body::Frame::trailers(trailers)),
                            ]);
                            let response = http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(http_body_util::StreamBody::new(frames))
                                .unwrap();
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
            });
        }
    });
    (addr, streams)
}

/// A gRPC message: uncompressed, its length, the bytes.
fn grpc_message(message: &[u8]) -> bytes::Bytes {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(message);
    framed.into()
}

// Multi-threaded: the test's origin serves while the replay binary is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_is_replayed_as_http2_and_its_trailers_compared() {
    use http_body_util::BodyExt;
    let dir = TempDir::new("replay-grpc");
    let (origin, _) = start_grpc_origin("0").await;
    let capture = dir.0.join("capture.jsonl");
    let mut sidecar = Sidecar::reverse(
        "tcp",
        origin,
        &["--capture", capture.to_str().unwrap()],
        &dir.0,
    )
    .await;
    // A real HTTP/2 client makes two unary calls through the sidecar.
    let stream = TcpStream::connect(sidecar.inbound).await.unwrap();
    let (mut client, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for item in [b"apple".as_slice(), b"pear"] {
        let request = http::Request::post("http://prices.test/shop.Prices/Get")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(http_body_util::Full::new(grpc_message(item)))
            .unwrap();
        let response = client.send_request(request).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(
            collected.trailers().unwrap()["grpc-status"],
            "0",
            "the call went through"
        );
    }
    drop(client);
    sidecar.signal("TERM");
    assert!(sidecar.exit().await.success(), "{}", sidecar.stderr());
    let capture = capture.to_str().unwrap();

    // The same service: both calls match, sent as HTTP/2 on one connection.
    let (same, streams) = start_grpc_origin("0").await;
    let matched = replay(&[capture, "--target", &format!("http://{same}")]);
    let stdout = text(&matched.stdout);
    assert_eq!(
        matched.status.code(),
        Some(0),
        "{stdout}{}",
        text(&matched.stderr)
    );
    assert!(stdout.contains("2 matched"), "{stdout}");
    assert_eq!(streams.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A service that now fails the calls (grpc-status 5, NOT_FOUND, in the trailers, status still 200):
    // exit 1, the trailer named.
    let (changed, _) = start_grpc_origin("5").await;
    let report = dir.0.join("report.json");
    let differed = replay(&[
        capture,
        "--target",
        &format!("http://{changed}"),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&differed.stdout);
    assert_eq!(
        differed.status.code(),
        Some(1),
        "{stdout}{}",
        text(&differed.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let fields: Vec<&str> = report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|exchange| exchange["differences"].as_array().unwrap())
        .map(|difference| difference["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["trailer grpc-status", "trailer grpc-status"],
        "{report:#}"
    );
}

/// Inbound exchange `n` (started `n` ms after the first) as a capture line: GET `/item/n`, answered 200
/// with `answer n` and no other header.
fn numbered_record(n: usize) -> String {
    use base64::Engine;
    let body = format!("answer {n}");
    serde_json::json!({
        "schema": "sidecar.capture/v1", "kind": "http", "id": n, "uid": format!("0123456789abcdef-{n}"),
        "connection": 1, "direction": "inbound", "proxy_type": "reverse", "protocol": "http",
        "transport": "http", "client": "127.0.0.1:40000", "target": "shop.test:80",
        "start": format!("2026-12-07T00:00:00.{n:03}000Z"), "duration_ms": 0.5,
        "request": {"method": "GET", "url": format!("http://shop.test/item/{n}"), "version": "HTTP/1.1",
            "headers": [["host", "shop.test"]],
            "body": {"size": 0, "truncated": false, "base64": "", "complete": true}},
        "response": {"status": 200, "version": "HTTP/1.1", "headers": [],
            "body": {"size": body.len(), "truncated": false,
                "base64": base64::engine::general_purpose::STANDARD.encode(&body), "complete": true}}
    })
    .to_string()
        + "\n"
}

/// A target that answers `GET /item/n` with `answer n`, but holds every answer until `together`
/// requests are waiting at once (so a replay with fewer in flight gets no answer at all); the paths in
/// the order they arrived.
async fn start_gathering_target(
    together: usize,
) -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrived = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(together));
    let log = arrived.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (log, barrier) = (log.clone(), barrier.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 1024];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    buffer.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    log.lock().unwrap().push(path.clone());
                    barrier.wait().await;
                    let body = format!("answer {}", path.trim_start_matches("/item/"));
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, arrived)
}

// Multi-threaded: the test's target runs while the replay binary is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_n_keeps_n_requests_in_flight_and_one_keeps_the_recorded_order() {
    let dir = TempDir::new("replay-concurrency");
    let capture = dir.0.join("capture.jsonl");
    let recorded: String = (1..=8).map(numbered_record).collect();
    std::fs::write(&capture, recorded).unwrap();
    let capture = capture.to_str().unwrap();

    // Four at once: the target answers only when four requests wait together, twice over.
    let (target, _) = start_gathering_target(4).await;
    let target = format!("http://{target}");
    let report = dir.0.join("report.json");
    let four = replay(&[
        capture,
        "--target",
        &target,
        "--concurrency",
        "4",
        "--timeout",
        "5s",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&four.stdout);
    assert_eq!(
        four.status.code(),
        Some(0),
        "{stdout}{}",
        text(&four.stderr)
    );
    assert!(stdout.contains("8 matched"), "{stdout}");
    // The report lists the exchanges in recorded order, whichever answer came first.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let paths: Vec<&str> = report["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|exchange| exchange["path"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (1..=8).map(|n| format!("/item/{n}")).collect();
    assert_eq!(paths, expected);

    // Three at once never gather four: the first three wait out the timeout, and so the replay fails.
    let (short, _) = start_gathering_target(4).await;
    let three = replay(&[
        capture,
        "--target",
        &format!("http://{short}"),
        "--concurrency",
        "3",
        "--timeout",
        "1s",
    ]);
    assert_eq!(three.status.code(), Some(1), "{}", text(&three.stdout));

    // One at a time (the default): the target sees the requests in recorded order.
    let (single, arrived) = start_gathering_target(1).await;
    let one = replay(&[capture, "--target", &format!("http://{single}")]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stdout));
    assert_eq!(*arrived.lock().unwrap(), expected);
}

/// A target that answers `GET /item/n` with `answer n`, `per_connection` answers on each connection
/// (the last with `connection: close`, then it closes); how many connections it accepted.
async fn start_closing_target(
    per_connection: usize,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut answered = 0;
                while answered < per_connection {
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 1024];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    buffer.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    answered += 1;
                    let close = if answered == per_connection {
                        "connection: close\r\n"
                    } else {
                        ""
                    };
                    let body = format!("answer {}", path.trim_start_matches("/item/"));
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\n{close}content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

// Multi-threaded: the test's target runs while the replay binary is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reuses_its_connection_and_opens_another_when_the_target_closes_it() {
    use std::sync::atomic::Ordering;
    let dir = TempDir::new("replay-connections");
    let capture = dir.0.join("capture.jsonl");
    let recorded: String = (1..=8).map(numbered_record).collect();
    std::fs::write(&capture, recorded).unwrap();
    let capture = capture.to_str().unwrap();

    // Kept alive: one worker, one connection for all eight.
    let (kept, accepted) = start_closing_target(usize::MAX).await;
    let one = replay(&[capture, "--target", &format!("http://{kept}")]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stdout));
    assert!(text(&one.stdout).contains("8 matched"));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Closed after every second answer: each close costs a new connection, and no exchange fails.
    let (closing, accepted) = start_closing_target(2).await;
    let two = replay(&[
        capture,
        "--target",
        &format!("http://{closing}"),
        "--timeout",
        "5s",
    ]);
    assert_eq!(
        two.status.code(),
        Some(0),
        "{}{}",
        text(&two.stdout),
        text(&two.stderr)
    );
    assert!(text(&two.stdout).contains("8 matched"));
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}
