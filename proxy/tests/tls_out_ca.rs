//! The capture CA and the trust files, checked by the tools that will consume them rather than by our own
//! parser: `sidecar-proxy ca create` (the real binary) writes a CA that OpenSSL reads as a CA and that
//! verifies a leaf signed with it (under `-x509_strict`, as Python 3.13 verifies); the key is 0600 even
//! under umask 0000; existing files survive unless `--force`. The trust files: OpenSSL counts the bundle
//! and opens the PKCS#12 trust store; a JDK's `keytool` (scripts/test.sh installs one) lists every
//! certificate as a trustedCertEntry, and the JDK's default trust manager, configured by the system
//! properties the injector sets, accepts a leaf of the CA and rejects a leaf of another CA.

#[path = "support/env.rs"]
mod env;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rcgen::{
    CertificateParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sidecar_proxy::tls_out::ca_create::create_ca;
use sidecar_proxy::tls_out::trust_files::{
    system_roots, write_trust_files, BUNDLE_FILE, CA_FILE, TRUSTSTORE_FILE, TRUSTSTORE_PASSWORD,
};

const BIN: &str = env!("CARGO_BIN_EXE_sidecar-proxy");

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("sidecar-tls-ca-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sidecar-proxy ARGS` with none of the runner's `PROXY_*` settings.
fn sidecar(args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    env::remove_proxy_vars(&mut command);
    command
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sidecar-proxy")
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env_remove("JAVA_TOOL_OPTIONS")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `program` and returns its stdout, failing the test (with stderr) unless it exits 0.
fn succeed(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", r#"command -v "$0" >/dev/null"#, program])
        .status()
        .is_ok_and(|status| status.success())
}

/// A server certificate for `host` signed by the CA in `ca_cert_pem` / `ca_key_pem`, as PEM, with what
/// strict verifiers ask of a leaf (authority key identifier, serverAuth).
fn leaf_pem(ca_cert_pem: &str, ca_key_pem: &str, host: &str) -> String {
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, KeyPair::from_pem(ca_key_pem).unwrap()).unwrap();
    let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
    params.subject_alt_names = vec![SanType::DnsName(host.try_into().unwrap())];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params
        .signed_by(&KeyPair::generate().unwrap(), &issuer)
        .unwrap()
        .pem()
}

// ---------------------------------------------------------------------------------------------------------
// sidecar-proxy ca create

#[test]
fn ca_create_writes_a_ca_that_openssl_reads_as_one() {
    let dir = TempDir::new("openssl");
    let out = dir.file("ca");
    let output = sidecar(&[
        "ca",
        "create",
        "--out",
        path_arg(&out),
        "--name",
        "Test Capture CA",
        "--days",
        "30",
    ]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{}\n{stderr}", output.status);
    let (cert, key) = (out.join("tls.crt"), out.join("tls.key"));
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].contains(&format!("wrote {}", key.display())),
        "{stderr}"
    );
    assert!(
        lines[1].contains(&format!("wrote {}", cert.display())),
        "{stderr}"
    );
    assert!(
        lines[2].ends_with(&format!(
            "kubectl create secret tls sidecar-tls-out-ca --cert={} --key={}",
            cert.display(),
            key.display()
        )),
        "{stderr}"
    );

    let dump = succeed(
        "openssl",
        &["x509", "-in", path_arg(&cert), "-noout", "-text"],
    );
    let line_after = |heading: &str| {
        let mut lines = dump.lines();
        lines.find(|l| l.contains(heading));
        lines.next().unwrap_or_default().trim().to_owned()
    };
    assert!(
        dump.contains("X509v3 Basic Constraints: critical"),
        "{dump}"
    );
    assert_eq!(line_after("X509v3 Basic Constraints"), "CA:TRUE, pathlen:0");
    let usage = line_after("X509v3 Key Usage");
    for expected in ["Certificate Sign", "CRL Sign", "Digital Signature"] {
        assert!(usage.contains(expected), "key usage {usage:?}");
    }
    assert!(dump.contains("X509v3 Subject Key Identifier"), "{dump}");
    assert!(dump.contains("ASN1 OID: prime256v1"), "{dump}");
    assert!(
        dump.contains("Signature Algorithm: ecdsa-with-SHA256"),
        "{dump}"
    );
    let subject = succeed(
        "openssl",
        &[
            "x509",
            "-in",
            path_arg(&cert),
            "-noout",
            "-subject",
            "-issuer",
            "-nameopt",
            "RFC2253",
        ],
    );
    assert_eq!(
        subject,
        "subject=O=sidecar-proxy capture CA,CN=Test Capture CA\nissuer=O=sidecar-proxy capture CA,CN=Test Capture CA\n"
    );
    // Valid now, and for the 30 days asked (not 31).
    succeed(
        "openssl",
        &["x509", "-in", path_arg(&cert), "-noout", "-checkend", "0"],
    );
    succeed(
        "openssl",
        &[
            "x509",
            "-in",
            path_arg(&cert),
            "-noout",
            "-checkend",
            &(29 * 86400).to_string(),
        ],
    );
    let expired_by = run(
        "openssl",
        &[
            "x509",
            "-in",
            path_arg(&cert),
            "-noout",
            "-checkend",
            &(31 * 86400).to_string(),
        ],
    );
    assert!(!expired_by.status.success(), "valid for more than 30 days");

    // The sidecar loads it as its capture CA.
    if let Err(e) = sidecar_proxy::tls_out::authority::CaptureAuthority::load(&out) {
        panic!("the sidecar refuses the CA: {e}");
    }

    // The key is the certificate's.
    let cert_key = succeed(
        "openssl",
        &["x509", "-in", path_arg(&cert), "-noout", "-pubkey"],
    );
    let key_key = succeed("openssl", &["pkey", "-in", path_arg(&key), "-pubout"]);
    assert_eq!(cert_key, key_key);
}

#[test]
fn a_leaf_signed_by_the_created_ca_verifies_with_openssl_and_a_stranger_does_not() {
    let dir = TempDir::new("verify");
    let out = dir.file("ca");
    let output = sidecar(&["ca", "create", "--out", path_arg(&out)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let cert_pem = std::fs::read_to_string(out.join("tls.crt")).unwrap();
    let key_pem = std::fs::read_to_string(out.join("tls.key")).unwrap();

    let leaf = dir.file("leaf.pem");
    std::fs::write(&leaf, leaf_pem(&cert_pem, &key_pem, "upstream.test")).unwrap();
    let ca_file = out.join("tls.crt");
    let verified = succeed(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "upstream.test",
            "-CAfile",
            path_arg(&ca_file),
            path_arg(&leaf),
        ],
    );
    assert_eq!(verified, format!("{}: OK\n", leaf.display()));

    // The same check fails for a leaf of another CA: the test can tell.
    let stranger = create_ca("another CA", std::time::Duration::from_secs(3600)).unwrap();
    let foreign = dir.file("foreign.pem");
    std::fs::write(
        &foreign,
        leaf_pem(&stranger.cert_pem, &stranger.key_pem, "upstream.test"),
    )
    .unwrap();
    let refused = run(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            path_arg(&ca_file),
            path_arg(&foreign),
        ],
    );
    assert!(!refused.status.success(), "{}", text(&refused.stdout));
}

#[test]
fn the_directory_is_0700_the_key_0600_and_the_certificate_0644_even_under_umask_0000() {
    let dir = TempDir::new("umask");
    let out = dir.file("ca");
    let control = dir.file("created-under-the-same-umask");
    let output = Command::new("sh")
        .args(["-c", r#"umask 0000 && : > "$0" && exec "$@""#])
        .arg(&control)
        .arg(std::fs::canonicalize(BIN).unwrap())
        .args(["ca", "create", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    // The umask really was open: a file made the ordinary way is world-writable.
    assert_eq!(mode(&control), 0o666, "the umask was not 0000");
    assert_eq!(mode(&out), 0o700, "the directory ca create made");
    assert_eq!(mode(&out.join("tls.key")), 0o600);
    assert_eq!(mode(&out.join("tls.crt")), 0o644);
}

/// A umask that takes the owner's own bits: the modes are still exactly 0700, 0600 and 0644.
#[test]
fn modes_are_exact_under_a_umask_that_takes_owner_bits() {
    let dir = TempDir::new("umask-owner");
    let out = dir.file("ca");
    let output = Command::new("sh")
        .args(["-c", r#"umask 0577 && exec "$@""#, "sh"])
        .arg(std::fs::canonicalize(BIN).unwrap())
        .args(["ca", "create", "--out"])
        .arg(&out)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&out.join("tls.key")), 0o600);
    assert_eq!(mode(&out.join("tls.crt")), 0o644);
}

/// An existing directory keeps its mode (it may be the user's working directory); one that others can
/// write to is refused before anything is written, with a sentence saying why and what to do, and a
/// sticky one (like /tmp) is accepted, since there only a file's owner may replace it.
#[test]
fn an_existing_directory_others_can_write_to_is_refused() {
    let dir = TempDir::new("shared-dir");
    let out = dir.file("shared");
    std::fs::create_dir(&out).unwrap();
    for loose in [0o777, 0o775] {
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(loose)).unwrap();
        let refused = sidecar(&["ca", "create", "--out", path_arg(&out)]);
        let stderr = text(&refused.stderr);
        assert_eq!(refused.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("(mode {loose:04o}): other users can write to it"))
                && stderr.contains("chmod go-w"),
            "{stderr}"
        );
        assert!(
            std::fs::read_dir(&out).unwrap().next().is_none(),
            "nothing written"
        );
        assert_eq!(mode(&out), loose, "its mode is left alone");
    }

    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let sticky = sidecar(&["ca", "create", "--out", path_arg(&out)]);
    assert!(sticky.status.success(), "{}", text(&sticky.stderr));

    let readable = dir.file("readable");
    std::fs::create_dir(&readable).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kept = sidecar(&["ca", "create", "--out", path_arg(&readable)]);
    assert!(kept.status.success(), "{}", text(&kept.stderr));
    assert_eq!(
        mode(&readable),
        0o755,
        "an existing directory keeps its mode"
    );
    assert_eq!(mode(&readable.join("tls.key")), 0o600);
}

#[test]
fn existing_files_are_kept_unless_force_and_force_does_not_keep_an_old_mode() {
    let dir = TempDir::new("force");
    let out = dir.file("ca");
    assert!(sidecar(&["ca", "create", "--out", path_arg(&out)])
        .status
        .success());
    let (cert, key) = (out.join("tls.crt"), out.join("tls.key"));
    let before = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());

    let refused = sidecar(&["ca", "create", "--out", path_arg(&out)]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()),
        before
    );

    // Only the key there (the certificate lost): still refused, nothing written.
    std::fs::remove_file(&cert).unwrap();
    let refused = sidecar(&["ca", "create", "--out", path_arg(&out)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(!cert.exists());
    assert_eq!(std::fs::read(&key).unwrap(), before.1);

    // A carelessly world-readable old key: --force replaces it by a new file, 0600 like any new key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = sidecar(&["ca", "create", "--out", path_arg(&out), "--force"]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));
    assert_ne!(std::fs::read(&key).unwrap(), before.1);
    assert_ne!(std::fs::read(&cert).unwrap(), before.0);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o644);
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["tls.crt", "tls.key"], "temporary files left behind");
}

#[test]
fn bad_arguments_exit_2_and_write_failures_exit_1_with_one_line() {
    let dir = TempDir::new("errors");
    for args in [
        &["ca", "create"][..],
        &["ca", "create", "--out", path_arg(&dir.0), "--days", "0"],
        &["ca", "create", "--out", path_arg(&dir.0), "--days", "3651"],
        &["ca", "create", "--out", path_arg(&dir.0), "--name", ""],
    ] {
        let output = sidecar(args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
    assert!(std::fs::read_dir(&dir.0).unwrap().next().is_none());

    let file = dir.file("a-file");
    std::fs::write(&file, "").unwrap();
    let under_a_file = file.join("ca");
    let output = sidecar(&["ca", "create", "--out", path_arg(&under_a_file)]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("sidecar-proxy: cannot create"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&under_a_file.display().to_string()),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Trust files

/// The trust files for a fresh CA and this machine's roots, and leaves of the CA and of a stranger.
struct TrustSetup {
    dir: TempDir,
    roots: usize,
    ca_cert_pem: String,
    trusted_leaf: PathBuf,
    foreign_leaf: PathBuf,
}

fn trust_setup(tag: &str) -> TrustSetup {
    let dir = TempDir::new(tag);
    let ca = create_ca("Trust Files Test CA", std::time::Duration::from_secs(3600)).unwrap();
    let stranger = create_ca("Stranger CA", std::time::Duration::from_secs(3600)).unwrap();
    let (roots, errors) = system_roots();
    assert!(
        roots.len() > 10,
        "system roots: {} ({errors:?})",
        roots.len()
    );
    let files = write_trust_files(&ca.cert_pem, &roots, &dir.file("trust")).unwrap();
    assert_eq!(files.skipped_roots, 0);
    let trusted_leaf = dir.file("trusted-leaf.pem");
    std::fs::write(
        &trusted_leaf,
        leaf_pem(&ca.cert_pem, &ca.key_pem, "upstream.test"),
    )
    .unwrap();
    let foreign_leaf = dir.file("foreign-leaf.pem");
    std::fs::write(
        &foreign_leaf,
        leaf_pem(&stranger.cert_pem, &stranger.key_pem, "upstream.test"),
    )
    .unwrap();
    TrustSetup {
        roots: files.roots,
        dir,
        ca_cert_pem: ca.cert_pem,
        trusted_leaf,
        foreign_leaf,
    }
}

impl TrustSetup {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.file("trust").join(name)
    }
}

#[test]
fn the_bundle_holds_the_system_roots_then_the_ca_and_verifies_its_leaves() {
    let setup = trust_setup("bundle");
    let bundle = setup.file(BUNDLE_FILE);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&bundle)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(certs.len(), setup.roots + 1);
    let ca_der = CertificateDer::from_pem_slice(setup.ca_cert_pem.as_bytes()).unwrap();
    assert_eq!(certs.last(), Some(&ca_der));
    let ca_only: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(setup.file(CA_FILE))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ca_only, vec![ca_der]);

    // OpenSSL reads every block of it.
    let found = succeed(
        "openssl",
        &["storeutl", "-noout", "-certs", path_arg(&bundle)],
    );
    assert!(
        found.contains(&format!("Total found: {}", setup.roots + 1)),
        "{found}"
    );
    // What SSL_CERT_FILE / REQUESTS_CA_BUNDLE users get: the CA's leaves verify, others' do not.
    succeed(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-CAfile",
            path_arg(&bundle),
            path_arg(&setup.trusted_leaf),
        ],
    );
    let refused = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            path_arg(&bundle),
            path_arg(&setup.foreign_leaf),
        ],
    );
    assert!(!refused.status.success());
    for name in [CA_FILE, BUNDLE_FILE, TRUSTSTORE_FILE] {
        assert_eq!(mode(&setup.file(name)), 0o644, "{name}");
    }
}

