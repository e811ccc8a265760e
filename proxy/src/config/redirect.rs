//! What transparent mode's iptables rules take from the settings: the two listener ports and the ports
//! to leave alone (`ignore-inbound-ports`, `ignore-outbound-ports`).
//!
//! Pure, like the rest of the model: `sidecar-proxy init-iptables` builds its rules from this value, and
//! the injector can refuse a pod whose annotations would make the init container fail.

use super::error::ConfigError;
use super::model::{DEFAULT_IN_PORT, DEFAULT_OUT_PORT};
use super::ports::PortList;
use super::settings::{RawSettings, Setting};
use super::validate::{port, port_clash, source_of};

/// The validated settings of the iptables redirect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedirectSettings {
    /// Inbound traffic is redirected here.
    pub in_port: u16,
    /// Outbound traffic is redirected here.
    pub out_port: u16,
    /// Destination ports of inbound traffic that reaches the app directly.
    pub ignore_inbound: PortList,
    /// Destination ports of outbound traffic that leaves the pod directly.
    pub ignore_outbound: PortList,
}

impl RedirectSettings {
    /// Validates raw settings, applying the spec's defaults (4143, 4140, no ignored ports).
    pub fn from_settings(raw: &RawSettings) -> Result<RedirectSettings, ConfigError> {
        let in_port = port(raw, Setting::ProxyInPort, DEFAULT_IN_PORT)?;
        let out_port = port(raw, Setting::ProxyOutPort, DEFAULT_OUT_PORT)?;
        // Both listeners exist in transparent mode, so they need different ports.
        if in_port.0 == out_port.0 {
            return Err(port_clash(raw, in_port, out_port));
        }
        Ok(RedirectSettings {
            in_port: in_port.0,
            out_port: out_port.0,
            ignore_inbound: port_list(raw, Setting::IgnoreInboundPorts)?,
            ignore_outbound: port_list(raw, Setting::IgnoreOutboundPorts)?,
        })
    }
}

fn port_list(raw: &RawSettings, setting: Setting) -> Result<PortList, ConfigError> {
    let (value, name) = source_of(raw, setting);
    let Some(value) = value else {
        return Ok(PortList::default());
    };
    PortList::parse(value).map_err(|problem| ConfigError::InvalidPortList {
        setting: name,
        value: value.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    #[test]
    fn defaults_are_the_spec_ports_and_nothing_ignored() {
        let settings = RedirectSettings::from_settings(&RawSettings::default()).unwrap();
        assert_eq!((settings.in_port, settings.out_port), (4143, 4140));
        assert!(settings.ignore_inbound.is_empty() && settings.ignore_outbound.is_empty());
    }

    #[test]
    fn a_bad_list_is_named_as_written() {
        let mut raw = RawSettings::default();
        raw.offer(Setting::IgnoreOutboundPorts, "443,abc", Source::Env);
        assert_eq!(
            RedirectSettings::from_settings(&raw).unwrap_err().to_string(),
            "invalid PROXY_IGNORE_OUTBOUND_PORTS \"443,abc\": \"abc\" is not a port number; allowed values are comma-separated ports 1-65535 and ranges low-high with low <= high, like 22,8000-8100 (empty for none)"
        );
    }
}
