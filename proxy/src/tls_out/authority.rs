//! The capture CA, loaded from the files a Kubernetes TLS secret mounts (`tls.crt`, `tls.key`), and checked
//! before the sidecar starts: a CA whose key does not match, or that has expired, would make every
//! intercepted connection fail at the client, far from the cause.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The certificate's file name inside the CA directory, as `kubectl create secret tls` names it.
pub const CERT_FILE: &str = "tls.crt";
/// The private key's file name inside the CA directory.
pub const KEY_FILE: &str = "tls.key";

/// The CA that signs the leaf certificates the sidecar shows to clients.
pub struct CaptureAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    /// When the CA itself stops being valid: no leaf may outlive it.
    not_after: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("cannot read the capture CA's {what} {path}: {source}; tls-out needs the CA as tls.crt and tls.key in --tls-ca-dir (make one with `sidecar-proxy ca create --out DIR`)")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the capture CA's {what} {path} is not usable: {reason}")]
    Invalid {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

impl CaptureAuthority {
    /// Loads `dir/tls.crt` and `dir/tls.key`.
    pub fn load(dir: &Path) -> Result<CaptureAuthority, AuthorityError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        let read = |what, path: &Path| {
            std::fs::read_to_string(path).map_err(|source| AuthorityError::Read {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read("certificate", &cert_path)?;
        let key_pem = read("private key", &key_path)?;
        CaptureAuthority::from_pem(&cert_pem, &key_pem).map_err(|(what, reason)| {
            let path = if what == "certificate" {
                cert_path
            } else {
                key_path
            };
            AuthorityError::Invalid { what, path, reason }
        })
    }

    /// The CA from its certificate and PKCS#8 private key, both PEM. The error names which of the two is
    /// wrong, and why.
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<CaptureAuthority, (&'static str, String)> {
        let bad_cert = |reason: String| ("certificate", reason);
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad_cert(format!("no PEM certificate found ({e})")))?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| bad_cert(format!("not an X.509 certificate ({e})")))?;
        if !cert.is_ca() {
            return Err(bad_cert(
                "it is not a CA certificate (basicConstraints CA:TRUE is missing)".into(),
            ));
        }
        let validity = cert.validity();
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(validity.not_after.timestamp()).unwrap_or(0));
        if not_after <= SystemTime::now() {
            return Err(bad_cert(format!(
                "it expired on {}",
                humantime::format_rfc3339_seconds(not_after)
            )));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            (
                "private key",
                format!("not a PKCS#8 private key in PEM ({e}); convert one with `openssl pkcs8 -topk8 -nocrypt -in KEY -out tls.key`"),
            )
        })?;
        if key.der_bytes() != &*cert.public_key().subject_public_key.data {
            return Err((
                "private key",
                "it does not belong to the certificate (their public keys differ)".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|e| bad_cert(format!("rcgen cannot sign with it ({e})")))?;
        Ok(CaptureAuthority {
            issuer,
            cert_pem: cert_pem.to_owned(),
            not_after,
        })
    }

    pub(super) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA certificate, PEM, as loaded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The end of the CA's validity.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose};

    /// A CA made with rcgen: (certificate PEM, key PEM).
    pub(crate) fn test_ca(is_ca: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test capture CA");
        if is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_ca_and_its_key_load() {
        let (cert, key) = test_ca(true);
        let authority = CaptureAuthority::from_pem(&cert, &key).unwrap();
        assert!(authority.not_after() > SystemTime::now());
    }

    #[test]
    fn a_key_of_another_ca_is_refused() {
        let (cert, _) = test_ca(true);
        let (_, other_key) = test_ca(true);
        let (what, reason) = CaptureAuthority::from_pem(&cert, &other_key).err().unwrap();
        assert_eq!(what, "private key");
        assert!(reason.contains("does not belong"), "{reason}");
    }

    #[test]
    fn a_leaf_certificate_is_not_a_ca() {
        let (cert, key) = test_ca(false);
        let (what, reason) = CaptureAuthority::from_pem(&cert, &key).err().unwrap();
        assert_eq!(what, "certificate");
        assert!(reason.contains("CA:TRUE"), "{reason}");
    }

    #[test]
    fn missing_files_name_the_path_and_the_remedy() {
        let dir = std::env::temp_dir().join(format!("no-ca-{}", std::process::id()));
        let message = CaptureAuthority::load(&dir).err().unwrap().to_string();
        assert!(message.contains("tls.crt"), "{message}");
        assert!(message.contains("sidecar-proxy ca create"), "{message}");
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        let (cert, key) = test_ca(true);
        assert!(CaptureAuthority::from_pem("hello", &key).is_err());
        assert!(CaptureAuthority::from_pem(&cert, "hello").is_err());
    }
}
