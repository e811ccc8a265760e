//! `sidecar-injector`: turns a pod's `sidecar.speedscale.com/*` annotations into a sidecar configured for
//! exactly that mode, as a mutating admission webhook (`serve`) or offline (`inject`), or refuses the pod
//! with the message the proxy itself would print. See docs/injector.md.
#![forbid(unsafe_code)]

pub mod annotations;
pub mod app_env;
pub mod capture_volume;
pub mod certs;
pub mod cli;
pub mod containers;
pub mod denial;
pub mod layout;
pub mod mock;
#[cfg(test)]
mod module_graph;
pub mod offline;
pub mod patch;
pub mod plan;
pub mod resources;
pub mod review;
pub mod server;
pub mod summary;
pub mod tls_out;
pub mod yaml_depth;
