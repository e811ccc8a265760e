//! Mock mode (`--mock CAPTURE`), through the real binary: a Python app and its Python dependency recorded
//! by a real forward sidecar; then the dependency is stopped and the app, pointed at a sidecar serving
//! the recording, still answers: calls matched (query and JSON body order ignored), repeats answered in
//! recorded order then the last again, recorded latency kept, an unmatched call answered 502 naming the
//! nearest recorded request and the differing field, and every answer recorded with its `mock` field;
//! and `replay --mock-from`, where each replayed request's calls get the answers its own calls got.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::TcpStream;

use sidecar_proxy::capture::record::{Detail, Record};
use support::capture::{parse_records, RawHttp, Received, Sidecar, TempDir};
use support::py_service::PyService;

/// Sends `request` (a whole HTTP/1.1 request) to `addr` on a connection of its own.
async fn send(addr: SocketAddr, request: String) -> Received {
    let stream = TcpStream::connect(addr).await.unwrap();
    RawHttp::new(stream)
        .exchange(request.as_bytes())
        .await
        .unwrap()
}

async fn get(addr: SocketAddr, url: &str) -> Received {
    send(addr, format!("GET {url} HTTP/1.1\r\nHost: ignored\r\n\r\n")).await
}

/// GET `url` through the forward proxy `proxy` (absolute form, as HTTP_PROXY clients send it).
async fn get_via(proxy: SocketAddr, url: &str) -> Received {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    send(
        proxy,
        format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\n\r\n"),
    )
    .await
}

async fn post_json_via(proxy: SocketAddr, url: &str, body: &str) -> Received {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap();
    send(
        proxy,
        format!(
            "POST {url} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

fn json_body(received: &Received) -> Value {
    serde_json::from_slice(&received.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {:?}",
            String::from_utf8_lossy(&received.body)
        )
    })
}

async fn stop(mut sidecar: Sidecar) -> String {
    sidecar.signal("TERM");
    let status = sidecar.exit().await;
    assert!(status.success(), "{}", sidecar.stderr());
    sidecar.stderr()
}

fn records(path: &Path) -> Vec<Record> {
    parse_records(&std::fs::read_to_string(path).unwrap())
}

/// The outbound http records of `path` whose URL ends with `path_and_query`.
fn exchanges_to<'a>(records: &'a [Record], path_and_query: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|record| match &record.detail {
            Detail::Http(exchange) => {
                record.direction == "outbound" && exchange.request.url.ends_with(path_and_query)
            }
            Detail::Stream(_) => false,
        })
        .collect()
}

