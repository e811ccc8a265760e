//! tls-out: terminating the app's outbound TLS with certificates of the capture CA, so the HTTP inside is
//! recorded like cleartext HTTP (docs/tls-out.md).
//!
//! The client's ClientHello is read first; the sidecar then opens TLS to the real upstream offering the
//! same server name and ALPN, verifies the upstream's certificate, and only then completes the client's
//! handshake with a leaf certificate minted for that name and the protocol the upstream chose. An upstream
//! that fails verification gets the client a TLS alert, never a certificate of ours.

pub mod authority;
pub mod ca_create;
pub mod intercept;
pub mod leaf;
mod session;
pub mod startup;
pub mod trust_files;
pub mod upstream;
mod upstream_failure;

/// Where the sidecar looks for the capture CA (tls.crt, tls.key) unless told otherwise; the injector
/// mounts the CA's Secret there.
pub const DEFAULT_CA_DIR: &str = "/etc/sidecar/tls-out";

pub use intercept::{Intercepted, InterceptorError, Outcome, TlsInterceptor};
pub use session::TlsSession;
