//! The report's charts: line charts, horizontal bar charts and heatmaps, each
//! drawn once through plotters onto any backend, so the same code gives the PNG
//! and the SVG. Text goes through ab_glyph with DejaVu Sans built into the
//! binary: no system font is read.

use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// DejaVu Sans (Bitstream Vera licence, see `assets/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| anyhow!("the built-in font does not load"));
    });
    result
}

/// Series colours (Tableau 10), in order of use.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0x9c, 0x75, 0x5f),
];

/// The heatmap's full-scale colour; cells blend from white towards it.
pub const HEAT: RGBColor = RGBColor(0x1f, 0x4e, 0x8c);

/// An exponential moving average over about `window` points (the first points
/// average what precedes them), as loss curves are usually shown.
pub fn smoothed(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let alpha = 2.0 / (window.max(1) as f64 + 1.0);
    let (mut avg, mut weight) = (0.0, 0.0);
    points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(x, y)| {
            avg = (1.0 - alpha) * avg + alpha * y;
            weight = (1.0 - alpha) * weight + alpha;
            (x, avg / weight)
        })
        .collect()
}

/// One named series of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// A shaded band around the line: (x, low, high), e.g. the spread over seeds.
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A plain line.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.into(), points, band: Vec::new() }
    }
}

/// One group of a bar chart: a value per category (None: no bar).
pub struct Group {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

pub enum Chart {
    Lines {
        title: String,
        x_label: String,
        y_label: String,
        series: Vec<Series>,
        /// Vertical rules with a label at the top (stage starts).
        markers: Vec<(f64, String)>,
        log_y: bool,
    },
    /// Horizontal bars: one row per category, one bar per group within it.
    Bars {
        title: String,
        x_label: String,
        categories: Vec<String>,
        groups: Vec<Group>,
        /// The x axis ends here (1.0 for shares), else at the largest value.
        x_max: Option<f64>,
    },
    /// Counts in a grid; each row is shaded by its share of the row's total.
    Heatmap {
        title: String,
        x_label: String,
        y_label: String,
        rows: Vec<String>,
        columns: Vec<String>,
        counts: Vec<Vec<u64>>,
    },
}

impl Chart {
    /// Pixel size: bar charts and heatmaps grow with their categories.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Chart::Lines { .. } => (900, 420),
            Chart::Bars { categories, groups, .. } => {
                let row = 8 + 14 * groups.len().max(1) as u32;
                let legend = if groups.len() > 1 { 19 * groups.len() as u32 + 16 } else { 0 };
                (900, 110 + legend + row * categories.len().max(1) as u32)
            }
            Chart::Heatmap { rows, columns, .. } => {
                let cell = 26;
                (
                    (220 + cell * columns.len().max(1) as u32).max(520),
                    190 + cell * rows.len().max(1) as u32,
                )
            }
        }
    }

    pub fn title(&self) -> &str {
        match self {
            Chart::Lines { title, .. } | Chart::Bars { title, .. } | Chart::Heatmap { title, .. } => title,
        }
    }

    /// The chart as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        register_font()?;
        let (w, h) = self.size();
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| anyhow!("cannot draw {}: {e}", self.title()))?;
        }
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().context("cannot encode PNG")?;
        writer.write_image_data(&rgb).context("cannot encode PNG")?;
        writer.finish().context("cannot encode PNG")?;
        Ok(out)
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String> {
        register_font()?;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, self.size()).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(|e| anyhow!("cannot draw {}: {e}", self.title()))?;
        }
        Ok(out)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(|e| anyhow!("cannot draw {}: {e:?}", self.title()))?;
        match self {
            Chart::Lines { title, x_label, y_label, series, markers, log_y } => {
                draw_lines(root, title, x_label, y_label, series, markers, *log_y)
            }
            Chart::Bars { title, x_label, categories, groups, x_max } => draw_bars(root, title, x_label, categories, groups, *x_max),
            Chart::Heatmap { title, x_label, y_label, rows, columns, counts } => {
                draw_heatmap(root, title, x_label, y_label, rows, columns, counts)
            }
        }
    }
}

/// The error of a drawing call on `title`'s chart.
fn failed<E: std::fmt::Debug>(title: &str) -> impl Fn(E) -> anyhow::Error + Copy + '_ {
    move |e| anyhow!("cannot draw {title}: {e:?}")
}

