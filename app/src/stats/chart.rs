//! A small server-rendered SVG line chart: series of (label, value) in, an SVG string
//! out, every text escaped. Generic on purpose (the reading statistics use it; an admin
//! page can chart its jobs with it too).
//!
//! Readable without JavaScript and by screen readers: `role="img"` labelled by the
//! chart's `<title>` and `<desc>` (the caller's summary in words), axes with tick labels,
//! a legend, and series told apart by dash pattern as well as colour. The page should
//! still give the numbers as a table next to it: a chart is not a table.
//! Colours come from CSS (`.chart-series-N`, `currentColor` for text), so the chart
//! follows the page's light and dark themes.

use std::fmt::Write;

use crate::xml::escape;

pub struct Series<'a> {
    pub name: &'a str,
    /// (x label, value), in x order. Every series of a chart shares the x positions of
    /// the first one's labels.
    pub points: Vec<(String, f64)>,
}

pub struct Chart<'a> {
    /// Unique on the page: the `<title>`/`<desc>` ids derive from it.
    pub id: &'a str,
    pub title: &'a str,
    pub desc: &'a str,
    pub series: Vec<Series<'a>>,
}

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;
/// X labels shown at most (the rest would overlap).
const MAX_X_LABELS: usize = 7;
const DASHES: &[&str] = &["", "6 4", "2 3", "10 3 2 3"];

/// The smallest 1, 2 or 5 × 10^k at or above `v` (1 for nothing to show).
pub fn nice_ceiling(v: f64) -> f64 {
    if !(v > 0.0) || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= v * (1.0 - 1e-9) {
            return m * mag;
        }
    }
    10.0 * mag
}

fn number(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_string() }
}

/// The chart as an `<svg>` element.
pub fn render(chart: &Chart<'_>) -> String {
    let id = escape(chart.id);
    let labels: Vec<&str> = chart.series.first().map(|s| s.points.iter().map(|(l, _)| l.as_str()).collect()).unwrap_or_default();
    let n = labels.len();
    let max = chart.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0f64, f64::max);
    let top = nice_ceiling(max);
    // Integer ticks for counts: 1, 2 → every unit; otherwise five steps.
    let steps = if top <= 5.0 && top >= 1.0 { top as usize } else { 5 };
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |i: usize| if n <= 1 { LEFT + pw / 2.0 } else { LEFT + pw * i as f64 / (n - 1) as f64 };
    let y = |v: f64| TOP + ph - ph * (v.max(0.0) / top);

    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {W} {H}" width="100%" role="img" aria-labelledby="{id}-title {id}-desc" xmlns="http://www.w3.org/2000/svg"><title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
        escape(chart.title),
        escape(chart.desc)
    );
    // Y axis: grid lines and labels.
    svg.push_str(r#"<g class="chart-axis" aria-hidden="true" fill="currentColor" font-size="12">"#);
    for k in 0..=steps {
        let v = top * k as f64 / steps as f64;
        let yy = y(v);
        let _ = write!(
            svg,
            r#"<line class="chart-grid" x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="currentColor" stroke-opacity="0.2"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            number(v)
        );
    }
    // X axis labels: the first, the last, and evenly spaced ones between.
    let every = n.div_ceil(MAX_X_LABELS).max(1);
    for (i, label) in labels.iter().enumerate() {
        // The last always; the others unless too close to the last.
        let last = i + 1 == n;
        if last || (i % every == 0 && n - 1 - i >= every / 2) {
            let _ = write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#, x(i), H - BOTTOM + 18.0, escape(label));
        }
    }
    let _ = write!(svg, r#"<line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="currentColor"/></g>"#, W - RIGHT, TOP + ph, TOP + ph);
    // The series, then the legend above the plot.
    for (s_i, s) in chart.series.iter().enumerate() {
        let dash = DASHES[s_i % DASHES.len()];
        let dash = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let points: Vec<String> = s.points.iter().enumerate().map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.1))).collect();
        let _ = write!(
            svg,
            r#"<polyline class="chart-series chart-series-{s_i}" fill="none" stroke="currentColor" stroke-width="2.5"{dash} points="{}"><title>{}</title></polyline>"#,
            points.join(" "),
            escape(s.name)
        );
        if n == 1 {
            let _ = write!(svg, r#"<circle class="chart-series-{s_i}" cx="{:.1}" cy="{:.1}" r="3" fill="currentColor"/>"#, x(0), y(s.points[0].1));
        }
        let lx = LEFT + 150.0 * s_i as f64;
        let _ = write!(
            svg,
            r#"<g class="chart-legend" aria-hidden="true"><line class="chart-series chart-series-{s_i}" x1="{lx}" x2="{}" y1="14" y2="14" stroke="currentColor" stroke-width="2.5"{dash}/><text x="{}" y="18" fill="currentColor" font-size="13">{}</text></g>"#,
            lx + 24.0,
            lx + 30.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart<'a>(series: Vec<Series<'a>>) -> Chart<'a> {
        Chart { id: "c1", title: "Views <per> day", desc: "Total: 3 & counting", series }
    }

    fn pts(values: &[f64]) -> Vec<(String, f64)> {
        values.iter().enumerate().map(|(i, v)| (format!("d{i}"), *v)).collect()
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(1.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(50.0), 50.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
        assert_eq!(nice_ceiling(f64::NAN), 1.0);
    }

    #[test]
    fn text_is_escaped_and_labelled_for_assistive_technology() {
        let svg = render(&chart(vec![Series { name: "<script>", points: pts(&[1.0, 2.0]) }]));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"<title id="c1-title">Views &lt;per&gt; day</title>"#), "{svg}");
        assert!(svg.contains(r#"<desc id="c1-desc">Total: 3 &amp; counting</desc>"#));
        assert!(svg.contains(r#"role="img" aria-labelledby="c1-title c1-desc""#));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn values_scale_to_the_plot_and_ticks_are_whole_numbers() {
        let svg = render(&chart(vec![Series { name: "a", points: pts(&[0.0, 7.0, 10.0]) }]));
        // Top of the axis is 10: the highest point sits on the plot's top edge, 0 on its bottom.
        assert!(svg.contains(&format!("{:.1},{:.1}", W - RIGHT, TOP)), "{svg}");
        assert!(svg.contains(&format!("{:.1},{:.1}", LEFT, H - BOTTOM)));
        for tick in [">0<", ">2<", ">4<", ">6<", ">8<", ">10<"] {
            assert!(svg.contains(tick), "tick {tick}");
        }
    }

    #[test]
    fn ninety_days_show_a_handful_of_x_labels_and_series_differ_by_dash() {
        let days = pts(&[1.0; 90]);
        let svg = render(&chart(vec![Series { name: "views", points: days.clone() }, Series { name: "readers", points: days }]));
        let labels = svg.matches("text-anchor=\"middle\"").count();
        assert!((2..=MAX_X_LABELS + 1).contains(&labels), "{labels} x labels");
        assert!(svg.contains(">d0<") && svg.contains(">d89<"), "first and last day labelled");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("stroke-dasharray=\"6 4\""), "the second series is dashed");
    }

    #[test]
    fn empty_and_single_point_charts_render() {
        let empty = render(&chart(vec![]));
        assert!(empty.contains("<title") && !empty.contains("<polyline"));
        let one = render(&chart(vec![Series { name: "a", points: pts(&[4.0]) }]));
        assert!(one.contains("<circle"));
    }
}
