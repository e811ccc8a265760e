//! Redaction: sensitive headers are replaced in the record as configured.

use http::HeaderName;
use rstest::rstest;
use sidecar_proxy::capture::REDACTED;
use tokio::net::TcpStream;

use crate::support::capture::{start_capturing_proxy, start_fixed_responder, RawHttp};
use crate::{http_detail, Sent};

const SECRET_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nSet-Cookie: session=s3cr3t; HttpOnly\r\nX-Secret: from-the-app\r\nContent-Length: 2\r\n\r\nok";

#[derive(Clone, Copy, Debug)]
enum Redact {
    Default,
    Custom,
    Nothing,
}

#[rstest]
#[case::default_list(Redact::Default)]
#[case::custom_list(Redact::Custom)]
#[case::empty_list_records_everything(Redact::Nothing)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_headers_are_redacted_as_configured(#[case] redact: Redact) {
    let upstream = start_fixed_responder(SECRET_RESPONSE).await;
    let (proxy, log) =
        start_capturing_proxy("reverse", "http", Some(upstream), |settings| match redact {
            Redact::Default => {}
            Redact::Custom => {
                settings.redacted_headers = vec![
                    HeaderName::from_static("x-api-key"),
                    HeaderName::from_static("x-secret"),
                ]
            }
            Redact::Nothing => settings.redacted_headers = Vec::new(),
        })
        .await;
    let mut conn = RawHttp::new(TcpStream::connect(proxy.inbound()).await.unwrap());
    let sent = Sent::new(
        "GET",
        "/private",
        &[
            ("Host", "app.test"),
            ("Authorization", "Bearer abc.def"),
            ("Proxy-Authorization", "Basic dXNlcjpwdw=="),
            ("Cookie", "session=s3cr3t"),
            ("X-Api-Key", "key-123"),
            ("Accept", "*/*"),
        ],
    );
    let got = conn.exchange(&sent.bytes()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("set-cookie"),
        Some("session=s3cr3t; HttpOnly"),
        "the client's copy is never redacted"
    );
    drop(conn);

    let records = log.records(proxy).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let exchange = http_detail(&records[0]);
    let redacted: &[&str] = match redact {
        Redact::Default => &[
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
        ],
        Redact::Custom => &["x-api-key", "x-secret"],
        Redact::Nothing => &[],
    };
    let expect = |headers: &[(String, String)]| -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(n, v)| {
                let n = n.to_ascii_lowercase();
                let v = if redacted.contains(&n.as_str()) {
                    REDACTED.to_owned()
                } else {
                    v.clone()
                };
                (n, v)
            })
            .collect()
    };
    assert_eq!(exchange.request.headers, expect(&sent.headers));
    let response = exchange.response.as_ref().unwrap();
    // The fixed response has no hop-by-hop headers: the client got exactly what the app sent.
    assert_eq!(
        response.headers,
        expect(&[
            ("set-cookie".into(), "session=s3cr3t; HttpOnly".into()),
            ("x-secret".into(), "from-the-app".into()),
            ("content-length".into(), "2".into()),
        ])
    );
    assert_eq!(
        got.headers.len(),
        3 + usize::from(got.header("date").is_some()),
        "{got:?}"
    );
    let line = serde_json::to_string(&records[0]).unwrap();
    for secret in [
        "abc.def",
        "dXNlcjpwdw==",
        "session=s3cr3t",
        "key-123",
        "from-the-app",
    ] {
        let leaked = line.contains(secret);
        let allowed = match redact {
            Redact::Default => ["key-123", "from-the-app"].contains(&secret),
            Redact::Custom => ["abc.def", "dXNlcjpwdw==", "session=s3cr3t"].contains(&secret),
            Redact::Nothing => true,
        };
        assert_eq!(leaked, allowed, "{secret} in {line}");
    }
}