#[tokio::test]
async fn the_app_runs_against_the_recording_with_its_dependency_stopped() {
    let dir = TempDir::new("mock-app");
    let recorded = dir.0.join("recorded.jsonl");
    let dependency = PyService::start("dependency", &[]);
    let dep = dependency.addr.to_string();

    // Record: the app's calls to its dependency go through a forward sidecar.
    let recorder =
        Sidecar::forward("http", &["--capture", recorded.to_str().unwrap()], &dir.0).await;
    let proxy_url = format!("http://{}", recorder.outbound);
    let app = PyService::start("app", &[("DEPENDENCY", &dep), ("HTTP_PROXY", &proxy_url)]);
    let quote = get(app.addr, "/quote?item=2").await;
    assert_eq!(json_body(&quote), json!({"item": 2, "quote": 20}));
    assert_eq!(
        json_body(&get(app.addr, "/quote?item=3").await)["quote"],
        30
    );
    for count in 1..=3 {
        let counted = get_via(recorder.outbound, &format!("http://{dep}/counter")).await;
        assert_eq!(json_body(&counted), json!({ "count": count }));
    }
    let ordered = post_json_via(
        recorder.outbound,
        &format!("http://{dep}/orders"),
        r#"{"item":5,"qty":1}"#,
    )
    .await;
    assert_eq!(ordered.status, 201);
    assert_eq!(
        get_via(recorder.outbound, &format!("http://{dep}/slow?ms=500&x=1"))
            .await
            .status,
        200
    );
    stop(recorder).await;
    app.stop();
    dependency.stop();

    // Mock: the dependency is gone; the app is pointed at a sidecar serving the recording.
    let mocked = dir.0.join("mocked.jsonl");
    let mock = Sidecar::forward(
        "http",
        &[
            "--capture",
            mocked.to_str().unwrap(),
            "--mock",
            recorded.to_str().unwrap(),
            "--mock-latency",
            "recorded",
        ],
        &dir.0,
    )
    .await;
    let proxy_url = format!("http://{}", mock.outbound);
    let app = PyService::start("app", &[("DEPENDENCY", &dep), ("HTTP_PROXY", &proxy_url)]);
    let quote = get(app.addr, "/quote?item=2").await;
    assert_eq!(
        quote.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&quote.body)
    );
    assert_eq!(json_body(&quote), json!({"item": 2, "quote": 20}));

    // Repeats: the recorded answers in order, then the last again.
    let mut counts = Vec::new();
    for _ in 0..4 {
        counts.push(
            json_body(&get_via(mock.outbound, &format!("http://{dep}/counter")).await)["count"]
                .clone(),
        );
    }
    assert_eq!(counts, [json!(1), json!(2), json!(3), json!(3)]);

    // The JSON body matches as values: other key order, other spacing.
    let ordered = post_json_via(
        mock.outbound,
        &format!("http://{dep}/orders"),
        r#"{ "qty": 1, "item": 5 }"#,
    )
    .await;
    assert_eq!(ordered.status, 201);
    assert_eq!(
        json_body(&ordered),
        json!({"ordered": 5, "status": "created"})
    );

    // Recorded latency: the query in the other order still matches, and the answer waits as long as the
    // recorded exchange took.
    let recorded_records = records(&recorded);
    let slow_recorded = exchanges_to(&recorded_records, "/slow?ms=500&x=1")[0].duration_ms;
    let started = Instant::now();
    let slow = get_via(mock.outbound, &format!("http://{dep}/slow?x=1&ms=500")).await;
    let waited = started.elapsed();
    assert_eq!(json_body(&slow), json!({"slept": 500}));
    assert!(
        waited >= Duration::from_secs_f64(slow_recorded / 1000.0 * 0.8),
        "answered after {waited:?}, recorded {slow_recorded} ms"
    );

    // Nothing recorded matches: 502, naming the nearest recorded request and the differing field.
    let missed = get_via(mock.outbound, &format!("http://{dep}/price?item=9")).await;
    let text = String::from_utf8_lossy(&missed.body).into_owned();
    assert_eq!(missed.status, 502, "{text}");
    let price_2 = exchanges_to(&recorded_records, "/price?item=2")[0];
    assert!(
        text.contains(&format!("nearest recorded request: record {}", price_2.uid))
            && text.contains("query item: recorded 2, now 9"),
        "{text}"
    );
    stop(mock).await;
    app.stop();

    // The mock's answers are recorded, with what they were served from or how they missed.
    let mocked_records = records(&mocked);
    let answer_of = |record: &Record| match &record.detail {
        Detail::Http(exchange) => exchange.mock.clone().expect("a mock field"),
        Detail::Stream(_) => panic!("not http"),
    };
    let served = answer_of(exchanges_to(&mocked_records, "/price?item=2")[0]);
    assert!(served.matched);
    assert_eq!(served.served_from.as_deref(), Some(price_2.uid.as_str()));
    let missed = answer_of(exchanges_to(&mocked_records, "/price?item=9")[0]);
    assert!(!missed.matched);
    assert_eq!(missed.nearest.as_deref(), Some(price_2.uid.as_str()));
    let fields: Vec<&str> = missed
        .differences
        .iter()
        .map(|d| d.field.as_str())
        .collect();
    assert_eq!(fields, ["query item"]);
    let slow_mocked = exchanges_to(&mocked_records, "/slow?x=1&ms=500")[0].duration_ms;
    assert!(
        slow_mocked >= slow_recorded * 0.8 && slow_mocked <= slow_recorded * 1.2 + 100.0,
        "the mock took {slow_mocked} ms where the recording took {slow_recorded} ms"
    );
}