#[test]
fn openssl_opens_the_truststore_with_the_password_and_sees_every_certificate_trusted() {
    let setup = trust_setup("p12-openssl");
    let store = setup.file(TRUSTSTORE_FILE);
    let password = format!("pass:{TRUSTSTORE_PASSWORD}");
    // OpenSSL 3 without -legacy: the store uses PBES2 / AES-256 and an HMAC-SHA256 MAC.
    let output = run(
        "openssl",
        &[
            "pkcs12",
            "-in",
            path_arg(&store),
            "-passin",
            &password,
            "-nokeys",
            "-info",
        ],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("MAC: sha256"), "{stderr}");
    assert!(stderr.contains("PBES2, PBKDF2, AES-256-CBC"), "{stderr}");
    assert_eq!(
        stdout.matches("-----BEGIN CERTIFICATE-----").count(),
        setup.roots + 1
    );
    // keytool's mark of a trusted certificate (an OBJECT, anyExtendedKeyUsage), on every one of them.
    // OpenSSL 3.0 prints it by number and cannot show the value's type name; 3.2 names it.
    let marked = stdout
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            line.starts_with("2.16.840.1.113894.746875.1.1: <Unsupported tag 6>")
                || line.starts_with("Trusted key usage (Oracle): Any Extended Key Usage")
        })
        .count();
    assert_eq!(marked, setup.roots + 1, "{stdout}");
    assert!(
        stdout.contains("friendlyName: sidecar-proxy-capture-ca"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subject=CN = Trust Files Test CA, O = sidecar-proxy capture CA"),
        "{stdout}"
    );

    let wrong = run(
        "openssl",
        &[
            "pkcs12",
            "-in",
            path_arg(&store),
            "-passin",
            "pass:wrong",
            "-nokeys",
        ],
    );
    assert!(!wrong.status.success(), "a wrong password was accepted");
}

