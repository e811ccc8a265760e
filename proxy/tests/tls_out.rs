//! tls-out end to end on loopback: a real TLS client (rustls) through the sidecar's CONNECT and SOCKS5
//! listeners to a real HTTPS upstream with certificates of its own CA. The client trusts only the capture
//! CA, so every successful request proves the sidecar terminated its TLS; the records must hold the
//! decrypted exchange.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rstest::rstest;
use rustls::pki_types::ServerName;
use sidecar_proxy::capture::record::{Detail, Record};
use sidecar_proxy::config::{ProxyType, RawSettings, Setting, Source, TlsOutSettings};
use sidecar_proxy::mock::{MatchRules, Mock, Unmatched};
use sidecar_proxy::tls_out::TlsInterceptor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use support::capture::{connect_tunnel, start_capturing_proxy_with, temp_path, CaptureLog};
use support::proxy::RunningProxy;
use support::start_tcp_echo;
use support::tls::{client_config, https_request, start_https_upstream, HttpsReply, TestCa};

const H2: &[u8] = b"h2";
const HTTP11: &[u8] = b"http/1.1";

/// A sidecar with tls-out on, the two CAs of the test, and its records.
struct Fixture {
    proxy: RunningProxy,
    log: CaptureLog,
    capture_ca: TestCa,
    upstream_ca: TestCa,
    _files: Vec<PathBuf>,
}

struct Setup {
    protocol: &'static str,
    exclude: &'static str,
    /// Whether the sidecar is told to trust the upstream's CA (else upstream verification fails).
    trust_upstream: bool,
    /// Mock mode: the capture the sidecar answers from (`--mock`).
    mock: Option<PathBuf>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            protocol: "http",
            exclude: "",
            trust_upstream: true,
            mock: None,
        }
    }
}

async fn sidecar(setup: Setup) -> Fixture {
    let capture_ca = TestCa::new("tls-out test capture CA");
    let upstream_ca = TestCa::new("tls-out test upstream CA");
    let ca_dir = capture_ca.write_dir(&temp_path("capture-ca"));
    let bundle = temp_path("upstream-ca.pem");
    std::fs::write(&bundle, &upstream_ca.cert_pem).unwrap();
    let mut raw = RawSettings::default();
    raw.offer(Setting::TlsOut, "true", Source::Flag);
    raw.offer(Setting::TlsOutExclude, setup.exclude, Source::Flag);
    let settings = TlsOutSettings::from_settings(&raw, ProxyType::Forward).unwrap();
    let extra = setup.trust_upstream.then_some(bundle.as_path());
    let (proxy, log) = start_capturing_proxy_with("forward", setup.protocol, None, |services| {
        let interceptor = TlsInterceptor::new(
            settings,
            &ca_dir,
            extra,
            Duration::from_secs(5),
            services.metrics.clone(),
        )
        .expect("tls-out starts");
        services.tls_out = Some(Arc::new(interceptor));
        if let Some(path) = &setup.mock {
            let (mock, _) = Mock::load(path, false, Unmatched::BadGateway, MatchRules::default())
                .expect("the mock capture loads");
            services.mock = Some(Arc::new(mock));
        }
    })
    .await;
    Fixture {
        proxy,
        log,
        capture_ca,
        upstream_ca,
        _files: vec![ca_dir, bundle],
    }
}

impl Fixture {
    /// An HTTPS upstream with a certificate of the upstream CA for `names`, offering `alpn`.
    async fn upstream(&self, names: &[&str], alpn: &[&[u8]]) -> std::net::SocketAddr {
        start_https_upstream(self.upstream_ca.server_config(names, alpn)).await
    }

    /// One request through a CONNECT tunnel to `target`, trusting only the capture CA.
    async fn via_connect(
        &self,
        target: &str,
        server_name: ServerName<'static>,
        alpn: &[&[u8]],
        body: Option<&'static [u8]>,
    ) -> std::io::Result<HttpsReply> {
        let tunnel = connect_tunnel(self.proxy.outbound(), target).await;
        let config = client_config(&[&self.capture_ca.cert_der], alpn);
        https_request(tunnel, config, server_name, "/orders", body).await
    }

