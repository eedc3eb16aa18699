//! The report's charts as inline SVG, drawn by `plotters` (SVG backend, no font files: text is
//! left to the browser's sans-serif): the 5-week trend and visits by service.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::model::{ServiceRow, TrendWeek};

const CONSUMER: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const APPROVED: RGBColor = RGBColor(0x1e, 0x84, 0x49);
const ALL: RGBColor = RGBColor(0x2c, 0x3e, 0x50);
const BAR: RGBColor = RGBColor(0x34, 0x6d, 0xa8);

fn finish(svg: String, label: &str) -> String {
    // Scale with the page (the viewBox keeps the proportions); label it for screen readers.
    svg.replacen(
        "<svg ",
        &format!(
            "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"xMinYMin meet\" ",
            super::html::esc(label)
        ),
        1,
    )
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing a chart: {e:?}")
}

/// A line: its legend, colour and value of a week.
type Series = (&'static str, RGBColor, fn(&TrendWeek) -> u64);

/// Line chart: visits, consumer-AI visits and approved-route visits per week.
pub fn trend(weeks: &[TrendWeek]) -> Result<String, String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (680, 260)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = weeks.iter().map(|w| w.visits).max().unwrap_or(0).max(1);
        let top = max + max / 8 + 1;
        let n = weeks.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(52)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0u64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    weeks.get(*i).map(|w| w.week.clone()).unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_desc("visits")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let series: [Series; 3] = [
            ("all AI visits", ALL, |w| w.visits),
            ("consumer AI", CONSUMER, |w| w.consumer_visits),
            ("approved route", APPROVED, |w| w.approved_visits),
        ];
        for (name, colour, f) in series {
            let pts: Vec<(SegmentValue<usize>, u64)> = weeks
                .iter()
                .enumerate()
                .map(|(i, w)| (SegmentValue::CenterOf(i), f(w)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(3)))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(finish(buf, "Visits per week, last five weeks"))
}

/// Horizontal bars: visits per service (the `limit` busiest).
pub fn services(rows: &[ServiceRow], limit: usize) -> Result<String, String> {
    let rows: Vec<&ServiceRow> = rows.iter().filter(|r| r.visits > 0).take(limit).collect();
    let n = rows.len().max(1);
    let mut buf = String::new();
    {
        let h = 40 + 26 * n as u32;
        let root = SVGBackend::with_string(&mut buf, (680, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = rows.iter().map(|r| r.visits).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(190)
            .build_cartesian_2d(0u64..(max + max / 10 + 1), (0..n).into_segmented())
            .map_err(err)?;
        let names: Vec<String> = rows
            .iter()
            .map(|r| {
                let mut s: String = r.name.chars().take(28).collect();
                if r.name.chars().count() > 28 {
                    s.push('…');
                }
                s
            })
            .collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => (n - 1)
                    .checked_sub(*i)
                    .and_then(|k| names.get(k))
                    .cloned()
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("visits")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                // Busiest at the top.
                let y = n - 1 - i;
                let colour = match r.category.as_str() {
                    "approved_route" => APPROVED,
                    c if crate::report::build::is_consumer(c) => CONSUMER,
                    _ => BAR,
                };
                let mut bar = Rectangle::new(
                    [
                        (0, SegmentValue::Exact(y)),
                        (r.visits, SegmentValue::Exact(y + 1)),
                    ],
                    colour.filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(finish(buf, "Visits by service this week"))
}
