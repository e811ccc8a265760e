//! Medians over rounds. A row's figure is the median of its valid rounds; its ratio is the median of
//! the per-round ratios to the direct path (each round's ratio uses the direct figure of that same
//! round, so a machine that is slower in one round does not skew the comparison).

use std::mem;

use crate::results::{Figure, LeafCounts, Row};

/// The median (the mean of the middle two for an even count); `None` when empty. NaN is skipped.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct RowSummary {
    pub figure: Option<Figure>,
    pub ratio: Option<f64>,
}

pub fn summarize(row: &Row, baseline: Option<&Row>) -> RowSummary {
    let valid: Vec<Figure> = row
        .outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().copied())
        .collect();
    // The direct row against itself gives 1.0 each round, which is what its ratio column should say.
    let ratios: Vec<f64> = baseline
        .map(|base| {
            row.outcomes
                .iter()
                .zip(&base.outcomes)
                .filter_map(|(ours, direct)| match (ours, direct) {
                    (Ok(ours), Ok(direct)) => ours.ratio_to(direct),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    RowSummary {
        figure: median_figure(&valid),
        ratio: median(&ratios),
    }
}

/// Field by field for rates and percentiles; for memory, the round with the median growth under load,
/// kept whole so that its idle and loaded RSS belong together.
pub fn median_figure(figures: &[Figure]) -> Option<Figure> {
    let first = *figures.first()?;
    let mut rounds: Vec<Figure> = figures
        .iter()
        .copied()
        .filter(|f| mem::discriminant(f) == mem::discriminant(&first))
        .collect();
    let mut out = first;
    for (i, field) in medianed(&mut out).into_iter().enumerate() {
        let column: Vec<f64> = rounds
            .iter()
            .map(|&(mut round)| *medianed(&mut round)[i])
            .collect();
        *field = median(&column)?;
    }
    match &mut out {
        // The rate's median; the leaves summed over the rounds (they are counts, and the report gives
        // the share served from the cache), with the sidecar's own total as the last round saw it.
        Figure::Handshakes { leaves, .. } => {
            *leaves = rounds
                .iter()
                .filter_map(|f| match f {
                    Figure::Handshakes { leaves, .. } => *leaves,
                    _ => None,
                })
                .reduce(|sum, round| LeafCounts {
                    minted: sum.minted + round.minted,
                    cached: sum.cached + round.cached,
                    minted_since_start: sum.minted_since_start.max(round.minted_since_start),
                });
        }
        // A count: every round's drops together.
        Figure::SinkRate { dropped, .. } => {
            *dropped = rounds
                .iter()
                .map(|f| match f {
                    Figure::SinkRate { dropped, .. } => *dropped,
                    _ => 0,
                })
                .sum();
        }
        Figure::Memory { .. } => {
            rounds.sort_by_key(|f| match f {
                Figure::Memory {
                    idle_kib,
                    loaded_kib,
                    ..
                } => loaded_kib.saturating_sub(*idle_kib),
                _ => 0,
            });
            out = rounds[(rounds.len() - 1) / 2];
        }
        _ => {}
    }
    Some(out)
}

/// The fields of a figure whose median is taken one by one: rates and percentiles, not counts.
fn medianed(figure: &mut Figure) -> Vec<&mut f64> {
    match figure {
        Figure::RequestRate { per_sec } | Figure::Handshakes { per_sec, .. } => vec![per_sec],
        Figure::Bandwidth { bits_per_sec } => vec![bits_per_sec],
        Figure::Latency {
            p50_ms,
            p99_ms,
            p999_ms,
            per_sec,
        } => vec![p50_ms, p99_ms, p999_ms, per_sec],
        Figure::SinkRate {
            per_sec,
            per_publisher_cpu_sec,
            per_process_cpu_sec,
            ..
        } => vec![per_sec, per_publisher_cpu_sec, per_process_cpu_sec],
        Figure::Memory { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{invalid, on, rate, row, HTTP};
    use crate::results::Group;
    use rstest::rstest;

    #[rstest]
    #[case(&[], None)]
    #[case(&[3.0], Some(3.0))]
    #[case(&[5.0, 1.0, 3.0], Some(3.0))]
    #[case(&[4.0, 1.0, 3.0, 2.0], Some(2.5))]
    #[case(&[f64::NAN, 2.0], Some(2.0))]
    fn medians(#[case] values: &[f64], #[case] expected: Option<f64>) {
        assert_eq!(median(values), expected);
    }

    #[test]
    fn ratios_pair_each_round_with_its_own_direct_figure() {
        let direct = row(Group::Direct, None, [rate(100.0), rate(200.0), rate(100.0)]);
        let rounds = [rate(50.0), rate(180.0), invalid("socket errors")];
        let ours = row(Group::ReverseHttp, on(HTTP), rounds);
        let summary = summarize(&ours, Some(&direct));
        // Rounds 1 and 2: 0.5 and 0.9; round 3 is invalid and left out.
        assert_eq!(summary.ratio, Some(0.7));
        assert_eq!(summary.figure, Some(Figure::RequestRate { per_sec: 115.0 }));
    }

    #[test]
    fn memory_keeps_the_median_round_whole() {
        let memory = |idle_kib, loaded_kib| Figure::Memory {
            idle_kib,
            loaded_kib,
            loaded_pss_kib: loaded_kib,
            processes: 1,
            connections: 10,
        };
        let figures = [memory(1000, 5000), memory(3000, 4000), memory(1000, 3000)];
        // Growth 4000, 1000, 2000: the median round is the third.
        assert_eq!(median_figure(&figures), Some(memory(1000, 3000)));
    }

    #[test]
    fn handshake_rates_take_the_median_and_leaves_add_up() {
        let round = |per_sec, cached| Figure::Handshakes {
            per_sec,
            leaves: Some(LeafCounts {
                minted: 0,
                cached,
                minted_since_start: 1,
            }),
        };
        let figures = [round(900.0, 900), round(1100.0, 1100), round(1000.0, 1000)];
        assert_eq!(
            median_figure(&figures),
            Some(Figure::Handshakes {
                per_sec: 1000.0,
                leaves: Some(LeafCounts {
                    minted: 0,
                    cached: 3000,
                    minted_since_start: 1
                })
            })
        );
        let relayed = [Figure::Handshakes {
            per_sec: 5.0,
            leaves: None,
        }];
        assert_eq!(median_figure(&relayed), Some(relayed[0]));
    }

    #[test]
    fn latency_percentiles_take_their_medians_separately() {
        let latency = |p50_ms, p99_ms| Figure::Latency {
            p50_ms,
            p99_ms,
            p999_ms: 9.0,
            per_sec: 100.0,
        };
        let figures = [latency(1.0, 8.0), latency(3.0, 2.0), latency(2.0, 4.0)];
        assert_eq!(median_figure(&figures), Some(latency(2.0, 4.0)));
    }
}
