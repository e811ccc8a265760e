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
    // The intercepting sidecar's admin port and its counters before the run.
    let intercepting = match server {
        Some(spec) if trust == Trust::Capture => {
            let port = bench.fleet.admin_port(&spec)?;
            Some((port, sidecar_metrics::scrape(port).await?))
        }
        _ => None,
    };
    let connections = bench.load.connections;
    let run = match tls_handshakes::run(&target, connections, bench.settings.measure_for).await? {
        Ok(run) => run,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let leaves = match intercepting {
        Some((port, before)) => {
            let after = sidecar_metrics::scrape(port).await?;
            Some(leaf_counts(&run, &before, &after))
        }
        None => None,
    };
    Ok(leaves.transpose().map(|leaves| Figure::Handshakes {
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
    super::download(
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
    use crate::contenders::{Capture, SidecarMode};
    use rstest::rstest;
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

    #[rstest]
    #[case::requests_tls_out_did_not_intercept(counters(10, 1, 10), "10 interceptions")]
    #[case::failed_handshakes(
        TlsOutCounters { upstream_failed: 2, ..counters(1000, 1, 1000) },
        "2 upstream"
    )]
    fn make_the_round_invalid(#[case] after: TlsOutCounters, #[case] expected: &str) {
        let invalid = leaf_counts(&run(1000), &counters(0, 1, 0), &after).unwrap_err();
        assert!(invalid.0.contains(expected), "{invalid}");
    }

    #[rstest]
    #[case(None, Trust::Origin)]
    #[case(Some(SidecarMode::ForwardHttp), Trust::Origin)]
    #[case(Some(SidecarMode::ForwardHttpTlsOut), Trust::Capture)]
    fn each_row_trusts_the_ca_of_the_path_it_must_take(
        #[case] sidecar: Option<SidecarMode>,
        #[case] expected: Trust,
    ) {
        let server = sidecar.map(|mode| ServerSpec::Sidecar(mode, Capture::On));
        assert_eq!(trust(server), expected);
    }
}
