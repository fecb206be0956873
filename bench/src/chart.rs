//! SVG charts of the suites (`--chart FILE`), drawn with plotters' SVG backend.

use plotters::prelude::*;

fn fail(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

/// Bars of nDCG@10 (dark) and recall@100 (light) per mode, the value printed on each bar.
pub fn modes(path: &str, title: &str, rows: &[(String, f64, f64)]) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(50)
        // Headroom above 1 for the value labels and the legend.
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..1.15f64)
        .map_err(fail)?;
    let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("score")
        .y_labels(12)
        .light_line_style(WHITE)
        .draw()
        .map_err(fail)?;
    let dark = RGBColor(31, 119, 180);
    let light = RGBColor(174, 199, 232);
    chart
        .draw_series(
            rows.iter().enumerate().map(|(i, r)| {
                Rectangle::new([(i as f64 - 0.38, 0.0), (i as f64 - 0.02, r.1)], dark.filled())
            }),
        )
        .map_err(fail)?
        .label("nDCG@10")
        .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], dark.filled()));
    chart
        .draw_series(
            rows.iter().enumerate().map(|(i, r)| {
                Rectangle::new([(i as f64 + 0.02, 0.0), (i as f64 + 0.38, r.2)], light.filled())
            }),
        )
        .map_err(fail)?
        .label("recall@100")
        .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], light.filled()));
    chart
        .draw_series(rows.iter().enumerate().flat_map(|(i, r)| {
            [
                Text::new(format!("{:.3}", r.1), (i as f64 - 0.36, r.1 + 0.03), ("sans-serif", 12)),
                Text::new(format!("{:.3}", r.2), (i as f64 + 0.04, r.2 + 0.03), ("sans-serif", 12)),
            ]
        }))
        .map_err(fail)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;
    root.present().map_err(fail)
}

/// A labelled point: (label, p50 ms, recall@10).
pub type Point = (String, f64, f64);
/// A named line of points.
pub type Series = (String, Vec<Point>);

/// Recall@10 against p50 latency (log scale): one line per series of (label, ms, recall)
/// points, each point labelled; `extra` points (a peer) drawn as crosses.
pub fn recall_latency(path: &str, title: &str, series: &[Series], extra: &[Point]) -> Result<(), String> {
    let all = series.iter().flat_map(|s| s.1.iter()).chain(extra);
    let (xmin, xmax) = all.clone().fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let ymin = all.fold(1f64, |a, p| a.min(p.2));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(fail)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d(((xmin / 1.5).max(1e-3)..xmax * 1.5).log_scale(), (ymin - 0.05).max(0.0)..1.02)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_desc("p50 latency per query, ms (log scale)")
        .y_desc("recall@10 against exact MaxSim")
        .x_labels(6)
        .x_label_formatter(&|x| if *x >= 10.0 { format!("{x:.0}") } else { format!("{x:.1}") })
        .light_line_style(WHITE)
        .draw()
        .map_err(fail)?;
    let palette =
        [RGBColor(31, 119, 180), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];
    for (k, (name, pts)) in series.iter().enumerate() {
        let c = palette[k % palette.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| (p.1, p.2)), c.stroke_width(2)))
            .map_err(fail)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new((p.1, p.2), 3, c.filled()))).map_err(fail)?;
        chart
            .draw_series(pts.iter().map(|p| Text::new(p.0.clone(), (p.1, p.2), ("sans-serif", 11))))
            .map_err(fail)?;
    }
    if !extra.is_empty() {
        chart
            .draw_series(extra.iter().map(|p| Cross::new((p.1, p.2), 6, RED.stroke_width(2))))
            .map_err(fail)?
            .label("next-plaid")
            .legend(|(x, y)| Cross::new((x + 6, y), 4, RED.stroke_width(2)));
        chart
            .draw_series(extra.iter().map(|p| Text::new(p.0.clone(), (p.1, p.2), ("sans-serif", 11))))
            .map_err(fail)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(fail)?;
    root.present().map_err(fail)
}
