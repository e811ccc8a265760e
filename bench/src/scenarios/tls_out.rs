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

use crate::admin_port;
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
            let admin = bench.fleet.admin(&spec)?;
            Some((
                admin,
                admin_port::scrape(admin, TlsOutCounters::parse).await?,
            ))
        }
        _ => None,
    };
    let connections = bench.load.connections;
    let run = match tls_handshakes::run(&target, connections, bench.settings.measure_for).await? {
        Ok(run) => run,
        Err(invalid) => return Ok(Err(invalid)),
    };
    let leaves = match intercepting {
        Some((admin, before)) => {
            let after = admin_port::scrape(admin, TlsOutCounters::parse).await?;
            Some(leaf_counts(&run, &before, &after))
        }
        None => None,
    };
    Ok(leaves.transpose().map(|leaves| Figure::Handshakes {
        per_sec: run.per_sec(),
        leaves,
    }))
}

/// tls-out's counters on the sidecar's admin port (/metrics) at one moment: how many TLS streams it
/// intercepted or failed, and whether each leaf certificate it showed was minted or came from its
/// cache (zero for a series the sidecar has not created yet: its counter families show a label set
/// only once it has been counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsOutCounters {
    pub intercepted: u64,
    pub upstream_failed: u64,
    pub client_failed: u64,
    pub passed: u64,
    pub minted: u64,
    pub cached: u64,
}

impl TlsOutCounters {
    /// Reads `sidecar_tls_out_connections_total{result=...}` and
    /// `sidecar_tls_out_leaf_certificates_total{source=...}` from the exposition text.
    pub fn parse(text: &str) -> anyhow::Result<TlsOutCounters> {
        let mut counters = TlsOutCounters::default();
        for series in admin_port::parse(text)? {
            let slot = match series.name {
                "sidecar_tls_out_connections_total" => match series.label("result") {
                    Some("intercepted") => &mut counters.intercepted,
                    Some("upstream_failed") => &mut counters.upstream_failed,
                    Some("client_failed") => &mut counters.client_failed,
                    Some("passed") => &mut counters.passed,
                    _ => continue,
                },
                "sidecar_tls_out_leaf_certificates_total" => match series.label("source") {
                    Some("minted") => &mut counters.minted,
                    Some("cached") => &mut counters.cached,
                    _ => continue,
                },
                _ => continue,
            };
            *slot = series.value.max(0.0) as u64;
        }
        Ok(counters)
    }

    /// What was counted between `before` and `self`.
    pub fn since(&self, before: &TlsOutCounters) -> TlsOutCounters {
        TlsOutCounters {
            intercepted: self.intercepted.saturating_sub(before.intercepted),
            upstream_failed: self.upstream_failed.saturating_sub(before.upstream_failed),
            client_failed: self.client_failed.saturating_sub(before.client_failed),
            passed: self.passed.saturating_sub(before.passed),
            minted: self.minted.saturating_sub(before.minted),
            cached: self.cached.saturating_sub(before.cached),
        }
    }
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
    #[case::the_tls_out_series_are_read_and_others_ignored(
        "# HELP sidecar_tls_out_connections TLS streams tls-out handled\n\
         # TYPE sidecar_tls_out_connections counter\n\
         sidecar_tls_out_connections_total{result=\"intercepted\"} 41\n\
         sidecar_tls_out_connections_total{result=\"client_failed\"} 2\n\
         # TYPE sidecar_tls_out_leaf_certificates counter\n\
         sidecar_tls_out_leaf_certificates_total{source=\"minted\"} 1\n\
         sidecar_tls_out_leaf_certificates_total{source=\"cached\"} 40\n\
         sidecar_connections_open{direction=\"outbound\",protocol=\"http\"} 4\n\
         # EOF\n",
        TlsOutCounters { intercepted: 41, client_failed: 2, minted: 1, cached: 40, ..TlsOutCounters::default() }
    )]
    #[case::a_sidecar_without_tls_out_reads_as_all_zero(
        "sidecar_connections_open{direction=\"outbound\",protocol=\"http\"} 4\n# EOF\n",
        TlsOutCounters::default()
    )]
    fn the_tls_out_series_are_read(#[case] text: &str, #[case] expected: TlsOutCounters) {
        assert_eq!(TlsOutCounters::parse(text).unwrap(), expected);
    }

    #[test]
    fn differences_count_what_happened_in_between() {
        let before = TlsOutCounters {
            intercepted: 10,
            minted: 1,
            cached: 9,
            ..TlsOutCounters::default()
        };
        let after = TlsOutCounters {
            intercepted: 110,
            minted: 1,
            cached: 109,
            ..TlsOutCounters::default()
        };
        assert_eq!(
            after.since(&before),
            TlsOutCounters {
                intercepted: 100,
                cached: 100,
                ..TlsOutCounters::default()
            }
        );
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
