//! What the sidecar's capture file must hold for a cell's requests: a record of every exchange, and with
//! tls-out the decrypted HTTPS exchange itself, with the answer the client got.

use serde_json::Value;
use sidecar_proxy::capture::record::Body;

use crate::clients::Side;
use crate::planned::{ClientLine, PlannedRequest, UPSTREAM_HOST};

/// What the sidecar recorded in a cell, to check against the requests.
pub(crate) struct Recorded<'a> {
    pub side: Side,
    /// The column decrypts HTTPS (tls-out).
    pub tls_out: bool,
    /// The capture file.
    pub capture: &'a str,
}

impl Recorded<'_> {
    /// The sidecar must have recorded each exchange: an `http` record for cleartext requests (also those
    /// it found inside SOCKS and tcp streams); for HTTPS a `stream` record naming the server, or with
    /// tls-out an `http` record of the decrypted exchange, holding the response the client got.
    pub fn problems(
        &self,
        requests: &[PlannedRequest],
        lines: &[Result<ClientLine, String>],
    ) -> Vec<String> {
        let direction = match self.side {
            Side::Outbound => "outbound",
            Side::Inbound => "inbound",
        };
        let every_record: Vec<Value> = self
            .capture
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let records: Vec<Value> = every_record
            .iter()
            .filter(|record| record["direction"] == direction)
            .cloned()
            .collect();
        let mut problems = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            let what = format!("{} {}", request.method, request.url);
            if !request.recorded {
                if let Some(record) = every_record
                    .iter()
                    .find(|record| records_it(record, request))
                {
                    problems.push(format!(
                        "{what} must not be recorded, but the capture has a {} {} record of it",
                        record["direction"], record["kind"]
                    ));
                }
                continue;
            }
            if request.scheme == "https" && self.tls_out {
                let got = lines.get(i).and_then(|line| line.as_ref().ok());
                if let Err(problem) = decrypted_record(&records, request, got) {
                    problems.push(format!("{what}: {problem}"));
                }
                continue;
            }
            let recorded = records.iter().any(|record| match request.scheme {
                "https" => record["kind"] == "stream" && record["sni"] == UPSTREAM_HOST,
                _ => {
                    record["kind"] == "http"
                        && record["request"]["method"] == request.method
                        && record["request"]["url"]
                            .as_str()
                            .is_some_and(|url| url.ends_with(&request.path))
                        && record["response"]["status"] == 200
                }
            });
            if !recorded {
                problems.push(format!("no {direction} capture record of {what}"));
            }
        }
        problems
    }
}

/// Whether `record` is a record of `request`, in any form: an HTTP exchange with its path, or a stream
/// to its port (with the upstream's name as SNI, for HTTPS).
fn records_it(record: &Value, request: &PlannedRequest) -> bool {
    let port = request
        .authority()
        .rsplit_once(':')
        .map(|(_, port)| port.to_owned());
    let stream_to_port = record["kind"] == "stream"
        && port.is_some_and(|port| {
            record["target"]
                .as_str()
                .is_some_and(|target| target.ends_with(&format!(":{port}")))
        });
    let https_stream = request.scheme == "https" && record["sni"] == UPSTREAM_HOST;
    let exchange = record["kind"] == "http"
        && record["request"]["url"]
            .as_str()
            .is_some_and(|url| url.ends_with(&request.path));
    stream_to_port || https_stream || exchange
}