/// Curves over optimizer steps, with a rule where each stage starts.
#[allow(clippy::too_many_arguments)]
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    markers: &[(f64, String)],
    log_y: bool,
) -> Result<()> {
    let fail = failed::<DrawingAreaErrorKind<DB::ErrorType>>(title);

        // The axis spans the 0.5th to 99.5th percentile, so a few spikes do not
        // flatten the curves; points beyond it are drawn at the edge.
        let mut ys: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite() && (!log_y || *y > 0.0))
            .collect();
        ys.sort_by(f64::total_cmp);
        let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (mut x0, mut x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let (y0, y1) = if ys.is_empty() {
            (0.1, 1.0)
        } else {
            let at = |q: f64| ys[((ys.len() - 1) as f64 * q).round() as usize];
            let (lo, hi) = (at(0.005), at(0.995));
            if hi > lo { (lo, hi) } else { (lo, lo + 1.0) }
        };
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(70);
        let style = |c: &RGBColor| ShapeStyle::from(c).stroke_width(1);
        let legend = |c: RGBColor| move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 18, y)], ShapeStyle::from(&c).stroke_width(3));
        macro_rules! body {
            ($chart:expr, $lo_:ident, $hi_:ident) => {{
                let mut chart = $chart;
                // The span the axis really shows (a log axis widens it).
                let shown = chart.y_range();
                let (lo, hi) = (shown.start.max($lo_), shown.end.min($hi_));
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .x_label_formatter(&|x| if (x1 - x0) >= 20.0 { format!("{x:.0}") } else { format!("{x}") })
                    .label_style((FAMILY, 13))
                    .max_light_lines(0)
                    .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
                    .draw()
                    .map_err(fail)?;
                for (at, label) in markers {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(*at, lo), (*at, hi)],
                            ShapeStyle::from(&RGBColor(0x99, 0x99, 0x99)).stroke_width(1),
                        )))
                        .map_err(fail)?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!(" {label}"),
                            (*at, hi),
                            (FAMILY, 12).into_font().color(&RGBColor(0x55, 0x55, 0x55)),
                        )))
                        .map_err(fail)?;
                }
                for (i, s) in series.iter().enumerate().filter(|(_, s)| !s.band.is_empty()) {
                    let color = PALETTE[i % PALETTE.len()];
                    let edge = |(x, y): (f64, f64)| (x, if y.is_finite() && (!log_y || y > 0.0) { y.clamp(lo, hi) } else { lo });
                    let outline: Vec<(f64, f64)> = s
                        .band
                        .iter()
                        .map(|&(x, low, _)| edge((x, low)))
                        .chain(s.band.iter().rev().map(|&(x, _, high)| edge((x, high))))
                        .collect();
                    chart
                        .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.18).filled())))
                        .map_err(fail)?;
                }
                for (i, s) in series.iter().enumerate() {
                    let color = PALETTE[i % PALETTE.len()];
                    let kept: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .filter(|p| p.1.is_finite() && (!log_y || p.1 > 0.0))
                        .map(|&(x, y)| (x, y.clamp(lo, hi)))
                        .collect();
                    chart
                        .draw_series(LineSeries::new(kept, style(&color)))
                        .map_err(fail)?
                        .label(s.name.as_str())
                        .legend(legend(color));
                }
                if series.len() > 1 {
                    chart
                        .configure_series_labels()
                        .position(SeriesLabelPosition::UpperRight)
                        .label_font((FAMILY, 13))
                        .background_style(WHITE.mix(0.85))
                        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
                        .draw()
                        .map_err(fail)?;
                }
            }};
        }
        if log_y {
            let (lo, hi) = (y0 * 0.8, y1 * 1.25);
            body!(builder.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(fail)?, lo, hi);
        } else {
            let pad = ((y1 - y0) * 0.05).max(1e-9);
            let lo = if y0 >= 0.0 { 0.0 } else { y0 - pad };
            let hi = y1 + pad;
            body!(builder.build_cartesian_2d(x0..x1, lo..hi).map_err(fail)?, lo, hi);
        }
    Ok(())
}

