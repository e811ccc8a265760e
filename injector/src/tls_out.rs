//! tls-out in the pod: the capture CA's Secret mounted into the sidecar, and the trust files the sidecar
//! writes at start (the CA alone, the CA plus its image's roots, a Java trust store) shared read-only
//! with the app containers, which `configure-app` points at them the way each runtime reads trust.
//! Optionally a ConfigMap of extra CAs (a private CA of internal services) that the sidecar, and only
//! the sidecar, verifies the real upstreams against.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EmptyDirVolumeSource, KeyToPath, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The Secret (`kubernetes.io/tls`: `tls.crt`, `tls.key`) holding the capture CA, when the pod does not
/// name one with `tls-out-secret`.
pub const DEFAULT_SECRET: &str = "sidecar-tls-out-ca";
/// The volume of that Secret, mounted only into the sidecar.
pub const CA_VOLUME: &str = "sidecar-tls-out-ca";
/// Where the sidecar reads the CA (its `PROXY_TLS_CA_DIR`).
pub const CA_DIR: &str = "/etc/sidecar/tls-out";
/// The emptyDir the sidecar writes the trust files to and the apps read them from.
pub const TRUST_VOLUME: &str = "sidecar-trust";
/// Where the trust files are, in the sidecar (its `PROXY_TLS_TRUST_DIR`) and in every app container.
pub const TRUST_DIR: &str = "/var/run/sidecar/trust";
/// The volume of the `tls-out-upstream-ca` ConfigMap, mounted only into the sidecar.
pub const UPSTREAM_CA_VOLUME: &str = "sidecar-tls-out-upstream-ca";
/// Where the sidecar reads the extra upstream CAs. Beside the capture CA's directory, not inside it: each
/// volume keeps a directory of its own.
pub const UPSTREAM_CA_DIR: &str = "/etc/sidecar/tls-out-upstream";
/// The ConfigMap's key holding the PEM bundle, and the file's name in [`UPSTREAM_CA_DIR`].
pub const UPSTREAM_CA_KEY: &str = "ca.crt";

/// The CA's certificate alone, for runtimes that add it to their own roots.
const CA_FILE: &str = "ca.crt";
/// The sidecar image's system roots plus the CA, for runtimes whose setting replaces their roots.
const BUNDLE_FILE: &str = "ca-bundle.crt";
/// PKCS#12 trust store of the CA plus the system roots, for Java, whose trust store replaces `cacerts`.
const TRUST_STORE_FILE: &str = "truststore.p12";
/// The trust store's password: Java's own default for `cacerts`; it guards nothing secret.
const TRUST_STORE_PASSWORD: &str = "changeit";

/// Mode of the CA Secret's files. The sidecar runs as uid and gid 2102, but the kubelet makes the files
/// root's, group root, unless the pod sets `fsGroup` (the pod's business, not the injector's), and a
/// container's securityContext has no supplemental groups: 0400 or 0440 would leave the key unreadable
/// by the sidecar. Read for all is safe here because the volume is mounted into the sidecar container
/// only, whose sole process is the proxy: no app container can reach the key.
const CA_FILE_MODE: i32 = 0o444;

/// Mode of the upstream CA bundle: public certificates, read by the sidecar's uid 2102 whatever group the
/// kubelet gives the file (see [`CA_FILE_MODE`]), written by no one.
const UPSTREAM_CA_FILE_MODE: i32 = 0o444;

/// The trust files are public certificates, a few hundred KiB (a system bundle of ~150 roots, twice).
/// In memory, so nothing lands on the node's disk and it goes with the pod; the limit keeps a runaway
/// writer from growing it, with room for a larger bundle than Debian's.
const TRUST_SIZE_LIMIT: &str = "4Mi";

/// tls-out's part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOutPlan {
    /// The Secret holding the capture CA, in the pod's namespace.
    pub secret: String,
    /// The ConfigMap (`tls-out-upstream-ca`) of extra CAs for upstream certificates, in the pod's
    /// namespace.
    pub upstream_ca: Option<String>,
}

