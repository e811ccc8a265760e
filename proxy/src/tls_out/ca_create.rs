//! The capture CA that `sidecar-proxy ca create` makes: a self-signed CA whose only job is to sign the
//! leaf certificates tls-out mints, so the apps that trust it accept the sidecar as their upstreams.
//!
//! Whoever holds its key can impersonate any host to those apps, hence what the certificate allows is as
//! little as that job needs: it may sign leaves but no further CAs (path length 0).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber, PKCS_ECDSA_P256_SHA256,
};

/// The organization every capture CA names, so a person looking at a certificate chain in a browser or
/// in `openssl s_client` sees at once that the sidecar made it.
pub const CA_ORGANIZATION: &str = "sidecar-proxy capture CA";

/// The longest validity [`create_ca`] accepts: ten years. Well inside what X.509 dates can express, so
/// the arithmetic on them cannot overflow.
pub const MAX_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// How far in the past the certificate's validity starts: a node whose clock lags the machine that made
/// the CA must not see a certificate from the future.
const BACKDATE: Duration = Duration::from_secs(24 * 60 * 60);

/// Random bytes in the serial number (RFC 5280 allows up to 20 octets; CA/Browser Forum asks for 64 bits
/// of randomness at least).
const SERIAL_BYTES: usize = 16;

/// A CA certificate and its private key, PEM-encoded as a Kubernetes TLS secret holds them (`tls.crt`,
/// `tls.key`; the key as PKCS#8).
#[derive(Clone)]
pub struct CaPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key, not even in a debug log.
        f.debug_struct("CaPem")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Makes a self-signed CA named `common_name`, valid from a day ago until `validity` from now, with a
