//! The files an app reads to trust the capture CA, in the three shapes runtimes read trust from:
//!
//! - `ca.crt`: the CA alone, for settings that ADD to the default roots (`NODE_EXTRA_CA_CERTS`);
//! - `ca-bundle.crt`: the system roots and then the CA, for settings that REPLACE the default roots
//!   (`SSL_CERT_FILE` for Go and OpenSSL-based clients, `REQUESTS_CA_BUNDLE` for Python requests), so the
//!   app still reaches hosts tls-out does not intercept (excluded hosts, non-proxied traffic);
//! - `truststore.p12`: the same certificates as a Java trust store (`-Djavax.net.ssl.trustStore`), which
//!   also replaces the JDK's own `cacerts`.
//!
//! Each file is written to a temporary file in the same directory and renamed into place, so an app that
//! starts while the sidecar writes reads the old file or the new one, never half of one. The files hold
//! only public certificates: they are made readable by everyone (0644), whatever the umask, because the
//! app usually runs as another user than the sidecar.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p12_keystore::{Certificate, KeyStore, KeyStoreEntry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The CA alone, PEM.
pub const CA_FILE: &str = "ca.crt";
/// The system roots, then the CA, PEM.
pub const BUNDLE_FILE: &str = "ca-bundle.crt";
/// The CA and the system roots as trusted-certificate entries of a PKCS#12 trust store.
pub const TRUSTSTORE_FILE: &str = "truststore.p12";
/// The trust store's password. Public knowledge (the JDK's own `cacerts` uses it): a trust store holds no
/// secret, and the password only satisfies Java's API, which wants one to check the store's integrity.
pub const TRUSTSTORE_PASSWORD: &str = "changeit";

/// The trust store alias of the capture CA; a tls.crt holding a chain gets `-2`, `-3` ... for the others.
const CA_ALIAS: &str = "sidecar-proxy-capture-ca";
/// Mode of every file written here: public certificates the app (another user) must read.
const TRUST_FILE_MODE: u32 = 0o644;

/// What [`write_trust_files`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFiles {
    /// [`CA_FILE`] in the directory.
    pub ca: PathBuf,
    /// [`BUNDLE_FILE`] in the directory.
    pub bundle: PathBuf,
    /// [`TRUSTSTORE_FILE`] in the directory.
    pub truststore: PathBuf,
    /// System roots in the bundle and the trust store: each distinct root once, the CA itself not counted.
    pub roots: usize,
    /// System roots left out because they are not X.509 certificates a trust store can hold.
    pub skipped_roots: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustFilesError {
    #[error("the capture CA certificate is not usable: {0}")]
    CaCertificate(String),
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot build {}: {message}", path.display())]
    Truststore { path: PathBuf, message: String },
}

/// The roots the platform trusts (on Linux the distribution's bundle, or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR`), and a message for each file or certificate that could not be read.
pub fn system_roots() -> (Vec<CertificateDer<'static>>, Vec<String>) {
    let found = rustls_native_certs::load_native_certs();
    let errors = found.errors.iter().map(ToString::to_string).collect();
    (found.certs, errors)
}

