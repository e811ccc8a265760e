//! A small self-contained SVG line chart per metric: one line per sidecar over the run's clock, with
//! the rest, the warm-up, the two compared windows and the settle shaded, so the curve reads against
//! the verdict. Hand-written SVG: a plotting library would be the heaviest dependency of the crate.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::sampler::{Metric, Sample};
use super::verdict::Timeline;

const WIDTH: f64 = 780.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 46.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

pub fn write_svg(
    path: &Path,
    metric: Metric,
    samples: &[Sample],
    timeline: &Timeline,
) -> anyhow::Result<()> {
    std::fs::write(path, render(metric, samples, timeline))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The chart as SVG text.
pub fn render(metric: Metric, samples: &[Sample], timeline: &Timeline) -> String {
    let scale = |value: u64| match metric {
        Metric::Rss => value as f64 / 1024.0,
        _ => value as f64,
    };
    let unit = match metric {
        Metric::Rss => "MiB",
        _ => "count",
    };
    let end = samples
        .iter()
        .map(|s| s.elapsed)
        .fold(timeline.load_end, f64::max);
    // Minutes on the axis once the run is longer than a few of them.
    let (time_divisor, time_unit) = if end > 300.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    };
    let x_max = end / time_divisor;
    let x_step = nice_step(x_max / 6.0);
    let y_data_max = samples
        .iter()
        .map(|s| scale(metric.of(s)))
        .fold(0.0, f64::max);
    let y_step = nice_step((y_data_max * 1.1).max(1.0) / 5.0);
    let y_max = (y_data_max * 1.1 / y_step).ceil().max(1.0) * y_step;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |seconds: f64| LEFT + seconds / time_divisor / x_max.max(f64::MIN_POSITIVE) * plot_w;
    let y = |value: f64| TOP + plot_h - value / y_max * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{} ({unit}) per sidecar</text>"#,
        metric.name()
    );

    // The phases behind the lines.
    let windows = timeline.windows();
    let mut band = |from: f64, to: f64, fill: &str, label: &str| {
        let (x0, x1) = (x(from), x(to));
        if x1 <= x0 {
            return;
        }
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="{fill}"/>"#,
            x1 - x0
        );
        // A label only where it fits (a short rest or settle stays unlabelled rather than overprinted).
        if x1 - x0 >= 6.0 * label.len() as f64 + 6.0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" fill="#666" font-size="10">{label}</text>"##,
                x0 + 3.0,
                TOP + 12.0
            );
        }
        svg.push('\n');
    };
    band(0.0, timeline.load_start, "#eeeeee", "rest");
    band(
        timeline.load_start,
        windows.warmup_end,
        "#f4f4f4",
        "warm-up",
    );
    band(windows.first.0, windows.first.1, "#e3eefa", "first");
    band(windows.last.0, windows.last.1, "#d6e6f7", "last");
    band(timeline.load_end, end, "#fdf3d8", "settle");

    // Axes, grid and ticks.
    let mut tick = 0.0;
    while tick <= y_max + y_step / 2.0 {
        let ty = y(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            ty + 4.0,
            format_tick(tick)
        );
        tick += y_step;
    }
    let mut tick = 0.0;
    while tick <= x_max + x_step / 100.0 {
        let tx = LEFT + tick / x_max.max(f64::MIN_POSITIVE) * plot_w;
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#888888"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 4.0,
            TOP + plot_h + 16.0,
            format_tick(tick)
        );
        tick += x_step;
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888888"/><text x="{:.1}" y="{:.1}" text-anchor="middle">time since start ({time_unit})</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );

    // One line per sidecar, and the legend.
    let mut sidecars: Vec<&str> = Vec::new();
    for sample in samples {
        if !sidecars.contains(&sample.sidecar) {
            sidecars.push(sample.sidecar);
        }
    }
    for (index, sidecar) in sidecars.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = samples
            .iter()
            .filter(|s| s.sidecar == *sidecar)
            .map(|s| format!("{:.1},{:.1}", x(s.elapsed), y(scale(metric.of(s)))))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + index as f64 * 18.0;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{sidecar}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0 && raw.is_finite()) {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

fn format_tick(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::super::sampler::Phase;
    use super::*;

    #[rstest]
    #[case(0.3, 0.5)]
    #[case(1.0, 1.0)]
    #[case(1.1, 2.0)]
    #[case(7.0, 10.0)]
    #[case(36.0, 50.0)]
    fn steps_are_one_two_five(#[case] raw: f64, #[case] step: f64) {
        assert!((nice_step(raw) - step).abs() < 1e-9);
    }

    #[test]
    fn the_chart_has_a_line_per_sidecar_and_closes() {
        let samples: Vec<Sample> = (0..20)
            .flat_map(|i| {
                ["a", "b"].map(|sidecar| Sample {
                    elapsed: i as f64 * 5.0,
                    phase: Phase::Load,
                    sidecar,
                    rss_kib: 20_000 + i * 10,
                    fds: 30,
                    tasks: 40,
                    connections_open: 5,
                    records_dropped: 0,
                })
            })
            .collect();
        let svg = render(
            Metric::Rss,
            &samples,
            &Timeline {
                load_start: 5.0,
                load_end: 95.0,
            },
        );
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
    }
}