    /// The records and the metrics, once the sidecar has stopped (every connection's task finished).
    async fn records(self) -> (Vec<Record>, String) {
        let metrics = self.log.metrics.clone();
        let records = self.log.records(self.proxy).await;
        (records, metrics.encode())
    }
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

/// The one record of the run, which must be an HTTP exchange.
fn only_exchange(records: &[Record]) -> &Record {
    assert_eq!(records.len(), 1, "{records:#?}");
    assert!(matches!(records[0].detail, Detail::Http(_)), "{records:#?}");
    &records[0]
}

#[rstest]
#[case::http1(&[HTTP11], "http/1.1", "HTTP/1.1")]
#[case::h2(&[H2, HTTP11], "h2", "HTTP/2.0")]
#[tokio::test]
async fn connect_tunnels_are_decrypted_and_recorded(
    #[case] alpn: &[&[u8]],
    #[case] agreed: &str,
    #[case] version: &str,
) {
    let fixture = sidecar(Setup::default()).await;
    let upstream = fixture.upstream(&["localhost"], &[H2, HTTP11]).await;
    let reply = fixture
        .via_connect(
            &format!("localhost:{}", upstream.port()),
            dns("localhost"),
            alpn,
            Some(b"hello"),
        )
        .await
        .expect("the client trusts the capture CA's leaf");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        format!("upstream saw POST /orders over {version}, 5 body bytes")
    );
    assert_eq!(reply.alpn.as_deref(), Some(agreed), "client side");
    assert_eq!(
        reply.upstream_alpn.as_deref(),
        Some(agreed),
        "upstream side"
    );

    let (records, _) = fixture.records().await;
    let record = only_exchange(&records);
    assert_eq!(record.transport, "connect");
    assert_eq!(record.target, format!("localhost:{}", upstream.port()));
    let tls = record.tls.as_ref().expect("marked as TLS");
    assert_eq!(tls.sni.as_deref(), Some("localhost"));
    assert_eq!(tls.alpn.as_deref(), Some(agreed));
    assert_eq!(tls.version, "TLSv1.3");
    let Detail::Http(exchange) = &record.detail else {
        unreachable!()
    };
    assert!(
        exchange.request.url.starts_with("https://localhost")
            && exchange.request.url.ends_with("/orders"),
        "{}",
        exchange.request.url
    );
    assert_eq!(exchange.request.method, "POST");
    assert_eq!(exchange.request.version, version);
    assert_eq!(&exchange.request.body.base64[..], b"hello");
    let response = exchange.response.as_ref().expect("a response");
    assert_eq!(response.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&response.body.base64),
        reply.body,
        "the record holds the decrypted response"
    );
}

