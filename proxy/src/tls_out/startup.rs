//! Turning tls-out on at start: the interceptor from the CA files, and the trust files for the app, written
//! before the sidecar reports ready (the app container starts only then).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::intercept::{InterceptorError, TlsInterceptor};
use super::trust_files::{system_roots, write_trust_files, TrustFilesError};
use crate::config::TlsOutSettings;
use crate::metrics::Metrics;

/// Where tls-out's files are.
#[derive(Clone, Debug)]
pub struct TlsOutFiles {
    /// `tls.crt` and `tls.key` of the capture CA.
    pub ca_dir: PathBuf,
    /// Extra roots for upstream certificates (PEM).
    pub upstream_ca: Option<PathBuf>,
    /// Where the app's trust files are written, if anywhere.
    pub trust_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Interceptor(#[from] InterceptorError),
    #[error("tls-out: cannot write the app's trust files: {0}")]
    TrustFiles(#[from] TrustFilesError),
}

/// The interceptor when tls-out is on (None when off), with the trust files written.
pub fn start(
    settings: TlsOutSettings,
    files: &TlsOutFiles,
    capture_on: bool,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
) -> Result<Option<Arc<TlsInterceptor>>, StartError> {
    if !settings.enabled {
        return Ok(None);
    }
    if !capture_on {
        // Interception exists to record what is inside; with nothing recorded, TLS is relayed untouched.
        warn!("tls-out is on but capture is off: TLS streams are relayed untouched");
        return Ok(None);
    }
    let excluded = settings.exclude.len();
    let interceptor = TlsInterceptor::new(
        settings,
        &files.ca_dir,
        files.upstream_ca.as_deref(),
        handshake_timeout,
        metrics,
    )?;
    if let Some(dir) = &files.trust_dir {
        let (roots, errors) = system_roots();
        if !errors.is_empty() {
            warn!(errors = %errors.join("; "), "tls-out: some system roots could not be read for the app's trust files");
        }
        let written = write_trust_files(interceptor.ca_pem(), &roots, dir)?;
        info!(
            dir = %dir.display(),
            roots = written.roots,
            "tls-out: wrote the app's trust files (ca.crt, ca-bundle.crt, truststore.p12)"
        );
    }
    info!(
        ca_dir = %files.ca_dir.display(),
        excluded_hosts = excluded,
        upstream_roots = interceptor.upstream_root_count(),
        "tls-out: intercepting outbound TLS"
    );
    Ok(Some(Arc::new(interceptor)))
}
