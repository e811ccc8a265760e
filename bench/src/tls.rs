//! The certificates of the HTTPS rows (scenario 7, tls-out), made fresh for every run:
//!
//! - a test CA of the run's own (rcgen) and the origin's certificate signed by it, for
//!   [`SERVER_NAME`] and 127.0.0.1: what nginx serves HTTPS with, what the direct and relayed rows'
//!   clients trust, and what the intercepting sidecar verifies the origin against (`--tls-upstream-ca`);
//! - the capture CA, made the way users make it (`sidecar-proxy ca create`): what the intercepting
//!   sidecar signs its leaves with, and the only root the intercepted rows' clients trust.
//!
//! Each client trusts exactly one of the two, so a handshake that succeeds proves which path it took: a
//! relayed connection that was intercepted, or an intercepted one that was not, fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::process;
use crate::workdir::{set_mode, Workdir};

/// The name HTTPS clients ask for (their SNI; the origin's certificate and the sidecar's leaf name
/// it). Nothing resolves it: clients connect to 127.0.0.1 (or CONNECT to it), so no DNS and no hosts
/// file is involved. `.test` is reserved for testing (RFC 6761).
pub const SERVER_NAME: &str = "origin.sidecar-bench.test";

/// Which CA a client trusts, and so which path its handshake can succeed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The run's test CA that signed the origin's certificate: direct, and TLS relayed as bytes.
    Origin,
    /// The capture CA: TLS intercepted by the sidecar (tls-out).
    Capture,
}

/// The run's certificate files and the client configurations that trust them.
#[derive(Debug)]
pub struct TlsMaterial {
    /// PEM of the test CA (the clients' root for [`Trust::Origin`], the sidecar's --tls-upstream-ca).
    pub origin_ca_file: PathBuf,
    /// The origin's certificate and key (PEM), for nginx.
    pub origin_cert_file: PathBuf,
    pub origin_key_file: PathBuf,
    /// tls.crt and tls.key of the capture CA (the sidecar's --tls-ca-dir).
    pub capture_ca_dir: PathBuf,
    origin_client: Arc<ClientConfig>,
    capture_client: Arc<ClientConfig>,
}

impl TlsMaterial {
    /// Makes both CAs and the origin's certificate in `workdir`; the capture CA with `sidecar_proxy ca
    /// create`.
    pub fn create(workdir: &Workdir, sidecar_proxy: &Path) -> anyhow::Result<TlsMaterial> {
        let dir = workdir.subdir("tls", 0o755)?;
        let (origin_ca, origin, origin_key) =
            generate_origin().context("cannot make the origin's test CA")?;
        let origin_ca_file = workdir.write("tls/origin-ca.crt", &origin_ca.pem())?;
        let origin_cert_file = workdir.write("tls/origin.crt", &origin.pem())?;
        let origin_key_file = workdir.write("tls/origin.key", &origin_key.serialize_pem())?;
        set_mode(&origin_key_file, 0o600)?;

        let capture_ca_dir = dir.join("capture-ca");
        create_capture_ca(sidecar_proxy, &capture_ca_dir)?;
        let capture_ca_file = capture_ca_dir.join("tls.crt");
        let capture_ca = CertificateDer::from_pem_file(&capture_ca_file)
            .with_context(|| format!("no PEM certificate in {}", capture_ca_file.display()))?;

        Ok(TlsMaterial {
            origin_ca_file,
            origin_cert_file,
            origin_key_file,
            origin_client: client_config(origin_ca.der().clone())?,
            capture_client: client_config(capture_ca)?,
            capture_ca_dir,
        })
    }

    /// The PEM file of the CA a client with `trust` trusts (for curl's --cacert).
    pub fn ca_file(&self, trust: Trust) -> PathBuf {
        match trust {
            Trust::Origin => self.origin_ca_file.clone(),
            Trust::Capture => self.capture_ca_dir.join("tls.crt"),
        }
    }

    /// A rustls client configuration trusting only that CA.
    pub fn client_config(&self, trust: Trust) -> Arc<ClientConfig> {
        match trust {
            Trust::Origin => self.origin_client.clone(),
            Trust::Capture => self.capture_client.clone(),
        }
    }
}

/// What clients send as SNI.
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("SERVER_NAME is a valid DNS name")
}

/// A CA that may sign leaves only, and the origin's leaf (ECDSA P-256, as most servers now use) and its
/// key, valid for the name and the address clients may ask for.
fn generate_origin() -> Result<(Certificate, Certificate, KeyPair), rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sidecar-bench origin test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, SERVER_NAME);
    params.subject_alt_names = vec![
        SanType::DnsName(SERVER_NAME.try_into()?),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    ];
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca, cert, key))
}

/// `sidecar-proxy ca create --out DIR`: the capture CA as users make it.
fn create_capture_ca(sidecar_proxy: &Path, dir: &Path) -> anyhow::Result<()> {
    let mut command = Command::new(sidecar_proxy);
    command.args(["ca", "create", "--name", "sidecar-bench capture CA"]);
    process::stdout_of(command.arg("--out").arg(dir))?;
    Ok(())
}

/// Trusts `root` alone, offers HTTP/1.1 (what the load generator speaks), and never resumes a session:
/// every connection is a full handshake, the cost a client pays the first time it meets a host.
fn client_config(root: CertificateDer<'static>) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    roots
        .add(root)
        .context("the CA certificate is not usable as a root")?;
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no default protocol version")?
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The origin's certificate verifies for the name clients send, with the test CA as the only root.
    #[tokio::test]
    async fn a_client_trusting_the_test_ca_accepts_the_origin() {
        let (ca, cert, key) = generate_origin().unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(async move {
            let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(server_io)
                .await
                .unwrap();
            tls.write_all(b"ok").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let mut tls = tokio_rustls::TlsConnector::from(client_config(ca.der().clone()).unwrap())
            .connect(server_name(), client_io)
            .await
            .unwrap();
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"ok");
        accept.await.unwrap();
    }
}