/// Mock mode behind HTTPS_PROXY: the app's HTTPS through a CONNECT tunnel is decrypted with the capture
/// CA and answered from the recording without contacting the upstream; a call nothing matches gets the
/// 502 naming the nearest recorded one; a tunnel that carries neither HTTP nor TLS is closed, its refusal
/// recorded.
#[tokio::test]
async fn under_mock_https_through_a_connect_tunnel_is_answered_from_the_recording() {
    let recording = sidecar(Setup::default()).await;
    let upstream = recording.upstream(&["localhost"], &[HTTP11]).await;
    let target = format!("localhost:{}", upstream.port());
    let recorded = recording
        .via_connect(&target, dns("localhost"), &[HTTP11], Some(b"hello"))
        .await
        .expect("recorded through the real upstream");
    let (records, _) = recording.records().await;
    let recorded_uid = only_exchange(&records).uid.clone();
    let capture = temp_path("recorded.jsonl");
    let lines: Vec<String> = records
        .iter()
        .map(|record| serde_json::to_string(record).unwrap())
        .collect();
    std::fs::write(&capture, lines.join("\n") + "\n").unwrap();

    let mocked = sidecar(Setup {
        mock: Some(capture.clone()),
        ..Setup::default()
    })
    .await;
    let answered = mocked
        .via_connect(&target, dns("localhost"), &[HTTP11], Some(b"hello"))
        .await
        .expect("the mock's leaf is of the capture CA the client trusts");
    assert_eq!(answered.status, 200);
    assert_eq!(answered.body, recorded.body, "the recorded answer");
    let missed = mocked
        .via_connect(&target, dns("localhost"), &[HTTP11], None)
        .await
        .expect("an unmatched call is answered too");
    assert_eq!(missed.status, 502);
    assert!(missed.body.contains("nearest"), "{}", missed.body);
    let mut not_tls = connect_tunnel(mocked.proxy.outbound(), &target).await;
    not_tls.write_all(b"PING\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), not_tls.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "closed without an answer: {rest:?}");

    let (records, _) = mocked.records().await;
    let _ = std::fs::remove_file(&capture);
    let answers: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.detail {
            Detail::Http(exchange) => Some((record, exchange)),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 2, "{records:#?}");
    for (record, exchange) in &answers {
        assert_eq!(record.transport, "connect");
        assert_eq!(record.target, target);
        // What the sidecar decrypted is said as in any tls-out record, without an upstream side.
        let tls = record
            .tls
            .as_ref()
            .expect("the decrypted exchange carries its TLS");
        assert_eq!(tls.sni.as_deref(), Some("localhost"));
        assert_eq!(tls.alpn.as_deref(), Some("http/1.1"));
        assert!(tls.version.starts_with("TLSv1."), "{tls:?}");
        assert_eq!(tls.upstream_version, None, "no upstream was contacted");
        assert!(
            exchange.request.url.starts_with("https://localhost"),
            "{}",
            exchange.request.url
        );
    }
    let hit = answers[0].1.mock.as_ref().expect("marked as the mock's");
    assert!(hit.matched);
    assert_eq!(hit.served_from.as_deref(), Some(recorded_uid.as_str()));
    let miss = answers[1].1.mock.as_ref().expect("marked as the mock's");
    assert!(!miss.matched);
    assert_eq!(miss.nearest.as_deref(), Some(recorded_uid.as_str()));
    let refused: Vec<_> = records
        .iter()
        .filter_map(|record| match &record.detail {
            Detail::Stream(stream) => Some(stream),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{records:#?}");
    assert_eq!(refused[0].end, "refused");
    assert!(
        refused[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("mock mode answers HTTP only")),
        "{:?}",
        refused[0].error
    );
}

#[tokio::test]
async fn socks5_streams_are_decrypted_and_recorded() {
    let fixture = sidecar(Setup {
        protocol: "socks",
        ..Setup::default()
    })
    .await;
    let upstream = fixture.upstream(&["localhost"], &[H2, HTTP11]).await;
    let stream = tokio_socks::tcp::Socks5Stream::connect(
        fixture.proxy.outbound(),
        ("localhost", upstream.port()),
    )
    .await
    .unwrap();
    let config = client_config(&[&fixture.capture_ca.cert_der], &[H2, HTTP11]);
    let reply = https_request(stream, config, dns("localhost"), "/orders", None)
        .await
        .unwrap();
    assert_eq!(
        reply.body,
        "upstream saw GET /orders over HTTP/2.0, 0 body bytes"
    );
    let (records, _) = fixture.records().await;
    let record = only_exchange(&records);
    assert_eq!(record.transport, "socks5");
    assert_eq!(record.tls.as_ref().unwrap().alpn.as_deref(), Some("h2"));
}

#[tokio::test]
async fn without_sni_the_leaf_is_for_the_requested_address() {
    let fixture = sidecar(Setup::default()).await;
    let upstream = fixture.upstream(&["127.0.0.1"], &[HTTP11]).await;
    // rustls sends no SNI for an IP address, as most clients do.
    let reply = fixture
        .via_connect(
            &upstream.to_string(),
            ServerName::IpAddress(upstream.ip().into()),
            &[HTTP11],
            None,
        )
        .await
        .expect("the leaf names the IP address");
    let (_, leaf) = X509Certificate::from_der(&reply.peer_certificate).unwrap();
    let sans: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::IPAddress(ip) => format!("ip {ip:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, ["ip [127, 0, 0, 1]"]);
    let (records, _) = fixture.records().await;
    let tls = only_exchange(&records).tls.clone().unwrap();
    assert_eq!(tls.sni, None);
}

#[tokio::test]
async fn a_second_connection_to_a_host_reuses_its_leaf() {
    let fixture = sidecar(Setup::default()).await;
    let upstream = fixture.upstream(&["localhost"], &[HTTP11]).await;
    let target = format!("localhost:{}", upstream.port());
    let first = fixture
        .via_connect(&target, dns("localhost"), &[HTTP11], None)
        .await
        .unwrap();
    let second = fixture
        .via_connect(&target, dns("localhost"), &[HTTP11], None)
        .await
        .unwrap();
    assert_eq!(first.peer_certificate, second.peer_certificate);
    let (records, metrics) = fixture.records().await;
    assert_eq!(records.len(), 2);
    assert!(
        metrics.contains("sidecar_tls_out_leaf_certificates_total{source=\"minted\"} 1\n")
            && metrics.contains("sidecar_tls_out_leaf_certificates_total{source=\"cached\"} 1\n"),
        "{metrics}"
    );
}

#[rstest]
#[case::both_offered(&[H2, HTTP11], &[HTTP11], Some("http/1.1"))]
#[case::client_offers_none(&[], &[H2, HTTP11], None)]
#[tokio::test]
async fn the_client_gets_the_protocol_the_upstream_chose(
    #[case] client_offers: &[&[u8]],
    #[case] upstream_offers: &[&[u8]],
    #[case] agreed: Option<&str>,
) {
    let fixture = sidecar(Setup::default()).await;
    let upstream = fixture.upstream(&["localhost"], upstream_offers).await;
    let reply = fixture
        .via_connect(
            &format!("localhost:{}", upstream.port()),
            dns("localhost"),
            client_offers,
            None,
        )
        .await
        .unwrap();
    assert_eq!(reply.alpn.as_deref(), agreed);
    assert_eq!(
        reply.upstream_alpn.as_deref(),
        Some(agreed.unwrap_or("none"))
    );
    assert_eq!(
        reply.body,
        "upstream saw GET /orders over HTTP/1.1, 0 body bytes"
    );
}

/// The upstreams a user meets, each wrong in one way.
#[derive(Clone, Copy, Debug)]
enum BadUpstream {
    UnknownIssuer,
    OtherName,
    Expired,
    CaAsServerCertificate,
    NoCommonAlpn,
}

/// An upstream is never trusted unverified: every way its TLS fails gets the client a TLS alert and is
/// recorded as a sentence naming the cause and the fix, with rustls's name for it kept at the end.
#[rstest]
#[case::unknown_issuer(
    BadUpstream::UnknownIssuer,
    "signed by a CA the sidecar does not trust",
    "--tls-upstream-ca"
)]
#[case::name_mismatch(
    BadUpstream::OtherName,
    "not valid for the name the app asked for (it names other.test)",
    "a name its certificate holds"
)]
#[case::expired(BadUpstream::Expired, "certificate has expired", "renew it")]
#[case::ca_as_server_certificate(
    BadUpstream::CaAsServerCertificate,
    "presents a CA certificate as its own server certificate",
    "signed by that CA"
)]
#[case::no_common_alpn(
    BadUpstream::NoCommonAlpn,
    "none of the application protocols the app offered (ALPN",
    "which protocol the upstream serves"
)]
#[tokio::test]
async fn each_upstream_tls_failure_is_a_sentence_with_its_fix(
    #[case] bad: BadUpstream,
    #[case] cause: &str,
    #[case] fix: &str,
) {
    let fixture = sidecar(Setup {
        trust_upstream: !matches!(bad, BadUpstream::UnknownIssuer),
        ..Setup::default()
    })
    .await;
    let ca = &fixture.upstream_ca;
    let config = match bad {
        BadUpstream::UnknownIssuer => ca.server_config(&["localhost"], &[HTTP11]),
        BadUpstream::OtherName => ca.server_config(&["other.test"], &[HTTP11]),
        BadUpstream::Expired => ca.server_config_with(&["localhost"], &[HTTP11], |leaf| {
            leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
            leaf.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }),
        BadUpstream::CaAsServerCertificate => ca.ca_as_server_config(&[HTTP11]),
        BadUpstream::NoCommonAlpn => ca.server_config(&["localhost"], &[H2]),
    };
    let upstream = start_https_upstream(config).await;
    let error = fixture
        .via_connect(
            &format!("localhost:{}", upstream.port()),
            dns("localhost"),
            &[HTTP11],
            None,
        )
        .await
        .expect_err("never silently trusted");
    assert!(
        error.to_string().contains("received fatal alert"),
        "the client gets a TLS alert: {error}"
    );
    let (records, metrics) = fixture.records().await;
    assert!(
        metrics.contains("sidecar_tls_out_connections_total{result=\"upstream_failed\"} 1\n"),
        "{metrics}"
    );
    assert_eq!(records.len(), 1, "{records:#?}");
    let Detail::Stream(stream) = &records[0].detail else {
        panic!("{records:#?}")
    };
    assert_eq!(stream.end, "reset");
    let reason = stream.error.as_deref().unwrap();
    assert!(
        reason.starts_with("tls-out: upstream localhost: the upstream"),
        "{reason}"
    );
    assert!(reason.contains(cause), "{reason}");
    assert!(reason.contains(fix), "{reason}");
    assert!(reason.contains("tls-out-exclude"), "{reason}");
    assert!(
        reason.ends_with(')'),
        "the technical name stays, last: {reason}"
    );
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_capture_ca_fails_its_handshake() {
    let fixture = sidecar(Setup::default()).await;
    let upstream = fixture.upstream(&["localhost"], &[HTTP11]).await;
    let tunnel = connect_tunnel(
        fixture.proxy.outbound(),
        &format!("localhost:{}", upstream.port()),
    )
    .await;
    let config = client_config(&[&fixture.upstream_ca.cert_der], &[HTTP11]);
    let error = https_request(tunnel, config, dns("localhost"), "/", None)
        .await
        .expect_err("the leaf is the capture CA's");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");
    let (records, metrics) = fixture.records().await;
    let Detail::Stream(stream) = &records[0].detail else {
        panic!("{records:#?}")
    };
    assert_eq!(stream.end, "reset");
    assert!(
        metrics.contains("sidecar_tls_out_connections_total{result=\"client_failed\"} 1\n"),
        "{metrics}"
    );
}

/// Excluded by the server name the client asked for, or by the address it dialled whatever name it sent.
#[rstest]
#[case::by_name("*.example.test,localhost", "localhost")]
#[case::by_dialled_address("10.0.0.7,127.0.0.1", "127.0.0.1")]
#[tokio::test]
async fn an_excluded_host_keeps_its_own_certificate(
    #[case] exclude: &'static str,
    #[case] dialled: &str,
) {
    let fixture = sidecar(Setup {
        exclude,
        ..Setup::default()
    })
    .await;
    let upstream = fixture.upstream(&["localhost"], &[HTTP11]).await;
    let tunnel = connect_tunnel(
        fixture.proxy.outbound(),
        &format!("{dialled}:{}", upstream.port()),
    )
    .await;
    // Trusting only the upstream's CA: this works only if the sidecar stayed out of the way.
    let config = client_config(&[&fixture.upstream_ca.cert_der], &[HTTP11]);
    let reply = https_request(tunnel, config, dns("localhost"), "/orders", None)
        .await
        .expect("relayed untouched");
    assert_eq!(
        reply.body,
        "upstream saw GET /orders over HTTP/1.1, 0 body bytes"
    );
    let (records, metrics) = fixture.records().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].tls, None);
    let Detail::Stream(stream) = &records[0].detail else {
        panic!("{records:#?}")
    };
    assert_eq!(stream.protocol_seen, "tls");
    assert_eq!(stream.sni.as_deref(), Some("localhost"));
    assert!(
        metrics.contains("sidecar_tls_out_connections_total{result=\"passed\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn streams_that_are_not_tls_are_untouched() {
    let fixture = sidecar(Setup::default()).await;
    let echo = start_tcp_echo().await;
    let mut tunnel = connect_tunnel(fixture.proxy.outbound(), &echo.to_string()).await;
    tunnel.write_all(b"\x16not quite tls\n").await.unwrap();
    tunnel.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    tunnel.read_to_end(&mut echoed).await.unwrap();
    assert_eq!(echoed, b"\x16not quite tls\n");
    let mut plain = TcpStream::connect(fixture.proxy.outbound()).await.unwrap();
    drop(plain.shutdown().await);
    let (records, metrics) = fixture.records().await;
    let Detail::Stream(stream) = &records[0].detail else {
        panic!("{records:#?}")
    };
    assert_eq!(stream.bytes_client_to_target, 15);
    assert_eq!(records[0].tls, None);
    assert!(
        !metrics.contains("sidecar_tls_out_connections_total{"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------------------------------
// The real binary: start-up checks, the trust files, and the log line of a failed upstream
// ---------------------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// Runs the binary in forward http mode with tls-out and `extra` flags until `ready` says so or it exits;
/// returns it with its stderr so far.
fn forward_with_tls_out(extra: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(BIN);
    support::env::remove_all_proxy_vars(&mut command);
    command
        .env("RUST_LOG", "info")
        .args(["--proxy-type", "forward", "--proxy-protocol", "http"])
        .args(["--admin-bind", "127.0.0.1", "--tls-out"])
        .args(extra);
    command
}

#[test]
fn a_missing_or_wrong_ca_stops_the_sidecar_with_one_line() {
    let dir = temp_path("no-ca");
    std::fs::create_dir_all(&dir).unwrap();
    let capture = dir.join("capture.jsonl");
    let missing = forward_with_tls_out(&["--capture", capture.to_str().unwrap()])
        .args(["--tls-ca-dir", dir.to_str().unwrap(), "--proxy-out-port"])
        .arg(support::capture::free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("sidecar-proxy: "))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("sidecar-proxy: cannot read the capture CA's certificate")
            && errors[0].contains("tls.crt")
            && errors[0].contains("sidecar-proxy ca create"),
        "{stderr}"
    );

    // A CA whose key is another's.
    let ca = TestCa::new("one");
    let other = TestCa::new("other");
    std::fs::write(dir.join("tls.crt"), &ca.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &other.key_pem).unwrap();
    let mismatched = forward_with_tls_out(&["--capture", capture.to_str().unwrap()])
        .args(["--tls-ca-dir", dir.to_str().unwrap(), "--proxy-out-port"])
        .arg(support::capture::free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(mismatched.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&mismatched.stderr).contains("does not belong to the certificate"),
        "{}",
        String::from_utf8_lossy(&mismatched.stderr)
    );

    // tls-out on a reverse proxy is a configuration error (exit 2), named as written.
    let reverse = std::process::Command::new(BIN)
        .args(["--proxy-type", "reverse", "--tls-out", "true"])
        .output()
        .unwrap();
    assert_eq!(reverse.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&reverse.stderr)
            .lines()
            .any(|line| line.starts_with(
                "sidecar-proxy: invalid --tls-out \"true\" for --proxy-type \"reverse\""
            )),
        "{}",
        String::from_utf8_lossy(&reverse.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_binary_writes_trust_files_before_ready_and_logs_a_refused_upstream() {
    let dir = temp_path("binary");
    let ca = TestCa::new("binary capture CA");
    let ca_dir = ca.write_dir(&dir.join("ca"));
    let trust = dir.join("trust");
    let capture = dir.join("capture.jsonl");
    let out_port = support::capture::free_port();
    let admin_port = support::capture::free_port();
    let mut child = tokio::process::Command::from(forward_with_tls_out(&[
        "--capture",
        capture.to_str().unwrap(),
        "--tls-ca-dir",
        ca_dir.to_str().unwrap(),
        "--tls-trust-dir",
        trust.to_str().unwrap(),
        "--proxy-out-port",
        &out_port.to_string(),
        "--admin-port",
        &admin_port.to_string(),
    ]))
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true)
    .spawn()
    .unwrap();
    // Ready means the trust files are complete.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    loop {
        if TcpStream::connect(admin).await.is_ok()
            && support::admin::get(admin, "/readyz").await.status == 200
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read_to_string(trust.join("ca.crt")).unwrap(),
        ca.cert_pem
    );
    let bundle = std::fs::read_to_string(trust.join("ca-bundle.crt")).unwrap();
    assert!(
        bundle.ends_with(&ca.cert_pem),
        "the bundle ends with the CA"
    );
    assert!(trust.join("truststore.p12").metadata().unwrap().len() > 0);

    // An upstream of a CA the sidecar was not given: the client gets an alert, the log names host and why.
    let upstream_ca = TestCa::new("unknown upstream CA");
    let upstream = start_https_upstream(upstream_ca.server_config(&["localhost"], &[HTTP11])).await;
    let tunnel = connect_tunnel(
        ([127, 0, 0, 1], out_port).into(),
        &format!("localhost:{}", upstream.port()),
    )
    .await;
    let config = client_config(&[&ca.cert_der], &[HTTP11]);
    assert!(https_request(tunnel, config, dns("localhost"), "/", None)
        .await
        .is_err());
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("tls-out: upstream TLS failed"))
        .unwrap_or_else(|| panic!("no log line for the refused upstream:\n{stderr}"));
    assert!(
        // The host as the client named it, escaped for the log (log_escape), hence unquoted.
        line.contains("host=localhost ") && line.contains("UnknownIssuer"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
