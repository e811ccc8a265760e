//! The containers the injector adds: the sidecar itself, and for transparent mode the init container that
//! installs the iptables redirect. Both run the same image (`sidecar-proxy` and its `init-iptables`
//! subcommand), so the rules and the listeners always come from one version.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction,
    HTTPGetAction, Lifecycle, LifecycleHandler, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sidecar_proxy::config::ProxyType;

use crate::capture_sink;
use crate::plan::Plan;
use crate::resources::{DEFAULT_LIMITS, DEFAULT_REQUESTS};
use crate::tls_out;

use crate::layout::{AutoLayout, SidecarLayout};
pub use crate::layout::{INIT_NAME, SIDECAR_NAME};
/// The emptyDir the capture file goes to: the sidecar's root filesystem is read-only.
pub const CAPTURE_VOLUME: &str = "sidecar-capture";
pub const CAPTURE_DIR: &str = "/var/sidecar/capture";
/// iptables takes its lock under /run, which a read-only root filesystem would refuse.
pub const XTABLES_LOCK_VOLUME: &str = "sidecar-xtables-lock";

const ADMIN_PORT_NAME: &str = "sidecar-admin";
/// The sidecar's postStart hook: returns once `/readyz` answers 200 (the admin port comes from the
/// container's `PROXY_ADMIN_PORT`).
pub const WAIT_READY: [&str; 2] = ["/usr/local/bin/sidecar-proxy", "wait-ready"];
/// The classic sidecar's preStop hook with `pre-stop-wait`, followed by `--for <duration>`.
pub const WAIT_BEFORE_STOP: [&str; 2] = ["/usr/local/bin/sidecar-proxy", "wait-before-stop"];

/// What the operator configures on the injector (flags or environment of `sidecar-injector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SidecarOptions {
    /// The sidecar image, e.g. `registry.example.com/sidecar-proxy:0.1.0`.
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; unset leaves Kubernetes' default.
    pub image_pull_policy: Option<String>,
    /// The uid the sidecar runs as, the one transparent mode's rules exempt.
    pub proxy_uid: i64,
    /// The sidecar's admin port (health, readiness, metrics).
    pub admin_port: u16,
    /// The layout of a pod whose `native-sidecar` annotation is `auto` or absent, and why. The webhook
    /// sets it per admission from what the API server last said of the cluster's versions (see
    /// `server::auto_layout`) unless `--native-sidecar` is true or false; offline `inject` takes it from
    /// `--native-sidecar` (default native). Here: classic, which runs on any version.
    pub auto_layout: AutoLayout,
}

