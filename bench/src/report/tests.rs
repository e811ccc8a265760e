use std::time::Duration;

use rstest::rstest;

use super::fixtures::{full_run, smoke_meta};
use super::*;
use crate::golden::assert_golden;

/// The whole report of a run with every tool and figure, invalid rounds and a smoke run's header,
/// byte for byte. After a deliberate change to the report, `BLESS=1 cargo test` rewrites golden.md.
#[test]
fn a_whole_report_renders_as_the_golden_file() {
    let report = render(&smoke_meta(), &full_run());
    assert_golden(&report, "src/report/golden.md", include_str!("golden.md"));
}

#[rstest]
#[case(false, 2, 125, "Run started 2026-05-01T10:00:00Z: 2 rounds of 5 s per measurement, medians; wall time 2 min 5 s.")]
#[case(true, 1, 59, "Smoke run started 2026-05-01T10:00:00Z: 1 round of 5 s per measurement, medians; wall time 59 s.")]
fn the_first_line_says_what_kind_of_run_it_was(
    #[case] smoke: bool,
    #[case] rounds: u32,
    #[case] seconds: u64,
    #[case] expected: &str,
) {
    let meta = Meta {
        smoke,
        rounds,
        wall_time: Duration::from_secs(seconds),
        ..smoke_meta()
    };
    let report = render(&meta, &[]);
    assert_eq!(report.lines().nth(2), Some(expected), "{report}");
}

#[rstest]
#[case(0.4, "0")]
#[case(999.0, "999")]
#[case(1000.0, "1,000")]
#[case(1234567.8, "1,234,568")]
fn counts_get_thousands_separators(#[case] value: f64, #[case] expected: &str) {
    assert_eq!(format_count(value), expected);
}
