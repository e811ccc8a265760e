//! One SVG line chart per metric, drawn with plotters: one line per sidecar over the run's clock, with
//! the rest, the warm-up, the two compared windows and the settle shaded, so the curve reads against
//! the verdict (docs/soak.md shows the hour's).

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use super::sampler::{Metric, Sample};
use super::verdict::Timeline;

const SIZE: (u32, u32) = (780, 320);

pub fn write_svg(
    path: &Path,
    metric: Metric,
    samples: &[Sample],
    timeline: &Timeline,
) -> anyhow::Result<()> {
    let svg = render(metric, samples, timeline)?;
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))
}

/// The chart as SVG text.
pub fn render(metric: Metric, samples: &[Sample], timeline: &Timeline) -> anyhow::Result<String> {
    let (scale, unit) = match metric {
        Metric::Rss => (1.0 / 1024.0, "MiB"),
        _ => (1.0, "count"),
    };
    let end = samples
        .iter()
        .map(|s| s.elapsed)
        .fold(timeline.load_end, f64::max);
    // Minutes on the axis once the run is longer than a few of them.
    let (minute, time_unit) = if end > 300.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    };
    let y_max = samples
        .iter()
        .map(|s| metric.of(s) as f64 * scale * 1.1)
        .fold(1.0, f64::max);
    let windows = timeline.windows();
    let bands = [
        (0.0, timeline.load_start, RGBColor(0xee, 0xee, 0xee), "rest"),
        (
            timeline.load_start,
            windows.warmup_end,
            RGBColor(0xf4, 0xf4, 0xf4),
            "warm-up",
        ),
        (
            windows.first.0,
            windows.first.1,
            RGBColor(0xe3, 0xee, 0xfa),
            "first window",
        ),
        (
            windows.last.0,
            windows.last.1,
            RGBColor(0xd6, 0xe6, 0xf7),
            "last window",
        ),
        (timeline.load_end, end, RGBColor(0xfd, 0xf3, 0xd8), "settle"),
    ];
    let mut sidecars: Vec<&str> = Vec::new();
    for sample in samples {
        if !sidecars.contains(&sample.sidecar) {
            sidecars.push(sample.sidecar);
        }
    }

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} ({unit}) per sidecar", metric.name()),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..(end / minute).max(f64::MIN_POSITIVE), 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .x_desc(format!("time since start ({time_unit})"))
            .draw()?;
        for (from, to, colour, label) in bands {
            if to <= from {
                continue;
            }
            let area = [(from / minute, 0.0), (to / minute, y_max)];
            chart
                .draw_series([Rectangle::new(area, colour.filled())])?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], colour.filled())
                });
        }
        for (index, sidecar) in sidecars.iter().enumerate() {
            let colour = Palette99::pick(index).stroke_width(2);
            let points = samples
                .iter()
                .filter(|s| s.sidecar == *sidecar)
                .map(|s| (s.elapsed / minute, metric.of(s) as f64 * scale));
            chart
                .draw_series(LineSeries::new(points, colour))?
                .label(*sidecar)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Whole numbers without a decimal point, anything else with one.
fn tick(value: f64) -> String {
    if value.fract().abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::sampler::Phase;
    use super::*;

    #[test]
    fn the_chart_has_a_line_per_sidecar_and_names_them() {
        let samples: Vec<Sample> = (0..20)
            .flat_map(|i| {
                ["dual-socks", "reverse-http"].map(|sidecar| Sample {
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
        let timeline = Timeline {
            load_start: 5.0,
            load_end: 80.0,
        };
        let svg = render(Metric::Rss, &samples, &timeline).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Each sidecar's line has all of its 20 samples.
        let lines = svg
            .split("<polyline")
            .skip(1)
            .filter_map(|element| element.split("points=\"").nth(1)?.split('"').next())
            .filter(|points| points.split_whitespace().count() == 20)
            .count();
        assert_eq!(lines, 2, "{svg}");
        for label in [
            "dual-socks",
            "reverse-http",
            "warm-up",
            "settle",
            "RSS (MiB) per sidecar",
        ] {
            assert!(svg.contains(label), "{label} missing from the chart");
        }
    }
}
