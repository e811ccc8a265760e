//! From a pod's annotations to a decision: leave the pod alone, refuse it with the one-line message the
//! proxy itself would print, or inject a sidecar configured by exactly those annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use sidecar_proxy::config::{ProxyConfig, ProxyType, RawSettings, RedirectSettings, Setting};
use thiserror::Error;

use crate::annotations::{
    self, quantity_value, AnnotationError, ResourceAnnotation, CONFIGURE_APP, INJECT, INJECTED,
};
use crate::containers::{DEFAULT_LIMITS, DEFAULT_REQUESTS, SIDECAR_NAME};

/// What the injector does with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No `inject: "true"`: the pod passes unchanged.
    NotRequested,
    /// Already carries the sidecar: nothing to add (admission may see a pod twice).
    AlreadyInjected,
    Inject(Plan),
}

/// A validated injection.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub config: ProxyConfig,
    /// Transparent mode's iptables settings, for the init container.
    pub redirect: Option<RedirectSettings>,
    /// The spec's settings as the annotations wrote them, handed to the proxy as `PROXY_*` variables:
    /// the proxy reads the very values the injector validated.
    pub proxy_env: Vec<(&'static str, String)>,
    /// Resource overrides from annotations (`cpu`/`memory` → quantity), requests and limits.
    pub requests: BTreeMap<&'static str, String>,
    pub limits: BTreeMap<&'static str, String>,
    /// Also set the app containers' proxy settings.
    pub configure_app: bool,
}

/// Why a pod is refused: one line, naming the annotation and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub struct Denial(pub String);

impl From<AnnotationError> for Denial {
    fn from(error: AnnotationError) -> Self {
        Denial(error.to_string())
    }
}

/// Decides what to do with a pod, from its annotations and its containers.
pub fn decide(
    annotations: &BTreeMap<String, String>,
    containers: &[Container],
) -> Result<Decision, Denial> {
    if !annotations::flag(annotations, INJECT)? {
        return Ok(Decision::NotRequested);
    }
    if annotations.contains_key(INJECTED) || containers.iter().any(|c| c.name == SIDECAR_NAME) {
        return Ok(Decision::AlreadyInjected);
    }
    annotations::check_known(annotations)?;

    let raw = RawSettings::from_annotations(
        annotations
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    );
    // The proxy's own validation: the denial carries the message the proxy would print.
    let config = ProxyConfig::from_settings(&raw).map_err(|e| Denial(e.to_string()))?;
    let transparent = config.proxy_type == ProxyType::Transparent;
    let redirect = if transparent {
        Some(RedirectSettings::from_settings(&raw).map_err(|e| Denial(e.to_string()))?)
    } else {
        for setting in [Setting::IgnoreInboundPorts, Setting::IgnoreOutboundPorts] {
            if annotations.contains_key(&setting.annotation_key()) {
                return Err(Denial(format!(
                    "{} applies only to proxy-type \"transparent\" (it lists ports the iptables rules leave alone); this pod's proxy-type is \"{}\"",
                    setting.annotation_key(),
                    config.proxy_type.as_str()
                )));
            }
        }
        None
    };

    let configure_app = annotations::flag(annotations, CONFIGURE_APP)?;
    if configure_app && config.outbound().is_none() {
        return Err(Denial(format!(
            "{CONFIGURE_APP}: \"true\" needs proxy-type \"forward\" or \"dual\": with proxy-type \"{}\" the app needs no proxy settings",
            config.proxy_type.as_str()
        )));
    }

    let proxy_env = Setting::ALL
        .iter()
        .filter_map(|setting| {
            annotations
                .get(&setting.annotation_key())
                .map(|value| (setting.env_var(), value.clone()))
        })
        .collect();

    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for resource in ResourceAnnotation::ALL {
        let Some(value) = annotations.get(resource.key()) else {
            continue;
        };
        if !annotations::is_quantity(value) {
            return Err(AnnotationError::NotAQuantity {
                key: resource.key().to_owned(),
                value: value.clone(),
            }
            .into());
        }
        let target = if resource.is_limit() {
            &mut limits
        } else {
            &mut requests
        };
        target.insert(resource.resource(), value.clone());
    }
    check_requests_within_limits(&requests, &limits)?;

    Ok(Decision::Inject(Plan {
        config,
        redirect,
        proxy_env,
        requests,
        limits,
        configure_app,
    }))
}

/// A request above its limit (an override against a default, say `proxy-memory-request: "512Mi"` with the
/// default 256Mi limit) makes the API server refuse the pod naming `containers[0]`, and for a Deployment
/// only in the ReplicaSet's events: refuse it here, naming the annotation.
fn check_requests_within_limits(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn without_inject_true_nothing_happens() {
        assert_eq!(decide(&BTreeMap::new(), &[]), Ok(Decision::NotRequested));
        assert_eq!(
            decide(
                &annotations(&[("inject", "false"), ("proxy-type", "bogus")]),
                &[]
            ),
            Ok(Decision::NotRequested)
        );
    }

    #[test]
    fn the_denial_is_the_proxys_own_message() {
        let denial = decide(
            &annotations(&[
                ("inject", "true"),
                ("proxy-type", "forward"),
                ("proxy-protocol", "tcp"),
            ]),
            &[],
        )
        .unwrap_err();
        assert!(
            denial.0.starts_with("invalid sidecar.speedscale.com/proxy-protocol \"tcp\" for sidecar.speedscale.com/proxy-type \"forward\""),
            "{denial}"
        );
    }

    #[test]
    fn spec_settings_reach_the_proxy_as_written() {
        let Ok(Decision::Inject(plan)) = decide(
            &annotations(&[
                ("inject", "true"),
                ("proxy-type", "dual"),
                ("proxy-protocol", "tcp:http"),
                ("proxy-port", "8080"),
            ]),
            &[],
        ) else {
            panic!("expected an injection");
        };
        assert_eq!(
            plan.proxy_env,
            [
                ("PROXY_TYPE", "dual".to_owned()),
                ("PROXY_PROTOCOL", "tcp:http".to_owned()),
                ("PROXY_PORT", "8080".to_owned()),
            ]
        );
        assert_eq!(plan.redirect, None);
    }
}
