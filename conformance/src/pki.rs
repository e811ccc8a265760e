//! The test CA and the upstream's serving certificate, made fresh for each run: HTTPS requests through the
//! sidecar are checked against a CA the clients trust and nobody else does.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Where the PKI directory is mounted in every container of a pod.
pub const DIR_IN_CONTAINER: &str = "/conformance/pki";
/// The CA's file in the PKI directory.
pub const CA_FILE: &str = "ca.pem";
pub const CA_PATH_IN_CONTAINER: &str = "/conformance/pki/ca.pem";
pub const CERT_PATH_IN_CONTAINER: &str = "/conformance/pki/upstream.pem";
pub const KEY_PATH_IN_CONTAINER: &str = "/conformance/pki/upstream-key.pem";

/// Writes `ca.pem`, `upstream.pem` and `upstream-key.pem` for `names` into `dir`, readable by the
/// containers' non-root users (the key protects nothing but this run's loopback upstream).
pub fn write_test_pki(dir: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sidecar conformance test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut leaf_params = CertificateParams::new(
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>(),
    )?;
    leaf_params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("upstream"),
    );
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;

    for (file, contents) in [
        (CA_FILE, ca.pem()),
        ("upstream.pem", leaf.pem()),
        ("upstream-key.pem", leaf_key.serialize_pem()),
    ] {
        let path = dir.join(file);
        fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(dir.to_path_buf())
}
