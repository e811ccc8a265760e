//! `sidecar-proxy wait-ready`: blocks until the sidecar's admin port answers `/readyz` with 200.
//!
//! The injector runs it as the sidecar container's postStart hook. The kubelet starts a pod's containers in
//! order but does not wait for one to listen before starting the next, except that it does wait for a
//! container's postStart hook to finish. With the sidecar first and this hook, the app starts only once every
//! listener is bound, so its first outbound call (redirected by iptables, or sent to `HTTP_PROXY`) is not
//! refused.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::iptables::rules::DEFAULT_ADMIN_PORT;

#[derive(Debug, Args)]
pub struct WaitReadyArgs {
    /// The sidecar's admin port
    #[arg(long, env = "PROXY_ADMIN_PORT", value_name = "PORT", default_value_t = DEFAULT_ADMIN_PORT)]
    pub admin_port: u16,

    /// Give up after this long (exit 1)
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = super::parse_duration)]
    pub timeout: Duration,
}

const POLL_EVERY: Duration = Duration::from_millis(100);

impl WaitReadyArgs {
    pub fn run(self) -> ExitCode {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("sidecar-proxy: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        match runtime.block_on(wait_until_ready(&url, self.timeout)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(last) => {
                eprintln!(
                    "sidecar-proxy: wait-ready: {url} did not answer 200 within {}; last try: {last}",
                    humantime::format_duration(self.timeout)
                );
                ExitCode::FAILURE
            }
        }
    }
}

/// Polls until `/readyz` says 200; the error is the last thing that went wrong.
async fn wait_until_ready(url: &str, timeout: Duration) -> Result<(), String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout(POLL_EVERY * 10, client.get(uri.clone())).await {
            Ok(Ok(response)) if response.status() == hyper::StatusCode::OK => return Ok(()),
            Ok(Ok(response)) => format!(
                "the sidecar answers {}: it is up but not ready (still starting, or shutting down); \
                 its log says why",
                response.status()
            ),
            // hyper's "client error (Connect)" hides the cause: nothing listens there.
            Ok(Err(e)) if e.is_connect() => format!(
                "nothing accepts connections there: is the sidecar running in this pod, and is its admin \
                 port {}? (--admin-port / PROXY_ADMIN_PORT, default {DEFAULT_ADMIN_PORT})",
                uri.port_u16().unwrap_or_default()
            ),
            Ok(Err(e)) => format!("the request failed: {e}"),
            Err(_) => "the request got no answer within a second: is something else listening on the \
                       admin port?"
                .to_owned(),
        };
        if tokio::time::Instant::now() + POLL_EVERY > deadline {
            return Err(last);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}
