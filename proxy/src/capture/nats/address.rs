//! `nats://HOST:PORT/SUBJECT` (or `tls://`): the server to publish to and the subject, a template whose
//! `{namespace}` and `{pod}` are filled from the downward-API environment the injector gives the sidecar.

use std::fmt;

use crate::config::Quoted;

/// The subject when the address names none: one subject per pod, all under `capture.`.
pub const DEFAULT_SUBJECT: &str = "capture.{namespace}.{pod}";
/// The downward-API variables the injector sets from `metadata.namespace` and `metadata.name`.
pub const NAMESPACE_ENV: &str = "POD_NAMESPACE";
pub const POD_ENV: &str = "POD_NAME";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsAddress {
    /// `host:port`, as given.
    pub server: String,
    /// `tls://`: the connection must be TLS.
    pub tls: bool,
    /// The subject as written, placeholders kept.
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a NATS address: {reason}; allowed: nats://HOST:PORT/SUBJECT or tls://HOST:PORT/SUBJECT (the subject may use {{namespace}} and {{pod}}; default {DEFAULT_SUBJECT})", Quoted(.text))]
pub struct AddressError {
    text: String,
    reason: &'static str,
}

impl NatsAddress {
    /// Parses an address. `wildcards`: whether the subject may hold `*` and `>` (a reader's filter may, a
    /// publisher's subject may not).
    pub fn parse(text: &str, wildcards: bool) -> Result<NatsAddress, AddressError> {
        let refuse = |reason| AddressError {
            text: text.to_owned(),
            reason,
        };
        let (tls, rest) = if let Some(rest) = text.strip_prefix("nats://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("tls://") {
            (true, rest)
        } else {
            return Err(refuse("it must start with nats:// or tls://"));
        };
        // Credentials are looked for before the subject is split off: a token may hold `/`
        // (`nats://user:ab/cd@host:4222`), and the refusal must not quote any part of it.
        if let Some((_, after)) = rest.rsplit_once('@') {
            // The message leaves the credentials out: it is logged, and an admission denial is shown.
            return Err(AddressError {
                text: format!("{}://[credentials]@{after}", if tls { "tls" } else { "nats" }),
                reason: "credentials never go in the address (it is visible in the pod spec and in logs); give them as a file (--capture-sink-credentials, or the Secret named by the capture-sink-secret annotation)",
            });
        }
        let (server, subject) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = server
            .rsplit_once(':')
            .ok_or_else(|| refuse("the server needs a port (4222 is NATS's usual one)"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |port| port == 0) {
            return Err(refuse(
                "the server must be HOST:PORT with a port from 1 to 65535",
            ));
        }
        let subject = if subject.is_empty() {
            DEFAULT_SUBJECT
        } else {
            subject
        };
        if !valid_subject(subject, wildcards) {
            return Err(refuse(if wildcards {
                "the subject must be dot-separated tokens without spaces"
            } else {
                "the subject must be dot-separated tokens without spaces or the wildcards * and >"
            }));
        }
        Ok(NatsAddress {
            server: server.to_owned(),
            tls,
            subject: subject.to_owned(),
        })
    }

    /// The subject with `{namespace}` and `{pod}` filled in: the pod's, from the environment (outside a pod:
    /// namespace `default`, the host name as the pod).
    pub fn subject_for_this_pod(&self) -> String {
        let namespace = std::env::var(NAMESPACE_ENV).unwrap_or_else(|_| "default".to_owned());
        let pod = std::env::var(POD_ENV).unwrap_or_else(|_| host_name());
        self.subject_for(&namespace, &pod)
    }

    pub fn subject_for(&self, namespace: &str, pod: &str) -> String {
        self.subject
            .replace("{namespace}", &subject_token(namespace))
            .replace("{pod}", &subject_token(pod))
    }

    /// The URL async-nats connects to.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "tls" } else { "nats" },
            self.server
        )
    }
}

impl fmt::Display for NatsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.url(), self.subject)
    }
}

fn valid_subject(subject: &str, wildcards: bool) -> bool {
    subject.split('.').all(|token| {
        !token.is_empty()
            && !token.chars().any(|c| c.is_whitespace() || c.is_control())
            && (wildcards || !matches!(token, "*" | ">"))
    })
}

/// A value made safe as one subject token: the separators and wildcards NATS gives meaning to become `_`.
fn subject_token(value: &str) -> String {
    let token: String = value
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect();
    if token.is_empty() {
        "unknown".to_owned()
    } else {
        token
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_subject_is_per_pod() {
        let address = NatsAddress::parse("nats://nats.capture:4222", false).unwrap();
        assert_eq!(address.url(), "nats://nats.capture:4222");
        assert_eq!(
            address.subject_for("shop", "web-7d9f"),
            "capture.shop.web-7d9f"
        );
        let address = NatsAddress::parse("tls://10.0.0.5:4222/traffic.{pod}", false).unwrap();
        assert!(address.tls);
        assert_eq!(address.subject_for("a", "p.x*"), "traffic.p_x_");
    }

    #[test]
    fn bad_addresses_are_refused_with_what_is_allowed() {
        for (text, why) in [
            ("http://nats:4222/x", "must start with nats://"),
            ("nats://nats/x", "needs a port"),
            ("nats://nats:0/x", "port from 1"),
            (
                "nats://user:s3cret@nats:4222/x",
                "credentials never go in the address",
            ),
            // A token with a slash in it, as base64 tokens have.
            (
                "nats://user:s3cret/abc@nats:4222/x",
                "credentials never go in the address",
            ),
            ("nats://nats:4222/capture.>", "wildcards"),
            ("nats://nats:4222/a..b", "dot-separated"),
        ] {
            let error = NatsAddress::parse(text, false).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
            assert!(
                error.contains("allowed: nats://HOST:PORT/SUBJECT"),
                "{error}"
            );
            assert!(
                !error.contains("s3cret") && !error.contains("abc"),
                "{error}"
            );
        }
        assert!(NatsAddress::parse("nats://nats:4222/capture.>", true).is_ok());
    }
}
