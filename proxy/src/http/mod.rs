//! HTTP pieces shared by the reverse (inbound) and forward (outbound) proxies.

pub mod body;
pub mod connection;
pub mod exchange;
pub mod headers;
pub mod tunnelled;
pub mod upgrade;
