//! One interception: the client's ClientHello, the upstream's verified TLS, then the client's handshake
//! completed with a leaf for the name it asked for and the protocol the upstream chose.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ProtocolVersion, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{client, server, LazyConfigAcceptor, StartHandshake};
use tracing::{debug, warn};

use super::authority::{AuthorityError, CaptureAuthority};
use super::leaf::{LeafMinter, LeafName, LeafSource};
use super::session::TlsSession;
use super::upstream::{UpstreamTls, UpstreamTlsError};
use crate::config::TlsOutSettings;
use crate::log_escape::Escaped;
use crate::metrics::{LeafLabels, Metrics, TlsOutcomeLabels};

/// Everything tls-out needs, built once at start and shared by every outbound connection.
pub struct TlsInterceptor {
    settings: TlsOutSettings,
    minter: LeafMinter,
    upstream: UpstreamTls,
    provider: Arc<CryptoProvider>,
    /// Shared by every connection's server configuration, so a client that reconnects resumes.
    client_sessions: Arc<ServerSessionMemoryCache>,
    /// Completes a client's handshake with no certificate: rustls answers it with a fatal alert.
    refusal: Arc<ServerConfig>,
    /// Bounds each of the two handshakes.
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum InterceptorError {
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error(transparent)]
    Upstream(#[from] UpstreamTlsError),
    #[error("cannot make the key tls-out's certificates certify: {0}")]
    LeafKey(rcgen::Error),
}

/// Both decrypted ends of an intercepted stream, and what was agreed.
pub struct Intercepted<C, U> {
    pub client: server::TlsStream<C>,
    pub upstream: client::TlsStream<U>,
    pub session: TlsSession,
}

pub enum Outcome<C, U> {
    Intercepted(Box<Intercepted<C, U>>),
    /// The stream could not be intercepted: the client got a TLS alert, or left. Its connection is given
    /// back when the handshake left it in hand, for the record.
    Failed {
        client: Option<C>,
        reason: String,
    },
}

impl TlsInterceptor {
    /// Loads the CA from `ca_dir`, and the roots upstream certificates are verified against.
    pub fn new(
        settings: TlsOutSettings,
        ca_dir: &Path,
        extra_upstream_roots: Option<&Path>,
        handshake_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<TlsInterceptor, InterceptorError> {
        let authority = CaptureAuthority::load(ca_dir)?;
        TlsInterceptor::with_authority(
            settings,
            authority,
            UpstreamTls::new(extra_upstream_roots)?,
            handshake_timeout,
            metrics,
        )
    }

    pub fn with_authority(
        settings: TlsOutSettings,
        authority: CaptureAuthority,
        upstream: UpstreamTls,
        handshake_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<TlsInterceptor, InterceptorError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let refusal = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCertificate));
        Ok(TlsInterceptor {
            settings,
            minter: LeafMinter::new(authority).map_err(InterceptorError::LeafKey)?,
            upstream,
            provider,
            client_sessions: ServerSessionMemoryCache::new(1024),
            refusal: Arc::new(refusal),
            handshake_timeout,
            metrics,
        })
    }

    /// Whether a TLS stream to `host` (its SNI, or the host the client asked for) is intercepted.
    pub fn intercepts(&self, host: &str) -> bool {
        self.settings.intercepts(host)
    }

    /// Counts a TLS stream relayed untouched because its host is excluded.
    pub fn count_passed(&self) {
        self.count("passed");
    }

    /// The capture CA's certificate, PEM (what apps must trust).
    pub fn ca_pem(&self) -> &str {
        self.minter.ca_pem()
    }

    /// How many roots upstream certificates are verified against.
    pub fn upstream_root_count(&self) -> usize {
        self.upstream.root_count()
    }

    /// Terminates the client's TLS on `client` (its ClientHello not yet consumed) and opens TLS to the
    /// upstream on `upstream`. `requested_host` names the upstream when the client sent no SNI.
    pub async fn intercept<C, U>(
        &self,
        client: C,
        upstream: U,
        requested_host: &str,
    ) -> Outcome<C, U>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let mut acceptor = LazyConfigAcceptor::new(Acceptor::default(), client);
        let start = match tokio::time::timeout(self.handshake_timeout, &mut acceptor).await {
            Ok(Ok(start)) => start,
            Ok(Err(e)) => {
                self.count("client_failed");
                return Outcome::Failed {
                    client: acceptor.take_io(),
                    reason: format!("tls-out: the client's ClientHello was refused: {e}"),
                };
            }
            Err(_) => {
                self.count("client_failed");
                return Outcome::Failed {
                    client: acceptor.take_io(),
                    reason: "tls-out: the client did not finish its ClientHello in time".into(),
                };
            }
        };
        let hello = Hello::read(&start.client_hello());
        let host = hello.sni.as_deref().unwrap_or(requested_host);
        let name = LeafName::from_host(host);

