//! The recorded outbound exchanges, indexed by method, scheme, host, port and path, so a request is
//! compared only with the exchanges recorded for its endpoint. Among those, a request matches an exchange
//! whose query (order-insensitive) and body (JSON as values) are the same, the ignore rules applied; of
//! several such exchanges (the same call made more than once), the first call is served the first
//! recorded answer, the next the next, and past the last the last again. With no match the nearest
//! recorded request is named with the fields that differ.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::Uri;

use crate::capture::record::{Detail, HttpResponse, Record};
use crate::compare::diff::ABSENT;
use crate::compare::{body_differences, Difference, Message, Noise};

use super::fingerprint::{body_print, query_print, BodyPrint};

/// Method, scheme, `host:port` (lower case) and path.
type EndpointKey = (String, String, String, String);

/// An endpoint, its query as matching compares it, and its body's [`BodyPrint`]: equal for two requests
/// exactly when they match.
type MatchKey = (EndpointKey, Vec<(String, String)>, BodyPrint);

/// One recorded exchange the mock can serve.
pub struct Recorded {
    /// The record's name in the mock field: its `uid`, else its `id`.
    pub name: String,
    pub method: String,
    pub url: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
    truncated: bool,
    pub response: HttpResponse,
    /// How long the recorded exchange took, in milliseconds.
    pub duration_ms: f64,
    /// The inbound request the call was made for (its `uid`), when the capture linked it.
    caused_by: Option<String>,
    key: EndpointKey,
}

/// A request as the mock compares it.
pub struct MockRequest<'a> {
    pub method: &'a str,
    pub uri: &'a Uri,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

pub enum MockMatch<'a> {
    Served(&'a Recorded),
    Unmatched {
        nearest: Option<&'a Recorded>,
        differences: Vec<Difference>,
    },
}

pub struct MockIndex {
    recorded: Vec<Recorded>,
    by_endpoint: HashMap<EndpointKey, Vec<usize>>,
    /// The recorded exchanges by what matching compares: a request's match is one lookup. Exchanges whose
    /// recorded body the capture limit cut short are only in `by_endpoint` (compared by prefix).
    by_match: HashMap<MatchKey, Vec<usize>>,
    /// Calls served so far per set of matching exchanges (one request made repeatedly).
    served: Mutex<HashMap<Vec<usize>, usize>>,
    noise: Noise,
    /// Query parameters left out of matching.
    ignored_query: Vec<String>,
}

impl MockIndex {
    /// Indexes the outbound HTTP exchanges of `records` that got a response, in the order they started.
    /// Exchanges the mock itself answered are left out: they are not the dependency's answers.
    pub fn new(records: Vec<Record>, noise: Noise, ignored_query: Vec<String>) -> MockIndex {
        let mut chosen: Vec<(std::time::SystemTime, Recorded)> = Vec::new();
        for record in records {
            let name = record.name();
            if record.direction != "outbound" {
                continue;
            }
            let caused_by = record.caused_by;
            let Detail::Http(exchange) = record.detail else {
                continue;
            };
            let (Some(response), None) = (exchange.response, exchange.mock) else {
                continue;
            };
            let Ok(uri) = exchange.request.url.parse::<Uri>() else {
                continue;
            };
            let started = humantime::parse_rfc3339(&record.start).unwrap_or(std::time::UNIX_EPOCH);
            chosen.push((
                started,
                Recorded {
                    name,
                    key: endpoint(&exchange.request.method, &uri),
                    query: query_pairs(&uri),
                    method: exchange.request.method,
                    url: exchange.request.url,
                    headers: exchange.request.headers,
                    truncated: exchange.request.body.truncated,
                    body: exchange.request.body.base64,
                    response,
                    duration_ms: record.duration_ms,
                    caused_by,
                },
            ));
        }
        chosen.sort_by_key(|(started, _)| *started);
        let recorded: Vec<Recorded> = chosen.into_iter().map(|(_, r)| r).collect();
        let mut by_endpoint: HashMap<EndpointKey, Vec<usize>> = HashMap::new();
        let mut by_match: HashMap<MatchKey, Vec<usize>> = HashMap::new();
        for (at, exchange) in recorded.iter().enumerate() {
            by_endpoint
                .entry(exchange.key.clone())
                .or_default()
                .push(at);
            if !exchange.truncated {
                let key = (
                    exchange.key.clone(),
                    query_print(&exchange.query, &ignored_query),
                    body_print(&exchange.body, &exchange.headers, &noise),
                );
                by_match.entry(key).or_default().push(at);
            }
        }
        MockIndex {
            recorded,
            by_endpoint,
            by_match,
            served: Mutex::new(HashMap::new()),
            noise,
            ignored_query,
        }
    }