/// The volumes tls-out adds to the pod: the CA, the trust files, and the upstream CAs when named.
pub fn volumes(plan: &TlsOutPlan) -> Vec<Volume> {
    let mut volumes = vec![
        Volume {
            name: CA_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(plan.secret.clone()),
                default_mode: Some(CA_FILE_MODE),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: TRUST_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity(TRUST_SIZE_LIMIT.to_owned())),
            }),
            ..Volume::default()
        },
    ];
    if let Some(config_map) = &plan.upstream_ca {
        volumes.push(Volume {
            name: UPSTREAM_CA_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.clone(),
                // Only the bundle, whatever else the ConfigMap holds; without the key the kubelet refuses
                // the mount with an event naming it, rather than the sidecar starting without the CAs.
                items: Some(vec![KeyToPath {
                    key: UPSTREAM_CA_KEY.to_owned(),
                    path: UPSTREAM_CA_KEY.to_owned(),
                    mode: None,
                }]),
                default_mode: Some(UPSTREAM_CA_FILE_MODE),
                optional: None,
            }),
            ..Volume::default()
        });
    }
    volumes
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The sidecar's mounts: the CA read-only, the trust directory writable, the upstream CAs read-only.
pub fn sidecar_mounts(plan: &TlsOutPlan) -> Vec<VolumeMount> {
    let mut mounts = vec![
        mount(CA_VOLUME, CA_DIR, true),
        mount(TRUST_VOLUME, TRUST_DIR, false),
    ];
    if plan.upstream_ca.is_some() {
        mounts.push(mount(UPSTREAM_CA_VOLUME, UPSTREAM_CA_DIR, true));
    }
    mounts
}

/// The sidecar's variables: where it reads the CA, where it writes the trust files, and the extra
/// upstream CAs' file.
pub fn sidecar_env(plan: &TlsOutPlan) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("PROXY_TLS_CA_DIR", CA_DIR.to_owned()),
        ("PROXY_TLS_TRUST_DIR", TRUST_DIR.to_owned()),
    ];
    if plan.upstream_ca.is_some() {
        env.push((
            "PROXY_TLS_UPSTREAM_CA",
            format!("{UPSTREAM_CA_DIR}/{UPSTREAM_CA_KEY}"),
        ));
    }
    env
}

/// An app container's mount of the trust files (read-only: only the sidecar writes them).
pub fn app_mount() -> VolumeMount {
    mount(TRUST_VOLUME, TRUST_DIR, true)
}

/// The variables that make each runtime trust the capture CA. Whether a setting adds to the runtime's
/// roots or replaces them decides which file it gets: a replacement needs the roots too, or every
/// excluded host (and every host while tls-out is off) would fail verification.
pub fn app_variables() -> Vec<(&'static str, String)> {
    let file = |name: &str| format!("{TRUST_DIR}/{name}");
    vec![
        // Go, Python's ssl module and most OpenSSL-based clients: replaces the roots.
        ("SSL_CERT_FILE", file(BUNDLE_FILE)),
        // The curl tool reads this before SSL_CERT_DIR and SSL_CERT_FILE, so an SSL_CERT_DIR the image
        // sets cannot hide the bundle from it.
        ("CURL_CA_BUNDLE", file(BUNDLE_FILE)),
        // Python requests, which otherwise trusts certifi's bundle and ignores SSL_CERT_FILE.
        ("REQUESTS_CA_BUNDLE", file(BUNDLE_FILE)),
        // Node adds these to its built-in roots.
        ("NODE_EXTRA_CA_CERTS", file(CA_FILE)),
    ]
}

