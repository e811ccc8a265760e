//! Raw settings → one [`ProxyConfig`], or the first thing wrong with them.

use std::net::IpAddr;

use super::error::{protocol_mismatch_reason, ConfigError};
use super::model::{
    ProtocolSetting, ProxyConfig, ProxyType, ReverseTarget, DEFAULT_APP_HOST, DEFAULT_APP_PORT,
    DEFAULT_IN_PORT, DEFAULT_OUT_PORT,
};
use super::settings::{RawSettings, Setting, SettingName, Source};

impl ProxyConfig {
    /// Validates raw settings, applying the spec's defaults to whatever is not set.
    pub fn from_settings(raw: &RawSettings) -> Result<ProxyConfig, ConfigError> {
        let proxy_type = word(
            raw,
            Setting::ProxyType,
            "transparent",
            ProxyType::parse,
            ProxyType::ALLOWED,
        )?;
        let protocol = word(
            raw,
            Setting::ProxyProtocol,
            "http",
            ProtocolSetting::parse,
            ProtocolSetting::ALLOWED,
        )?;
        if !proxy_type.0.allowed_protocols().contains(&protocol.0) {
            return Err(ConfigError::ProtocolNotForType {
                setting: protocol.1,
                value: source_of(raw, Setting::ProxyProtocol)
                    .0
                    .unwrap_or(protocol.0.as_str())
                    .to_owned(),
                type_setting: proxy_type.1,
                proxy_type: proxy_type.0,
                why: protocol_mismatch_reason(protocol.0, proxy_type.0),
                allowed: proxy_type
                    .0
                    .allowed_protocols()
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }

        let host = host(raw)?;
        let app_port = port(raw, Setting::ProxyPort, DEFAULT_APP_PORT)?;
        let in_port = port(raw, Setting::ProxyInPort, DEFAULT_IN_PORT)?;
        let out_port = port(raw, Setting::ProxyOutPort, DEFAULT_OUT_PORT)?;

        let config = ProxyConfig {
            proxy_type: proxy_type.0,
            protocol: protocol.0,
            app: ReverseTarget {
                host: host.0,
                port: app_port.0,
            },
            in_port: in_port.0,
            out_port: out_port.0,
        };

        let listens_in = config.inbound().is_some() || config.proxy_type == ProxyType::Transparent;
        let listens_out =
            config.outbound().is_some() || config.proxy_type == ProxyType::Transparent;
        if listens_in && listens_out && config.in_port == config.out_port {
            return Err(port_clash(raw, in_port, out_port));
        }
        if config.inbound().is_some()
            && is_loopback_name(&config.app.host)
            && config.app.port == config.in_port
        {
            return Err(ConfigError::AppIsSidecar {
                port_setting: app_port.1,
                in_setting: in_port.1,
                app: config.app.clone(),
            });
        }
        Ok(config)
    }
}

/// The in-port and out-port are equal: blame the port the user wrote, as the other may be a default
/// they never saw.
pub(super) fn port_clash(
    raw: &RawSettings,
    in_port: (u16, SettingName),
    out_port: (u16, SettingName),
) -> ConfigError {
    let (setting, other_setting) = if raw.get(Setting::ProxyOutPort).is_none() {
        (in_port.1, out_port.1)
    } else {
        (out_port.1, in_port.1)
    };
    ConfigError::PortClash {
        setting,
        other_setting,
        port: in_port.0,
    }
}

pub(super) fn source_of(raw: &RawSettings, setting: Setting) -> (Option<&str>, SettingName) {
    match raw.get(setting) {
        Some(v) => (Some(v.value.trim()), setting.spelled(v.source)),
        None => (None, setting.spelled(Source::Default)),
    }
}

pub(super) fn word<T>(
    raw: &RawSettings,
    setting: Setting,
    default: &str,
    parse: fn(&str) -> Option<T>,
    allowed: &'static str,
) -> Result<(T, SettingName), ConfigError> {
    let (value, name) = source_of(raw, setting);
    let value = value.unwrap_or(default);
    match parse(value) {
        Some(parsed) => Ok((parsed, name)),
        None => Err(ConfigError::UnknownWord {
            setting: name,
            value: value.to_owned(),
            allowed,
        }),
    }
}

pub(super) fn port(
    raw: &RawSettings,
    setting: Setting,
    default: u16,
) -> Result<(u16, SettingName), ConfigError> {
    let (value, name) = source_of(raw, setting);
    let Some(value) = value else {
        return Ok((default, name));
    };
    // Only plain decimal digits: "+80", "0x50" or "80.0" are typos, not ports.
    let parsed =
        if !value.is_empty() && value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit()) {
            value.parse::<u32>().ok()
        } else {
            None
        };
    match parsed {
        Some(p @ 1..=65535) => Ok((p as u16, name)),
        _ => Err(ConfigError::InvalidPort {
            setting: name,
            value: value.to_owned(),
        }),
    }
}

fn host(raw: &RawSettings) -> Result<(String, SettingName), ConfigError> {
    let (value, name) = source_of(raw, Setting::ProxyHost);
    let Some(value) = value else {
        return Ok((DEFAULT_APP_HOST.to_owned(), name));
    };
    // An IPv6 literal may arrive bracketed, as in a URL; store it bare.
    let unbracketed = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .filter(|v| v.parse::<IpAddr>().is_ok())
        .unwrap_or(value);
    if unbracketed.parse::<IpAddr>().is_ok() || is_dns_name(unbracketed) {
        Ok((unbracketed.to_owned(), name))
    } else {
        Err(ConfigError::InvalidHost {
            setting: name,
            value: value.to_owned(),
        })
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, at most 253 bytes.
pub(super) fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_value_is_quoted_as_the_user_wrote_it() {
        let mut raw = RawSettings::default();
        raw.offer(Setting::ProxyType, "forward", Source::Flag);
        raw.offer(Setting::ProxyProtocol, "TCP", Source::Env);
        let message = ProxyConfig::from_settings(&raw).unwrap_err().to_string();
        assert!(
            message.starts_with("invalid PROXY_PROTOCOL \"TCP\" for --proxy-type \"forward\""),
            "{message}"
        );
    }

    #[test]
    fn listener_ports_follow_the_proxy_type() {
        let listeners = |proxy_type: &str| {
            let mut raw = RawSettings::default();
            raw.offer(Setting::ProxyType, proxy_type, Source::Annotation);
            let config = ProxyConfig::from_settings(&raw).unwrap();
            (
                config.inbound_listener_port(),
                config.outbound_listener_port(),
            )
        };
        assert_eq!(listeners("reverse"), (Some(4143), None));
        assert_eq!(listeners("forward"), (None, Some(4140)));
        assert_eq!(listeners("dual"), (Some(4143), Some(4140)));
        assert_eq!(listeners("transparent"), (Some(4143), Some(4140)));
    }
}
