//! Noise learned from the capture itself: when one request (same method, URL and body) was answered
//! more than once and a field differs between those recorded answers (a timestamp, a request id, a
//! counter), that field is not compared for the request's endpoint (method and path) when replaying.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::compare::{body_differences, header_differences, Message, Noise};

use super::plan::{path_and_query, Planned};

/// A field learned as noise, as the report lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LearnedField {
    /// `GET /path`: the endpoint the field is ignored for.
    pub endpoint: String,
    pub field: String,
}

#[derive(Debug, Default)]
pub struct LearnedNoise {
    by_endpoint: BTreeMap<String, BTreeSet<String>>,
}

impl LearnedNoise {
    /// Compares the recorded answers of each repeated request with the first one.
    pub fn learn(exchanges: &[Planned], noise: &Noise) -> LearnedNoise {
        let mut repeats: BTreeMap<(String, String, Vec<u8>), Vec<&Planned>> = BTreeMap::new();
        for planned in exchanges {
            let request = &planned.request;
            repeats
                .entry((
                    request.method.clone(),
                    request.url.clone(),
                    request.body.base64.to_vec(),
                ))
                .or_default()
                .push(planned);
        }
        let mut learned = LearnedNoise::default();
        for answers in repeats.values().filter(|answers| answers.len() > 1) {
            let first = &answers[0].response;
            for other in &answers[1..] {
                let response = &other.response;
                let mut fields = header_differences(&first.headers, &response.headers, noise);
                fields.extend(body_differences(
                    Message {
                        headers: &first.headers,
                        body: &first.body.base64,
                        truncated: first.body.truncated,
                    },
                    Message {
                        headers: &response.headers,
                        body: &response.body.base64,
                        truncated: response.body.truncated,
                    },
                    noise,
                ));
                learned
                    .by_endpoint
                    .entry(endpoint(other))
                    .or_default()
                    .extend(fields.into_iter().map(|difference| difference.field));
            }
        }
        // Endpoints whose repeats all agreed learned nothing: leaving them out lets every exchange of
        // such a capture compare with the rules as given, without looking its endpoint up.
        learned.by_endpoint.retain(|_, fields| !fields.is_empty());
        learned
    }

    /// `noise` plus the fields learned for this exchange's endpoint; `noise` itself (not a copy, which
    /// every replayed answer would pay for) when none were.
    pub fn noise_for<'a>(&self, planned: &Planned, noise: &'a Noise) -> Cow<'a, Noise> {
        if self.by_endpoint.is_empty() {
            return Cow::Borrowed(noise);
        }
        match self.by_endpoint.get(&endpoint(planned)) {
            Some(fields) => Cow::Owned(noise.with_learned(fields)),
            None => Cow::Borrowed(noise),
        }
    }

    pub fn listed(&self) -> Vec<LearnedField> {
        self.by_endpoint
            .iter()
            .flat_map(|(endpoint, fields)| {
                fields.iter().map(|field| LearnedField {
                    endpoint: endpoint.clone(),
                    field: field.clone(),
                })
            })
            .collect()
    }
}

/// `GET /path`, without the query.
fn endpoint(planned: &Planned) -> String {
    let request = &planned.request;
    let path = path_and_query(&request.url);
    let path = path.split('?').next().unwrap_or("/");
    format!("{} {path}", request.method)
}
