//! What tls-out takes from the settings: whether outbound TLS is intercepted, and the hosts it never is.
//!
//! Pure, like the rest of the model: the sidecar builds its interceptor from this value, and the injector
//! refuses a pod whose annotations the sidecar would refuse.

use std::net::IpAddr;

use super::error::ConfigError;
use super::model::ProxyType;
use super::settings::{RawSettings, Setting};
use super::validate::{is_dns_name, source_of, word};

/// The validated tls-out settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOutSettings {
    /// Outbound TLS is terminated by the sidecar (`tls-out: "true"`).
    pub enabled: bool,
    /// Hosts whose TLS passes through untouched.
    pub exclude: Vec<HostPattern>,
}

/// One entry of `tls-out-exclude`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// This host name exactly (compared without case and without a trailing dot).
    Name(String),
    /// `*.domain`: every name below the domain, at any depth, but not the domain itself.
    Below(String),
    Ip(IpAddr),
}

impl HostPattern {
    fn parse(entry: &str) -> Option<HostPattern> {
        let unbracketed = entry
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .unwrap_or(entry);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Some(HostPattern::Ip(ip));
        }
        let lower = entry.trim_end_matches('.').to_ascii_lowercase();
        if let Some(domain) = lower.strip_prefix("*.") {
            return is_dns_name(domain).then(|| HostPattern::Below(domain.to_owned()));
        }
        is_dns_name(&lower).then_some(HostPattern::Name(lower))
    }

    /// Whether `host` (a name or an IP literal, as a client named it) is covered by this entry.
    pub fn matches(&self, host: &str) -> bool {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match self {
            HostPattern::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
            HostPattern::Name(name) => host.trim_end_matches('.').eq_ignore_ascii_case(name),
            HostPattern::Below(domain) => {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                host.strip_suffix(domain.as_str())
                    .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.'))
            }
        }
    }
}

impl TlsOutSettings {
    /// `tls-out` is `true` or `false` (default `false`); `tls-out-exclude` a comma-separated host list.
    /// An exclusion list without tls-out is accepted and has no effect, so tls-out can be switched off
    /// without editing the list. tls-out needs an outbound listener: a reverse proxy only ever sees the
    /// pod's callers, whose TLS is the app's to terminate with its own key, not the capture CA's.
    pub fn from_settings(
        raw: &RawSettings,
        proxy_type: ProxyType,
    ) -> Result<TlsOutSettings, ConfigError> {
        let (enabled, tls_setting) =
            word(raw, Setting::TlsOut, "false", parse_bool, "true, false")?;
        if enabled && proxy_type == ProxyType::Reverse {
            return Err(ConfigError::TlsOutWithoutOutbound {
                setting: tls_setting,
                type_setting: source_of(raw, Setting::ProxyType).1,
            });
        }
        let (value, name) = source_of(raw, Setting::TlsOutExclude);
        let mut exclude = Vec::new();
        for entry in value.unwrap_or("").split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let pattern =
                HostPattern::parse(entry).ok_or_else(|| ConfigError::InvalidHostList {
                    setting: name,
                    value: value.unwrap_or("").to_owned(),
                    entry: entry.to_owned(),
                })?;
            exclude.push(pattern);
        }
        Ok(TlsOutSettings { enabled, exclude })
    }

    /// Whether a stream to `host` (its SNI, else the name or address the client asked for) is intercepted.
    pub fn intercepts(&self, host: &str) -> bool {
        self.enabled && !self.exclude.iter().any(|pattern| pattern.matches(host))
    }
}