/// Horizontal bars, one band per category and a bar per group in it.
fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    categories: &[String],
    groups: &[Group],
    x_max: Option<f64>,
) -> Result<()> {
    let fail = failed::<DrawingAreaErrorKind<DB::ErrorType>>(title);

        let n = categories.len().max(1);
        let largest = groups
            .iter()
            .flat_map(|g| g.values.iter().flatten())
            .fold(0.0f64, |a, &b| a.max(b));
        // Room right of the longest bar for its value label.
        let top = x_max.unwrap_or(if largest > 0.0 { largest } else { 1.0 }) * 1.08;
        // Rows below the last category keep the legend off the bars.
        let row_px = 8.0 + 14.0 * groups.len().max(1) as f64;
        let legend_rows = if groups.len() > 1 { (groups.len() as f64 * 19.0 + 16.0) / row_px } else { 0.0 };
        let longest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(4);
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size((longest as u32 * 8 + 16).clamp(60, 320))
            .build_cartesian_2d(0.0..top, (-0.5 - legend_rows)..(n as f64 - 0.5))
            .map_err(fail)?;
        // Category i sits at y = n-1-i so the first is at the top.
        let label_of = |y: &f64| {
            let r = y.round();
            if (y - r).abs() > 1e-6 || r < 0.0 || r as usize >= n {
                return String::new();
            }
            categories.get(n - 1 - r as usize).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n + legend_rows.ceil() as usize + 1)
            .y_label_formatter(&label_of)
            .x_desc(x_label)
            .x_labels(if x_max == Some(1.0) { 11 } else { 10 })
            .x_label_formatter(&|x| if x_max.is_some() { format!("{x:.1}") } else { format!("{x:.0}") })
            .label_style((FAMILY, 13))
            .max_light_lines(0)
            .bold_line_style(RGBColor(0xe4, 0xe4, 0xe4))
            .draw()
            .map_err(fail)?;
        let k = groups.len().max(1) as f64;
        let band = 0.8 / k;
        for (g, group) in groups.iter().enumerate() {
            let color = PALETTE[g % PALETTE.len()];
            let bars = group.values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let y = (n - 1 - i) as f64 + 0.4 - band * g as f64;
                Some(Rectangle::new([(0.0, y), (v.max(0.0), y - band * 0.9)], color.filled()))
            });
            let drawn = chart.draw_series(bars).map_err(fail)?;
            if groups.len() > 1 {
                drawn.label(group.name.as_str()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled())
                });
            }
            let values = group.values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let y = (n - 1 - i) as f64 + 0.4 - band * g as f64 - band * 0.45;
                let text = if x_max.is_some_and(|m| m <= 1.0) { format!(" {v:.2}") } else { format!(" {v}") };
                Some(Text::new(
                    text,
                    (v.max(0.0), y),
                    (FAMILY, 11)
                        .into_font()
                        .color(&RGBColor(0x33, 0x33, 0x33))
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))
            });
            chart.draw_series(values).map_err(fail)?;
        }
        if groups.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font((FAMILY, 13))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(0xcc, 0xcc, 0xcc))
                .draw()
                .map_err(fail)?;
        }
    Ok(())
}

/// Counts in a grid, each cell shaded by its share of the row.
fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    rows: &[String],
    columns: &[String],
    counts: &[Vec<u64>],
) -> Result<()> {
    let fail = failed::<DrawingAreaErrorKind<DB::ErrorType>>(title);

        let (nr, nc) = (rows.len().max(1), columns.len().max(1));
        let longest = rows.iter().map(|c| c.chars().count()).max().unwrap_or(4);
        let longest_col = columns.iter().map(|c| c.chars().count()).max().unwrap_or(4);
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size((longest_col as u32 * 7 + 30).clamp(50, 160))
            .y_label_area_size((longest as u32 * 8 + 36).clamp(60, 240))
            .build_cartesian_2d(-0.5..(nc as f64 - 0.5), -0.5..(nr as f64 - 0.5))
            .map_err(fail)?;
        let y_fmt = |v: &f64| {
            let r = v.round();
            if (v - r).abs() > 1e-6 || r < 0.0 || r as usize >= nr {
                return String::new();
            }
            rows.get(nr - 1 - r as usize).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nc)
            .y_labels(nr)
            // Column names are drawn below, turned to read downwards from the axis.
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&y_fmt)
            .y_label_style((FAMILY, 12))
            .x_desc(x_label)
            .y_desc(y_label)
            .axis_desc_style((FAMILY, 14))
            .draw()
            .map_err(fail)?;
        for (j, name) in columns.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(j as f64, -0.5));
            root.draw(&Text::new(
                name.clone(),
                (px + 5, py + 8),
                (FAMILY, 12).into_font().transform(FontTransform::Rotate90),
            ))
            .map_err(fail)?;
        }
        for (i, row) in counts.iter().enumerate() {
            let total: u64 = row.iter().sum();
            let y = (nr - 1 - i) as f64;
            for (j, &c) in row.iter().enumerate() {
                let share = if total > 0 { c as f64 / total as f64 } else { 0.0 };
                let blend = |full: u8| (255.0 - (255.0 - full as f64) * share).round() as u8;
                let fill = RGBColor(blend(HEAT.0), blend(HEAT.1), blend(HEAT.2));
                let x = j as f64;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                        fill.filled(),
                    )))
                    .map_err(fail)?;
                if c > 0 {
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    chart
                        .draw_series(std::iter::once(Text::new(
                            c.to_string(),
                            (x, y),
                            (FAMILY, 11).into_font().color(&ink).pos(Pos::new(HPos::Center, VPos::Center)),
                        )))
                        .map_err(fail)?;
                }
            }
        }
    Ok(())
}
