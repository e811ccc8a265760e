//! HTTP pieces shared by the reverse (inbound) and forward (outbound) proxies.

// Defined before the modules that use it (macro_rules scoping is textual).
/// Drives a hyper server connection to its end; once `$shutdown` is cancelled, lets its in-flight requests
/// finish first.
/// (A macro because hyper's HTTP/1 and HTTP/2 connections share no trait for graceful shutdown.)
macro_rules! until_done_or_shutdown {
    ($conn:expr, $shutdown:expr) => {{
        let conn = $conn;
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => result,
            _ = $shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    }};
}

pub mod body;
pub mod connection;
pub mod delivery;
pub mod engine;
pub mod exchange;
pub mod forward_target;
pub mod framing;
pub mod headers;
pub mod host_header;
pub mod observed;
pub mod paced_body;
pub mod upgrade;
pub mod wrong_protocol;
