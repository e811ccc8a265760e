//! Validation failures, each a single line naming the setting, the value and what is allowed.
//!
//! Values are the user's text and are shown with Rust's string escaping ([`Quoted`]): a value holding a
//! newline or a quote still gives one unambiguous line (found by fuzzing, in CI:
//! fuzz/corpus/config_flags/regression-newline-in-tls-out), and a huge value is cut to its beginning.
//!
//! The proxy prints these before exiting with status 2; the injector returns the same text in its
//! admission denial, so a user sees one message for one mistake wherever it is caught.

use super::model::{ProtocolSetting, ProxyType, ReverseTarget};
use super::ports::{PortList, PortListProblem};
use super::quoted::Quoted;
use super::settings::SettingName;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {setting} {}: allowed values are {allowed}", Quoted(.value))]
    UnknownWord {
        setting: SettingName,
        value: String,
        allowed: &'static str,
    },

    #[error(
        "invalid {setting} {} for {type_setting} \"{proxy_type}\": {why}; allowed for {proxy_type}: {allowed}",
        Quoted(.value)
    )]
    ProtocolNotForType {
        setting: SettingName,
        value: String,
        type_setting: SettingName,
        proxy_type: ProxyType,
        why: &'static str,
        allowed: String,
    },

    #[error("invalid {setting} {}: allowed values are port numbers 1-65535", Quoted(.value))]
    InvalidPort { setting: SettingName, value: String },

    #[error(
        "invalid {setting} {}: {problem}; allowed values are {}",
        Quoted(.value),
        PortList::ALLOWED
    )]
    InvalidPortList {
        setting: SettingName,
        value: String,
        problem: PortListProblem,
    },

    #[error(
        "invalid {setting} {}: allowed values are a host name or an IP address, without scheme, port or path",
        Quoted(.value)
    )]
    InvalidHost { setting: SettingName, value: String },

    #[error(
        "invalid {setting} {}: {} is not a host name, *.domain or IP address; allowed values are comma-separated host names, *.domain wildcards and IP addresses, like api.example.com,*.bank.example,10.0.0.7",
        Quoted(.value),
        Quoted(.entry)
    )]
    InvalidHostList {
        setting: SettingName,
        value: String,
        entry: String,
    },

    #[error(
        "invalid {setting} \"true\" for {type_setting} \"reverse\": tls-out intercepts the app's outbound TLS, and a reverse proxy has no outbound listener; allowed proxy types: forward, dual, transparent"
    )]
    TlsOutWithoutOutbound {
        setting: SettingName,
        type_setting: SettingName,
    },

    #[error(
        "invalid {setting} \"{port}\": {other_setting} is also {port}, and the inbound and outbound listeners need different ports"
    )]
    PortClash {
        /// The port the user set (the out-port when both were set).
        setting: SettingName,
        other_setting: SettingName,
        port: u16,
    },

    #[error(
        "invalid {port_setting} \"{}\": {app} is the sidecar's own inbound port ({in_setting}), so requests would loop back into the sidecar; point it at the app's port",
        .app.port
    )]
    AppIsSidecar {
        port_setting: SettingName,
        in_setting: SettingName,
        app: ReverseTarget,
    },

    #[error(
        "invalid {setting} {}: allowed values are durations from 0s to 1h, like 5s, 500ms or 1m (0s closes the listeners at once)",
        Quoted(.value)
    )]
    InvalidDrainDuration { setting: SettingName, value: String },
}

/// Why a protocol value does not fit a proxy type, in the user's terms.
pub(super) fn protocol_mismatch_reason(
    protocol: ProtocolSetting,
    proxy_type: ProxyType,
) -> &'static str {
    match (protocol, proxy_type) {
        (ProtocolSetting::Tcp, ProxyType::Forward) => {
            "a forward proxy serves many destinations and needs a proxy protocol (tcp applies only to reverse proxies)"
        }
        (ProtocolSetting::Tcp, _) => "tcp applies only to reverse proxies",
        (ProtocolSetting::TcpHttp | ProtocolSetting::TcpSocks, _) => {
            "combined protocols apply only to dual proxies"
        }
        _ => "this protocol does not apply to this proxy type",
    }
}
