//! Why tls-out's handshake with an upstream failed, as a sentence naming the cause and what to change.
//!
//! rustls reports the cause as a Rust value (`invalid peer certificate: Other(OtherError(
//! CaUsedAsEndEntity))`), which told a user nothing about the upstream's certificate or about the
//! settings that fix it. The technical name stays at the end, in parentheses, for searching.

use rustls::{AlertDescription, CertificateError};

/// What to do when the upstream is fine and only the sidecar should let its TLS through untouched.
const OR_EXCLUDE: &str =
    "or list the host in tls-out-exclude to relay its TLS untouched (unrecorded)";

/// The sentence for an upstream handshake that failed with `error` (as tokio-rustls returns it).
pub fn explain(error: &std::io::Error) -> String {
    let technical = error.to_string();
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => format!(
                "the upstream closed the connection during the TLS handshake: it may not be a TLS server on \
                 this port, or it refused the server name or the protocols offered ({technical})"
            ),
            _ => technical,
        };
    };
    let cause = match tls {
        rustls::Error::InvalidCertificate(certificate) => certificate_problem(certificate),
        rustls::Error::AlertReceived(alert) => alert_problem(*alert),
        rustls::Error::PeerIncompatible(_) => Some(format!(
            "the upstream's TLS is too old or too unusual for the sidecar (TLS 1.2 and 1.3 with current \
             cipher suites): upgrade the upstream's TLS, {OR_EXCLUDE}"
        )),
        _ => None,
    };
    match cause {
        Some(cause) => format!("{cause} ({technical})"),
        None => technical,
    }
}

fn certificate_problem(problem: &CertificateError) -> Option<String> {
    let sentence = match problem {
        CertificateError::UnknownIssuer => format!(
            "the upstream's certificate is signed by a CA the sidecar does not trust (not among the system \
             roots): give the sidecar that CA with --tls-upstream-ca (annotation \
             sidecar.speedscale.com/tls-out-upstream-ca), {OR_EXCLUDE}"
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = match problem {
                CertificateError::NotValidForNameContext { presented, .. } => {
                    // rustls writes each name as `DnsName("api.test")`: the quoted part is the name.
                    let names: Vec<&str> = presented
                        .iter()
                        .map(|name| match (name.find('"'), name.rfind('"')) {
                            (Some(open), Some(close)) if close > open => &name[open + 1..close],
                            _ => name.as_str(),
                        })
                        .collect();
                    format!(" (it names {})", names.join(", "))
                }
                _ => String::new(),
            };
            format!(
                "the upstream's certificate is not valid for the name the app asked for{names}: call the \
                 upstream by a name its certificate holds, or give it a certificate for that name, \
                 {OR_EXCLUDE}"
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "the upstream's certificate has expired: renew it on the upstream (if it is not expired there, \
             the sidecar's clock is wrong), {OR_EXCLUDE}"
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
            "the upstream's certificate is not valid yet: its start date is in the future (or the \
             sidecar's clock is behind), {OR_EXCLUDE}"
        ),
        CertificateError::Revoked => format!(
            "the upstream's certificate has been revoked by its CA: the upstream needs a new one, {OR_EXCLUDE}"
        ),
        CertificateError::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => format!(
            "the upstream presents a CA certificate as its own server certificate (a self-signed CA \
             certificate, as some test setups make), which TLS clients refuse: give the upstream a server \
             certificate signed by that CA and the CA to the sidecar with --tls-upstream-ca, {OR_EXCLUDE}"
        ),
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. } => format!(
            "the upstream's certificate is signed with an algorithm or signature the sidecar cannot verify: \
             give the upstream a certificate with a current algorithm (RSA-PSS/PKCS#1 with SHA-256 or \
             better, ECDSA, Ed25519), {OR_EXCLUDE}"
        ),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => format!(
            "the upstream's certificate is not issued for TLS servers (its extended key usage lacks \
             serverAuth): give the upstream a server certificate, {OR_EXCLUDE}"
        ),
        _ => return None,
    };
    Some(sentence)
}

fn alert_problem(alert: AlertDescription) -> Option<String> {
    let sentence = match alert {
        AlertDescription::NoApplicationProtocol => format!(
            "the upstream speaks none of the application protocols the app offered (ALPN, such as h2 or \
             http/1.1): check which protocol the upstream serves on this port, {OR_EXCLUDE}"
        ),
        AlertDescription::ProtocolVersion => format!(
            "the upstream and the sidecar share no TLS version (the sidecar speaks TLS 1.2 and 1.3): \
             upgrade the upstream's TLS, {OR_EXCLUDE}"
        ),
        AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => format!(
            "the upstream refused the handshake: it shares no cipher suite with the sidecar, or it wants a \
             client certificate (mutual TLS), which the sidecar cannot present; {OR_EXCLUDE}"
        ),
        AlertDescription::CertificateRequired => format!(
            "the upstream requires a client certificate (mutual TLS), which the sidecar cannot present: \
             {OR_EXCLUDE}"
        ),
        AlertDescription::UnrecognisedName => format!(
            "the upstream does not serve the server name the app asked for (SNI): check the host name, \
             {OR_EXCLUDE}"
        ),
        _ => return None,
    };
    Some(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(error: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn each_cause_is_a_sentence_with_its_fix_and_keeps_the_technical_name() {
        let unknown = explain(&io(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        )));
        assert!(
            unknown.starts_with(
                "the upstream's certificate is signed by a CA the sidecar does not trust"
            ),
            "{unknown}"
        );
        assert!(unknown.contains("--tls-upstream-ca"), "{unknown}");
        assert!(
            unknown.ends_with("(invalid peer certificate: UnknownIssuer)"),
            "{unknown}"
        );

        let alpn = explain(&io(rustls::Error::AlertReceived(
            AlertDescription::NoApplicationProtocol,
        )));
        assert!(alpn.contains("ALPN"), "{alpn}");

        let other = explain(&io(rustls::Error::General("something new".into())));
        assert_eq!(other, "unexpected error: something new");
    }
}
