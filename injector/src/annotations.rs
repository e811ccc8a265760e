//! The injector's own annotations, beside the spec's proxy settings: whether to inject, whether to set the
//! app containers' proxy settings, which Secret holds tls-out's CA, which ConfigMap holds extra CAs for
//! tls-out's upstreams, the sidecar's resources, the capture volume's size and rotation, the NATS sink, and the marks an
//! injected pod carries. Every `sidecar.speedscale.com/*` key is either known here or a spec setting; any
//! other is refused, so a misspelled annotation is never silently ignored.

use std::collections::BTreeMap;

use sidecar_proxy::config::{excerpt, Quoted, Setting, ANNOTATION_PREFIX};
use thiserror::Error;

use crate::layout::LayoutChoice;

/// `"true"` asks for the sidecar.
pub const INJECT: &str = "sidecar.speedscale.com/inject";
/// `"true"` sets the app containers' proxy settings for the chosen mode.
pub const CONFIGURE_APP: &str = "sidecar.speedscale.com/configure-app";
/// The Secret holding the capture CA for tls-out (default `sidecar-tls-out-ca`), mounted into the sidecar.
pub const TLS_OUT_SECRET: &str = "sidecar.speedscale.com/tls-out-secret";
/// The ConfigMap whose `ca.crt` holds extra CAs (PEM) that tls-out's upstream certificates may chain to,
/// mounted into the sidecar as its `PROXY_TLS_UPSTREAM_CA`.
pub const TLS_OUT_UPSTREAM_CA: &str = "sidecar.speedscale.com/tls-out-upstream-ca";
/// The ConfigMap holding the capture mock mode answers from, mounted into the sidecar at the `mock` path.
pub const MOCK_CONFIGMAP: &str = "sidecar.speedscale.com/mock-configmap";
/// The capture volume's `sizeLimit` (a quantity, default 1Gi); the rotation is fitted inside it.
pub const CAPTURE_SIZE_LIMIT: &str = "sidecar.speedscale.com/capture-size-limit";
/// The size at which the sidecar starts a new capture file (a quantity; default: fitted to the limit).
pub const CAPTURE_ROTATE_SIZE: &str = "sidecar.speedscale.com/capture-rotate-size";
/// How many rotated capture files the sidecar keeps besides the current one (default 5).
pub const CAPTURE_ROTATE_KEEP: &str = "sidecar.speedscale.com/capture-rotate-keep";
/// Where the sidecar also publishes its records: `nats://HOST:PORT/SUBJECT` (NATS JetStream).
pub const CAPTURE_SINK: &str = "sidecar.speedscale.com/capture-sink";
/// The Secret whose `credentials` key holds the NATS credentials, mounted into the sidecar.
pub const CAPTURE_SINK_SECRET: &str = "sidecar.speedscale.com/capture-sink-secret";
/// `"true"`: the sidecar as a native sidecar (an init container with `restartPolicy: Always`); `"false"`:
/// the classic layout; `"auto"` (or absent): the injector's default. See [`crate::layout`].
pub const NATIVE_SIDECAR: &str = "sidecar.speedscale.com/native-sidecar";
/// Classic layout only: how long the sidecar's preStop hook waits before the kubelet signals it (a
/// duration like `10s`; none by default), so the app finishes its last calls through a sidecar still
/// serving. A native sidecar needs none: the kubelet stops it after the app.
pub const PRE_STOP_WAIT: &str = "sidecar.speedscale.com/pre-stop-wait";
/// Set on an injected pod: the layout the injector chose, `native` or `classic`.
pub const SIDECAR_LAYOUT: &str = "sidecar.speedscale.com/sidecar-layout";
/// Set on an injected pod: why that layout, in one sentence (the pod's annotation, the injector's flag, or
/// for the webhook's `auto` the versions the API server reported, or why it could not ask).
pub const SIDECAR_LAYOUT_REASON: &str = "sidecar.speedscale.com/sidecar-layout-reason";
/// Set on an injected pod (annotation, value: the injector's version); a pod carrying it is left alone.
pub const INJECTED: &str = "sidecar.speedscale.com/injected";
/// Label set on an injected pod, for selectors: `sidecar.speedscale.com/injected=true`.
pub const INJECTED_LABEL: &str = "sidecar.speedscale.com/injected";

/// Resource overrides for the sidecar container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceAnnotation {
    CpuRequest,
    MemoryRequest,
    CpuLimit,
    MemoryLimit,
}

