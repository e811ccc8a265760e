//! How the sidecar and `capture pull` connect to NATS: the address's TLS, a CA to trust, credentials from
//! a file (a NATS `.creds` file, or a token), and reconnection that never gives up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::ConnectOptions;

use super::address::NatsAddress;

/// How long a JetStream request (a publish's acknowledgement, a consumer's creation) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsAccess {
    /// A NATS credentials file (`.creds`: a user JWT and its nkey seed), or a file holding a token.
    pub credentials: Option<PathBuf>,
    /// PEM certificates the server's certificate may chain to (besides the system's); implies TLS.
    pub ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the NATS credentials file {path}: {reason}")]
pub struct CredentialsError {
    path: PathBuf,
    reason: String,
}

impl NatsAccess {
    /// Options for a client of `address`: reconnecting forever, quickly (records wait in the spool).
    /// `wait_for_server`: the first connection is retried in the background too (the sidecar starts whether
    /// or not NATS is up) rather than failing at once (`capture pull`).
    pub fn options(
        &self,
        address: &NatsAddress,
        name: &str,
        wait_for_server: bool,
    ) -> Result<ConnectOptions, CredentialsError> {
        let mut options = ConnectOptions::new()
            .name(name)
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * attempts as u64).min(1000))
            });
        if wait_for_server {
            options = options.retry_on_initial_connect();
        }
        if address.tls || self.ca.is_some() {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some(path) = &self.credentials {
            options = with_credentials(options, path)?;
        }
        Ok(options)
    }
}

fn with_credentials(
    options: ConnectOptions,
    path: &Path,
) -> Result<ConnectOptions, CredentialsError> {
    let refuse = |reason: String| CredentialsError {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| refuse(e.to_string()))?;
    if text.contains("BEGIN NATS USER JWT") {
        return options
            .credentials(&text)
            .map_err(|e| refuse(format!("{e} (a .creds file holds a user JWT and its nkey seed, as `nsc generate creds` writes it)")));
    }
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(refuse(
            "it is neither a .creds file (a user JWT and its nkey seed) nor a single token"
                .to_owned(),
        ));
    }
    Ok(options.token(token.to_owned()))
}