#[tokio::test]
async fn ignore_rules_and_unmatched_calls_get_404_or_pass_through_as_configured() {
    let dir = TempDir::new("mock-unmatched");
    let recorded = dir.0.join("recorded.jsonl");
    let dependency = PyService::start("dependency", &[]);
    let dep = dependency.addr.to_string();
    let recorder =
        Sidecar::forward("http", &["--capture", recorded.to_str().unwrap()], &dir.0).await;
    get_via(recorder.outbound, &format!("http://{dep}/price?item=1")).await;
    post_json_via(
        recorder.outbound,
        &format!("http://{dep}/orders"),
        r#"{"item":5,"request_id":"a1"}"#,
    )
    .await;
    stop(recorder).await;

    // Ignore rules: the query parameter and the JSON field left out, the recorded answers serve.
    let ignoring = Sidecar::forward(
        "http",
        &[
            "--capture",
            "off",
            "--mock",
            recorded.to_str().unwrap(),
            "--mock-ignore-query",
            "item",
            "--mock-ignore-json",
            "$.request_id",
        ],
        &dir.0,
    )
    .await;
    let served = get_via(ignoring.outbound, &format!("http://{dep}/price?item=4")).await;
    assert_eq!(json_body(&served), json!({"item": 1, "price": 10}));
    let ordered = post_json_via(
        ignoring.outbound,
        &format!("http://{dep}/orders"),
        r#"{"item":5,"request_id":"b2"}"#,
    )
    .await;
    assert_eq!(
        ordered.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&ordered.body)
    );
    stop(ignoring).await;

    let not_found = Sidecar::forward(
        "http",
        &[
            "--capture",
            "off",
            "--mock",
            recorded.to_str().unwrap(),
            "--mock-unmatched",
            "404",
        ],
        &dir.0,
    )
    .await;
    let missed = get_via(not_found.outbound, &format!("http://{dep}/price?item=4")).await;
    assert_eq!(missed.status, 404);
    assert!(String::from_utf8_lossy(&missed.body).contains("query item: recorded 1, now 4"));
    stop(not_found).await;

    // Dual mode: the outbound listener answers from the recording, the inbound one still reaches the app.
    let app = PyService::start("app", &[]);
    let dual = Sidecar::dual_http(
        app.addr,
        &["--capture", "off", "--mock", recorded.to_str().unwrap()],
        &dir.0,
    )
    .await;
    let served = get_via(dual.outbound, &format!("http://{dep}/price?item=1")).await;
    assert_eq!(json_body(&served), json!({"item": 1, "price": 10}));
    let missed = get_via(dual.outbound, &format!("http://{dep}/price?item=2")).await;
    assert_eq!(missed.status, 502);
    assert_eq!(get(dual.inbound, "/users/1").await.status, 200);
    stop(dual).await;

    // Passthrough: the live dependency answers what the recording cannot.
    let passthrough = Sidecar::forward(
        "http",
        &[
            "--capture",
            "off",
            "--mock",
            recorded.to_str().unwrap(),
            "--mock-unmatched",
            "passthrough",
        ],
        &dir.0,
    )
    .await;
    let live = get_via(passthrough.outbound, &format!("http://{dep}/price?item=4")).await;
    assert_eq!(json_body(&live), json!({"item": 4, "price": 40}));
    stop(passthrough).await;
}