    pub fn len(&self) -> usize {
        self.recorded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recorded.is_empty()
    }

    /// The recorded exchange that answers `request`, or the nearest one and how they differ.
    pub fn answer(&self, request: &MockRequest<'_>) -> MockMatch<'_> {
        self.answer_for(request, None)
    }

    /// [`MockIndex::answer`] for a call made while serving a replay of the recorded inbound request
    /// `replay_of`: among the matching exchanges, those that request caused are served first (in their
    /// own recorded order), so each replayed request gets the answers its own calls got; the others only
    /// when it caused none that match.
    pub fn answer_for(&self, request: &MockRequest<'_>, replay_of: Option<&str>) -> MockMatch<'_> {
        let key = endpoint(request.method, request.uri);
        let query = query_pairs(request.uri);
        let match_key = (
            key.clone(),
            query_print(&query, &self.ignored_query),
            body_print(request.body, &request.headers, &self.noise),
        );
        if let Some(matching) = self.by_match.get(&match_key) {
            return self.serve(matching, replay_of);
        }
        // Not found by its print: compared field by field with what the endpoint recorded (which also
        // finds a match whose recorded body was cut short), and else the nearest is named.
        let candidates = self.by_endpoint.get(&key).map_or(&[][..], Vec::as_slice);
        let scored: Vec<(usize, Vec<Difference>)> = candidates
            .iter()
            .map(|&at| (at, self.differences(&self.recorded[at], request, &query)))
            .collect();
        let matching: Vec<usize> = scored
            .iter()
            .filter(|(_, differences)| differences.is_empty())
            .map(|(at, _)| *at)
            .collect();
        if !matching.is_empty() {
            return self.serve(&matching, replay_of);
        }
        // Nothing recorded for this endpoint matches: the nearest is the one with the fewest differing
        // fields, looking at the whole capture when the endpoint itself was never recorded.
        let nearest = if scored.is_empty() {
            self.recorded
                .iter()
                .map(|recorded| {
                    let mut differences = endpoint_differences(&recorded.key, &key);
                    differences.extend(self.differences(recorded, request, &query));
                    (recorded, differences)
                })
                .min_by_key(|(_, differences)| differences.len())
        } else {
            scored
                .into_iter()
                .min_by_key(|(_, differences)| differences.len())
                .map(|(at, differences)| (&self.recorded[at], differences))
        };
        match nearest {
            Some((recorded, differences)) => MockMatch::Unmatched {
                nearest: Some(recorded),
                differences,
            },
            None => MockMatch::Unmatched {
                nearest: None,
                differences: Vec::new(),
            },
        }
    }

    /// Serves one of `matching`: of those `replay_of` caused if any, else of all.
    fn serve(&self, matching: &[usize], replay_of: Option<&str>) -> MockMatch<'_> {
        if let Some(scope) = replay_of {
            let caused: Vec<usize> = matching
                .iter()
                .copied()
                .filter(|&at| self.recorded[at].caused_by.as_deref() == Some(scope))
                .collect();
            if !caused.is_empty() {
                return MockMatch::Served(&self.recorded[self.next_of(&caused)]);
            }
        }
        MockMatch::Served(&self.recorded[self.next_of(matching)])
    }

    /// Which of the exchanges matching one request answers this call: the first recorded for the first
    /// call, the next for the next, the last one past the end.
    fn next_of(&self, matching: &[usize]) -> usize {
        let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        let calls = served.entry(matching.to_vec()).or_insert(0);
        let at = matching[(*calls).min(matching.len() - 1)];
        *calls += 1;
        at
    }

    /// Query (order-insensitive) and body differences between a recorded request and `request`.
    fn differences(
        &self,
        recorded: &Recorded,
        request: &MockRequest<'_>,
        query: &[(String, String)],
    ) -> Vec<Difference> {
        let mut differences = query_differences(&recorded.query, query);
        differences.retain(|difference| {
            !self
                .ignored_query
                .iter()
                .any(|name| difference.field.strip_prefix("query ") == Some(name.as_str()))
        });
        differences.extend(body_differences(
            Message {
                headers: &recorded.headers,
                body: &recorded.body,
                truncated: recorded.truncated,
            },
            Message {
                headers: &request.headers,
                body: request.body,
                truncated: false,
            },
            &self.noise,
        ));
        differences
    }
}

fn endpoint(method: &str, uri: &Uri) -> EndpointKey {
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    (
        method.to_ascii_uppercase(),
        scheme,
        format!("{host}:{port}"),
        uri.path().to_owned(),
    )
}

fn endpoint_differences(recorded: &EndpointKey, request: &EndpointKey) -> Vec<Difference> {
    let pairs = [
        ("method", &recorded.0, &request.0),
        ("scheme", &recorded.1, &request.1),
        ("host", &recorded.2, &request.2),
        ("path", &recorded.3, &request.3),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(field, a, b)| Difference::new(field, a.clone(), b.clone()))
        .collect()
}

/// The query's name/value pairs, sorted, so their order does not count.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect();
    pairs.sort();
    pairs
}