impl SidecarOptions {
    pub fn new(image: impl Into<String>) -> Self {
        SidecarOptions {
            image: image.into(),
            image_pull_policy: None,
            proxy_uid: i64::from(sidecar_proxy::iptables::rules::DEFAULT_PROXY_UID),
            admin_port: sidecar_proxy::iptables::rules::DEFAULT_ADMIN_PORT,
            auto_layout: AutoLayout::new(
                SidecarLayout::Classic,
                "classic runs on any Kubernetes version",
            ),
        }
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The container runtime's default seccomp filter. Set on each added container rather than left to the
/// pod: the kubelet's own default is no filter at all, and the `restricted` Pod Security Standard accepts
/// a pod whose containers each set a profile (with none at pod level); a sidecar without one would make
/// such a pod fail admission after injection. The filter blocks kernel-level operations (module loading,
/// mounts, ptrace, keyrings, ...), none of which the proxy or iptables uses: the sidecar runs under
/// Docker's default filter, which RuntimeDefault derives from, in every conformance cell, and iptables
/// (netlink and raw-socket `setsockopt`) is routinely run under it in containers given NET_ADMIN.
fn runtime_default_seccomp() -> Option<SeccompProfile> {
    Some(SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        localhost_profile: None,
    })
}

fn quantities(
    defaults: &[(&'static str, &str)],
    overrides: &BTreeMap<&'static str, String>,
) -> BTreeMap<String, Quantity> {
    let mut merged: BTreeMap<String, Quantity> = defaults
        .iter()
        .map(|(name, value)| ((*name).to_owned(), Quantity((*value).to_owned())))
        .collect();
    for (name, value) in overrides {
        merged.insert((*name).to_owned(), Quantity(value.clone()));
    }
    merged
}

/// The sidecar container for a plan, in the given layout.
pub fn sidecar(plan: &Plan, options: &SidecarOptions, layout: SidecarLayout) -> Container {
    let config = &plan.config;
    let mut env: Vec<EnvVar> = plan
        .proxy_env
        .iter()
        .map(|(name, value)| self::env(name, value.clone()))
        .collect();
    env.push(self::env(
        "PROXY_CAPTURE",
        format!("{CAPTURE_DIR}/capture.jsonl"),
    ));
    // Rotation sized so the files fit in the capture volume's sizeLimit (see capture_volume).
    env.extend(
        plan.capture
            .sidecar_env()
            .into_iter()
            .map(|(name, value)| self::env(name, value)),
    );
    env.push(self::env(
        "PROXY_ADMIN_PORT",
        options.admin_port.to_string(),
    ));
    if config.proxy_type == ProxyType::Transparent {
        env.push(self::env("PROXY_UID", options.proxy_uid.to_string()));
    }
    let mut volume_mounts = vec![VolumeMount {
        name: CAPTURE_VOLUME.to_owned(),
        mount_path: CAPTURE_DIR.to_owned(),
        ..VolumeMount::default()
    }];
    if let Some(sink) = &plan.capture_sink {
        env.extend(capture_sink::sidecar_env(sink));
        volume_mounts.extend(capture_sink::sidecar_mounts(sink));
    }
    if let Some(tls_out) = &plan.tls_out {
        // Set even where they equal the sidecar's defaults, so the pod says where its mounts are read.
        env.extend(
            tls_out::sidecar_env(tls_out)
                .into_iter()
                .map(|(name, value)| self::env(name, value)),
        );
        volume_mounts.extend(tls_out::sidecar_mounts(tls_out));
    }
    if let Some(mock) = &plan.mock {
        volume_mounts.push(crate::mock::sidecar_mount(mock));
    }

    let mut ports = Vec::new();
    if let Some(in_port) = config.inbound_listener_port() {
        ports.push(port("sidecar-in", in_port));
    }
    if let Some(out_port) = config.outbound_listener_port() {
        ports.push(port("sidecar-out", out_port));
    }
    ports.push(port(ADMIN_PORT_NAME, options.admin_port));

    let (lifecycle, restart_policy, startup_probe) = match layout {
        // The kubelet starts the next container (the app) only when this hook returns, so the app's first
        // connection finds the sidecar listening.
        SidecarLayout::Classic => (
            Some(Lifecycle {
                post_start: Some(LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(WAIT_READY.iter().map(|arg| (*arg).to_owned()).collect()),
                    }),
                    ..LifecycleHandler::default()
                }),
                // The kubelet signals the sidecar only once this returns: it serves the app's last calls.
                pre_stop: plan.pre_stop_wait.map(|wait| LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(
                            WAIT_BEFORE_STOP
                                .iter()
                                .map(|arg| (*arg).to_owned())
                                .chain([
                                    "--for".to_owned(),
                                    if wait.subsec_millis() == 0 {
                                        format!("{}s", wait.as_secs())
                                    } else {
                                        format!("{}ms", wait.as_millis())
                                    },
                                ])
                                .collect(),
                        ),
                    }),
                    ..LifecycleHandler::default()
                }),
                ..Lifecycle::default()
            }),
            None,
            None,
        ),
        // An init container with `restartPolicy: Always` is a native sidecar: the kubelet starts the next
        // init container only once its startupProbe passes, keeps it running beside the app, and stops it
        // after the app's containers. Up to a minute to start (60 × 1 s), as the postStart hook allows.
        SidecarLayout::Native => (
            None,
            Some("Always".to_owned()),
            Some(Probe {
                period_seconds: Some(1),
                failure_threshold: Some(60),
                ..probe("/readyz", 1)
            }),
        ),
    };

    Container {
        name: SIDECAR_NAME.to_owned(),
        restart_policy,
        startup_probe,
        lifecycle,
        image: Some(options.image.clone()),
        image_pull_policy: options.image_pull_policy.clone(),
        env: Some(env),
        ports: Some(ports),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(&DEFAULT_REQUESTS, &plan.requests)),
            limits: Some(quantities(&DEFAULT_LIMITS, &plan.limits)),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(options.proxy_uid),
            run_as_group: Some(options.proxy_uid),
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: runtime_default_seccomp(),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    }
}

