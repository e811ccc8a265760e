//! What a mock cell's second run must show: every answer the client got equals the one it got while
//! recording, and the sidecar's capture marks each exchange as answered by the mock from the recorded
//! exchange of that same request, whose response is what the client got. An exchange that reached the
//! network instead (the mock bypassed, or passing the request on) is a problem, whatever it answered.

use serde_json::Value;
use sidecar_proxy::capture::record::Body;

use crate::planned::{ClientLine, PlannedRequest};

/// The two runs of a mock cell, to check against the requests.
pub(crate) struct MockRun<'a> {
    /// The recording's capture file: what the mock answers from.
    pub recording: &'a str,
    /// The client's result lines while recording.
    pub recorded_lines: &'a [Result<ClientLine, String>],
    /// The mock run's capture file.
    pub capture: &'a str,
}

impl MockRun<'_> {
    /// Every way the mock run (the client's result `lines`) fell short.
    pub fn problems(
        &self,
        requests: &[PlannedRequest],
        lines: &[Result<ClientLine, String>],
    ) -> Vec<String> {
        let recording = outbound_records(self.recording);
        let mocked = outbound_records(self.capture);
        let mut problems = Vec::new();
        for (i, request) in requests.iter().enumerate() {
            let what = format!("{} {}", request.method, request.url);
            let answer = match (lines.get(i), self.recorded_lines.get(i)) {
                (Some(Ok(now)), Some(Ok(then))) => match (answer(now), answer(then)) {
                    (Ok(now), Ok(then)) if now == then => now,
                    (Ok((status, body)), Ok((then_status, then_body))) => {
                        problems.push(format!(
                            "{what}: got status {status} and body {body:?}, recorded {then_status} and {then_body:?}"
                        ));
                        continue;
                    }
                    (Err(error), _) => {
                        problems.push(format!("{what}: {error}"));
                        continue;
                    }
                    (_, Err(error)) => {
                        problems.push(format!("{what}: while recording, {error}"));
                        continue;
                    }
                },
                (None, _) => {
                    problems.push(format!("{what}: the client printed no result"));
                    continue;
                }
                (Some(Err(unreadable)), _) => {
                    problems.push(format!("{what}: {unreadable}"));
                    continue;
                }
                (_, _) => {
                    problems.push(format!("{what}: no result of the recording to compare"));
                    continue;
                }
            };
            if let Err(problem) = mock_record(&mocked, &recording, request, &answer) {
                problems.push(format!("{what}: {problem}"));
            }
        }
        for record in mocked.iter().filter(|record| record["mock"].is_null()) {
            problems.push(format!(
                "the capture has an outbound {} record not answered by the mock ({}): it reached the network",
                record["kind"],
                describe(record)
            ));
        }
        problems
    }
}

/// The capture's outbound records.
fn outbound_records(capture: &str) -> Vec<Value> {
    capture
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["direction"] == "outbound")
        .collect()
}

/// A client's answer: status and body, or its error.
fn answer(line: &ClientLine) -> Result<(u16, String), String> {
    match (&line.error, line.status, &line.body) {
        (Some(error), _, _) => Err(error.clone()),
        (None, Some(status), Some(body)) => Ok((status, body.clone())),
        (None, _, _) => Err("the client printed neither an answer nor an error".to_owned()),
    }
}

/// Whether `record` is an `http` record of `request`: its method, scheme and path.
fn is_exchange_of(record: &Value, request: &PlannedRequest) -> bool {
    record["kind"] == "http"
        && record["request"]["method"] == request.method
        && record["request"]["url"].as_str().is_some_and(|url| {
            url.starts_with(&format!("{}://", request.scheme)) && url.ends_with(&request.path)
        })
}

/// A record's response: status and body (decoded).
fn response(record: &Value) -> Option<(u16, String)> {
    let status = u16::try_from(record["response"]["status"].as_u64()?).ok()?;
    let body = serde_json::from_value::<Body>(record["response"]["body"].clone()).ok()?;
    Some((status, String::from_utf8_lossy(&body.base64).into_owned()))
}

