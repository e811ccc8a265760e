//! The spec's settings as raw text, before validation, and where each value came from.
//!
//! The same settings (the spec's six, the two ignore lists of transparent mode's iptables rules,
//! tls-out with its exclusion list, and the drain at shutdown) reach
//! the sidecar as flags, environment variables or pod annotations (and reach the injector as annotations). Keeping the origin of every value lets a validation error name the setting
//! exactly as the user wrote it: `--proxy-port`, `PROXY_PORT` or `sidecar.speedscale.com/proxy-port`.

use std::collections::BTreeMap;
use std::fmt;

/// Prefix of every annotation the spec defines.
pub const ANNOTATION_PREFIX: &str = "sidecar.speedscale.com/";

/// One of the spec's proxy settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setting {
    ProxyType,
    ProxyProtocol,
    ProxyHost,
    ProxyPort,
    ProxyInPort,
    ProxyOutPort,
    /// Inbound destination ports the iptables rules do not redirect (`22,8000-8100`).
    IgnoreInboundPorts,
    /// Outbound destination ports the iptables rules do not redirect.
    IgnoreOutboundPorts,
    /// `true`: outbound TLS is terminated with certificates of the capture CA, so its HTTP is recorded.
    TlsOut,
    /// Hosts whose TLS is relayed untouched even with tls-out on (`*.bank.example,10.0.0.7`).
    TlsOutExclude,
    /// After SIGTERM, how long the listeners keep serving new connections while the pod leaves its
    /// Services' endpoints (`5s`; `0s` closes them at once).
    DrainDuration,
    /// A capture file in the pod whose outbound exchanges answer the app's outbound HTTP (mock mode).
    Mock,
}

impl Setting {
    pub const ALL: [Setting; 12] = [
        Setting::ProxyType,
        Setting::ProxyProtocol,
        Setting::ProxyHost,
        Setting::ProxyPort,
        Setting::ProxyInPort,
        Setting::ProxyOutPort,
        Setting::IgnoreInboundPorts,
        Setting::IgnoreOutboundPorts,
        Setting::TlsOut,
        Setting::TlsOutExclude,
        Setting::DrainDuration,
        Setting::Mock,
    ];

    /// The spec's name: the annotation key without its prefix, and the flag without its dashes.
    pub fn name(self) -> &'static str {
        match self {
            Setting::ProxyType => "proxy-type",
            Setting::ProxyProtocol => "proxy-protocol",
            Setting::ProxyHost => "proxy-host",
            Setting::ProxyPort => "proxy-port",
            Setting::ProxyInPort => "proxy-in-port",
            Setting::ProxyOutPort => "proxy-out-port",
            Setting::IgnoreInboundPorts => "ignore-inbound-ports",
            Setting::IgnoreOutboundPorts => "ignore-outbound-ports",
            Setting::TlsOut => "tls-out",
            Setting::TlsOutExclude => "tls-out-exclude",
            Setting::DrainDuration => "drain-duration",
            Setting::Mock => "mock",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            Setting::ProxyType => "PROXY_TYPE",
            Setting::ProxyProtocol => "PROXY_PROTOCOL",
            Setting::ProxyHost => "PROXY_HOST",
            Setting::ProxyPort => "PROXY_PORT",
            Setting::ProxyInPort => "PROXY_IN_PORT",
            Setting::ProxyOutPort => "PROXY_OUT_PORT",
            Setting::IgnoreInboundPorts => "PROXY_IGNORE_INBOUND_PORTS",
            Setting::IgnoreOutboundPorts => "PROXY_IGNORE_OUTBOUND_PORTS",
            Setting::TlsOut => "PROXY_TLS_OUT",
            Setting::TlsOutExclude => "PROXY_TLS_OUT_EXCLUDE",
            Setting::DrainDuration => "PROXY_DRAIN_DURATION",
            Setting::Mock => "PROXY_MOCK",
        }
    }

    pub fn annotation_key(self) -> String {
        format!("{ANNOTATION_PREFIX}{}", self.name())
    }

    /// The setting an annotation key configures, if it is one of the spec's.
    pub fn from_annotation_key(key: &str) -> Option<Setting> {
        let name = key.strip_prefix(ANNOTATION_PREFIX)?;
        Setting::ALL.into_iter().find(|s| s.name() == name)
    }

    /// How a message should name this setting, given where its value came from.
    pub fn spelled(self, source: Source) -> SettingName {
        SettingName {
            setting: self,
            source,
        }
    }
}

