//! The sidecar's own TLS client toward the real upstream: verified against the system roots plus an
//! optional extra bundle (an internal CA), offering the server name and ALPN protocols the app's client
//! offered, so the upstream chooses exactly as it would have for the app.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tracing::{info, warn};

use super::trust_files::system_roots;

/// Builds and holds the client configuration every intercepted connection starts from.
pub struct UpstreamTls {
    base: Arc<ClientConfig>,
    roots: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    #[error("cannot read the extra upstream CA bundle {path} (--tls-upstream-ca): {reason}")]
    ExtraBundle { path: PathBuf, reason: String },
    #[error("no trusted roots for upstream certificates: the system has none ({system}) and no --tls-upstream-ca was given; the sidecar image needs ca-certificates")]
    NoRoots { system: String },
}

impl UpstreamTls {
    /// The system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR` or the platform's store) plus every certificate
    /// of `extra_bundle`, a PEM file.
    pub fn new(extra_bundle: Option<&Path>) -> Result<UpstreamTls, UpstreamTlsError> {
        let mut roots = RootCertStore::empty();
        let (system, system_errors) = system_roots();
        let (added, ignored) = roots.add_parsable_certificates(system);
        if ignored > 0 || !system_errors.is_empty() {
            warn!(
                ignored,
                errors = %system_errors.join("; "),
                "tls-out: some system root certificates could not be used"
            );
        }
        if let Some(path) = extra_bundle {
            let extra = read_bundle(path)?;
            for cert in extra {
                roots.add(cert).map_err(|e| UpstreamTlsError::ExtraBundle {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            }
        }
        if roots.is_empty() {
            return Err(UpstreamTlsError::NoRoots {
                system: if system_errors.is_empty() {
                    "no certificates found".into()
                } else {
                    system_errors.join("; ")
                },
            });
        }
        info!(
            system_roots = added,
            total = roots.len(),
            "tls-out: upstream certificates are verified against these roots"
        );
        let total = roots.len();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        // Every connection's config is a clone of this one; the resumption store is shared by the clones,
        // so a second connection to an upstream resumes its session.
        config.resumption = Resumption::in_memory_sessions(256);
        Ok(UpstreamTls {
            base: Arc::new(config),
            roots: total,
        })
    }

    /// How many roots upstream certificates are verified against.
    pub fn root_count(&self) -> usize {
        self.roots
    }

    /// Opens TLS over `io` to `server_name`, offering `alpn` (the client's list, in its order). Fails
    /// when the upstream's certificate does not verify, naming why.
    pub async fn connect<U>(
        &self,
        io: U,
        server_name: ServerName<'static>,
        alpn: Vec<Vec<u8>>,
    ) -> std::io::Result<TlsStream<U>>
    where
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let mut config = (*self.base).clone();
        config.alpn_protocols = alpn;
        TlsConnector::from(Arc::new(config))
            .connect(server_name, io)
            .await
    }
}

fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    let fail = |reason: String| UpstreamTlsError::ExtraBundle {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("it holds no PEM certificate".into()));
    }
    Ok(certs)
}
