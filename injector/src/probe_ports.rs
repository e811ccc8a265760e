//! TCP probes in transparent mode. A kubelet TCP probe only checks that a connection opens; redirected to
//! the sidecar, it would open whether or not the app listens, and test the sidecar instead of the app. So
//! the port of a TCP probe that no container declares among its `ports` (a port only probes use) is left
//! out of the inbound redirect, like an `ignore-inbound-ports` entry: the probe reaches the app itself.
//!
//! A TCP probe on a declared port is left alone: a declared port is taken as a serving port, whose
//! callers must stay captured, and the injector warns instead (an `httpGet` probe tests the app through the
//! sidecar, and is not recorded). HTTP and gRPC probes need nothing: the sidecar relays them to the app, and
//! leaves them out of the capture by their `kube-probe/` User-Agent.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the pod's TCP probes mean for the redirect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TcpProbePorts {
    /// Ports only TCP probes use: excluded from the inbound redirect, ascending.
    pub excluded: Vec<u16>,
    /// One sentence per TCP probe on a declared (serving) port, and per port left out of the redirect.
    pub warnings: Vec<String>,
}

/// Looks at every container's liveness, readiness and startup probes.
pub fn tcp_probe_ports(containers: &[Container]) -> TcpProbePorts {
    let declared: Vec<u16> = containers
        .iter()
        .flat_map(|container| container.ports.iter().flatten())
        .filter_map(|port| u16::try_from(port.container_port).ok())
        .collect();
    let mut found = TcpProbePorts::default();
    for container in containers {
        let probes = [
            ("livenessProbe", &container.liveness_probe),
            ("readinessProbe", &container.readiness_probe),
            ("startupProbe", &container.startup_probe),
        ];
        for (kind, probe) in probes {
            let Some(port) = probe.as_ref().and_then(|probe| tcp_port(probe, container)) else {
                continue;
            };
            if !declared.contains(&port) {
                if !found.excluded.contains(&port) {
                    found.excluded.push(port);
                    // Declaring ports is optional: an app may serve on this one too, and its callers
                    // would then pass uncaptured. Said, so nobody learns it from a missing record.
                    found.warnings.push(format!(
                        "container {}: port {port}, used by a tcpSocket {kind} and not declared, is left out of the inbound redirect: traffic to it is not captured; declare the port if the app serves on it",
                        container.name
                    ));
                }
            } else {
                // Short: the API server may cut an admission warning past 256 characters.
                found.warnings.push(format!(
                    "container {}: tcpSocket {kind} on serving port {port} reaches the sidecar, which accepts even if the app is down; use httpGet, or add {port} to ignore-inbound-ports",
                    container.name
                ));
            }
        }
    }
    found.excluded.sort_unstable();
    found
}

/// The port a TCP probe connects to: a number, or the name of one of the container's own ports.
fn tcp_port(probe: &Probe, container: &Container) -> Option<u16> {
    match &probe.tcp_socket.as_ref()?.port {
        IntOrString::Int(number) => u16::try_from(*number).ok().filter(|port| *port > 0),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|port| port.name.as_deref() == Some(name.as_str()))
            .and_then(|port| u16::try_from(port.container_port).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, TCPSocketAction};

    fn tcp_probe(port: IntOrString) -> Option<Probe> {
        Some(Probe {
            tcp_socket: Some(TCPSocketAction { port, host: None }),
            ..Probe::default()
        })
    }

    fn port(name: &str, number: i32) -> ContainerPort {
        ContainerPort {
            name: Some(name.to_owned()),
            container_port: number,
            ..ContainerPort::default()
        }
    }

    #[test]
    fn probe_only_ports_are_excluded_and_serving_ports_warned_about() {
        let app = Container {
            name: "app".to_owned(),
            ports: Some(vec![port("http", 8080)]),
            liveness_probe: tcp_probe(IntOrString::Int(9901)),
            readiness_probe: tcp_probe(IntOrString::String("http".to_owned())),
            startup_probe: tcp_probe(IntOrString::Int(9901)),
            ..Container::default()
        };
        let worker = Container {
            name: "worker".to_owned(),
            liveness_probe: tcp_probe(IntOrString::Int(7000)),
            // A name the container does not declare: the kubelet would fail it; nothing to exclude.
            readiness_probe: tcp_probe(IntOrString::String("admin".to_owned())),
            ..Container::default()
        };
        let found = tcp_probe_ports(&[app, worker]);
        assert_eq!(found.excluded, [7000, 9901]);
        assert_eq!(found.warnings.len(), 3, "{:?}", found.warnings);
        for warning in &found.warnings {
            // The API server may cut an admission warning past 256 characters.
            assert!(warning.len() < 230, "{warning}");
        }
        assert!(found.warnings[0].starts_with(
            "container app: port 9901, used by a tcpSocket livenessProbe and not declared, is left out of the inbound redirect: traffic to it is not captured"
        ));
        assert!(found.warnings[1].starts_with(
            "container app: tcpSocket readinessProbe on serving port 8080 reaches the sidecar"
        ));
        assert!(found.warnings[2].starts_with("container worker: port 7000,"));
    }

    #[test]
    fn http_probes_change_nothing() {
        let app = Container {
            name: "app".to_owned(),
            liveness_probe: Some(Probe {
                http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                    port: IntOrString::Int(8081),
                    ..Default::default()
                }),
                ..Probe::default()
            }),
            ..Container::default()
        };
        assert_eq!(tcp_probe_ports(&[app]), TcpProbePorts::default());
    }
}
