//! The NATS sink in the pod (`capture-sink`): the sidecar publishes its records to JetStream, on the
//! subject templated with the pod's namespace and name, which the downward API gives it as `POD_NAMESPACE`
//! and `POD_NAME`. Credentials never come from an annotation: `capture-sink-secret` names a Secret whose
//! `credentials` key (a NATS `.creds` file or a token) is mounted into the sidecar only. The spool the
//! sidecar keeps while NATS is away lives in the capture volume, whose size limit is fitted with it (see
//! [`crate::capture_volume`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ObjectFieldSelector, SecretVolumeSource, Volume, VolumeMount,
};
use sidecar_proxy::capture::nats::address::{NAMESPACE_ENV, POD_ENV};
use sidecar_proxy::capture::nats::NatsAddress;
use sidecar_proxy::config::Quoted;

use crate::annotations::{AnnotationError, CAPTURE_SINK, CAPTURE_SINK_SECRET};
use crate::denial::Denial;

/// The volume of the credentials Secret, mounted only into the sidecar.
pub const CREDENTIALS_VOLUME: &str = "sidecar-capture-sink-credentials";
/// Where the sidecar reads it.
pub const CREDENTIALS_DIR: &str = "/etc/sidecar/capture-sink";
/// The Secret's key holding the credentials, and the file's name in [`CREDENTIALS_DIR`].
pub const CREDENTIALS_KEY: &str = "credentials";
/// The spool directory, inside the capture volume.
pub const SPOOL_DIR: &str = "/var/sidecar/capture/spool";
/// The spool's budget, reserved in the capture volume (the sidecar's default, set explicitly so the pod
/// says what was reserved).
pub const SPOOL_SIZE: &str = "64MiB";
pub const SPOOL_BYTES: u64 = 64 * 1024 * 1024;
/// Mode of the credentials file: read by the sidecar's uid whatever group the kubelet gives it; the volume
/// is mounted into the sidecar only, whose sole process is the proxy (as for tls-out's CA).
const CREDENTIALS_FILE_MODE: i32 = 0o444;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSinkPlan {
    /// `nats://HOST:PORT/SUBJECT`, as the annotation wrote it (validated).
    pub address: String,
    /// The Secret holding the credentials, in the pod's namespace.
    pub secret: Option<String>,
}

/// Reads and checks the sink annotations of a pod: `None` without `capture-sink`.
pub fn capture_sink_plan(
    annotations: &BTreeMap<String, String>,
) -> Result<Option<CaptureSinkPlan>, Denial> {
    let secret = annotations.get(CAPTURE_SINK_SECRET);
    let Some(address) = annotations.get(CAPTURE_SINK) else {
        if secret.is_some() {
            return Err(Denial(format!(
                "{CAPTURE_SINK_SECRET} applies only with {CAPTURE_SINK} (it names the Secret holding the NATS credentials); this pod sets no {CAPTURE_SINK}"
            )));
        }
        return Ok(None);
    };
    NatsAddress::parse(address.trim(), false)
        .map_err(|e| Denial(format!("{CAPTURE_SINK}: {e}")))?;
    if let Some(name) = secret {
        if !crate::tls_out::is_object_name(name) {
            return Err(AnnotationError::NotAnObjectName {
                key: CAPTURE_SINK_SECRET.to_owned(),
                value: name.clone(),
                kind: "Secret",
                example: "nats-capture-creds",
            }
            .into());
        }
    }
    if address.trim() != address.as_str() {
        return Err(Denial(format!(
            "{CAPTURE_SINK}: {} has spaces around it; allowed: nats://HOST:PORT/SUBJECT",
            Quoted(address)
        )));
    }
    Ok(Some(CaptureSinkPlan {
        address: address.clone(),
        secret: secret.cloned(),
    }))
}

/// The sidecar's environment for the sink: the address, the spool, the pod's identity for the subject,
/// and where the credentials are.
pub fn sidecar_env(plan: &CaptureSinkPlan) -> Vec<EnvVar> {
    let value = |name: &str, value: &str| EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        value_from: None,
    };
    let field = |name: &str, path: &str| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.to_owned(),
            }),
            ..EnvVarSource::default()
        }),
    };
    let mut env = vec![
        value("PROXY_CAPTURE_SINK", &plan.address),
        value("PROXY_CAPTURE_SPOOL_DIR", SPOOL_DIR),
        value("PROXY_CAPTURE_SPOOL_SIZE", SPOOL_SIZE),
        field(NAMESPACE_ENV, "metadata.namespace"),
        field(POD_ENV, "metadata.name"),
    ];
    if plan.secret.is_some() {
        env.push(value(
            "PROXY_CAPTURE_SINK_CREDENTIALS",
            &format!("{CREDENTIALS_DIR}/{CREDENTIALS_KEY}"),
        ));
    }
    env
}

pub fn sidecar_mounts(plan: &CaptureSinkPlan) -> Vec<VolumeMount> {
    plan.secret
        .iter()
        .map(|_| VolumeMount {
            name: CREDENTIALS_VOLUME.to_owned(),
            mount_path: CREDENTIALS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        })
        .collect()
}

pub fn volumes(plan: &CaptureSinkPlan) -> Vec<Volume> {
    plan.secret
        .iter()
        .map(|secret| Volume {
            name: CREDENTIALS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(CREDENTIALS_FILE_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(pairs: &[(&str, &str)]) -> Result<Option<CaptureSinkPlan>, String> {
        let annotations = pairs
            .iter()
            .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), (*v).to_owned()))
            .collect();
        capture_sink_plan(&annotations).map_err(|denial| denial.0)
    }

    #[test]
    fn the_sink_and_its_secret() {
        assert_eq!(plan(&[]), Ok(None));
        assert_eq!(
            plan(&[
                ("capture-sink", "nats://nats.capture:4222"),
                ("capture-sink-secret", "nats-creds")
            ]),
            Ok(Some(CaptureSinkPlan {
                address: "nats://nats.capture:4222".to_owned(),
                secret: Some("nats-creds".to_owned()),
            }))
        );
    }

    #[test]
    fn refusals_name_the_annotation_and_what_is_allowed() {
        let denied = plan(&[("capture-sink", "nats://user:pw@nats:4222")]).unwrap_err();
        assert!(
            denied.starts_with("sidecar.speedscale.com/capture-sink: "),
            "{denied}"
        );
        assert!(
            denied.contains("credentials never go in the address"),
            "{denied}"
        );
        let denied = plan(&[("capture-sink-secret", "nats-creds")]).unwrap_err();
        assert!(denied.contains("applies only with"), "{denied}");
        let denied = plan(&[
            ("capture-sink", "nats://nats:4222"),
            ("capture-sink-secret", "Nats_Creds"),
        ])
        .unwrap_err();
        assert!(denied.contains("not a Kubernetes Secret name"), "{denied}");
    }
}