        let upstream = match self.open_upstream(upstream, &name, hello.alpn).await {
            Ok(upstream) => upstream,
            Err(reason) => {
                warn!(host = %Escaped(host), reason = %Escaped(&reason), "tls-out: upstream TLS failed; the client gets a TLS alert");
                self.count("upstream_failed");
                return self
                    .refuse(start, format!("tls-out: upstream {host}: {reason}"))
                    .await;
            }
        };
        let (_, upstream_session) = upstream.get_ref();
        let alpn = upstream_session.alpn_protocol().map(<[u8]>::to_vec);
        let upstream_version = version_text(upstream_session.protocol_version());

        let leaf = match self.minter.leaf_for(&name) {
            Ok((leaf, source)) => {
                self.metrics
                    .tls_leaf_certificates
                    .get_or_create(&LeafLabels {
                        source: match source {
                            LeafSource::Cached => "cached",
                            LeafSource::Minted => "minted",
                        },
                    })
                    .inc();
                leaf
            }
            Err(e) => {
                warn!(host = %Escaped(host), error = %Escaped(&e), "tls-out: no certificate for the client");
                self.count("client_failed");
                return self.refuse(start, e.to_string()).await;
            }
        };
        let config = self.client_side_config(leaf, alpn.clone());
        let accepted = tokio::time::timeout(
            self.handshake_timeout,
            start.into_stream(config).into_fallible(),
        )
        .await;
        match accepted {
            Ok(Ok(client)) => {
                self.count("intercepted");
                let version = version_text(client.get_ref().1.protocol_version());
                debug!(host = %Escaped(host), %version, "tls-out: intercepted");
                Outcome::Intercepted(Box::new(Intercepted {
                    client,
                    upstream,
                    session: TlsSession {
                        sni: hello.sni,
                        alpn: alpn.map(|p| String::from_utf8_lossy(&p).into_owned()),
                        version,
                        upstream_version: Some(upstream_version),
                    },
                }))
            }
            Ok(Err((e, client))) => {
                // The usual cause: the app does not trust the capture CA (docs/tls-out.md says how).
                warn!(host = %Escaped(host), error = %Escaped(&e), "tls-out: the client refused the sidecar's certificate; does the app trust the capture CA?");
                self.count("client_failed");
                Outcome::Failed {
                    client: Some(client),
                    reason: format!("tls-out: the client's handshake failed: {e}"),
                }
            }
            Err(_) => {
                self.count("client_failed");
                Outcome::Failed {
                    client: None,
                    reason: "tls-out: the client did not finish its handshake in time".into(),
                }
            }
        }
    }

    /// Mock mode: terminates the client's TLS (its ClientHello not yet consumed) with a leaf for the name
    /// it asked for, and no upstream at all, since the mock answers in its place. HTTP/2 is agreed when
    /// the client offers it (gRPC), else HTTP/1.1 when offered. `requested_host` names the host when the
    /// client sent no SNI. Returns the decrypted stream and the session its records carry (no
    /// `upstream_version`: there is no upstream). On failure the client got a TLS alert, or left; the
    /// reason says which.
    pub async fn terminate<C>(
        &self,
        client: C,
        requested_host: &str,
    ) -> Result<(server::TlsStream<C>, TlsSession), String>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let mut acceptor = LazyConfigAcceptor::new(Acceptor::default(), client);
        let start = match tokio::time::timeout(self.handshake_timeout, &mut acceptor).await {
            Ok(Ok(start)) => start,
            Ok(Err(e)) => {
                self.count("client_failed");
                return Err(format!(
                    "tls-out: the client's ClientHello was refused: {e}"
                ));
            }
            Err(_) => {
                self.count("client_failed");
                return Err("tls-out: the client did not finish its ClientHello in time".into());
            }
        };
        let hello = Hello::read(&start.client_hello());
        let host = hello.sni.as_deref().unwrap_or(requested_host);
        let leaf = match self.minter.leaf_for(&LeafName::from_host(host)) {
            Ok((leaf, _)) => leaf,
            Err(e) => {
                self.count("client_failed");
                let reason = e.to_string();
                let _ = self.refuse::<C, C>(start, reason.clone()).await;
                return Err(reason);
            }
        };
        let alpn = [b"h2".as_slice(), b"http/1.1"]
            .into_iter()
            .find(|protocol| hello.alpn.iter().any(|offered| offered == protocol))
            .map(<[u8]>::to_vec);
        let config = self.client_side_config(leaf, alpn.clone());
        match tokio::time::timeout(
            self.handshake_timeout,
            start.into_stream(config).into_fallible(),
        )
        .await
        {
            Ok(Ok(client)) => {
                self.count("intercepted");
                debug!(host = %Escaped(host), "tls-out: terminated for the mock");
                let session = TlsSession {
                    sni: hello.sni,
                    alpn: alpn.map(|p| String::from_utf8_lossy(&p).into_owned()),
                    version: version_text(client.get_ref().1.protocol_version()),
                    upstream_version: None,
                };
                Ok((client, session))
            }
            Ok(Err((e, _))) => {
                self.count("client_failed");
                warn!(host = %Escaped(host), error = %Escaped(&e), "tls-out: the client refused the sidecar's certificate; does the app trust the capture CA?");
                Err(format!("tls-out: the client's handshake failed: {e}"))
            }
            Err(_) => {
                self.count("client_failed");
                Err("tls-out: the client did not finish its handshake in time".into())
            }
        }
    }

    async fn open_upstream<U>(
        &self,
        upstream: U,
        name: &LeafName,
        alpn: Vec<Vec<u8>>,
    ) -> Result<client::TlsStream<U>, String>
    where
        U: AsyncRead + AsyncWrite + Unpin,
    {
        let server_name = match name {
            LeafName::Dns(host) => ServerName::try_from(host.clone())
                .map_err(|e| format!("\"{host}\" is not a server name TLS can verify ({e})"))?,
            LeafName::Ip(ip) => ServerName::IpAddress((*ip).into()),
        };
        match tokio::time::timeout(
            self.handshake_timeout,
            self.upstream.connect(upstream, server_name, alpn),
        )
        .await
        {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(super::upstream_failure::explain(&e)),
            Err(_) => Err(format!(
                "no TLS handshake within {:?}",
                self.handshake_timeout
            )),
        }
    }

    /// Ends the client's handshake with an alert, giving its connection back.
    async fn refuse<C, U>(&self, start: StartHandshake<C>, reason: String) -> Outcome<C, U>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let refused = tokio::time::timeout(
            self.handshake_timeout,
            start.into_stream(self.refusal.clone()).into_fallible(),
        )
        .await;
        let client = match refused {
            Ok(Err((e, client))) => {
                debug!(error = %e, "client's handshake ended with an alert");
                Some(client)
            }
            // Unreachable in practice: a handshake without a certificate cannot succeed.
            Ok(Ok(_)) | Err(_) => None,
        };
        Outcome::Failed { client, reason }
    }

    fn client_side_config(
        &self,
        leaf: Arc<CertifiedKey>,
        alpn: Option<Vec<u8>>,
    ) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(leaf)));
        // Exactly what the upstream agreed to, so client and upstream speak the same protocol; none when
        // the upstream chose none (the client then falls back as it would with the upstream itself).
        config.alpn_protocols = alpn.into_iter().collect();
        config.session_storage = self.client_sessions.clone();
        Arc::new(config)
    }

    fn count(&self, result: &'static str) {
        self.metrics
            .tls_connections
            .get_or_create(&TlsOutcomeLabels { result })
            .inc();
    }
}

/// What the interception needs from a ClientHello.
struct Hello {
    sni: Option<String>,
    alpn: Vec<Vec<u8>>,
}

impl Hello {
    fn read(hello: &ClientHello<'_>) -> Hello {
        Hello {
            sni: hello.server_name().map(str::to_owned),
            alpn: hello
                .alpn()
                .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                .unwrap_or_default(),
        }
    }
}

fn version_text(version: Option<ProtocolVersion>) -> String {
    match version {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
        Some(other) => format!("{other:?}"),
        None => "unknown".into(),
    }
}

/// A certificate resolver that has none: the handshake ends with a fatal alert.
struct NoCertificate;

impl fmt::Debug for NoCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoCertificate")
    }
}

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}