/// The mock run's record of `request` must say the mock matched it and served the recorded exchange of
/// the same request, and both records must hold the answer the client got.
fn mock_record(
    mocked: &[Value],
    recording: &[Value],
    request: &PlannedRequest,
    got: &(u16, String),
) -> Result<(), String> {
    let record = mocked
        .iter()
        .find(|record| is_exchange_of(record, request))
        .ok_or("the mock run's capture has no http record of it")?;
    let mock = &record["mock"];
    if mock.is_null() {
        return Err("its record has no `mock` field: the mock did not answer it".to_owned());
    }
    if mock["matched"] != true {
        return Err(format!("the mock matched no recorded exchange: {mock}"));
    }
    let served_from = mock["served_from"]
        .as_str()
        .ok_or_else(|| format!("the mock's answer names no recorded exchange: {mock}"))?;
    let source = recording
        .iter()
        .find(|recorded| recorded["uid"] == served_from)
        .ok_or_else(|| format!("the mock served {served_from}, which the recording lacks"))?;
    if !is_exchange_of(source, request) {
        return Err(format!(
            "the mock served {served_from}, a record of another request ({})",
            describe(source)
        ));
    }
    for (whose, record) in [("mock run's", record), ("served recorded", source)] {
        match response(record) {
            Some(response) if response == *got => {}
            Some((status, body)) => {
                return Err(format!(
                    "the {whose} record holds status {status} and body {body:?}, the client got {} and {:?}",
                    got.0, got.1
                ))
            }
            None => return Err(format!("the {whose} record has no readable response")),
        }
    }
    Ok(())
}

/// A record in a few words, for a problem's text.
fn describe(record: &Value) -> String {
    match record["kind"].as_str() {
        Some("http") => format!(
            "{} {}",
            record["request"]["method"].as_str().unwrap_or("?"),
            record["request"]["url"].as_str().unwrap_or("?")
        ),
        _ => format!(
            "to {}{}",
            record["target"].as_str().unwrap_or("?"),
            record["error"]
                .as_str()
                .map_or_else(String::new, |error| format!(", {error}"))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planned::{client_lines, planned_requests};
    use crate::{clients, modes};

    fn body(text: &str) -> Value {
        serde_json::to_value(Body {
            size: text.len() as u64,
            truncated: false,
            base64: text.as_bytes().to_vec().into(),
            complete: true,
        })
        .unwrap()
    }

    fn record(request: &PlannedRequest, uid: &str, answer: &str, mock: Option<Value>) -> String {
        let mut record = serde_json::json!({"kind": "http", "direction": "outbound", "uid": uid,
            "request": {"method": request.method, "url": request.url},
            "response": {"status": 200, "body": body(answer)}});
        if let Some(mock) = mock {
            record["mock"] = mock;
        }
        record.to_string() + "\n"
    }

    #[test]
    fn each_answer_must_come_from_the_mock_and_equal_the_recorded_one() {
        let requests = planned_requests(
            &clients::GO_ENV_HTTP,
            &modes::FORWARD_HTTP_TLS_OUT_MOCK,
            4140,
        );
        let stdout: String = requests
            .iter()
            .map(|request| {
                serde_json::json!({"status": 200, "body": request.expected_body()}).to_string()
                    + "\n"
            })
            .collect();
        let lines = client_lines(&stdout);
        let recording: String = requests
            .iter()
            .enumerate()
            .map(|(i, request)| record(request, &format!("r-{i}"), &request.expected_body(), None))
            .collect();
        let served =
            |i: usize| serde_json::json!({"matched": true, "served_from": format!("r-{i}")});
        let capture = |mock: &dyn Fn(usize) -> Option<Value>| -> String {
            requests
                .iter()
                .enumerate()
                .map(|(i, request)| {
                    record(
                        request,
                        &format!("m-{i}"),
                        &request.expected_body(),
                        mock(i),
                    )
                })
                .collect()
        };
        let problems = |capture: &str, lines: &[Result<ClientLine, String>]| {
            MockRun {
                recording: &recording,
                recorded_lines: &client_lines(&stdout),
                capture,
            }
            .problems(&requests, lines)
        };

        assert_eq!(
            problems(&capture(&|i| Some(served(i))), &lines),
            Vec::<String>::new()
        );
        // Relayed to an upstream that answered the same: not from the mock.
        let relayed = problems(&capture(&|_| None), &lines);
        assert!(relayed[0].contains("no `mock` field"), "{relayed:?}");
        assert!(relayed.last().unwrap().contains("reached the network"));
        // Served from the recorded exchange of another request.
        let crossed = problems(&capture(&|i| Some(served((i + 1) % 3))), &lines);
        assert!(
            crossed[0].contains("a record of another request"),
            "{crossed:?}"
        );
        // A miss.
        let missed = problems(
            &capture(&|_| Some(serde_json::json!({"matched": false, "nearest": "r-0"}))),
            &lines,
        );
        assert!(missed[0].contains("matched no recorded exchange"));
        // The mock's 502 reaches the client.
        let failed = client_lines(&stdout.replacen("\"status\":200", "\"status\":502", 1));
        let answered = problems(&capture(&|i| Some(served(i))), &failed);
        assert!(answered[0].contains("got status 502"), "{answered:?}");
    }
}