/// Writes [`CA_FILE`], [`BUNDLE_FILE`] and [`TRUSTSTORE_FILE`] into `dir` (created if missing), replacing
/// earlier ones. `ca_cert_pem` is the CA's certificate (a chain is kept whole, in its order);
/// `system_roots` are what the app would trust without the sidecar ([`system_roots`]). A root that
/// appears twice, or is the CA itself (when the sidecar's own roots already include the bundle), is
/// written once.
pub fn write_trust_files(
    ca_cert_pem: &str,
    system_roots: &[CertificateDer<'static>],
    dir: &Path,
) -> Result<TrustFiles, TrustFilesError> {
    let ca = parse_ca(ca_cert_pem)?;
    let mut seen: HashSet<&[u8]> = ca.iter().map(|cert| cert.as_der()).collect();
    let mut roots = Vec::with_capacity(system_roots.len());
    let mut skipped_roots = 0;
    for root in system_roots {
        if !seen.insert(root.as_ref()) {
            continue;
        }
        match Certificate::from_der(root) {
            Ok(cert) => roots.push(cert),
            Err(_) => skipped_roots += 1,
        }
    }

    let ca_pem: String = ca.iter().map(|cert| pem(cert.as_der())).collect();
    let mut bundle_pem: String = roots.iter().map(|cert| pem(cert.as_der())).collect();
    bundle_pem.push_str(&ca_pem);

    let truststore_path = dir.join(TRUSTSTORE_FILE);
    let mut store = KeyStore::new();
    for (n, cert) in ca.into_iter().enumerate() {
        let alias = match n {
            0 => CA_ALIAS.to_owned(),
            n => format!("{CA_ALIAS}-{}", n + 1),
        };
        store.add_entry(&alias, KeyStoreEntry::Certificate(cert));
    }
    let root_count = roots.len();
    for (n, cert) in roots.into_iter().enumerate() {
        // Java lowercases aliases; numbered ones cannot collide however the subjects are spelled.
        store.add_entry(
            &format!("system-root-{:03}", n + 1),
            KeyStoreEntry::Certificate(cert),
        );
    }
    let truststore =
        store
            .writer(TRUSTSTORE_PASSWORD)
            .write()
            .map_err(|e| TrustFilesError::Truststore {
                path: truststore_path.clone(),
                message: e.to_string(),
            })?;

    std::fs::create_dir_all(dir).map_err(|source| TrustFilesError::Write {
        path: dir.to_owned(),
        source,
    })?;
    Ok(TrustFiles {
        ca: write_atomically(dir, CA_FILE, ca_pem.as_bytes())?,
        bundle: write_atomically(dir, BUNDLE_FILE, bundle_pem.as_bytes())?,
        truststore: write_atomically(dir, TRUSTSTORE_FILE, &truststore)?,
        roots: root_count,
        skipped_roots,
    })
}

/// Every certificate of the CA's PEM, each one checked to be X.509.
fn parse_ca(ca_cert_pem: &str) -> Result<Vec<Certificate>, TrustFilesError> {
    let ders = CertificateDer::pem_slice_iter(ca_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustFilesError::CaCertificate(format!("bad PEM: {e}")))?;
    if ders.is_empty() {
        return Err(TrustFilesError::CaCertificate(
            "no PEM CERTIFICATE block".into(),
        ));
    }
    ders.iter()
        .map(|der| {
            Certificate::from_der(der)
                .map_err(|e| TrustFilesError::CaCertificate(format!("not X.509: {e}")))
        })
        .collect()
}

/// One certificate as a PEM block: base64 in lines of 64 characters (RFC 7468), ending with a newline.
fn pem(der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut out = String::with_capacity(base64.len() + base64.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The temporary file `name` is written to before the rename: in the same directory (a rename never
/// crosses file systems), hidden, and per process.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `dir/name` by writing a temporary file and renaming it over `dir/name`.
fn write_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, TrustFilesError> {
    let path = dir.join(name);
    let temp = temp_path(dir, name);
    let written = (|| {
        // Truncate rather than create_new: a sidecar that died mid-write left this file under the same
        // pid (pid 1 in a container), and it must not block every later start.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(TRUST_FILE_MODE)
            .open(&temp)?;
        // Explicitly, because the umask (or that leftover file's mode) may have removed bits.
        file.set_permissions(std::fs::Permissions::from_mode(TRUST_FILE_MODE))?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    let renamed = written.and_then(|()| std::fs::rename(&temp, &path));
    match renamed {
        Ok(()) => Ok(path),
        Err(source) => {
            let _ = std::fs::remove_file(&temp);
            Err(TrustFilesError::Write { path, source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_out::ca_create::create_ca;
    use p12_keystore::{Pkcs12Archive, Pkcs12ImportPolicy};
    use std::time::Duration;

    /// A directory removed when the test ends.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let path = std::env::temp_dir()
                .join(format!("sidecar-trust-files-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ca(name: &str) -> (String, CertificateDer<'static>) {
        let ca = create_ca(name, Duration::from_secs(3600)).unwrap();
        let der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        (ca.cert_pem, der)
    }

    /// Stand-ins for the system roots: real self-signed CA certificates.
    fn roots(n: usize) -> Vec<CertificateDer<'static>> {
        (0..n).map(|i| ca(&format!("root {i}")).1).collect()
    }

    fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_ca_alone_and_the_bundle_of_roots_then_the_ca() {
        let dir = TempDir::new("pem");
        let (ca_pem, ca_der) = ca("capture");
        let roots = roots(3);
        let files = write_trust_files(&ca_pem, &roots, &dir.0.join("new/dir")).unwrap();

        assert_eq!(files.ca, dir.0.join("new/dir/ca.crt"));
        assert_eq!(files.bundle, dir.0.join("new/dir/ca-bundle.crt"));
        assert_eq!(files.truststore, dir.0.join("new/dir/truststore.p12"));
        assert_eq!((files.roots, files.skipped_roots), (3, 0));
        assert_eq!(pem_certs(&files.ca), vec![ca_der.clone()]);
        let mut expected = roots.clone();
        expected.push(ca_der);
        assert_eq!(pem_certs(&files.bundle), expected);
        // What other PEM readers are strict about: 64-column lines, one block after another.
        let text = std::fs::read_to_string(&files.bundle).unwrap();
        assert!(text.lines().all(|line| line.len() <= 64), "{text}");
        assert_eq!(text.matches("-----BEGIN CERTIFICATE-----\n").count(), 4);
        assert!(text.ends_with("-----END CERTIFICATE-----\n"));
    }

    #[test]
    fn the_truststore_holds_every_certificate_as_a_trusted_entry() {
        let dir = TempDir::new("p12");
        let (ca_pem, ca_der) = ca("capture");
        let roots = roots(2);
        let files = write_trust_files(&ca_pem, &roots, &dir.0).unwrap();

        let data = std::fs::read(&files.truststore).unwrap();
        assert!(Pkcs12Archive::from_pkcs12(&data, "wrong").is_err());
        let archive = Pkcs12Archive::from_pkcs12(&data, TRUSTSTORE_PASSWORD).unwrap();
        assert!(archive.keys.is_empty());
        assert_eq!(archive.certs.len(), 3);
        assert!(
            archive.certs.iter().all(|bag| bag.trusted),
            "Java ignores certificate bags without the trusted-key-usage attribute"
        );
        let store =
            KeyStore::from_pkcs12(&data, TRUSTSTORE_PASSWORD, Pkcs12ImportPolicy::Strict).unwrap();
        let Some(KeyStoreEntry::Certificate(cert)) = store.entry(CA_ALIAS) else {
            panic!("no {CA_ALIAS} entry");
        };
        assert_eq!(cert.as_der(), ca_der.as_ref());
        let mut ders: Vec<_> = archive.certs.iter().map(|b| b.cert.as_der()).collect();
        ders.sort();
        let mut expected: Vec<_> = roots.iter().map(|r| r.as_ref()).collect();
        expected.push(ca_der.as_ref());
        expected.sort();
        assert_eq!(ders, expected);
    }

    #[test]
    fn duplicate_roots_and_the_ca_among_them_are_written_once() {
        let dir = TempDir::new("dup");
        let (ca_pem, ca_der) = ca("capture");
        let roots = roots(2);
        let system = vec![
            roots[0].clone(),
            ca_der.clone(),
            roots[1].clone(),
            roots[0].clone(),
            CertificateDer::from(b"not a certificate".to_vec()),
        ];
        let files = write_trust_files(&ca_pem, &system, &dir.0).unwrap();
        assert_eq!((files.roots, files.skipped_roots), (2, 1));
        assert_eq!(
            pem_certs(&files.bundle),
            vec![roots[0].clone(), roots[1].clone(), ca_der]
        );
        let data = std::fs::read(&files.truststore).unwrap();
        let archive = Pkcs12Archive::from_pkcs12(&data, TRUSTSTORE_PASSWORD).unwrap();
        assert_eq!(archive.certs.len(), 3);
    }

    #[test]
    fn files_are_0644_and_replace_earlier_ones_leaving_no_temporary_file() {
        let dir = TempDir::new("modes");
        std::fs::create_dir_all(&dir.0).unwrap();
        // A leftover temporary file, private, as a sidecar killed mid-write under the same pid leaves it.
        let leftover = temp_path(&dir.0, CA_FILE);
        std::fs::write(&leftover, "half a file").unwrap();
        std::fs::set_permissions(&leftover, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.0.join(CA_FILE), "an older CA").unwrap();

        let (first_pem, _) = ca("first");
        write_trust_files(&first_pem, &roots(1), &dir.0).unwrap();
        let (second_pem, second_der) = ca("second");
        let files = write_trust_files(&second_pem, &[], &dir.0).unwrap();

        assert_eq!(pem_certs(&files.ca), vec![second_der.clone()]);
        assert_eq!(pem_certs(&files.bundle), vec![second_der]);
        for path in [&files.ca, &files.bundle, &files.truststore] {
            assert_eq!(mode(path), 0o644, "{}", path.display());
        }
        let mut names: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [BUNDLE_FILE, CA_FILE, TRUSTSTORE_FILE]);
    }

    #[test]
    fn a_ca_that_is_not_a_pem_certificate_is_refused_before_anything_is_written() {
        let dir = TempDir::new("bad-ca");
        for (pem, expected) in [
            ("", "no PEM CERTIFICATE block"),
            ("hello", "no PEM CERTIFICATE block"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "not X.509",
            ),
        ] {
            let error = write_trust_files(pem, &[], &dir.0).unwrap_err();
            assert!(
                matches!(error, TrustFilesError::CaCertificate(_)),
                "{error}"
            );
            assert!(error.to_string().contains(expected), "{error}");
        }
        assert!(!dir.0.exists());
    }

    #[test]
    fn a_write_failure_names_the_path_and_the_os_error() {
        let dir = TempDir::new("not-a-dir");
        std::fs::create_dir_all(&dir.0).unwrap();
        let file = dir.0.join("file");
        std::fs::write(&file, "").unwrap();
        let (ca_pem, _) = ca("capture");
        let error = write_trust_files(&ca_pem, &[], &file).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("cannot write {}", file.display())),
            "{message}"
        );
        assert!(
            message.contains("exists") || message.contains("Not a directory"),
            "{message}"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn the_system_roots_are_found_here() {
        let (roots, errors) = system_roots();
        // Every machine this runs on (developers', CI's) has the distribution's CA bundle.
        assert!(!roots.is_empty(), "no system roots; errors: {errors:?}");
    }
}
