//! `sidecar-injector`: turns a pod's `sidecar.speedscale.com/*` annotations into a sidecar configured for
//! exactly that mode, as a mutating admission webhook (`serve`) or offline (`inject`), or refuses the pod
//! with the message the proxy itself would print. See docs/injector.md.
#![forbid(unsafe_code)]

pub mod annotations;
pub mod app_env;
pub mod capture_sink;
pub mod capture_volume;
pub mod certs;
pub mod cli;
pub mod cluster_api;
pub mod containers;
pub mod denial;
pub mod kube_versions;
pub mod layout;
pub mod mock;
#[cfg(test)]
mod module_graph;
pub mod offline;
pub mod patch;
pub mod plan;
pub mod probe_ports;
pub mod resources;
pub mod review;
pub mod server;
pub mod service_ports;
pub mod summary;
pub mod tls_out;
pub mod yaml_depth;
