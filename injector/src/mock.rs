//! Mock mode in the pod: with `sidecar.speedscale.com/mock: /path/capture.jsonl`, the sidecar answers the
//! app's outbound HTTP from that capture; with `sidecar.speedscale.com/mock-configmap: NAME` as well, the
//! injector mounts the ConfigMap's key of that file name at that path (the ConfigMap's other keys are left
//! out), read-only, into the sidecar only.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, KeyToPath, Volume, VolumeMount};
use sidecar_proxy::config::{ProxyConfig, ProxyType, Quoted, Setting};

use crate::annotations::{AnnotationError, MOCK_CONFIGMAP};
use crate::denial::Denial;
use crate::tls_out::is_object_name;

/// The ConfigMap's volume, mounted only into the sidecar.
pub const MOCK_VOLUME: &str = "sidecar-mock";

/// A recorded capture holds headers and bodies as recorded; the sidecar (uid 2102) reads it whatever
/// group the kubelet gives the file, and nobody writes it.
const MOCK_FILE_MODE: i32 = 0o444;

/// The ConfigMap to mount and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockPlan {
    pub config_map: String,
    /// The directory the ConfigMap is mounted at.
    pub dir: String,
    /// The file in it: the ConfigMap's key.
    pub key: String,
}

/// Checks the mock annotations against the mode, and plans the ConfigMap's mount when one is named.
pub fn mock_plan(
    annotations: &BTreeMap<String, String>,
    config: &ProxyConfig,
) -> Result<Option<MockPlan>, Denial> {
    let mock_key = Setting::Mock.annotation_key();
    let path = annotations.get(&mock_key);
    let config_map = annotations.get(MOCK_CONFIGMAP);
    let Some(path) = path else {
        return match config_map {
            Some(_) => Err(Denial(format!(
                "{MOCK_CONFIGMAP} applies only with {mock_key}: the capture file's path in the pod, where the ConfigMap is mounted (for example {mock_key}: \"/var/run/sidecar/mock/capture.jsonl\")"
            ))),
            None => Ok(None),
        };
    };
    // Transparent mode mocks the app's redirected outbound connections; the inline modes need the forward
    // listener.
    if config.proxy_type != ProxyType::Transparent && config.outbound().is_none() {
        return Err(Denial(format!(
            "{mock_key} answers the app's outbound HTTP, so it needs proxy-type \"transparent\", \"forward\" or \"dual\"; this pod's proxy-type is \"{}\"",
            config.proxy_type.as_str()
        )));
    }
    let Some(config_map) = config_map else {
        return Ok(None);
    };
    if !is_object_name(config_map) {
        return Err(AnnotationError::NotAnObjectName {
            key: MOCK_CONFIGMAP.to_owned(),
            value: config_map.clone(),
            kind: "ConfigMap",
            example: "checkout-mock",
        }
        .into());
    }
    let refuse = || {
        Denial(format!(
            "{mock_key} is {}: with {MOCK_CONFIGMAP} it must be an absolute file path below a directory of its own (the ConfigMap is mounted there), its file name a ConfigMap key (letters, digits, '-', '_', '.'), like \"/var/run/sidecar/mock/capture.jsonl\"",
            Quoted(path)
        ))
    };
    let (dir, key) = path.rsplit_once('/').ok_or_else(refuse)?;
    let key_ok = !key.is_empty()
        && key != "."
        && key != ".."
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let dir_ok = dir.starts_with('/') && dir.len() > 1 && !dir.split('/').any(|part| part == "..");
    if !key_ok || !dir_ok {
        return Err(refuse());
    }
    Ok(Some(MockPlan {
        config_map: config_map.clone(),
        dir: dir.to_owned(),
        key: key.to_owned(),
    }))
}

/// The ConfigMap's volume: only the capture's key.
pub fn volume(plan: &MockPlan) -> Volume {
    Volume {
        name: MOCK_VOLUME.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: plan.config_map.clone(),
            // Without the key the kubelet refuses the mount with an event naming it, rather than the
            // sidecar starting without its capture.
            items: Some(vec![KeyToPath {
                key: plan.key.clone(),
                path: plan.key.clone(),
                mode: None,
            }]),
            default_mode: Some(MOCK_FILE_MODE),
            optional: None,
        }),
        ..Volume::default()
    }
}

/// The sidecar's read-only mount of that volume.
pub fn sidecar_mount(plan: &MockPlan) -> VolumeMount {
    VolumeMount {
        name: MOCK_VOLUME.to_owned(),
        mount_path: plan.dir.clone(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_proxy::config::RawSettings;

    fn plan(pairs: &[(&str, &str)]) -> Result<Option<MockPlan>, Denial> {
        let annotations: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), (*v).to_owned()))
            .collect();
        let raw = RawSettings::from_annotations(
            annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let config = ProxyConfig::from_settings(&raw).unwrap();
        mock_plan(&annotations, &config)
    }

    #[test]
    fn a_config_map_is_mounted_at_the_mock_path() {
        let planned = plan(&[
            ("proxy-type", "dual"),
            ("mock", "/var/run/sidecar/mock/capture.jsonl"),
            ("mock-configmap", "checkout-mock"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            planned,
            MockPlan {
                config_map: "checkout-mock".into(),
                dir: "/var/run/sidecar/mock".into(),
                key: "capture.jsonl".into(),
            }
        );
        assert_eq!(
            plan(&[("proxy-type", "forward"), ("mock", "/data/c.jsonl")]).unwrap(),
            None
        );
        // Transparent mode mocks the app's redirected calls.
        assert_eq!(
            plan(&[("proxy-type", "transparent"), ("mock", "/data/c.jsonl")]).unwrap(),
            None
        );
    }

    #[test]
    fn what_cannot_work_is_refused_by_name() {
        for (pairs, says) in [
            (
                vec![("proxy-type", "forward"), ("mock-configmap", "m")],
                "applies only with",
            ),
            (
                vec![("proxy-type", "reverse"), ("mock", "/m/c.jsonl")],
                "needs proxy-type",
            ),
            (
                vec![
                    ("proxy-type", "forward"),
                    ("mock", "c.jsonl"),
                    ("mock-configmap", "m"),
                ],
                "absolute file path",
            ),
            (
                vec![
                    ("proxy-type", "forward"),
                    ("mock", "/c.jsonl"),
                    ("mock-configmap", "m"),
                ],
                "absolute file path",
            ),
            (
                vec![
                    ("proxy-type", "forward"),
                    ("mock", "/m/c.jsonl"),
                    ("mock-configmap", "Bad_Name"),
                ],
                "ConfigMap",
            ),
        ] {
            let denial = plan(&pairs).expect_err(says).to_string();
            assert!(denial.contains(says), "{pairs:?}: {denial}");
        }
    }
}