impl ResourceAnnotation {
    pub const ALL: [ResourceAnnotation; 4] = [
        ResourceAnnotation::CpuRequest,
        ResourceAnnotation::MemoryRequest,
        ResourceAnnotation::CpuLimit,
        ResourceAnnotation::MemoryLimit,
    ];

    pub fn key(self) -> &'static str {
        match self {
            ResourceAnnotation::CpuRequest => "sidecar.speedscale.com/proxy-cpu-request",
            ResourceAnnotation::MemoryRequest => "sidecar.speedscale.com/proxy-memory-request",
            ResourceAnnotation::CpuLimit => "sidecar.speedscale.com/proxy-cpu-limit",
            ResourceAnnotation::MemoryLimit => "sidecar.speedscale.com/proxy-memory-limit",
        }
    }

    /// `cpu` or `memory`.
    pub fn resource(self) -> &'static str {
        match self {
            ResourceAnnotation::CpuRequest | ResourceAnnotation::CpuLimit => "cpu",
            ResourceAnnotation::MemoryRequest | ResourceAnnotation::MemoryLimit => "memory",
        }
    }

    pub fn is_limit(self) -> bool {
        matches!(
            self,
            ResourceAnnotation::CpuLimit | ResourceAnnotation::MemoryLimit
        )
    }
}

/// A `sidecar.speedscale.com/*` annotation the injector cannot accept.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnnotationError {
    #[error("{key}: {} is not allowed; allowed: true, false", Quoted(.value))]
    NotABoolean { key: String, value: String },
    #[error(
        "{key}: {} is not a Kubernetes quantity; allowed: a non-negative number with an optional suffix, like 100m, 0.5, 64Mi, 1G",
        Quoted(.value)
    )]
    NotAQuantity { key: String, value: String },
    /// `kind` is what the annotation names (`Secret`, `ConfigMap`), `example` a good name for it.
    #[error(
        "{key}: {} is not a Kubernetes {kind} name; allowed: lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit, at most 253 characters (a DNS-1123 subdomain), like {example}",
        Quoted(.value)
    )]
    NotAnObjectName {
        key: String,
        value: String,
        kind: &'static str,
        example: &'static str,
    },
    #[error("{key}: {} is not allowed; allowed: true (a native sidecar: an init container with restartPolicy Always, Kubernetes 1.29 or later), false (the sidecar as the first container), auto (the injector's default)", Quoted(.value))]
    NotALayoutChoice { key: String, value: String },
    #[error("{key}: {} is not a duration; allowed: durations from 0s to 1h, like 10s or 1m", Quoted(.value))]
    NotADuration { key: String, value: String },
    #[error("{} is not an annotation of the sidecar; known: {known}", excerpt(.key))]
    Unknown { key: String, known: String },
}

/// Reads a `"true"`/`"false"` annotation (absent is false).
pub fn flag(annotations: &BTreeMap<String, String>, key: &str) -> Result<bool, AnnotationError> {
    match annotations.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(AnnotationError::NotABoolean {
            key: key.to_owned(),
            value: other.to_owned(),
        }),
    }
}

/// Reads the `native-sidecar` annotation (absent is `auto`).
pub fn layout_choice(
    annotations: &BTreeMap<String, String>,
) -> Result<LayoutChoice, AnnotationError> {
    match annotations.get(NATIVE_SIDECAR).map(String::as_str) {
        None | Some("auto") => Ok(LayoutChoice::Auto),
        Some("true") => Ok(LayoutChoice::Native),
        Some("false") => Ok(LayoutChoice::Classic),
        Some(other) => Err(AnnotationError::NotALayoutChoice {
            key: NATIVE_SIDECAR.to_owned(),
            value: other.to_owned(),
        }),
    }
}

