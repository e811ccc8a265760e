//! The load generator of the TLS handshake rows (scenario 7): the harness's own, because none of the
//! tools at hand fits. wrk speaks TLS but verifies no certificate, so it could not prove that the
//! intercepting path intercepted (nor choose which CA to trust); curl in a loop measures process
//! start-ups; `openssl s_time` cannot go through a proxy.
//!
//! N connections run at once, each in a loop until the measurement's time is spent: open a TCP
//! connection (through the CONNECT tunnel, for a proxied route), a full TLS handshake (the client
//! resumes no session and trusts one CA only, see [`crate::tls`]), one GET of the small response with
//! `Connection: close`, its exact body checked, then close. The figure is completed requests over the
//! time until the last one finished. Any failure makes the measurement invalid, as a socket error does
//! for wrk; a connection that failed stops its loop, so a broken path is not hammered for the rest of
//! the measurement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use super::Invalid;
use crate::http_client::{self, Response};
use crate::route::{self, Route};

/// Where the requests go and what they must get back.
#[derive(Clone)]
pub struct HttpsTarget {
    pub route: Route,
    /// The origin's HTTPS port (what CONNECT asks for, or what a direct client connects to).
    pub origin_port: u16,
    pub server_name: ServerName<'static>,
    pub config: Arc<ClientConfig>,
    pub path: &'static str,
    pub expected_body: &'static [u8],
}

/// One connection: tunnel, handshake, GET, close.
pub async fn fetch(target: &HttpsTarget) -> anyhow::Result<Response> {
    route::answered_in_time(async {
        let tcp = route::open(target.route, target.origin_port).await?;
        let tls = TlsConnector::from(target.config.clone())
            .connect(target.server_name.clone(), tcp)
            .await
            .context("TLS handshake failed")?;
        // The Host header: the name the certificate is for, and the port.
        let host = format!("{}:{}", target.server_name.to_str(), target.origin_port);
        let (response, _closed_on_drop) = http_client::get(tls, target.path, &host, false).await?;
        Ok(response)
    })
    .await
}

/// What a run achieved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HandshakeRun {
    pub completed: u64,
    pub elapsed: Duration,
}

impl HandshakeRun {
    pub fn per_sec(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }
}

/// `connections` loops for `duration`; new connections start only before the deadline, and the ones
/// in flight then are waited for and counted.
pub async fn run(
    target: &HttpsTarget,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<Result<HandshakeRun, Invalid>> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let target = target.clone();
        // Each loop's completed requests, and why it stopped early if it did.
        workers.spawn(async move {
            let mut completed = 0u64;
            while Instant::now() < deadline {
                let answer = fetch(&target).await.map_err(|error| format!("{error:#}"));
                if let Err(reason) =
                    answer.and_then(|response| response.from_origin(target.expected_body))
                {
                    return (completed, Some(reason));
                }
                completed += 1;
            }
            (completed, None)
        });
    }
    let (mut completed, mut failures, mut first_failure) = (0, 0, None);
    while let Some(joined) = workers.join_next().await {
        let (done, failure) = joined.context("a TLS load task failed")?;
        completed += done;
        failures += u64::from(failure.is_some());
        first_failure = first_failure.or(failure);
    }
    let elapsed = started.elapsed();
    Ok(match first_failure {
        Some(reason) => Err(Invalid(format!(
            "{failures} of {} connections failed, e.g.: {reason}",
            failures + completed
        ))),
        None if completed == 0 => Err(Invalid("no request completed".to_owned())),
        None => Ok(HandshakeRun { completed, elapsed }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_completed_requests_over_the_whole_run() {
        let run = HandshakeRun {
            completed: 3_000,
            elapsed: Duration::from_millis(1_500),
        };
        assert_eq!(run.per_sec(), 2_000.0);
    }
}
