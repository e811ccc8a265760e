//! From a pod's annotations to a decision: leave the pod alone, refuse it with the one-line message the
//! proxy itself would print, or inject a sidecar configured by exactly those annotations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use sidecar_proxy::config::{
    ProxyConfig, ProxyType, Quoted, RawSettings, RedirectSettings, Setting, TlsOutSettings,
};

use crate::annotations::{
    self, AnnotationError, ResourceAnnotation, CONFIGURE_APP, INJECT, INJECTED, TLS_OUT_SECRET,
    TLS_OUT_UPSTREAM_CA,
};
use crate::capture_sink::{capture_sink_plan, CaptureSinkPlan, SPOOL_BYTES};
use crate::capture_volume::{capture_plan, CapturePlan};
pub use crate::denial::Denial;
use crate::layout::{LayoutChoice, SIDECAR_NAME};
use crate::mock::{mock_plan, MockPlan};
use crate::probe_ports::tcp_probe_ports;
use crate::resources::check_requests_within_limits;
use crate::tls_out::{self, TlsOutPlan};

/// What the injector does with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No `inject: "true"`: the pod passes unchanged.
    NotRequested,
    /// Already carries the sidecar: nothing to add (admission may see a pod twice).
    AlreadyInjected,
    /// Boxed: a plan is a few hundred bytes, the other outcomes none.
    Inject(Box<Plan>),
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
    /// Also set the app containers' proxy settings (and, with tls-out, their trust in the capture CA).
    pub configure_app: bool,
    /// `tls-out: "true"`: the capture CA (and any extra upstream CAs) to mount into the sidecar.
    pub tls_out: Option<TlsOutPlan>,
    /// The capture volume's size limit and the rotation that fits in it (beside the NATS spool, if any).
    pub capture: CapturePlan,
    /// `capture-sink`: records also published to NATS JetStream.
    pub capture_sink: Option<CaptureSinkPlan>,
    /// `mock-configmap`: the ConfigMap mounted where the `mock` annotation says the capture is.
    pub mock: Option<MockPlan>,
    /// What `native-sidecar` asks for; the injector resolves `auto` (see [`LayoutChoice::resolve`]).
    pub layout: LayoutChoice,
    /// `pre-stop-wait`: the classic sidecar's preStop hook waits this long before it is signalled.
    pub pre_stop_wait: Option<std::time::Duration>,
    /// Things the pod's owner should know that do not stop the injection (see `probe_ports`), one sentence
    /// each: the webhook returns them as admission warnings, `inject` prints them.
    pub warnings: Vec<String>,
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
    let mut warnings = Vec::new();
    let redirect = if transparent {
        let redirect = RedirectSettings::from_settings(&raw).map_err(|e| Denial(e.to_string()))?;
        // Ports only TCP probes use reach the app itself, so the probes test the app, not the sidecar.
        let probes = tcp_probe_ports(containers);
        warnings.extend(probes.warnings);
        Some(RedirectSettings {
            ignore_inbound: redirect.ignore_inbound.with_ports(probes.excluded),
            ..redirect
        })
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

    let tls_out = tls_out_plan(annotations, &raw, config.proxy_type)?;
    // Refused here rather than by the sidecar at start, where the pod would crash-loop.
    sidecar_proxy::config::drain_duration(&raw).map_err(|e| Denial(e.to_string()))?;
    let mock = mock_plan(annotations, &config)?;

    let configure_app = annotations::flag(annotations, CONFIGURE_APP)?;
    // With tls-out, a transparent pod's apps need no proxy settings but do need to trust the capture CA,
    // which is all configure-app then sets.
    if configure_app && config.outbound().is_none() && !(transparent && tls_out.is_some()) {
        let hint = if transparent {
            " (with tls-out: \"true\" it sets only the app's trust in the capture CA)"
        } else {
            ""
        };
        return Err(Denial(format!(
            "{CONFIGURE_APP}: \"true\" needs proxy-type \"forward\" or \"dual\": with proxy-type \"{}\" the app needs no proxy settings{hint}",
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
    let capture_sink = capture_sink_plan(annotations)?;
    // The NATS spool shares the capture volume with the files.
    let capture = capture_plan(
        annotations,
        capture_sink.as_ref().map_or(0, |_| SPOOL_BYTES),
    )?;
    let layout = annotations::layout_choice(annotations)?;
    let pre_stop_wait = annotations::pre_stop_wait(annotations)?;

    Ok(Decision::Inject(Box::new(Plan {
        config,
        redirect,
        proxy_env,
        requests,
        limits,
        configure_app,
        tls_out,
        capture,
        capture_sink,
        mock,
        layout,
        pre_stop_wait,
        warnings,
    })))
}

/// tls-out, validated by the proxy's own rules (the denial is the proxy's message), the Secret its CA
/// comes from, and the ConfigMap of extra upstream CAs if any. `tls-out-secret` or `tls-out-upstream-ca`
/// without tls-out is refused: a pod that names a CA but intercepts nothing is almost certainly missing
/// the annotation that switches interception on.
fn tls_out_plan(
    annotations: &BTreeMap<String, String>,
    raw: &RawSettings,
    proxy_type: ProxyType,
) -> Result<Option<TlsOutPlan>, Denial> {
    let settings =
        TlsOutSettings::from_settings(raw, proxy_type).map_err(|e| Denial(e.to_string()))?;
    if !settings.enabled {
        let named = [
            (
                TLS_OUT_SECRET,
                "it names the Secret holding the CA the sidecar intercepts TLS with",
            ),
            (
                TLS_OUT_UPSTREAM_CA,
                "it names the ConfigMap holding extra CAs the sidecar verifies upstream certificates with",
            ),
        ]
        .into_iter()
        .find(|(annotation, _)| annotations.contains_key(*annotation));
        let Some((annotation, purpose)) = named else {
            return Ok(None);
        };
        let key = Setting::TlsOut.annotation_key();
        let current = match annotations.get(&key) {
            Some(value) => format!("this pod's tls-out is {}", Quoted(value)),
            None => "this pod does not set tls-out (default \"false\")".to_owned(),
        };
        return Err(Denial(format!(
            "{annotation} applies only with {key}: \"true\" ({purpose}); {current}"
        )));
    }
    let object_name =
        |key: &str, kind: &'static str, example: &'static str| match annotations.get(key) {
            Some(name) if !tls_out::is_object_name(name) => Err(AnnotationError::NotAnObjectName {
                key: key.to_owned(),
                value: name.clone(),
                kind,
                example,
            }),
            name => Ok(name.cloned()),
        };
    let secret = object_name(TLS_OUT_SECRET, "Secret", tls_out::DEFAULT_SECRET)?
        .unwrap_or_else(|| tls_out::DEFAULT_SECRET.to_owned());
    let upstream_ca = object_name(TLS_OUT_UPSTREAM_CA, "ConfigMap", "internal-ca")?;
    Ok(Some(TlsOutPlan {
        secret,
        upstream_ca,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The denial of an injected forward-proxy pod with `pairs` as its other annotations.
    fn deny_forward(pairs: &[(&str, &str)]) -> String {
        let mut all = vec![("inject", "true"), ("proxy-type", "forward")];
        all.extend_from_slice(pairs);
        decide(&annotations(&all), &[]).unwrap_err().0
    }

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

    #[test]
    fn tls_out_secret_needs_tls_out_and_a_secret_name() {
        assert_eq!(
            deny_forward(&[("tls-out-secret", "shop-ca")]),
            "sidecar.speedscale.com/tls-out-secret applies only with sidecar.speedscale.com/tls-out: \"true\" (it names the Secret holding the CA the sidecar intercepts TLS with); this pod does not set tls-out (default \"false\")"
        );
        assert!(
            deny_forward(&[("tls-out", "false"), ("tls-out-secret", "shop-ca")])
                .ends_with("; this pod's tls-out is \"false\"")
        );
        assert!(deny_forward(&[("tls-out", "true"), ("tls-out-secret", "shop_ca")])
            .starts_with("sidecar.speedscale.com/tls-out-secret: \"shop_ca\" is not a Kubernetes Secret name; allowed: lowercase letters"));
    }

    #[test]
    fn tls_out_upstream_ca_needs_tls_out_and_a_config_map_name() {
        assert_eq!(
            deny_forward(&[("tls-out-upstream-ca", "internal-ca")]),
            "sidecar.speedscale.com/tls-out-upstream-ca applies only with sidecar.speedscale.com/tls-out: \"true\" (it names the ConfigMap holding extra CAs the sidecar verifies upstream certificates with); this pod does not set tls-out (default \"false\")"
        );
        assert!(
            deny_forward(&[("tls-out", "false"), ("tls-out-upstream-ca", "internal-ca")])
                .ends_with("; this pod's tls-out is \"false\"")
        );
        assert_eq!(
            deny_forward(&[("tls-out", "true"), ("tls-out-upstream-ca", "Internal CA")]),
            "sidecar.speedscale.com/tls-out-upstream-ca: \"Internal CA\" is not a Kubernetes ConfigMap name; allowed: lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit, at most 253 characters (a DNS-1123 subdomain), like internal-ca"
        );
    }

    #[test]
    fn tls_out_defaults_its_secret_and_any_case_of_true_counts() {
        let plan = |pairs: &[(&str, &str)]| {
            let mut all = vec![("inject", "true"), ("proxy-type", "dual")];
            all.extend_from_slice(pairs);
            match decide(&annotations(&all), &[]) {
                Ok(Decision::Inject(plan)) => plan.tls_out,
                other => panic!("{other:?}"),
            }
        };
        let tls_out = |secret: &str, upstream_ca: Option<&str>| {
            Some(TlsOutPlan {
                secret: secret.to_owned(),
                upstream_ca: upstream_ca.map(str::to_owned),
            })
        };
        assert_eq!(plan(&[]), None);
        assert_eq!(plan(&[("tls-out", "false")]), None);
        assert_eq!(
            plan(&[("tls-out", "TRUE")]),
            tls_out("sidecar-tls-out-ca", None)
        );
        assert_eq!(
            plan(&[("tls-out", "true"), ("tls-out-secret", "shop-ca")]),
            tls_out("shop-ca", None)
        );
        assert_eq!(
            plan(&[("tls-out", "true"), ("tls-out-upstream-ca", "internal-ca")]),
            tls_out("sidecar-tls-out-ca", Some("internal-ca"))
        );
    }
}