fn parse_bool(word: &str) -> Option<bool> {
    match word.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn settings(tls_out: Option<&str>, exclude: Option<&str>) -> Result<TlsOutSettings, String> {
        let mut raw = RawSettings::default();
        if let Some(value) = tls_out {
            raw.offer(Setting::TlsOut, value, Source::Annotation);
        }
        if let Some(value) = exclude {
            raw.offer(Setting::TlsOutExclude, value, Source::Annotation);
        }
        TlsOutSettings::from_settings(&raw, ProxyType::Forward).map_err(|e| e.to_string())
    }

    #[test]
    fn a_reverse_proxy_has_no_outbound_tls_to_intercept() {
        let mut raw = RawSettings::default();
        raw.offer(Setting::ProxyType, "reverse", Source::Annotation);
        raw.offer(Setting::TlsOut, "true", Source::Annotation);
        assert_eq!(
            TlsOutSettings::from_settings(&raw, ProxyType::Reverse).unwrap_err().to_string(),
            "invalid sidecar.speedscale.com/tls-out \"true\" for sidecar.speedscale.com/proxy-type \"reverse\": tls-out intercepts the app's outbound TLS, and a reverse proxy has no outbound listener; allowed proxy types: forward, dual, transparent"
        );
        for proxy_type in [ProxyType::Forward, ProxyType::Dual, ProxyType::Transparent] {
            assert!(
                TlsOutSettings::from_settings(&raw, proxy_type)
                    .unwrap()
                    .enabled
            );
        }
    }

    #[test]
    fn off_by_default_and_on_only_when_true() {
        assert!(!settings(None, None).unwrap().enabled);
        assert!(settings(Some("true"), None).unwrap().enabled);
        assert!(settings(Some("TRUE"), None).unwrap().enabled);
        assert!(!settings(Some("false"), None).unwrap().enabled);
        assert_eq!(
            settings(Some("yes"), None).unwrap_err(),
            "invalid sidecar.speedscale.com/tls-out \"yes\": allowed values are true, false"
        );
    }

    /// The fuzzer's find: a value is the user's text, and a newline in it must not break the refusal
    /// (printed before exit 2, returned as the injector's denial) into two lines.
    #[test]
    fn a_refusal_shows_newlines_and_quotes_escaped_on_one_line() {
        assert_eq!(
            settings(Some("ban\n\"x\""), None).unwrap_err(),
            r#"invalid sidecar.speedscale.com/tls-out "ban\n\"x\"": allowed values are true, false"#
        );
        assert_eq!(
            settings(Some("true"), Some("ok.example,bad\nhost")).unwrap_err(),
            r#"invalid sidecar.speedscale.com/tls-out-exclude "ok.example,bad\nhost": "bad\nhost" is not a host name, *.domain or IP address; allowed values are comma-separated host names, *.domain wildcards and IP addresses, like api.example.com,*.bank.example,10.0.0.7"#
        );
    }

    #[test]
    fn exclusions_cover_names_domains_and_addresses() {
        let tls = settings(
            Some("true"),
            Some(" Vault.Internal. , *.bank.example,10.0.0.7,[2001:db8::1],"),
        )
        .unwrap();
        for host in [
            "vault.internal",
            "VAULT.internal.",
            "api.bank.example",
            "a.b.bank.example",
            "10.0.0.7",
            "2001:db8::1",
            "[2001:db8::1]",
        ] {
            assert!(!tls.intercepts(host), "{host} should be excluded");
        }
        for host in [
            "bank.example",
            "xbank.example",
            "vault.internal.evil",
            "10.0.0.8",
            "api.example.com",
        ] {
            assert!(tls.intercepts(host), "{host} should be intercepted");
        }
    }

    #[test]
    fn off_intercepts_nothing() {
        assert!(!settings(None, Some("a.example"))
            .unwrap()
            .intercepts("b.example"));
    }

    #[test]
    fn a_bad_entry_is_named() {
        assert_eq!(
            settings(Some("true"), Some("ok.example,https://x.example/")).unwrap_err(),
            "invalid sidecar.speedscale.com/tls-out-exclude \"ok.example,https://x.example/\": \"https://x.example/\" is not a host name, *.domain or IP address; allowed values are comma-separated host names, *.domain wildcards and IP addresses, like api.example.com,*.bank.example,10.0.0.7"
        );
        assert!(settings(Some("true"), Some("*.")).is_err());
        assert!(settings(Some("true"), Some("a.*.example")).is_err());
    }
}
