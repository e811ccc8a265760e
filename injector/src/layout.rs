//! Where the sidecar goes in the pod. Two layouts:
//!
//! - **native** (Kubernetes native sidecars, on by default since 1.29, GA in 1.33): the sidecar is an init
//!   container with `restartPolicy: Always`, after transparent mode's iptables init container and before
//!   the app's own init containers. The kubelet starts the next init container only once the sidecar's
//!   `startupProbe` passes, so the app's init containers already reach the network; it stops the sidecar
//!   after the app's containers, so a Job completes.
//! - **classic** (any Kubernetes): the sidecar is the first ordinary container with a `postStart` hook that
//!   waits for readiness, and the iptables init container runs last among the init containers, so the
//!   app's init containers run before the redirect (nothing would answer it yet). A Job's pod never
//!   completes: the sidecar keeps running.
//!
//! This module names the added containers and the layouts; it imports nothing of the crate, so every other
//! module may use it.

/// The sidecar container's name, in either layout.
pub const SIDECAR_NAME: &str = "sidecar-proxy";
/// Transparent mode's init container that installs the iptables redirect.
pub const INIT_NAME: &str = "sidecar-init-iptables";

/// The layout an injection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidecarLayout {
    Native,
    Classic,
}

impl SidecarLayout {
    /// The value of the `sidecar-layout` annotation set on an injected pod.
    pub fn as_str(self) -> &'static str {
        match self {
            SidecarLayout::Native => "native",
            SidecarLayout::Classic => "classic",
        }
    }
}

/// The layout a pod whose `native-sidecar` annotation is `auto` (or absent) gets, and why: the reason goes
/// on the pod as the `sidecar-layout-reason` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoLayout {
    pub layout: SidecarLayout,
    /// One sentence, e.g. `sidecar-injector serve --native-sidecar false`, or what the API server said.
    pub reason: String,
}

impl AutoLayout {
    pub fn new(layout: SidecarLayout, reason: impl Into<String>) -> Self {
        AutoLayout {
            layout,
            reason: reason.into(),
        }
    }
}

/// What a pod's `native-sidecar` annotation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutChoice {
    /// `"true"`: native, whatever the injector's default.
    Native,
    /// `"false"`: classic.
    Classic,
    /// `"auto"` or no annotation: the injector's default (see [`LayoutChoice::resolve`]).
    Auto,
}

impl LayoutChoice {
    /// The layout and the reason for it, with `auto` taken as `auto_layout` (the webhook: its flag, or
    /// what the API server says of the cluster's versions; `inject`: its flag).
    pub fn resolve(self, auto_layout: &AutoLayout) -> AutoLayout {
        let annotated = |layout, value: &str| {
            AutoLayout::new(
                layout,
                format!(
                    "the pod's annotation sidecar.speedscale.com/native-sidecar is \"{value}\""
                ),
            )
        };
        match self {
            LayoutChoice::Native => annotated(SidecarLayout::Native, "true"),
            LayoutChoice::Classic => annotated(SidecarLayout::Classic, "false"),
            LayoutChoice::Auto => AutoLayout {
                layout: auto_layout.layout,
                reason: format!("auto: {}", auto_layout.reason),
            },
        }
    }
}
