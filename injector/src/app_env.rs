//! `configure-app: "true"`: the proxy settings docs/language-configuration.md gives, set on every app
//! container for the pod's forward listener, so Go, Python, Node and Java apps use the sidecar without a
//! manifest change. A variable the user already set is never touched; `JAVA_TOOL_OPTIONS` is appended to.

use k8s_openapi::api::core::v1::{Container, EnvVar};
use sidecar_proxy::config::{OutboundProtocol, ProxyConfig};

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

/// The variables and Java flags for the config's forward listener; empty when it has none.
fn settings(config: &ProxyConfig) -> (Vec<(&'static str, String)>, String) {
    let port = config.out_port;
    match config.outbound() {
        Some(OutboundProtocol::Http) => {
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
        Some(OutboundProtocol::Socks) => {
            let url = format!("socks5://127.0.0.1:{port}");
            (
                vec![("HTTP_PROXY", url.clone()), ("HTTPS_PROXY", url)],
                format!("-DsocksProxyHost=127.0.0.1 -DsocksProxyPort={port}"),
            )
        }
        None => (Vec::new(), String::new()),
    }
}

/// The changes for one app container.
pub fn changes(container: &Container, config: &ProxyConfig) -> Vec<EnvChange> {
    let (variables, java_flags) = settings(config);
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
    match existing
        .iter()
        .position(|var| var.name == "JAVA_TOOL_OPTIONS")
    {
        None => changes.push(EnvChange::Add(EnvVar {
            name: "JAVA_TOOL_OPTIONS".to_owned(),
            value: Some(java_flags),
            value_from: None,
        })),
        Some(index) => {
            let var = &existing[index];
            // A value from a ConfigMap or Secret cannot be appended to; proxy flags already there win.
            let current = var.value.as_deref().unwrap_or("");
            let has_proxy_flags = ["socksProxyHost", "http.proxyHost", "https.proxyHost"]
                .iter()
                .any(|flag| current.contains(flag));
            if var.value_from.is_none() && !has_proxy_flags {
                let value = if current.trim().is_empty() {
                    java_flags
                } else {
                    format!("{} {java_flags}", current.trim_end())
                };
                changes.push(EnvChange::Replace { index, value });
            }
        }
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
        );
        assert_eq!(
            changes,
            [
                EnvChange::Add(var("HTTPS_PROXY", "socks5://127.0.0.1:4140")),
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
        assert_eq!(changes(&container, &config), []);
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
        );
        assert!(changes.contains(&EnvChange::Add(var(
            "GLOBAL_AGENT_HTTP_PROXY",
            "http://127.0.0.1:10001"
        ))));
    }
}