/// Where a raw value came from. Listed from highest precedence to lowest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    Annotation,
    /// Not set anywhere: the spec's default applies.
    Default,
}

/// A setting named the way the user wrote it, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingName {
    setting: Setting,
    source: Source,
}

impl fmt::Display for SettingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Source::Flag => write!(f, "--{}", self.setting.name()),
            Source::Env => f.write_str(self.setting.env_var()),
            Source::Annotation => f.write_str(&self.setting.annotation_key()),
            Source::Default => write!(f, "{} (default)", self.setting.name()),
        }
    }
}

/// A value as the user wrote it, with its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawValue {
    pub value: String,
    pub source: Source,
}

/// Unvalidated settings gathered from any mix of flags, environment and annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawSettings {
    values: BTreeMap<Setting, RawValue>,
}

impl RawSettings {
    /// Records a value unless one of higher precedence is already present.
    pub fn offer(&mut self, setting: Setting, value: impl Into<String>, source: Source) {
        let candidate = RawValue {
            value: value.into(),
            source,
        };
        match self.values.get(&setting) {
            Some(existing) if precedence(existing.source) <= precedence(source) => {}
            _ => {
                self.values.insert(setting, candidate);
            }
        }
    }

    /// The spec's settings found among a pod's annotations; other keys are not ours and are ignored.
    pub fn from_annotations<'a>(annotations: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut settings = RawSettings::default();
        for (key, value) in annotations {
            if let Some(setting) = Setting::from_annotation_key(key) {
                settings.offer(setting, value, Source::Annotation);
            }
        }
        settings
    }

    /// Fills every setting not yet present from a lower-precedence layer.
    pub fn merge(&mut self, other: &RawSettings) {
        for (setting, raw) in &other.values {
            self.offer(*setting, raw.value.clone(), raw.source);
        }
    }

    pub fn get(&self, setting: Setting) -> Option<&RawValue> {
        self.values.get(&setting)
    }
}

fn precedence(source: Source) -> u8 {
    match source {
        Source::Flag => 0,
        Source::Env => 1,
        Source::Annotation => 2,
        Source::Default => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_env_beats_annotation_whatever_the_order() {
        let mut raw = RawSettings::default();
        raw.offer(Setting::ProxyPort, "1", Source::Annotation);
        raw.offer(Setting::ProxyPort, "2", Source::Flag);
        raw.offer(Setting::ProxyPort, "3", Source::Env);
        assert_eq!(raw.get(Setting::ProxyPort).unwrap().value, "2");
    }

    #[test]
    fn annotations_outside_the_spec_are_ignored() {
        let raw = RawSettings::from_annotations([
            ("sidecar.speedscale.com/proxy-type", "reverse"),
            ("sidecar.speedscale.com/inject", "true"),
            ("example.com/proxy-type", "forward"),
        ]);
        assert_eq!(raw.get(Setting::ProxyType).unwrap().value, "reverse");
        assert_eq!(raw.values.len(), 1);
    }

    #[test]
    fn names_follow_the_source() {
        let s = Setting::ProxyInPort;
        assert_eq!(s.spelled(Source::Flag).to_string(), "--proxy-in-port");
        assert_eq!(s.spelled(Source::Env).to_string(), "PROXY_IN_PORT");
        assert_eq!(
            s.spelled(Source::Annotation).to_string(),
            "sidecar.speedscale.com/proxy-in-port"
        );
    }
}