/// Reads the `pre-stop-wait` annotation (absent is none).
pub fn pre_stop_wait(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<std::time::Duration>, AnnotationError> {
    let Some(value) = annotations.get(PRE_STOP_WAIT) else {
        return Ok(None);
    };
    sidecar_proxy::config::parse_shutdown_duration(value)
        .map(Some)
        .ok_or_else(|| AnnotationError::NotADuration {
            key: PRE_STOP_WAIT.to_owned(),
            value: value.clone(),
        })
}

/// Refuses any `sidecar.speedscale.com/*` key that is neither a spec setting nor the injector's own.
pub fn check_known(annotations: &BTreeMap<String, String>) -> Result<(), AnnotationError> {
    for key in annotations.keys() {
        if !key.starts_with(ANNOTATION_PREFIX) || is_known(key) {
            continue;
        }
        return Err(AnnotationError::Unknown {
            key: key.clone(),
            known: known_keys().join(", "),
        });
    }
    Ok(())
}

fn is_known(key: &str) -> bool {
    Setting::from_annotation_key(key).is_some()
        || [
            INJECT,
            CONFIGURE_APP,
            TLS_OUT_SECRET,
            TLS_OUT_UPSTREAM_CA,
            MOCK_CONFIGMAP,
            CAPTURE_SIZE_LIMIT,
            CAPTURE_ROTATE_SIZE,
            CAPTURE_ROTATE_KEEP,
            CAPTURE_SINK,
            CAPTURE_SINK_SECRET,
            NATIVE_SIDECAR,
            PRE_STOP_WAIT,
            SIDECAR_LAYOUT,
            INJECTED,
        ]
        .contains(&key)
        || ResourceAnnotation::ALL.iter().any(|r| r.key() == key)
}

fn known_keys() -> Vec<String> {
    let mut keys: Vec<String> = [INJECT, CONFIGURE_APP]
        .iter()
        .map(|key| key.trim_start_matches(ANNOTATION_PREFIX).to_owned())
        .collect();
    keys.extend(Setting::ALL.iter().map(|s| s.name().to_owned()));
    keys.extend(
        [
            TLS_OUT_SECRET,
            TLS_OUT_UPSTREAM_CA,
            MOCK_CONFIGMAP,
            CAPTURE_SIZE_LIMIT,
            CAPTURE_ROTATE_SIZE,
            CAPTURE_ROTATE_KEEP,
            CAPTURE_SINK,
            CAPTURE_SINK_SECRET,
            NATIVE_SIDECAR,
            PRE_STOP_WAIT,
        ]
        .iter()
        .map(|key| key.trim_start_matches(ANNOTATION_PREFIX).to_owned()),
    );
    keys.extend(
        ResourceAnnotation::ALL
            .iter()
            .map(|r| r.key().trim_start_matches(ANNOTATION_PREFIX).to_owned()),
    );
    keys
}

/// A Kubernetes resource quantity (`100m`, `0.5`, `64Mi`, `1e3`) as a number, or `None` when the text is
/// not one. Resources cannot be negative, so a sign other than `+` is refused here, at admission, instead of
/// by the API server with a message that for a Deployment only shows in its ReplicaSet's events.
pub fn quantity_value(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    if !number.chars().any(|c| c.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let binary = |power: i32| 1024f64.powi(power);
    let scale = match suffix {
        "" => 1.0,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        // A decimal exponent: e3, E-2.
        other => {
            let exponent = other.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exponent.parse().ok()?)
        }
    };
    Some(number * scale)
}

/// Whether the text is a resource quantity Kubernetes accepts (see [`quantity_value`]).
pub fn is_quantity(text: &str) -> bool {
    quantity_value(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for good in ["100m", "0.5", "64Mi", "1G", "2", "1e3", "+1", ".5"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "m", "64MB", "1.2.3", "lots", "1e", "-", "-1", "-64Mi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn quantity_values() {
        assert_eq!(quantity_value("100m"), Some(0.1));
        assert_eq!(quantity_value("64Mi"), Some(64.0 * 1024.0 * 1024.0));
        assert_eq!(quantity_value("1G"), Some(1e9));
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value(".5"), Some(0.5));
        assert_eq!(quantity_value("64MB"), None);
        assert!(quantity_value("512Mi") > quantity_value("256Mi"));
        assert!(quantity_value("1Gi") > quantity_value("1G"));
    }

    #[test]
    fn unknown_keys_of_our_prefix_are_refused_and_others_ignored() {
        let mut annotations = BTreeMap::new();
        annotations.insert("example.com/anything".to_owned(), "x".to_owned());
        annotations.insert(INJECT.to_owned(), "true".to_owned());
        assert_eq!(check_known(&annotations), Ok(()));
        annotations.insert(
            "sidecar.speedscale.com/proxy-typ".to_owned(),
            "dual".to_owned(),
        );
        let error = check_known(&annotations).unwrap_err().to_string();
        assert!(
            error.starts_with("sidecar.speedscale.com/proxy-typ is not an annotation of the sidecar; known: inject, configure-app, proxy-type,"),
            "{error}"
        );
    }
}
