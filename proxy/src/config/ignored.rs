//! Settings the chosen mode has no use for: `--proxy-port` on a forward proxy (it has no app behind it),
//! `--proxy-out-port` on a reverse proxy. They are warned about, not refused: one pod template's
//! annotations often serve several modes, and a setting that does nothing harms nothing. Silence, though,
//! let a user believe a forward proxy delivered to the port they gave it.

use super::model::{ProxyConfig, ProxyType};
use super::settings::{RawSettings, Setting};
use super::Quoted;

/// One line per setting that was given (as a flag, variable or annotation) but that this configuration
/// ignores, naming it as the user wrote it and saying why.
pub fn ignored_settings(config: &ProxyConfig, raw: &RawSettings) -> Vec<String> {
    let transparent = config.proxy_type == ProxyType::Transparent;
    let no_inbound = config.inbound_listener_port().is_none();
    let no_outbound = config.outbound_listener_port().is_none();
    let why = |setting: Setting| -> Option<&'static str> {
        match setting {
            Setting::ProxyHost | Setting::ProxyPort if no_inbound => {
                Some("a forward proxy has no app behind it (the app's address is for reverse and dual)")
            }
            Setting::ProxyHost | Setting::ProxyPort if transparent => Some(
                "transparent mode delivers every connection to its original destination, not to an app address",
            ),
            Setting::ProxyInPort if no_inbound => {
                Some("a forward proxy has no inbound listener (only --proxy-out-port applies)")
            }
            Setting::ProxyOutPort if no_outbound => {
                Some("a reverse proxy has no outbound listener (only --proxy-in-port applies)")
            }
            _ => None,
        }
    };
    Setting::ALL
        .into_iter()
        .filter_map(|setting| {
            let given = raw.get(setting)?;
            let why = why(setting)?;
            Some(format!(
                "{} {} is ignored: {why}",
                setting.spelled(given.source),
                Quoted(given.value.trim())
            ))
        })
        .collect()
}