/// tls-out: the `http` record of the decrypted request (marked with its TLS session, for the name the
/// client asked for, its `https://` URL, method and path) must hold the status and body the client got.
fn decrypted_record(
    records: &[Value],
    request: &PlannedRequest,
    got: Option<&ClientLine>,
) -> Result<(), String> {
    let origin = format!("https://{UPSTREAM_HOST}");
    let record = records
        .iter()
        .find(|record| {
            record["kind"] == "http"
                && record["tls"].is_object()
                && record["request"]["method"] == request.method
                && record["request"]["url"]
                    .as_str()
                    .is_some_and(|url| url.starts_with(&origin) && url.ends_with(&request.path))
        })
        .ok_or_else(|| {
            let streams: Vec<String> = records
                .iter()
                .filter(|record| record["kind"] == "stream")
                .map(|record| format!("{} ({})", record["target"], record["protocol_seen"]))
                .collect();
            format!(
                "no decrypted capture record (an http record with tls and an {origin} URL){}",
                if streams.is_empty() {
                    String::new()
                } else {
                    format!("; stream records: {}", streams.join(", "))
                }
            )
        })?;
    if record["tls"]["sni"] != UPSTREAM_HOST {
        return Err(format!(
            "the decrypted record's tls.sni is {}, not {UPSTREAM_HOST}",
            record["tls"]["sni"]
        ));
    }
    let status = record["response"]["status"].as_u64();
    let body = serde_json::from_value::<Body>(record["response"]["body"].clone())
        .map(|body| String::from_utf8_lossy(&body.base64).into_owned())
        .map_err(|e| format!("the decrypted record's response body is unreadable: {e}"))?;
    let (got_status, got_body) = match got {
        Some(ClientLine {
            status: Some(status),
            body: Some(body),
            ..
        }) => (*status, body.as_str()),
        // The response check already names what the client got instead.
        _ => return Ok(()),
    };
    if status != Some(u64::from(got_status)) || body != got_body {
        return Err(format!(
            "the decrypted record holds status {} and body {body:?}, the client got {got_status} and {got_body:?}",
            status.map_or_else(|| "none".to_owned(), |status| status.to_string()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planned::{client_lines, planned_requests};
    use crate::{clients, modes};

    #[test]
    fn with_tls_out_https_needs_the_decrypted_exchange_with_the_clients_answer() {
        let requests = planned_requests(&clients::GO_ENV_HTTP, &modes::FORWARD_HTTP_TLS_OUT, 4140);
        let stdout: String = requests
            .iter()
            .map(|request| {
                serde_json::json!({"method": request.method, "url": request.url, "status": 200,
                    "body": request.expected_body()})
                .to_string()
                    + "\n"
            })
            .collect();
        let lines = client_lines(&stdout);
        let body = |text: String| {
            serde_json::to_value(Body {
                size: text.len() as u64,
                truncated: false,
                base64: text.into(),
                complete: true,
            })
            .unwrap()
        };
        let record = |request: &PlannedRequest, answer: String, tls: bool| {
            let mut record = serde_json::json!({"kind": "http", "direction": "outbound",
                "request": {"method": request.method, "url": request.url},
                "response": {"status": 200, "body": body(answer)}});
            if tls {
                record["tls"] = serde_json::json!({"sni": UPSTREAM_HOST, "version": "TLSv1.3",
                    "upstream_version": "TLSv1.3"});
            }
            record.to_string() + "\n"
        };
        let capture = |https: &str| {
            requests[..2]
                .iter()
                .map(|request| record(request, request.expected_body(), false))
                .collect::<String>()
                + https
        };
        let problems = |capture: &str| {
            Recorded {
                side: Side::Outbound,
                tls_out: true,
                capture,
            }
            .problems(&requests, &lines)
        };
        let https = &requests[2];

        let decrypted = capture(&record(https, https.expected_body(), true));
        assert_eq!(problems(&decrypted), Vec::<String>::new());
        let altered = capture(&record(https, "something else".to_owned(), true));
        assert!(problems(&altered)[0].contains("the client got 200"));
        let unmarked = capture(&record(https, https.expected_body(), false));
        assert!(problems(&unmarked)[0].contains("no decrypted capture record"));
        let relayed = capture(
            &(serde_json::json!({"kind": "stream", "direction": "outbound",
                "sni": UPSTREAM_HOST, "target": "upstream.conformance.test:9443",
                "protocol_seen": "tls"})
            .to_string()
                + "\n"),
        );
        assert!(problems(&relayed)[0].contains("stream records"));
    }
}
