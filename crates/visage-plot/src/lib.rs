//! The charts people in biometrics read, as SVG: DET curves on log-log axes (as NIST's FRVT
//! reports draw them) and genuine/impostor score histograms with the decision threshold.
//! Pure drawing: the caller computes the rates.

use std::error::Error as StdError;

use plotters::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("drawing the chart failed: {0}")]
pub struct PlotError(String);

/// One DET curve: `(x, y)` error-rate pairs, e.g. (FAR, FRR) or (APCER, BPCER), in any order.
pub struct Curve {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A highlighted operating point, e.g. the configured threshold.
pub struct Marker {
    pub label: String,
    pub x: f64,
    pub y: f64,
}

pub struct DetChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub curves: &'a [Curve],
    pub markers: &'a [Marker],
    /// The smallest rates the data can show (e.g. 1 / impostor count); zero rates are drawn
    /// here, since a log axis has no zero.
    pub x_floor: f64,
    pub y_floor: f64,
}

const SIZE: (u32, u32) = (760, 580);
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];
const THRESHOLD_COLOUR: RGBColor = RGBColor(214, 39, 40);

/// A rate as a percentage with the precision a log axis needs ("0.01%", "2%", "50%").
pub fn percent_label(rate: f64) -> String {
    let percent = rate * 100.0;
    if percent <= 0.0 || !percent.is_finite() {
        format!("{percent}%")
    } else if percent >= 1.0 {
        format!("{percent:.0}%")
    } else {
        let decimals = (-percent.log10()).ceil().max(1.0) as usize;
        format!("{percent:.decimals$}%")
    }
}

/// Lower edge of a log axis: the power of ten at or below `floor`, at least 1e-6.
fn axis_floor(floor: f64) -> f64 {
    let floor = if floor.is_finite() && floor > 0.0 { floor.min(0.1) } else { 1e-4 };
    10f64.powf(floor.log10().floor()).max(1e-6)
}

/// Clamps to the drawable range and drops points closer than 1/200 of a decade to the last
/// one kept: a curve of 100,000 thresholds becomes a few hundred vertices that look the same.
pub fn thin_log_curve(points: &[(f64, f64)], x_floor: f64, y_floor: f64) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> =
        points.iter().map(|&(x, y)| (x.clamp(x_floor, 1.0), y.clamp(y_floor, 1.0))).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
    let mut kept: Vec<(f64, f64)> = Vec::new();
    for (i, &p) in sorted.iter().enumerate() {
        let last = i + 1 == sorted.len();
        let far_enough = kept.last().is_none_or(|&(kx, ky)| {
            (p.0.log10() - kx.log10()).abs() > 0.005 || (p.1.log10() - ky.log10()).abs() > 0.005
        });
        if far_enough || last {
            kept.push(p);
        }
    }
    kept
}

/// Title, margins and axis label room shared by every chart.
fn chart_builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder.caption(title, ("sans-serif", 20)).margin(18).x_label_area_size(50).y_label_area_size(70);
    builder
}

/// A DET chart as an SVG document.
pub fn det_svg(chart: &DetChart) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw_det(chart, &mut svg).map_err(|e| PlotError(e.to_string()))?;
    Ok(svg)
}

fn draw_det(chart: &DetChart, svg: &mut String) -> Result<(), Box<dyn StdError>> {
    let (x_floor, y_floor) = (axis_floor(chart.x_floor), axis_floor(chart.y_floor));
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut plot = chart_builder(&root, chart.title)
        // A hair below the floor so that the floor's own tick survives rounding.
        .build_cartesian_2d((x_floor * 0.999..1.0).log_scale(), (y_floor * 0.999..1.0).log_scale())?;
    plot.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .x_label_formatter(&|v| percent_label(*v))
        .y_label_formatter(&|v| percent_label(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (curve, colour) in chart.curves.iter().zip(COLOURS.iter().cycle()) {
        let colour = *colour;
        plot.draw_series(LineSeries::new(
            thin_log_curve(&curve.points, x_floor, y_floor),
            colour.stroke_width(2),
        ))?
        .label(curve.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(2)));
    }
    for marker in chart.markers {
        let at = (marker.x.clamp(x_floor, 1.0), marker.y.clamp(y_floor, 1.0));
        plot.draw_series(std::iter::once(Circle::new(at, 5, THRESHOLD_COLOUR.filled())))?
            .label(marker.label.as_str())
            .legend(|(x, y)| Circle::new((x + 11, y), 5, THRESHOLD_COLOUR.filled()));
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Two (or more) score distributions on one axis, each normalised to its own count so that
/// 1,000 genuine and 100,000 impostor scores are comparable.
pub struct HistogramChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub groups: &'a [(String, Vec<f64>)],
    /// Drawn as a vertical line with its label.
    pub threshold: Option<(String, f64)>,
    pub range: (f64, f64),
    pub bins: usize,
}

/// Share of `scores` in each of `bins` equal bins over `range`; scores outside go to the
/// nearest end bin, so every score is counted.
pub fn bin_shares(scores: &[f64], range: (f64, f64), bins: usize) -> Vec<f64> {
    let bins = bins.max(1);
    let mut counts = vec![0usize; bins];
    let width = (range.1 - range.0) / bins as f64;
    for &s in scores.iter().filter(|s| s.is_finite()) {
        let i = ((s - range.0) / width).floor().clamp(0.0, (bins - 1) as f64) as usize;
        counts[i] += 1;
    }
    let total = counts.iter().sum::<usize>().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / total).collect()
}

/// A score histogram as an SVG document.
pub fn histogram_svg(chart: &HistogramChart) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw_histogram(chart, &mut svg).map_err(|e| PlotError(e.to_string()))?;
    Ok(svg)
}

