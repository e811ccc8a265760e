//! Scenario 7: HTTPS through our forward http proxy's CONNECT, with the TLS relayed as opaque bytes
//! (tls-out off) and intercepted (tls-out on: the sidecar completes the client's handshake with a leaf
//! of the capture CA and opens TLS of its own to the origin), next to the client talking TLS to the
//! origin directly. Capture is on in both of ours, since interception needs it; the difference between
//! them is interception's cost.
//!
//! - [`handshakes`]: the harness's TLS load generator, a full handshake and one small GET per
//!   connection. For the intercepting sidecar, its tls-out counters are read before and after: every
//!   request must have been intercepted, none may have failed, and the leaves it showed (minted or
//!   cached) are the row's leaf-cache figure.
//! - [`download`]: curl fetches the large file over one TLS connection per download.
//!
//! Each client trusts one CA only ([`crate::tls::Trust`]), so a row cannot pass on the wrong path.

use super::Bench;

use crate::clients::sidecar_metrics::{self, TlsOutCounters};
use crate::clients::tls_handshakes::{self, HandshakeRun};
use crate::clients::{curl, Invalid};
use crate::contenders::origin::https_target;
use crate::contenders::ServerSpec;
use crate::results::{Figure, Group, LeafCounts, Outcome};
use crate::tls::Trust;

/// The CA a row's client trusts: the origin's when it talks to the origin's TLS (direct, relayed), the
/// capture CA when the proxy intercepts.
fn trust(server: Option<ServerSpec>) -> Trust {
    server
        .and_then(|spec| spec.https_trust())
        .unwrap_or(Trust::Origin)
}

pub async fn handshakes(
    bench: &Bench<'_>,
    group: Group,
    server: Option<ServerSpec>,
) -> anyhow::Result<Outcome> {
    let trust = trust(server);
    let target = https_target(bench.ctx, bench.route(group, server)?, trust);
    let admin_port = match server {
        Some(spec) if trust == Trust::Capture => Some(bench.fleet.admin_port(&spec)?),
        _ => None,
    };
    let before = match admin_port {
        Some(port) => Some(sidecar_metrics::scrape(port).await?),
        None => None,
    };
    let run = match tls_handshakes::run(&target, bench.load.connections, bench.settings.measure_for)
        .await?
    {
        Ok(run) => run,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let leaves = match (admin_port, before) {
        (Some(port), Some(before)) => {
            let after = sidecar_metrics::scrape(port).await?;
            match leaf_counts(&run, &before, &after) {
                Ok(leaves) => Some(leaves),
                Err(invalid) => return Ok(Err(invalid)),
            }
        }
        _ => None,
    };
    Ok(Ok(Figure::Handshakes {
        per_sec: run.per_sec(),
        leaves,
    }))
}

/// The intercepting sidecar's account of a measurement, checked against what the client saw: each
/// completed request was intercepted and shown a leaf, and no TLS stream failed or went past tls-out.
pub fn leaf_counts(
    run: &HandshakeRun,
    before: &TlsOutCounters,
    after: &TlsOutCounters,
) -> Result<LeafCounts, Invalid> {
    let delta = after.since(before);
    let failed = delta.client_failed + delta.upstream_failed;
    if failed > 0 || delta.passed > 0 {
        return Err(Invalid(format!(
            "tls-out counted {} client and {} upstream handshake failures and {} streams passed \
             through uninspected",
            delta.client_failed, delta.upstream_failed, delta.passed
        )));
    }
    if delta.intercepted < run.completed || delta.minted + delta.cached < run.completed {
        return Err(Invalid(format!(
            "tls-out counted {} interceptions and {} leaves shown for {} completed requests",
            delta.intercepted,
            delta.minted + delta.cached,
            run.completed
        )));
    }
    Ok(LeafCounts {
        minted: delta.minted,
        cached: delta.cached,
        minted_since_start: after.minted,
    })
}

pub async fn download(
    bench: &Bench<'_>,
    group: Group,
    server: Option<ServerSpec>,
) -> anyhow::Result<Outcome> {
    let ca_file = bench.ctx.tls.ca_file(trust(server));
    super::bulk::download(
        bench,
        bench.route(group, server)?,
        curl::Scheme::Https { ca_file: &ca_file },
        bench.ctx.origin.https_port,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(completed: u64) -> HandshakeRun {
        HandshakeRun {
            completed,
            elapsed: Duration::from_secs(1),
        }
    }

    fn counters(intercepted: u64, minted: u64, cached: u64) -> TlsOutCounters {
        TlsOutCounters {
            intercepted,
            minted,
            cached,
            ..TlsOutCounters::default()
        }
    }

    #[test]
    fn every_request_intercepted_from_the_cache_is_the_expected_account() {
        let before = counters(3, 1, 2);
        let after = counters(1003, 1, 1002);
        assert_eq!(
            leaf_counts(&run(1000), &before, &after),
            Ok(LeafCounts {
                minted: 0,
                cached: 1000,
                minted_since_start: 1
            })
        );
    }

    #[test]
    fn requests_that_tls_out_did_not_intercept_make_the_round_invalid() {
        let before = counters(0, 1, 0);
        let after = counters(10, 1, 10);
        let invalid = leaf_counts(&run(1000), &before, &after).unwrap_err();
        assert!(invalid.0.contains("10 interceptions"), "{invalid}");
    }

    #[test]
    fn failed_handshakes_make_the_round_invalid() {
        let before = counters(0, 1, 0);
        let after = TlsOutCounters {
            upstream_failed: 2,
            ..counters(1000, 1, 1000)
        };
        let invalid = leaf_counts(&run(1000), &before, &after).unwrap_err();
        assert!(invalid.0.contains("2 upstream"), "{invalid}");
    }

    #[test]
    fn each_row_trusts_the_ca_of_the_path_it_must_take() {
        use crate::contenders::{Capture, SidecarMode};
        assert_eq!(trust(None), Trust::Origin);
        assert_eq!(
            trust(Some(ServerSpec::Sidecar(
                SidecarMode::ForwardHttp,
                Capture::On
            ))),
            Trust::Origin
        );
        assert_eq!(
            trust(Some(ServerSpec::Sidecar(
                SidecarMode::ForwardHttpTlsOut,
                Capture::On
            ))),
            Trust::Capture
        );
    }
}
