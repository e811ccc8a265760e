//! `sidecar-injector`: turns a pod's `sidecar.speedscale.com/*` annotations into a sidecar configured for
//! exactly that mode, as a mutating admission webhook (`serve`) or offline (`inject`), or refuses the pod
//! with the message the proxy itself would print. See docs/injector.md.

pub mod annotations;
pub mod app_env;
pub mod containers;
pub mod patch;
pub mod plan;
pub mod review;
pub mod offline;
