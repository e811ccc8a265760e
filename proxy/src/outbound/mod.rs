//! The outbound (forward) proxy: the app's HTTP or SOCKS proxy, reaching any destination it names.

pub mod http;