/// Transparent mode's init container: `sidecar-proxy init-iptables` with the pod's ports, as root with
/// NET_ADMIN and NET_RAW (and nothing else). Where it goes among the init containers depends on the layout
/// (see [`crate::layout`]).
pub fn init_iptables(plan: &Plan, options: &SidecarOptions) -> Option<Container> {
    let redirect = plan.redirect.as_ref()?;
    let mut env = vec![
        self::env("PROXY_IN_PORT", redirect.in_port.to_string()),
        self::env("PROXY_OUT_PORT", redirect.out_port.to_string()),
        self::env("PROXY_UID", options.proxy_uid.to_string()),
        self::env("PROXY_ADMIN_PORT", options.admin_port.to_string()),
    ];
    for (name, list) in [
        ("PROXY_IGNORE_INBOUND_PORTS", &redirect.ignore_inbound),
        ("PROXY_IGNORE_OUTBOUND_PORTS", &redirect.ignore_outbound),
    ] {
        if !list.is_empty() {
            let text: Vec<String> = list
                .ranges()
                .iter()
                .map(|range| {
                    if range.low() == range.high() {
                        range.low().to_string()
                    } else {
                        format!("{}-{}", range.low(), range.high())
                    }
                })
                .collect();
            env.push(self::env(name, text.join(",")));
        }
    }
    Some(Container {
        name: INIT_NAME.to_owned(),
        image: Some(options.image.clone()),
        image_pull_policy: options.image_pull_policy.clone(),
        args: Some(vec!["init-iptables".to_owned()]),
        env: Some(env),
        resources: Some(ResourceRequirements {
            requests: Some(quantities(
                &[("cpu", "10m"), ("memory", "16Mi")],
                &BTreeMap::new(),
            )),
            limits: Some(quantities(&[("memory", "64Mi")], &BTreeMap::new())),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".to_owned(), "NET_RAW".to_owned()]),
                drop: Some(vec!["ALL".to_owned()]),
            }),
            seccomp_profile: runtime_default_seccomp(),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: XTABLES_LOCK_VOLUME.to_owned(),
            mount_path: "/run".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    })
}

/// The pod volumes the added containers mount.
pub fn volumes(plan: &Plan) -> Vec<Volume> {
    let empty_dir = |name: &str, size_limit: Option<&str>| Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: size_limit.map(|limit| Quantity(limit.to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    };
    // Without a limit the captures could fill the node's disk; with one, the kubelet evicts the pod that
    // passes it, which the sidecar's rotation (sized to fit) prevents.
    let mut volumes = vec![empty_dir(
        CAPTURE_VOLUME,
        Some(plan.capture.size_limit.as_str()),
    )];
    if plan.redirect.is_some() {
        volumes.push(empty_dir(XTABLES_LOCK_VOLUME, None));
    }
    if let Some(tls_out) = &plan.tls_out {
        volumes.extend(tls_out::volumes(tls_out));
    }
    if let Some(sink) = &plan.capture_sink {
        volumes.extend(capture_sink::volumes(sink));
    }
    if let Some(mock) = &plan.mock {
        volumes.push(crate::mock::volume(mock));
    }
    volumes
}