/// fresh ECDSA P-256 key. `validity` must be above zero and at most [`MAX_VALIDITY`] (else
/// [`rcgen::Error::Time`]).
pub fn create_ca(common_name: &str, validity: Duration) -> Result<CaPem, rcgen::Error> {
    if validity.is_zero() || validity > MAX_VALIDITY {
        return Err(rcgen::Error::Time);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| rcgen::Error::Time)?;
    // `OffsetDateTime` plus a std `Duration`: no need to name the `time` crate rcgen uses.
    let epoch = rcgen::date_time_ymd(1970, 1, 1);

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, CA_ORGANIZATION);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        // Not needed to sign leaves; the usual CA profiles set it (it lets the key sign OCSP responses)
        // and no verifier objects to it.
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now + validity;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params.self_signed(&key)?;
    Ok(CaPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A positive serial number from the system's secure random source, so two certificates with the same
/// name (a CA made again after a leak, a leaf minted again for a host) are never mistaken for one another.
pub(super) fn random_serial() -> Result<SerialNumber, rcgen::Error> {
    let mut bytes = [0u8; SERIAL_BYTES];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| rcgen::Error::RingUnspecified)?;
    // The top bit clear keeps the DER integer positive within 16 octets; the low bit set keeps it
    // above zero, which RFC 5280 forbids.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{Issuer, PublicKeyData, SanType};
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::pem::parse_x509_pem;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn parsed(pem: &str) -> Vec<u8> {
        let (_, pem) = parse_x509_pem(pem.as_bytes()).expect("PEM");
        assert_eq!(pem.label, "CERTIFICATE");
        pem.contents
    }

    #[test]
    fn the_certificate_is_a_ca_that_may_sign_leaves_but_no_further_cas() {
        let ca = create_ca("test capture CA", 30 * DAY).unwrap();
        let der = parsed(&ca.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();

        let constraints = cert.basic_constraints().unwrap().expect("basicConstraints");
        assert!(constraints.critical);
        assert!(constraints.value.ca);
        assert_eq!(constraints.value.path_len_constraint, Some(0));
        let usage = cert.key_usage().unwrap().expect("keyUsage").value;
        assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
        assert!(!usage.key_encipherment());
        assert!(
            cert.extensions()
                .iter()
                .any(|e| matches!(e.parsed_extension(), ParsedExtension::SubjectKeyIdentifier(_))),
            "strict verifiers (Python 3.13's VERIFY_X509_STRICT) require a subject key identifier on a CA"
        );

        let cn: Vec<_> = cert.subject().iter_common_name().collect();
        assert_eq!(cn.len(), 1);
        assert_eq!(cn[0].as_str().unwrap(), "test capture CA");
        let org: Vec<_> = cert.subject().iter_organization().collect();
        assert_eq!(org[0].as_str().unwrap(), CA_ORGANIZATION);
        assert_eq!(cert.subject(), cert.issuer(), "self-signed");
        cert.verify_signature(None).expect("signed by its own key");
    }

    #[test]
    fn validity_starts_in_the_past_and_lasts_as_asked() {
        let ca = create_ca("test capture CA", 30 * DAY).unwrap();
        let der = parsed(&ca.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        let backdate = BACKDATE.as_secs() as i64;
        assert!(
            (now - backdate - 60..=now - backdate + 1).contains(&not_before),
            "not_before {not_before}, now {now}"
        );
        let lasts = (30 * DAY).as_secs() as i64;
        assert!(
            (now + lasts - 60..=now + lasts + 1).contains(&not_after),
            "not_after {not_after}, now {now}"
        );
    }

    #[test]
    fn each_ca_has_its_own_key_and_a_random_positive_serial() {
        let a = create_ca("same name", DAY).unwrap();
        let b = create_ca("same name", DAY).unwrap();
        assert_ne!(a.key_pem, b.key_pem);
        let (der_a, der_b) = (parsed(&a.cert_pem), parsed(&b.cert_pem));
        let (_, cert_a) = x509_parser::parse_x509_certificate(&der_a).unwrap();
        let (_, cert_b) = x509_parser::parse_x509_certificate(&der_b).unwrap();
        assert_ne!(cert_a.raw_serial(), cert_b.raw_serial());
        for serial in [cert_a.raw_serial(), cert_b.raw_serial()] {
            assert!(serial.len() <= 20 && serial.len() >= 8, "{serial:?}");
            assert_eq!(serial[0] & 0x80, 0, "negative serial {serial:?}");
        }
    }

    #[test]
    fn the_key_is_pkcs8_ecdsa_p256_and_matches_the_certificate() {
        let ca = create_ca("test capture CA", DAY).unwrap();
        assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let key = KeyPair::from_pem(&ca.key_pem).unwrap();
        assert!(key.is_compatible(&PKCS_ECDSA_P256_SHA256));
        let der = parsed(&ca.cert_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn a_leaf_signed_with_the_ca_loaded_from_pem_chains_to_it() {
        let ca = create_ca("test capture CA", DAY).unwrap();
        let issuer =
            Issuer::from_ca_cert_pem(&ca.cert_pem, KeyPair::from_pem(&ca.key_pem).unwrap())
                .unwrap();
        let mut params = CertificateParams::new(vec!["example.test".to_owned()]).unwrap();
        params.subject_alt_names = vec![SanType::DnsName("example.test".try_into().unwrap())];
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();

        let ca_der = parsed(&ca.cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf_cert) = x509_parser::parse_x509_certificate(leaf.der()).unwrap();
        assert_eq!(leaf_cert.issuer(), ca_cert.subject());
        leaf_cert
            .verify_signature(Some(ca_cert.public_key()))
            .expect("the CA's key signed the leaf");
    }

    #[test]
    fn validity_out_of_range_is_refused() {
        assert_eq!(
            create_ca("x", Duration::ZERO).unwrap_err(),
            rcgen::Error::Time
        );
        assert_eq!(
            create_ca("x", MAX_VALIDITY + Duration::from_secs(1)).unwrap_err(),
            rcgen::Error::Time
        );
        assert!(create_ca("x", MAX_VALIDITY).is_ok());
    }
}