fn draw_histogram(chart: &HistogramChart, svg: &mut String) -> Result<(), Box<dyn StdError>> {
    let (lo, hi) = chart.range;
    let bins = chart.bins.max(1);
    let width = (hi - lo) / bins as f64;
    let shares: Vec<Vec<f64>> =
        chart.groups.iter().map(|(_, scores)| bin_shares(scores, chart.range, bins)).collect();
    let top = shares.iter().flatten().copied().fold(0.0, f64::max).max(1e-3) * 1.1;

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut plot = chart_builder(&root, chart.title).build_cartesian_2d(lo..hi, 0.0..top)?;
    plot.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc("share of comparisons")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .y_label_formatter(&|v| percent_label(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (((name, _), shares), colour) in chart.groups.iter().zip(&shares).zip(COLOURS.iter().cycle()) {
        let colour = *colour;
        let bars = shares.iter().enumerate().filter(|(_, s)| **s > 0.0).map(move |(i, &s)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, s)], colour.mix(0.4).filled())
        });
        plot.draw_series(bars)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.mix(0.4).filled()));
    }
    if let Some((label, t)) = &chart.threshold {
        plot.draw_series(LineSeries::new([(*t, 0.0), (*t, top)], THRESHOLD_COLOUR.stroke_width(2)))?
            .label(label.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], THRESHOLD_COLOUR.stroke_width(2)));
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_labels_keep_the_digits_a_log_axis_needs() {
        assert_eq!(percent_label(0.5), "50%");
        assert_eq!(percent_label(0.01), "1%");
        assert_eq!(percent_label(0.001), "0.1%");
        assert_eq!(percent_label(1e-4), "0.01%");
    }

    #[test]
    fn bins_count_every_score_once() {
        let shares = bin_shares(&[-2.0, 0.1, 0.2, 0.55, 0.99, 1.0, 7.0], (0.0, 1.0), 2);
        // Bin 0 [0, 0.5): -2 (clamped), 0.1, 0.2; bin 1: 0.55, 0.99, 1.0, 7 (clamped).
        assert_eq!(shares, vec![3.0 / 7.0, 4.0 / 7.0]);
    }

    #[test]
    fn thinning_clamps_zero_rates_and_keeps_the_ends() {
        let points: Vec<(f64, f64)> =
            (0..=10_000).map(|i| (i as f64 / 10_000.0, 1.0 - i as f64 / 10_000.0)).collect();
        let thin = thin_log_curve(&points, 1e-4, 1e-4);
        assert!(thin.len() < 2_000, "{} points kept", thin.len());
        assert_eq!(thin.first(), Some(&(1e-4, 1.0)));
        assert_eq!(thin.last(), Some(&(1.0, 1e-4)));
        assert!(thin.iter().all(|&(x, y)| x >= 1e-4 && y >= 1e-4));
    }

    #[test]
    fn det_chart_is_an_svg_with_its_curves_and_marker() {
        let curves =
            [Curve { name: "sface".into(), points: vec![(1.0, 0.0), (0.1, 0.01), (0.001, 0.2), (0.0, 1.0)] }];
        let markers = [Marker { label: "threshold 0.35".into(), x: 0.001, y: 0.2 }];
        let svg = det_svg(&DetChart {
            title: "DET",
            x_label: "FAR",
            y_label: "FRR",
            curves: &curves,
            markers: &markers,
            x_floor: 1e-3,
            y_floor: 1e-2,
        })
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("sface") && svg.contains("threshold 0.35") && svg.contains("<polyline"));
        std::fs::write(std::env::temp_dir().join("visage-plot-det.svg"), &svg).unwrap();
        assert!(svg.contains("0.1%"), "log axis labels in percent");
    }

    #[test]
    fn histogram_chart_draws_both_groups_and_the_threshold() {
        let groups = [("genuine".to_string(), vec![0.6, 0.7, 0.8]), ("impostor".to_string(), vec![0.0, 0.1])];
        let svg = histogram_svg(&HistogramChart {
            title: "scores",
            x_label: "cosine similarity",
            groups: &groups,
            threshold: Some(("threshold 0.35".into(), 0.35)),
            range: (-0.2, 1.0),
            bins: 12,
        })
        .unwrap();
        assert!(svg.contains("genuine") && svg.contains("impostor") && svg.contains("threshold 0.35"));
        assert!(svg.matches("<rect").count() >= 5, "bars drawn");
    }
}
