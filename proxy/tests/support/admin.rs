//! The admin listener in-process, a proxy counting into the same metrics, a bare HTTP/1.1 client for the
//! admin endpoints and a strict reader for the OpenMetrics text they serve.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sidecar_proxy::admin::{AdminServer, Readiness};
use sidecar_proxy::capture::{CaptureSink, CaptureWriter, Destination, SinkOptions};
use sidecar_proxy::metrics::Metrics;
use sidecar_proxy::server::Services;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use super::proxy::start_proxy_with_services;
use super::proxy::RunningProxy;

pub struct RunningAdmin {
    pub addr: SocketAddr,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<()>>,
}

impl Drop for RunningAdmin {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the admin listener on 127.0.0.1 with fresh metrics, not ready.
pub async fn start_admin() -> RunningAdmin {
    start_admin_with(None).await
}

/// Starts the admin listener, with a shorter header read timeout if given.
pub async fn start_admin_with(header_read_timeout: Option<Duration>) -> RunningAdmin {
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::new();
    let mut server = AdminServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        metrics.clone(),
        readiness.clone(),
    )
    .await
    .expect("bind the admin listener");
    if let Some(timeout) = header_read_timeout {
        server = server.with_header_read_timeout(timeout);
    }
    let addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    RunningAdmin {
        addr,
        readiness,
        metrics,
        shutdown,
        task: Some(task),
    }
}

/// Starts the sidecar (capture off) counting into `metrics`, like `support::start_proxy` otherwise.
pub async fn start_proxy_counting(
    proxy_type: &str,
    protocol: &str,
    app: Option<SocketAddr>,
    metrics: Arc<Metrics>,
) -> RunningProxy {
    let services = Services {
        metrics,
        ..Services::default()
    };
    start_proxy_with_services(proxy_type, protocol, app, services).await
}

/// A capture sink writing JSON lines to a fresh file in the temporary directory, counting into `metrics`.
/// Keep the writer alive while the proxy runs.
pub fn capture_to_temp_file(
    metrics: Arc<Metrics>,
) -> (CaptureSink, Option<CaptureWriter>, PathBuf) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "sidecar-admin-test-{}-{}.jsonl",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let options = SinkOptions {
        destination: Destination::File(path.clone()),
        queue_capacity: 1024,
        rotation: None,
        nats: None,
    };
    let (sink, writer) = CaptureSink::start(&options, metrics).expect("start the capture writer");
    (sink, writer, path)
}

/// An admin answer as it came off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `connection: close` and reads the whole answer.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("the admin listener answers and closes")
        .unwrap();
    parse_reply(&raw)
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8(raw.to_vec()).expect("a UTF-8 answer");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// One sample line: metric name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed OpenMetrics text exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name → type, from the `# TYPE` lines.
    pub families: BTreeMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample with exactly these labels, if there is one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Like [`Exposition::value`], with a missing sample read as 0 (a series not yet created).
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

/// Parses OpenMetrics text strictly enough to catch a broken exposition: every line a descriptor, a
/// sample of a declared family, or the final `# EOF`.
pub fn parse_openmetrics(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    let body = text
        .strip_suffix("# EOF\n")
        .ok_or("the exposition does not end with `# EOF`")?;
    for line in body.lines() {
        if let Some(descriptor) = line.strip_prefix("# ") {
            let mut parts = descriptor.splitn(3, ' ');
            let (kind, name, rest) = (parts.next(), parts.next(), parts.next());
            match (kind, name, rest) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "gaugehistogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                    ];
                    if !known.contains(&kind) {
                        return Err(format!("unknown type in {line:?}"));
                    }
                    if exposition
                        .families
                        .insert(name.to_owned(), kind.to_owned())
                        .is_some()
                    {
                        return Err(format!("family {name} declared twice"));
                    }
                }
                (Some("HELP" | "UNIT"), Some(_), _) => {}
                _ => return Err(format!("bad descriptor line {line:?}")),
            }
            continue;
        }
        let sample = parse_sample(line).ok_or_else(|| format!("bad sample line {line:?}"))?;
        let declared = exposition.families.iter().any(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            };
            suffixes
                .iter()
                .any(|suffix| sample.name == format!("{family}{suffix}"))
        });
        if !declared {
            return Err(format!("sample of an undeclared family: {line:?}"));
        }
        exposition.samples.push(sample);
    }
    Ok(exposition)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let end = loop {
            let (at, c) = chars.next()?;
            if c == '}' {
                break at + 1;
            }
            if c == ',' {
                continue;
            }
            // The label name, up to '='.
            let mut key = String::from(c);
            loop {
                let (_, c) = chars.next()?;
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        };
        rest = &inner[end..];
    }
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Scrapes `/metrics` and parses it.
pub async fn scrape(addr: SocketAddr) -> Exposition {
    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    parse_openmetrics(&reply.body).unwrap_or_else(|e| panic!("{e}\n{}", reply.body))
}

/// Scrapes until `done` holds (counters move when connections finish, a moment after the client sees
/// the end), or panics with the last exposition after a few seconds.
pub async fn scrape_until(addr: SocketAddr, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let exposition = scrape(addr).await;
        if done(&exposition) {
            return exposition;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("metrics never reached the expected values: {exposition:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
