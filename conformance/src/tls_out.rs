//! What a tls-out cell adds to its pod, as a cluster running the injected pod would have it:
//!
//! - the capture CA, made once per run with `sidecar-proxy ca create`, as docs/injector.md tells users,
//!   and projected into the Secret volume the injector mounts into the sidecar with that volume's
//!   `defaultMode`, as the kubelet projects a Secret;
//! - the CA of the test upstream's certificate, for the sidecar to verify the upstream against
//!   (`PROXY_TLS_UPSTREAM_CA`). In a cluster, a public upstream chains to a root in the sidecar image's
//!   system bundle and nothing is added; the test upstream's CA is private to the run, like a user's
//!   internal CA, so it is mounted the way such a CA would be (a ConfigMap, say);
//! - the trust directory the sidecar writes to (`PROXY_TLS_TRUST_DIR`), which the client mounts
//!   read-only where `configure-app` mounts it in app containers.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, VolumeMount};

use crate::{images, pki, workspace};

/// The sidecar's volume holding the test upstream's CA.
pub const UPSTREAM_CA_VOLUME: &str = "conformance-upstream-ca";
const UPSTREAM_CA_DIR: &str = "/etc/sidecar/upstream-ca";
/// A `kubernetes.io/tls` Secret's keys, as `kubectl create secret tls` names them and `ca create` writes.
const SECRET_FILES: [&str; 2] = ["tls.crt", "tls.key"];
/// A Secret volume's mode when the pod names none (Kubernetes' default).
const SECRET_DEFAULT_MODE: i32 = 0o644;

/// The volumes of a tls-out cell's sidecar.
#[derive(Debug)]
pub struct TlsOutVolumes {
    /// Volumes whose contents the cell made, by name: the capture CA's Secret and the upstream's CA.
    pub provided: Vec<(String, PathBuf)>,
    /// The sidecar's volume behind `PROXY_TLS_TRUST_DIR`, which the client mounts too.
    pub trust_volume: String,
}

/// The run's capture CA (`tls.crt`, `tls.key`), made once per process.
pub fn capture_ca() -> anyhow::Result<&'static PathBuf> {
    static CA: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CA.get_or_init(|| create_capture_ca().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn create_capture_ca() -> anyhow::Result<PathBuf> {
    let images = images::images().map_err(|e| anyhow!("{e}"))?;
    let dir = workspace::scratch_dir().join("capture-ca");
    // `ca create` refuses to replace a CA; an old run's is of no use.
    workspace::fresh_dir(&dir)?;
    let output = Command::new(&images.sidecar_binary)
        .args(["ca", "create", "--out"])
        .arg(&dir)
        .output()
        .with_context(|| format!("cannot run {}", images.sidecar_binary.display()))?;
    if !output.status.success() {
        bail!(
            "sidecar-proxy ca create exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(dir)
}

/// Readies the sidecar container of a tls-out pod (`patched`, as the injector left it): fills the
/// capture CA's Secret volume under `cell_dir`, adds the upstream's CA from `pki_dir`, and finds the
/// trust directory's volume.
pub fn prepare(
    patched: &Pod,
    sidecar: &mut Container,
    cell_dir: &Path,
    pki_dir: &Path,
) -> anyhow::Result<TlsOutVolumes> {
    let mut provided = vec![project_ca_secret(patched, sidecar, cell_dir)?];

    sidecar
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: UPSTREAM_CA_VOLUME.to_owned(),
            mount_path: UPSTREAM_CA_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    sidecar.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: "PROXY_TLS_UPSTREAM_CA".to_owned(),
        value: Some(format!("{UPSTREAM_CA_DIR}/{}", pki::CA_FILE)),
        ..EnvVar::default()
    });
    provided.push((UPSTREAM_CA_VOLUME.to_owned(), pki_dir.to_path_buf()));

    Ok(TlsOutVolumes {
        provided,
        trust_volume: trust_volume(sidecar)?,
    })
}

/// Writes the capture CA into the directory of the Secret volume the sidecar mounts, each file with the
/// volume's mode, and returns (volume, directory).
fn project_ca_secret(
    patched: &Pod,
    sidecar: &Container,
    cell_dir: &Path,
) -> anyhow::Result<(String, PathBuf)> {
    let mounted: Vec<&str> = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .map(|mount| mount.name.as_str())
        .collect();
    let (name, secret) = patched
        .spec
        .iter()
        .flat_map(|spec| spec.volumes.iter().flatten())
        .filter(|volume| mounted.contains(&volume.name.as_str()))
        .find_map(|volume| Some((volume.name.clone(), volume.secret.as_ref()?)))
        .context("the injected sidecar mounts no Secret volume for the capture CA")?;
    let mode = secret.default_mode.unwrap_or(SECRET_DEFAULT_MODE);
    let mode = u32::try_from(mode).with_context(|| format!("volume {name}: mode {mode}"))?;
    let dir = cell_dir.join("secrets").join(&name);
    fs::create_dir_all(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
    let ca = capture_ca()?;
    for file in SECRET_FILES {
        let target = dir.join(file);
        fs::copy(ca.join(file), &target)
            .with_context(|| format!("cannot copy {file} into volume {name}"))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))?;
    }
    Ok((name, dir))
}

/// The sidecar's volume mounted at its `PROXY_TLS_TRUST_DIR`.
fn trust_volume(sidecar: &Container) -> anyhow::Result<String> {
    let dir = sidecar
        .env
        .iter()
        .flatten()
        .find(|var| var.name == "PROXY_TLS_TRUST_DIR")
        .and_then(|var| var.value.as_deref())
        .context("the injected sidecar sets no PROXY_TLS_TRUST_DIR")?;
    sidecar
        .volume_mounts
        .iter()
        .flatten()
        .find(|mount| mount.mount_path == dir)
        .map(|mount| mount.name.clone())
        .with_context(|| format!("the injected sidecar mounts no volume at {dir}"))
}