#[test]
fn java_trusts_the_truststore() {
    // Required, not skipped when missing: scripts/test.sh installs Debian's JDK.
    assert!(
        installed("keytool") && installed("java"),
        "this test needs a JDK (keytool, java): apt-get install openjdk-17-jdk-headless"
    );
    let setup = trust_setup("p12-java");
    let store = setup.file(TRUSTSTORE_FILE);

    let listing = succeed(
        "keytool",
        &[
            "-list",
            "-keystore",
            path_arg(&store),
            "-storepass",
            TRUSTSTORE_PASSWORD,
        ],
    );
    let total = setup.roots + 1;
    assert!(
        listing.contains(&format!("Your keystore contains {total} entries")),
        "{listing}"
    );
    assert_eq!(
        listing.matches("trustedCertEntry").count(),
        total,
        "{listing}"
    );
    assert!(
        listing.contains("sidecar-proxy-capture-ca, ") && !listing.contains("PrivateKeyEntry"),
        "{listing}"
    );

    // The JDK's default trust manager, configured by the system properties an app gets through
    // JAVA_TOOL_OPTIONS: it must accept the CA's leaf and refuse the stranger's.
    let program = setup.dir.file("TrustCheck.java");
    std::fs::write(&program, TRUST_CHECK_JAVA).unwrap();
    let output = succeed(
        "java",
        &[
            &format!("-Djavax.net.ssl.trustStore={}", path_arg(&store)),
            &format!("-Djavax.net.ssl.trustStorePassword={TRUSTSTORE_PASSWORD}"),
            path_arg(&program),
            path_arg(&setup.trusted_leaf),
            path_arg(&setup.foreign_leaf),
        ],
    );
    let lines: Vec<_> = output.lines().collect();
    assert_eq!(lines[0], format!("anchors {total}"), "{output}");
    assert_eq!(lines[1], "trusted", "{output}");
    assert!(lines[2].starts_with("rejected"), "{output}");
}

/// Prints how many anchors the default trust manager has, then for each leaf PEM file given whether it
/// accepts it as a server certificate.
const TRUST_CHECK_JAVA: &str = r#"
import java.io.FileInputStream;
import java.security.KeyStore;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

public class TrustCheck {
    public static void main(String[] leaves) throws Exception {
        TrustManagerFactory factory = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        factory.init((KeyStore) null);
        X509TrustManager trust = (X509TrustManager) factory.getTrustManagers()[0];
        System.out.println("anchors " + trust.getAcceptedIssuers().length);
        CertificateFactory x509 = CertificateFactory.getInstance("X.509");
        for (String path : leaves) {
            X509Certificate leaf;
            try (FileInputStream in = new FileInputStream(path)) {
                leaf = (X509Certificate) x509.generateCertificate(in);
            }
            try {
                trust.checkServerTrusted(new X509Certificate[] {leaf}, "ECDHE_ECDSA");
                System.out.println("trusted");
            } catch (CertificateException e) {
                System.out.println("rejected: " + e.getMessage());
            }
        }
    }
}
"#;
