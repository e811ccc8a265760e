//! `configure-app: "true"`: the proxy settings docs/language-configuration.md gives, set on every app
//! container for the pod's forward listener, so Go, Python, Node and Java apps use the sidecar without a
//! manifest change; with tls-out, also the settings that make each runtime trust the capture CA. A
//! variable the user already set is never touched; `JAVA_TOOL_OPTIONS` is appended to.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use sidecar_proxy::config::{OutboundProtocol, ProxyConfig};

use crate::tls_out;

/// One change to an app container's environment.
// A handful of short-lived values per pod: boxing the EnvVar would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EnvChange {
    /// Add a variable the container does not have.
    Add(EnvVar),
    /// Replace the value of the variable at this index of `env` (appending to `JAVA_TOOL_OPTIONS`).
    Replace { index: usize, value: String },
}

/// One group of `JAVA_TOOL_OPTIONS` flags, and the flag names whose presence means the user already chose
/// that setting (then the group is not appended).
struct JavaFlags {
    flags: String,
    chosen_by: &'static [&'static str],
}

/// The variables and Java flags for the config's forward listener; none when it has none.
fn proxy_settings(config: &ProxyConfig) -> Option<(Vec<(&'static str, String)>, JavaFlags)> {
    let port = config.out_port;
    let (variables, flags) = match config.outbound()? {
        OutboundProtocol::Http => {
            let url = format!("http://127.0.0.1:{port}");
            (
                vec![
                    ("HTTP_PROXY", url.clone()),
                    ("HTTPS_PROXY", url.clone()),
                    ("GLOBAL_AGENT_HTTP_PROXY", url.clone()),
                    ("GLOBAL_AGENT_HTTPS_PROXY", url),
                ],
                format!(
                    "-Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort={port} -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort={port}"
                ),
            )
        }
        OutboundProtocol::Socks => {
            let url = format!("socks5://127.0.0.1:{port}");
            (
                // Go reads the upper-case variables and speaks SOCKS through them. Python's urllib (and
                // requests without PySocks) has no SOCKS: with a socks5:// value every request fails
                // (`unknown url type: socks5`). It prefers the lower-case names, and an empty one makes it
                // drop that scheme's proxy, so empty lower-case variables keep Python working (its calls
                // go direct, uncaptured). Go takes the first non-empty of the two names, so it still uses
                // the sidecar; curl treats an empty variable as unset and reads HTTPS_PROXY.
                vec![
                    ("HTTP_PROXY", url.clone()),
                    ("HTTPS_PROXY", url),
                    ("http_proxy", String::new()),
                    ("https_proxy", String::new()),
                ],
                format!("-DsocksProxyHost=127.0.0.1 -DsocksProxyPort={port}"),
            )
        }
    };
    let chosen_by = &["socksProxyHost", "http.proxyHost", "https.proxyHost"];
    Some((variables, JavaFlags { flags, chosen_by }))
}

/// The changes for one app container: the proxy settings of the config's forward listener, and with
/// `trust_capture_ca` (tls-out) the settings that make each runtime trust the capture CA.
pub fn changes(
    container: &Container,
    config: &ProxyConfig,
    trust_capture_ca: bool,
) -> Vec<EnvChange> {
    let mut variables = Vec::new();
    let mut java = Vec::new();
    if let Some((proxy_variables, proxy_flags)) = proxy_settings(config) {
        variables.extend(proxy_variables);
        java.push(proxy_flags);
    }
    if trust_capture_ca {
        variables.extend(tls_out::app_variables());
        java.push(JavaFlags {
            flags: tls_out::java_flags(),
            // A trust store of the user's own (or only its password or type) means they manage trust.
            chosen_by: &["javax.net.ssl.trustStore"],
        });
    }
    if variables.is_empty() {
        return Vec::new();
    }
    // Variables from a ConfigMap or Secret (`envFrom`) are invisible here, and an `env` entry would
    // override them: a container that has any is left as it is rather than risk replacing the user's proxy.
    if container
        .env_from
        .as_ref()
        .is_some_and(|from| !from.is_empty())
    {
        return Vec::new();
    }
    let existing = container.env.as_deref().unwrap_or_default();
    // HTTP_PROXY and http_proxy mean the same to most clients: a user who set either keeps it.
    let is_set = |name: &str| {
        existing
            .iter()
            .any(|var| var.name.eq_ignore_ascii_case(name))
    };
    let mut changes: Vec<EnvChange> = variables
        .into_iter()
        .filter(|(name, _)| !is_set(name))
        .map(|(name, value)| {
            EnvChange::Add(EnvVar {
                name: name.to_owned(),
                value: Some(value),
                value_from: None,
            })
        })
        .collect();
    let joined = |groups: Vec<&JavaFlags>| {
        groups
            .iter()
            .map(|group| group.flags.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    match existing
        .iter()
        .position(|var| var.name == "JAVA_TOOL_OPTIONS")
    {
        None => changes.push(EnvChange::Add(EnvVar {
            name: "JAVA_TOOL_OPTIONS".to_owned(),
            value: Some(joined(java.iter().collect())),
            value_from: None,
        })),
        // A value from a ConfigMap or Secret cannot be appended to.
        Some(index) if existing[index].value_from.is_none() => {
            let current = existing[index].value.as_deref().unwrap_or("");
            // Flags already there win, group by group.
            let missing: Vec<&JavaFlags> = java
                .iter()
                .filter(|group| !group.chosen_by.iter().any(|flag| current.contains(flag)))
                .collect();
            if !missing.is_empty() {
                let flags = joined(missing);
                let value = if current.trim().is_empty() {
                    flags
                } else {
                    format!("{} {flags}", current.trim_end())
                };
                changes.push(EnvChange::Replace { index, value });
            }
        }
        Some(_) => {}
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar_proxy::config::RawSettings;

    fn config(pairs: &[(&str, &str)]) -> ProxyConfig {
        let annotations: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (format!("sidecar.speedscale.com/{k}"), (*v).to_owned()))
            .collect();
        ProxyConfig::from_settings(&RawSettings::from_annotations(
            annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
        .unwrap()
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn user_values_are_kept_and_java_options_appended() {
        let container = Container {
            name: "app".into(),
            env: Some(vec![
                var("http_proxy", "http://corp-proxy:3128"),
                var("JAVA_TOOL_OPTIONS", "-Xmx512m"),
            ]),
            ..Container::default()
        };
        let changes = changes(
            &container,
            &config(&[("proxy-type", "forward"), ("proxy-protocol", "socks")]),
            false,
        );
        assert_eq!(
            changes,
            [
                EnvChange::Add(var("HTTPS_PROXY", "socks5://127.0.0.1:4140")),
                // The user's http_proxy stays; only the other Python-facing name is emptied.
                EnvChange::Add(var("https_proxy", "")),
                EnvChange::Replace {
                    index: 1,
                    value: "-Xmx512m -DsocksProxyHost=127.0.0.1 -DsocksProxyPort=4140".into()
                },
            ]
        );
    }

    #[test]
    fn a_container_with_env_from_is_left_alone() {
        let container = Container {
            name: "app".into(),
            env_from: Some(vec![k8s_openapi::api::core::v1::EnvFromSource {
                config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource {
                    name: "proxy-settings".into(),
                    optional: None,
                }),
                ..Default::default()
            }]),
            ..Container::default()
        };
        let config = config(&[("proxy-type", "forward"), ("proxy-protocol", "http")]);
        assert_eq!(changes(&container, &config, false), []);
        assert_eq!(changes(&container, &config, true), []);
    }

    #[test]
    fn the_forward_port_follows_proxy_out_port() {
        let changes = changes(
            &Container::default(),
            &config(&[
                ("proxy-type", "dual"),
                ("proxy-protocol", "tcp:http"),
                ("proxy-out-port", "10001"),
            ]),
            false,
        );
        assert!(changes.contains(&EnvChange::Add(var(
            "GLOBAL_AGENT_HTTP_PROXY",
            "http://127.0.0.1:10001"
        ))));
    }

    #[test]
    fn trust_is_added_beside_the_proxy_and_a_users_choice_is_kept() {
        let container = Container {
            name: "app".into(),
            env: Some(vec![
                var("SSL_CERT_FILE", "/etc/pki/mine.pem"),
                var("JAVA_TOOL_OPTIONS", "-Xmx512m"),
            ]),
            ..Container::default()
        };
        let config = config(&[("proxy-type", "forward"), ("proxy-protocol", "http")]);
        let changes = changes(&container, &config, true);
        let added: Vec<&str> = changes
            .iter()
            .filter_map(|change| match change {
                EnvChange::Add(var) => Some(var.name.as_str()),
                EnvChange::Replace { .. } => None,
            })
            .collect();
        assert_eq!(
            added,
            [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "GLOBAL_AGENT_HTTP_PROXY",
                "GLOBAL_AGENT_HTTPS_PROXY",
                "CURL_CA_BUNDLE",
                "REQUESTS_CA_BUNDLE",
                "NODE_EXTRA_CA_CERTS",
            ]
        );
        assert_eq!(
            changes.last(),
            Some(&EnvChange::Replace {
                index: 1,
                value: format!(
                    "-Xmx512m -Dhttp.proxyHost=127.0.0.1 -Dhttp.proxyPort=4140 -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=4140 {}",
                    tls_out::java_flags()
                )
            })
        );
    }

    #[test]
    fn java_flags_already_there_win_group_by_group() {
        let with_options = |value: &str| Container {
            name: "app".into(),
            env: Some(vec![var("JAVA_TOOL_OPTIONS", value)]),
            ..Container::default()
        };
        let config = config(&[("proxy-type", "forward"), ("proxy-protocol", "socks")]);
        let own_store = "-Djavax.net.ssl.trustStore=/etc/mine.jks";
        assert_eq!(
            changes(&with_options(own_store), &config, true).last(),
            Some(&EnvChange::Replace {
                index: 0,
                value: format!("{own_store} -DsocksProxyHost=127.0.0.1 -DsocksProxyPort=4140")
            })
        );
        let own_proxy = "-DsocksProxyHost=corp -DsocksProxyPort=1080";
        assert_eq!(
            changes(&with_options(own_proxy), &config, true).last(),
            Some(&EnvChange::Replace {
                index: 0,
                value: format!("{own_proxy} {}", tls_out::java_flags())
            })
        );
        let both = format!("{own_proxy} {own_store}");
        assert!(!changes(&with_options(&both), &config, true)
            .iter()
            .any(|change| matches!(change, EnvChange::Replace { .. })));
    }

    #[test]
    fn transparent_mode_gets_only_the_trust_settings() {
        let config = config(&[("proxy-type", "transparent")]);
        assert_eq!(changes(&Container::default(), &config, false), []);
        let changes = changes(&Container::default(), &config, true);
        assert_eq!(
            changes.last(),
            Some(&EnvChange::Add(var(
                "JAVA_TOOL_OPTIONS",
                &tls_out::java_flags()
            )))
        );
        assert_eq!(changes.len(), 5, "{changes:?}");
    }
}
