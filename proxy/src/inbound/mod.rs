//! The inbound (reverse) proxy: callers reach the app through the sidecar's in-port.
//!
//! Every protocol delivers to one destination, the app at `proxy-host:proxy-port`. A reverse proxy that
//! followed a caller's SOCKS or absolute-form target would be an open proxy on the pod's IP, so the target
//! a caller names is kept for logs and capture but never dialed.

mod app_connector;
pub mod http;
pub mod tcp;

pub use app_connector::AppConnector;
