//! Leaf certificates for the names clients ask for, signed by the capture CA and kept in a bounded cache.
//!
//! One ECDSA P-256 key serves every leaf (as mitmproxy does): generating a key per host would cost far more
//! than signing, and the key never leaves the process. A leaf is valid for [`LEAF_VALIDITY`] from an hour
//! before it was minted (clients with a clock slightly behind still accept it), and is reused for at most
//! [`CACHE_LIFETIME`], so a cached leaf always has days of validity left when it is shown.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::authority::CaptureAuthority;
use super::ca_create::random_serial;

/// How long a minted leaf is valid.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a minted leaf is reused: well inside its validity.
pub const CACHE_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Tolerance for clients whose clock is behind the sidecar's.
const BACKDATE: Duration = Duration::from_secs(3600);
/// Names kept: a pod talks to few hosts; a bound keeps a client cycling through names from growing it.
pub const CACHE_CAPACITY: usize = 1024;

/// The name a leaf is minted for: the client's SNI, or the host or address it asked the proxy for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LeafName {
    Dns(String),
    Ip(IpAddr),
}

impl LeafName {
    /// A host as a client named it (`api.example.com`, `10.0.0.7`, `[2001:db8::1]`).
    pub fn from_host(host: &str) -> LeafName {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => LeafName::Ip(ip),
            Err(_) => LeafName::Dns(bare.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

/// Whether a leaf came from the cache or was signed for this connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafSource {
    Cached,
    Minted,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot mint a certificate for {name:?}: {source}")]
pub struct MintError {
    name: LeafName,
    source: rcgen::Error,
}

pub struct LeafMinter {
    authority: CaptureAuthority,
    /// The key every leaf certifies.
    leaf_key: KeyPair,
    /// The same key as rustls signs with it.
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    cache: Mutex<LruCache<LeafName, CachedLeaf>>,
}

struct CachedLeaf {
    key: Arc<CertifiedKey>,
    minted: Instant,
}

impl LeafMinter {
    pub fn new(authority: CaptureAuthority) -> Result<LeafMinter, rcgen::Error> {
        LeafMinter::with_capacity(authority, CACHE_CAPACITY)
    }

    pub fn with_capacity(
        authority: CaptureAuthority,
        capacity: usize,
    ) -> Result<LeafMinter, rcgen::Error> {
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let signing_key = rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| rcgen::Error::RingKeyRejected(e.to_string()))?;
        Ok(LeafMinter {
            authority,
            leaf_key,
            signing_key,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// The leaf for `name`, from the cache while it is young enough, else freshly signed.
    pub fn leaf_for(&self, name: &LeafName) -> Result<(Arc<CertifiedKey>, LeafSource), MintError> {
        if let Some(cached) = self.lock().get(name) {
            if cached.minted.elapsed() < CACHE_LIFETIME {
                return Ok((cached.key.clone(), LeafSource::Cached));
            }
        }
        // Signed outside the lock: two connections racing for a new name each sign one, and the later
        // replaces the earlier; both are valid.
        let key = Arc::new(self.mint(name).map_err(|source| MintError {
            name: name.clone(),
            source,
        })?);
        self.lock().put(
            name.clone(),
            CachedLeaf {
                key: key.clone(),
                minted: Instant::now(),
            },
        );
        Ok((key, LeafSource::Minted))
    }

    /// The capture CA's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.authority.cert_pem()
    }

    fn mint(&self, name: &LeafName) -> Result<CertifiedKey, rcgen::Error> {
        let mut params = CertificateParams::default();
        let (common_name, san) = match name {
            LeafName::Dns(host) => (host.clone(), SanType::DnsName(host.clone().try_into()?)),
            LeafName::Ip(ip) => (ip.to_string(), SanType::IpAddress(*ip)),
        };
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, common_name);
        params.distinguished_name = subject;
        params.subject_alt_names = vec![san];
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        // Never past the CA's own end: a client would reject the chain then anyway, and saying so here is
        // clearer than a leaf that claims more than its issuer.
        params.not_after = (now + LEAF_VALIDITY).min(self.authority.not_after()).into();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        let cert = params.signed_by(&self.leaf_key, self.authority.issuer())?;
        Ok(CertifiedKey::new(
            vec![CertificateDer::from(cert.der().to_vec())],
            self.signing_key.clone(),
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<LeafName, CachedLeaf>> {
        // A panic while holding the lock cannot leave the cache inconsistent (each call is one get or put).
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_out::authority::tests::test_ca;
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

    fn minter(capacity: usize) -> LeafMinter {
        let (cert, key) = test_ca(true);
        LeafMinter::with_capacity(CaptureAuthority::from_pem(&cert, &key).unwrap(), capacity)
            .unwrap()
    }

    fn sans(key: &CertifiedKey) -> Vec<String> {
        let (_, cert) = X509Certificate::from_der(&key.cert[0]).unwrap();
        cert.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => format!("dns:{dns}"),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_name_gets_a_dns_leaf_and_an_address_an_ip_leaf() {
        let minter = minter(8);
        let (leaf, source) = minter
            .leaf_for(&LeafName::from_host("API.Example.test."))
            .unwrap();
        assert_eq!(source, LeafSource::Minted);
        assert_eq!(sans(&leaf), ["dns:api.example.test"]);
        let (leaf, _) = minter.leaf_for(&LeafName::from_host("10.0.0.7")).unwrap();
        assert_eq!(sans(&leaf), ["ip:[10, 0, 0, 7]"]);
        let (leaf, _) = minter
            .leaf_for(&LeafName::from_host("[2001:db8::1]"))
            .unwrap();
        assert_eq!(sans(&leaf).len(), 1);
        assert_eq!(
            LeafName::from_host("[2001:db8::1]"),
            LeafName::Ip("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn a_second_connection_reuses_the_leaf() {
        let minter = minter(8);
        let name = LeafName::from_host("api.example.test");
        let (first, _) = minter.leaf_for(&name).unwrap();
        let (second, source) = minter.leaf_for(&name).unwrap();
        assert_eq!(source, LeafSource::Cached);
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_least_recent() {
        let minter = minter(2);
        let names: Vec<_> = ["a.test", "b.test", "c.test"]
            .iter()
            .map(|h| LeafName::from_host(h))
            .collect();
        for name in &names {
            minter.leaf_for(name).unwrap();
        }
        assert_eq!(minter.lock().len(), 2);
        assert_eq!(minter.leaf_for(&names[0]).unwrap().1, LeafSource::Minted);
        assert_eq!(minter.leaf_for(&names[2]).unwrap().1, LeafSource::Cached);
    }

    #[test]
    fn leaves_are_valid_now_and_expire_within_the_validity() {
        let minter = minter(2);
        let (leaf, _) = minter.leaf_for(&LeafName::from_host("a.test")).unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf.cert[0]).unwrap();
        assert!(cert.validity().is_valid());
        let lifetime = cert.validity().time_to_expiration().unwrap();
        assert!(lifetime.whole_seconds() > (LEAF_VALIDITY - CACHE_LIFETIME).as_secs() as i64);
        assert!(lifetime.whole_seconds() <= LEAF_VALIDITY.as_secs() as i64);
        assert!(!cert.is_ca());
    }

    #[test]
    fn serials_differ() {
        let minter = minter(1);
        let (a, _) = minter.leaf_for(&LeafName::from_host("a.test")).unwrap();
        let (b, _) = minter.leaf_for(&LeafName::from_host("b.test")).unwrap();
        let serial = |key: &CertifiedKey| {
            X509Certificate::from_der(&key.cert[0])
                .unwrap()
                .1
                .raw_serial()
                .to_vec()
        };
        assert_ne!(serial(&a), serial(&b));
    }
}