/// The `JAVA_TOOL_OPTIONS` flags that make the JVM trust the capture CA: the trust store replaces
/// `cacerts`, so the sidecar builds it from the CA plus the system roots.
pub fn java_flags() -> String {
    format!(
        "-Djavax.net.ssl.trustStore={TRUST_DIR}/{TRUST_STORE_FILE} -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword={TRUST_STORE_PASSWORD}"
    )
}

/// Whether `name` is a name Kubernetes accepts for a Secret or a ConfigMap: a DNS-1123 subdomain,
/// lowercase labels of letters, digits and inner hyphens, joined by dots, at most 253 characters.
pub fn is_object_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            bytes.first().is_some_and(alphanumeric)
                && bytes.last().is_some_and(alphanumeric)
                && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_dns_1123_subdomains() {
        for good in [
            "sidecar-tls-out-ca",
            "a",
            "0",
            "ca.shop.example",
            "a--b",
            &"a".repeat(253),
        ] {
            assert!(is_object_name(good), "{good}");
        }
        for bad in [
            "",
            "Sidecar-CA",
            "-ca",
            "ca-",
            "ca..x",
            ".ca",
            "ca.",
            "ca_x",
            "ca/x",
            "ca x",
            "ça",
            &"a".repeat(254),
        ] {
            assert!(!is_object_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_upstream_ca_is_the_sidecars_alone_and_only_when_named() {
        let mut plan = TlsOutPlan {
            secret: DEFAULT_SECRET.to_owned(),
            upstream_ca: None,
        };
        assert_eq!(volumes(&plan).len(), 2);
        assert_eq!(sidecar_mounts(&plan).len(), 2);
        assert!(sidecar_env(&plan)
            .iter()
            .all(|(name, _)| *name != "PROXY_TLS_UPSTREAM_CA"));

        plan.upstream_ca = Some("internal-ca".to_owned());
        let volume = volumes(&plan)
            .into_iter()
            .find(|v| v.name == UPSTREAM_CA_VOLUME)
            .and_then(|v| v.config_map)
            .expect("a ConfigMap volume");
        assert_eq!(volume.name, "internal-ca");
        assert_eq!(volume.default_mode, Some(0o444));
        let items = volume.items.expect("only the bundle");
        assert_eq!(
            items
                .iter()
                .map(|i| (i.key.as_str(), i.path.as_str()))
                .collect::<Vec<_>>(),
            [("ca.crt", "ca.crt")]
        );
        let mount = sidecar_mounts(&plan)
            .into_iter()
            .find(|m| m.name == UPSTREAM_CA_VOLUME)
            .expect("the sidecar mounts it");
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/sidecar/tls-out-upstream", Some(true))
        );
        assert!(sidecar_env(&plan).contains(&(
            "PROXY_TLS_UPSTREAM_CA",
            "/etc/sidecar/tls-out-upstream/ca.crt".to_owned()
        )));
        assert_ne!(app_mount().name, UPSTREAM_CA_VOLUME);
    }

    #[test]
    fn replacing_settings_get_the_bundle_and_adding_ones_the_ca_alone() {
        let variables = app_variables();
        let value = |name: &str| {
            variables
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            value("SSL_CERT_FILE"),
            Some("/var/run/sidecar/trust/ca-bundle.crt")
        );
        assert_eq!(
            value("REQUESTS_CA_BUNDLE"),
            Some("/var/run/sidecar/trust/ca-bundle.crt")
        );
        assert_eq!(
            value("CURL_CA_BUNDLE"),
            Some("/var/run/sidecar/trust/ca-bundle.crt")
        );
        assert_eq!(
            value("NODE_EXTRA_CA_CERTS"),
            Some("/var/run/sidecar/trust/ca.crt")
        );
        assert_eq!(
            java_flags(),
            "-Djavax.net.ssl.trustStore=/var/run/sidecar/trust/truststore.p12 -Djavax.net.ssl.trustStoreType=PKCS12 -Djavax.net.ssl.trustStorePassword=changeit"
        );
    }
}
