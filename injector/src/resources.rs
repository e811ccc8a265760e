//! The sidecar's resources: small defaults, as a proxy in every pod must be, overridable per pod with the
//! `proxy-cpu-request`, `proxy-memory-request`, `proxy-cpu-limit`, `proxy-memory-limit` annotations, and
//! the check that the result is one the API server accepts.

use std::collections::BTreeMap;

use crate::annotations::{quantity_value, ResourceAnnotation};
use crate::denial::Denial;

/// The sidecar's requests unless an annotation overrides them.
pub const DEFAULT_REQUESTS: [(&str, &str); 2] = [("cpu", "50m"), ("memory", "64Mi")];
/// The sidecar's limits unless an annotation overrides them (no CPU limit: throttling a proxy slows
/// every request of the app).
pub const DEFAULT_LIMITS: [(&str, &str); 1] = [("memory", "256Mi")];

/// A request above its limit (an override against a default, say `proxy-memory-request: "512Mi"` with the
/// default 256Mi limit) makes the API server refuse the pod naming `containers[0]`, and for a Deployment
/// only in the ReplicaSet's events: refuse it here, naming the annotation.
pub fn check_requests_within_limits(
    requests: &BTreeMap<&'static str, String>,
    limits: &BTreeMap<&'static str, String>,
) -> Result<(), Denial> {
    for resource in ["cpu", "memory"] {
        let effective =
            |overrides: &BTreeMap<&'static str, String>, defaults: &[(&str, &str)]| match overrides
                .get(resource)
            {
                Some(value) => Some((value.clone(), true)),
                None => defaults
                    .iter()
                    .find(|(name, _)| *name == resource)
                    .map(|(_, value)| ((*value).to_owned(), false)),
            };
        let (Some((request, request_set)), Some((limit, limit_set))) = (
            effective(requests, &DEFAULT_REQUESTS),
            effective(limits, &DEFAULT_LIMITS),
        ) else {
            continue;
        };
        let (Some(request_value), Some(limit_value)) =
            (quantity_value(&request), quantity_value(&limit))
        else {
            continue;
        };
        if request_value <= limit_value {
            continue;
        }
        let key = |is_limit: bool| {
            ResourceAnnotation::ALL
                .iter()
                .find(|r| r.resource() == resource && r.is_limit() == is_limit)
                .expect("a request and a limit annotation per resource")
                .key()
        };
        let message = match (request_set, limit_set) {
            (true, true) => format!(
                "{}: \"{request}\" is more than {} \"{limit}\"; allowed: a request at most its limit",
                key(false),
                key(true)
            ),
            (true, false) => format!(
                "{}: \"{request}\" is more than the sidecar's default {resource} limit \"{limit}\" (set {} to raise it); allowed: a request at most its limit",
                key(false),
                key(true)
            ),
            (false, _) => format!(
                "{}: \"{limit}\" is less than the sidecar's default {resource} request \"{request}\" (set {} to lower it); allowed: a limit at least its request",
                key(true),
                key(false)
            ),
        };
        return Err(Denial(message));
    }
    Ok(())
}
