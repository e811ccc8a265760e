//! tls-out's counters, read from the sidecar's admin port (/metrics) before and after a measurement:
//! how many TLS streams it intercepted or failed, and whether each leaf certificate it showed was
//! minted or came from its cache.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;

use crate::admin_port;

/// The counters' values at one moment (zero for a series the sidecar has not created yet: its counter
/// families show a label set only once it has been counted).
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

/// Scrapes the sidecar whose admin port is `admin_port` on 127.0.0.1.
pub async fn scrape(admin_port: u16) -> anyhow::Result<TlsOutCounters> {
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, admin_port));
    let text = admin_port::scrape(admin).await?;
    TlsOutCounters::parse(&text).with_context(|| format!("http://{admin}/metrics"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

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
}