#[tokio::test]
async fn a_mock_needs_an_outbound_listener_and_a_readable_capture() {
    let dir = TempDir::new("mock-usage");
    let binary = std::fs::canonicalize(support::capture::BIN).unwrap();
    for (args, says) in [
        (
            vec!["--proxy-type", "reverse", "--mock", "/dev/null"],
            "needs an outbound listener",
        ),
        (
            vec![
                "--proxy-type",
                "forward",
                "--mock",
                "/nonexistent/capture.jsonl",
            ],
            "cannot read the mock capture",
        ),
        (
            vec![
                "--proxy-type",
                "forward",
                "--mock",
                "/dev/null",
                "--mock-unmatched",
                "418",
            ],
            "allowed: 502, 404 or passthrough",
        ),
    ] {
        let output = std::process::Command::new(&binary)
            .args(&args)
            .args(["--capture", "off"])
            .current_dir(&dir.0)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// `sidecar-proxy replay CAPTURE --target URL [extra]`: its exit code and what it printed.
async fn replay_cli(capture: &Path, target: SocketAddr, extra: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(BIN)
        .arg("replay")
        .arg(capture)
        .args(["--target", &format!("http://{target}")])
        .args(extra)
        .output()
        .await
        .expect("run sidecar-proxy replay");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

fn write_records(path: &Path, records: &[&Record]) {
    let lines: Vec<String> = records
        .iter()
        .map(|record| serde_json::to_string(record).unwrap())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `replay --mock-from`: the same call (the dependency's counter) answered 1 and then 2 while two requests
/// were recorded in dual mode. Replaying only the second against a sidecar mocking from the recording,
/// its call gets 2, the answer the second request's own call got; without `--mock-from` the mock serves
/// the first recorded answer it has not served yet, 1, and the replay sees the difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_mock_from_answers_each_replayed_requests_calls_from_its_own_recorded_calls() {
    let dir = TempDir::new("mock-from");
    let dependency = PyService::start("dependency", &[]);
    let app =
        support::calling_app::start_calling_app(dependency.addr, |_| "/counter".to_owned()).await;

    // Record in dual mode, where each call is linked to the request it was made for.
    let (recorder, log) =
        support::capture::start_capturing_proxy("dual", "http", Some(app.addr), |_| {}).await;
    app.use_proxy(recorder.outbound());
    for count in 1..=2 {
        let answer = get(recorder.inbound(), "/count").await;
        assert_eq!(json_body(&answer), json!({ "count": count }));
    }
    let recorded = log.records(recorder).await;
    dependency.stop();
    let inbound: Vec<&Record> = recorded
        .iter()
        .filter(|record| record.direction == "inbound")
        .collect();
    assert_eq!(inbound.len(), 2, "{recorded:#?}");
    let calls: Vec<&Record> = recorded
        .iter()
        .filter(|record| record.direction == "outbound")
        .collect();
    assert_eq!(
        calls
            .iter()
            .map(|call| call.caused_by.clone())
            .collect::<Vec<_>>(),
        inbound
            .iter()
            .map(|request| Some(request.uid.clone()))
            .collect::<Vec<_>>(),
        "each call linked to its request"
    );
    let whole = dir.0.join("recorded.jsonl");
    write_records(&whole, &recorded.iter().collect::<Vec<_>>());
    let second = dir.0.join("second.jsonl");
    write_records(&second, &[inbound[1]]);

    // The dependency is gone; the app's calls are answered from the recording.
    let (mock, _) = sidecar_proxy::mock::Mock::load(
        &whole,
        false,
        sidecar_proxy::mock::Unmatched::BadGateway,
        sidecar_proxy::mock::MatchRules::default(),
    )
    .unwrap();
    let mock = std::sync::Arc::new(mock);
    let (mocking, log_of_mock) =
        support::capture::start_capturing_proxy_with("dual", "http", Some(app.addr), |services| {
            services.mock = Some(mock.clone());
        })
        .await;
    app.use_proxy(mocking.outbound());

    // With --mock-from first: the mock's own order would serve the first recorded answer to the first
    // call it gets.
    let (code, text) = replay_cli(
        &second,
        mocking.inbound(),
        &["--mock-from", whole.to_str().unwrap()],
    )
    .await;
    assert_eq!(
        code, 0,
        "the call gets the answer its own request's call got: {text}"
    );
    let (code, text) = replay_cli(&second, mocking.inbound(), &[]).await;
    assert_eq!(
        code, 1,
        "without --mock-from the first recorded answer is served: {text}"
    );
    assert!(text.contains("$.count: recorded 2, now 1"), "{text}");
    // The mock marked each answer with the recorded call it served: the second request's own call with
    // --mock-from, the first recorded call without.
    let answered = log_of_mock.records(mocking).await;
    let served: Vec<_> = answered
        .iter()
        .filter_map(|record| match &record.detail {
            Detail::Http(exchange) if record.direction == "outbound" => exchange
                .mock
                .as_ref()
                .and_then(|answer| answer.served_from.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        served,
        [calls[1].uid.clone(), calls[0].uid.clone()],
        "{answered:#?}"
    );
}
