//! The webhook's TLS certificate. `sidecar-injector certs` mints a CA and a serving certificate for the
//! injector's Service (clusters without cert-manager); `serve` loads the pair and reloads it whenever the
//! files change, since cert-manager renews the secret and the kubelet swaps the mounted files in place.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use thiserror::Error;

/// The files `certs` writes, named as in a `kubernetes.io/tls` secret (and cert-manager's).
pub const CA_FILE: &str = "ca.crt";
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// Certificates start this long in the past, so a node whose clock runs a little behind accepts them.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

#[derive(Debug, Error)]
pub enum CertsError {
    #[error("{what} {value:?} is not a DNS label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit")]
    NotADnsLabel { what: &'static str, value: String },
    #[error("cannot generate the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The names the API server may use for the injector's Service: it calls `NAME.NS.svc`, the others cover
/// clients inside the namespace and clusters that use the full domain.
pub fn service_dns_names(service: &str, namespace: &str) -> Result<Vec<String>, CertsError> {
    check_dns_label("service", service)?;
    check_dns_label("namespace", namespace)?;
    Ok(vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ])
}

fn check_dns_label(what: &'static str, value: &str) -> Result<(), CertsError> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(CertsError::NotADnsLabel {
            what,
            value: value.to_owned(),
        })
    }
}

/// A freshly minted CA and the serving certificate it signed, as PEM.
pub struct Minted {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Minted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minted")
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl Minted {
    /// The webhook configuration's `clientConfig.caBundle`: the CA's PEM, base64-encoded.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, creating it. Each file is written
    /// beside its final name and renamed over it, so a server watching the files never reads half of one.
    pub fn write(&self, dir: &Path) -> Result<(), CertsError> {
        fs::create_dir_all(dir).map_err(|source| CertsError::Write {
            path: dir.to_owned(),
            source,
        })?;
        // The key first: a watcher that sees the new certificate then finds its key already in place.
        write_replacing(&dir.join(KEY_FILE), self.key_pem.as_bytes(), 0o600)?;
        write_replacing(&dir.join(CERT_FILE), self.cert_pem.as_bytes(), 0o644)?;
        write_replacing(&dir.join(CA_FILE), self.ca_pem.as_bytes(), 0o644)
    }
}

fn write_replacing(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertsError> {
    let error = |source| CertsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let _ = fs::remove_file(&temporary);
    // The mode is set at creation, so the key is never readable by others, not even for a moment.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(error)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(error)?;
    fs::rename(&temporary, path).map_err(error)
}

/// Mints a CA and a certificate for `names` (DNS names or IP addresses) signed by it, both valid for
/// `days`. ECDSA P-256 keys, which the API server and every TLS client accept.
pub fn mint(names: &[String], days: u32) -> Result<Minted, CertsError> {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let not_before = epoch + since_epoch.saturating_sub(CLOCK_SKEW);
    let not_after = epoch + since_epoch + Duration::from_secs(u64::from(days) * 86_400);

    let mut ca_params = CertificateParams::new(Vec::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sidecar-injector CA");
    // Path length 0: the CA signs serving certificates only, never another CA.
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(names.to_vec())?;
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, first);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    Ok(Minted {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Why a certificate and key pair cannot be served.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM certificate chain: {detail}")]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{path} holds no usable PEM private key: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("the key in {key} does not belong to the certificate in {cert}: {detail}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
}

/// The serving certificate of a running server: rustls asks it for the pair at every handshake, and
/// [`ServingCert::reload_if_changed`] swaps in the files' new contents when they change.
pub struct ServingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents last looked at, loaded or not: a broken pair is reported once, not at every check.
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl ServingCert {
    /// Loads the pair; fails if it cannot be served.
    pub fn load(
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<CryptoProvider>,
    ) -> Result<ServingCert, LoadError> {
        let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
        let key = certified_key(cert_path, &cert_pem, key_path, &key_pem, &provider)?;
        Ok(ServingCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// Re-reads the files and, if their contents changed, serves the new pair from the next handshake on.
    /// `Ok(true)`: reloaded. An error leaves the current pair in place.
    ///
    /// Contents are compared rather than modification times: a secret volume replaces its files through a
    /// symlink swap, and copies may keep the old time; two small files every few seconds cost nothing.
    pub fn reload_if_changed(&self) -> Result<bool, LoadError> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.0 == cert_pem && seen.1 == key_pem {
            return Ok(false);
        }
        let loaded = certified_key(
            &self.cert_path,
            &cert_pem,
            &self.key_path,
            &key_pem,
            &self.provider,
        );
        *seen = (cert_pem, key_pem);
        let key = loaded?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(true)
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), LoadError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, LoadError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::BadCertificate {
            path: cert_path.to_owned(),
            detail: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(LoadError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| LoadError::BadKey {
        path: key_path.to_owned(),
        detail: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => LoadError::Mismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
            detail: e.to_string(),
        },
        _ => LoadError::BadKey {
            path: key_path.to_owned(),
            detail: e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_cover_every_way_the_service_is_addressed() {
        assert_eq!(
            service_dns_names("sidecar-injector", "tools").unwrap(),
            [
                "sidecar-injector",
                "sidecar-injector.tools",
                "sidecar-injector.tools.svc",
                "sidecar-injector.tools.svc.cluster.local",
            ]
        );
        for bad in ["", "Injector", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(service_dns_names(bad, "ns").is_err(), "{bad:?}");
            assert!(service_dns_names("svc", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn minted_pair_loads_and_the_bundle_is_the_ca() {
        let minted = mint(&["localhost".to_owned(), "127.0.0.1".to_owned()], 1).unwrap();
        let bundle = base64::engine::general_purpose::STANDARD
            .decode(minted.ca_bundle())
            .unwrap();
        assert_eq!(bundle, minted.ca_pem.as_bytes());
        let provider = rustls::crypto::ring::default_provider();
        let path = Path::new("mem");
        certified_key(
            path,
            minted.cert_pem.as_bytes(),
            path,
            minted.key_pem.as_bytes(),
            &provider,
        )
        .unwrap();
    }

    #[test]
    fn a_key_from_another_pair_is_refused() {
        let one = mint(&["localhost".to_owned()], 1).unwrap();
        let other = mint(&["localhost".to_owned()], 1).unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let error = certified_key(
            Path::new("tls.crt"),
            one.cert_pem.as_bytes(),
            Path::new("tls.key"),
            other.key_pem.as_bytes(),
            &provider,
        )
        .unwrap_err();
        assert!(matches!(error, LoadError::Mismatch { .. }), "{error}");
    }
}