fn query_differences(
    recorded: &[(String, String)],
    actual: &[(String, String)],
) -> Vec<Difference> {
    let mut names: Vec<&str> = recorded
        .iter()
        .chain(actual)
        .map(|(n, _)| n.as_str())
        .collect();
    names.sort();
    names.dedup();
    let values = |pairs: &[(String, String)], name: &str| -> String {
        let values: Vec<&str> = pairs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect();
        if values.is_empty() {
            ABSENT.to_owned()
        } else {
            values.join(",")
        }
    };
    names
        .into_iter()
        .filter_map(|name| {
            let (was, now) = (values(recorded, name), values(actual, name));
            (was != now).then(|| Difference::new(format!("query {name}"), was, now))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::record::{Body, HttpExchange, HttpRequest, SCHEMA};

    fn body(bytes: &'static [u8]) -> Body {
        Body {
            size: bytes.len() as u64,
            truncated: false,
            base64: Bytes::from_static(bytes),
            complete: true,
        }
    }

    fn exchange(
        id: u64,
        method: &str,
        url: &str,
        request: &'static [u8],
        answer: &'static [u8],
    ) -> Record {
        Record {
            schema: SCHEMA.into(),
            id,
            uid: format!("run-{id}"),
            connection: id,
            direction: "outbound".into(),
            proxy_type: "forward".into(),
            protocol: "http".into(),
            transport: "http".into(),
            client: "127.0.0.1:40000".into(),
            target: "api.test:80".into(),
            delivered_to: None,
            tls: None,
            caused_by: None,
            start: format!("2026-12-07T00:00:{id:02}.000000Z"),
            duration_ms: 1.0,
            detail: Detail::Http(HttpExchange {
                request: HttpRequest {
                    method: method.into(),
                    url: url.into(),
                    version: "HTTP/1.1".into(),
                    headers: Vec::new(),
                    body: body(request),
                    trailers: Vec::new(),
                },
                response: Some(HttpResponse {
                    status: 200,
                    version: "HTTP/1.1".into(),
                    headers: Vec::new(),
                    body: body(answer),
                    trailers: Vec::new(),
                }),
                error: None,
                upgraded: None,
                mock: None,
            }),
        }
    }

    fn ask<'a>(index: &'a MockIndex, method: &str, url: &str, body: &[u8]) -> MockMatch<'a> {
        let uri: Uri = url.parse().unwrap();
        index.answer(&MockRequest {
            method,
            uri: &uri,
            headers: Vec::new(),
            body,
        })
    }

    fn served(matched: MockMatch<'_>) -> String {
        match matched {
            MockMatch::Served(recorded) => recorded.name.clone(),
            MockMatch::Unmatched { differences, .. } => panic!("unmatched: {differences:?}"),
        }
    }

    #[test]
    fn repeats_are_served_in_recorded_order_then_the_last_again() {
        // Written out of order (records are written as exchanges end): served in the order they started.
        let index = MockIndex::new(
            vec![
                exchange(2, "GET", "http://api.test/n", b"", b"2"),
                exchange(1, "GET", "http://api.test/n", b"", b"1"),
                exchange(3, "GET", "http://api.test/other", b"", b"x"),
            ],
            Noise::default(),
            Vec::new(),
        );
        let names: Vec<String> = (0..3)
            .map(|_| served(ask(&index, "GET", "http://api.test:80/n", b"")))
            .collect();
        assert_eq!(names, ["run-1", "run-2", "run-2"]);
    }

    #[test]
    fn query_order_and_json_layout_do_not_count_but_values_do() {
        let index = MockIndex::new(
            vec![
                exchange(
                    1,
                    "POST",
                    "http://api.test/o?a=1&b=2",
                    br#"{"x":1,"y":[1,2]}"#,
                    b"one",
                ),
                exchange(
                    2,
                    "POST",
                    "http://api.test/o?a=1&b=3",
                    br#"{"x":1,"y":[1,2]}"#,
                    b"two",
                ),
            ],
            Noise::default(),
            Vec::new(),
        );
        let found = ask(
            &index,
            "POST",
            "http://api.test/o?b=2&a=1",
            br#"{ "y": [1, 2], "x": 1.0 }"#,
        );
        assert_eq!(served(found), "run-1");
        match ask(
            &index,
            "POST",
            "http://api.test/o?a=1&b=2",
            br#"{"x":2,"y":[1,2]}"#,
        ) {
            MockMatch::Unmatched {
                nearest,
                differences,
            } => {
                assert_eq!(nearest.map(|r| r.name.as_str()), Some("run-1"));
                let fields: Vec<&str> = differences.iter().map(|d| d.field.as_str()).collect();
                assert_eq!(fields, ["$.x"]);
            }
            MockMatch::Served(recorded) => panic!("served {}", recorded.name),
        }
    }

    #[test]
    fn an_endpoint_never_recorded_names_the_nearest_anywhere() {
        let index = MockIndex::new(
            vec![exchange(
                1,
                "GET",
                "http://api.test/v1/price?item=1",
                b"",
                b"1",
            )],
            Noise::default(),
            Vec::new(),
        );
        match ask(&index, "GET", "http://api.test/v2/price?item=1", b"") {
            MockMatch::Unmatched {
                nearest,
                differences,
            } => {
                assert_eq!(nearest.map(|r| r.name.as_str()), Some("run-1"));
                assert_eq!(differences[0].field, "path");
                assert_eq!(differences[0].recorded, "/v1/price");
            }
            MockMatch::Served(_) => panic!("another path must not match"),
        }
        let empty = MockIndex::new(Vec::new(), Noise::default(), Vec::new());
        assert!(matches!(
            ask(&empty, "GET", "http://api.test/", b""),
            MockMatch::Unmatched { nearest: None, .. }
        ));
    }
}
