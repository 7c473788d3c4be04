//! `%%plot KIND [x=col] [y=col,...] [series=col] [title='...'] [bins=n] [width=px height=px]` then a query.
//!
//! The engine reduces the result ([`kestrel_plot`]); this module parses the magic line and draws the
//! reduced data as SVG with plotters, plus a one-paragraph text/plain description of what was drawn.

use kestrel_engine::group_thousands;
use kestrel_plot::{BoxStats, PlotData, PlotKind, PlotRequest, Shape, XAxis};
use plotters::coord::Shift;
use plotters::prelude::*;

pub const DEFAULT_WIDTH: u32 = 800;
pub const DEFAULT_HEIGHT: u32 = 450;
const DEFAULT_BINS: usize = 30;

/// A parsed `%%plot` line.
#[derive(Debug, Clone)]
pub struct PlotArgs {
    pub request: PlotRequest,
    pub title: Option<String>,
    pub width: u32,
    pub height: u32,
}

const OPTIONS: &str = "x, y, series, title, bins, width, height";

fn kinds() -> String {
    PlotKind::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Splits `a=1 title='two words' y="x,y"` into words, keeping quoted text whole (quotes removed).
fn words(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in args.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            None => cur.push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("%%plot: unclosed quote {q} in the options"));
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

pub fn parse_args(args: &str) -> Result<PlotArgs, String> {
    let words = words(args)?;
    let Some((kind, options)) = words.split_first() else {
        return Err(format!(
            "%%plot needs a kind: %%plot KIND [x=col] [y=col,...] [series=col] [title='...'] [bins=n] \
             [width=px] [height=px]; kinds: {}",
            kinds()
        ));
    };
    let kind = PlotKind::parse(kind)
        .ok_or_else(|| format!("unknown plot kind '{kind}'; kinds: {}", kinds()))?;
    let mut out = PlotArgs {
        request: PlotRequest {
            kind,
            x: None,
            y: Vec::new(),
            series: None,
            bins: DEFAULT_BINS,
            buckets: 0,
        },
        title: None,
        width: DEFAULT_WIDTH,
        height: DEFAULT_HEIGHT,
    };
    for option in options {
        let Some((key, value)) = option.split_once('=') else {
            return Err(format!(
                "%%plot: '{option}' is not an option; write name=value with one of: {OPTIONS}"
            ));
        };
        let value = value.trim();
        let number = |lo: u32, hi: u32| -> Result<u32, String> {
            value
                .parse::<u32>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| {
                    format!("%%plot: {key}={value} is not a whole number from {lo} to {hi}")
                })
        };
        let column = || -> Result<String, String> {
            if value.is_empty() {
                Err(format!("%%plot: {key}= needs a column name"))
            } else {
                Ok(value.to_string())
            }
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "x" => out.request.x = Some(column()?),
            "y" => {
                out.request.y = value
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect();
                if out.request.y.is_empty() {
                    return Err("%%plot: y= needs one or more column names".into());
                }
            }
            "series" | "color" | "by" => out.request.series = Some(column()?),
            "title" => out.title = Some(value.to_string()),
            "bins" => out.request.bins = number(1, 1000)? as usize,
            "width" => out.width = number(200, 4000)?,
            "height" => out.height = number(150, 3000)?,
            other => {
                return Err(format!(
                    "%%plot: unknown option '{other}'; options: {OPTIONS}"
                ))
            }
        }
    }
    // A few buckets per pixel: M4 draws exactly what every point would.
    out.request.buckets = out.width as usize * 4;
    Ok(out)
}

/// Category10 colours.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// The title drawn when none is given.
pub fn default_title(data: &PlotData) -> String {
    match data.kind {
        PlotKind::Histogram => format!("distribution of {}", data.x_label),
        PlotKind::Box => format!("distribution of {}", data.y_label),
        _ if data.y_label.is_empty() => data.x_label.clone(),
        _ => format!("{} by {}", data.y_label, data.x_label),
    }
}

/// The drawn extent of the data: (x range, y range).
fn extent(data: &PlotData) -> ((f64, f64), (f64, f64)) {
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    let mut see = |x: f64, y: f64| {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    };
    for s in &data.series {
        match &s.shape {
            Shape::Line(p) | Shape::Points(p) => p
                .iter()
                .filter(|q| !q.0.is_nan())
                .for_each(|&(x, y)| see(x, y)),
            Shape::Density {
                cells,
                width,
                height,
            } => cells.iter().for_each(|&(x, y, _)| {
                see(x, y);
                see(x + width, y + height);
            }),
            Shape::Bars(v) => v
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .for_each(|(i, &v)| {
                    see(i as f64, v);
                    see(i as f64, 0.0);
                }),
            Shape::Bins { lo, width, counts } => {
                see(*lo, 0.0);
                for (i, &c) in counts.iter().enumerate() {
                    see(lo + width * (i + 1) as f64, c as f64);
                }
            }
            Shape::Box { at, stats } => {
                see(*at as f64, stats.min);
                see(*at as f64, stats.max);
            }
        }
    }
    if data.kind == PlotKind::Area {
        y0 = y0.min(0.0);
        y1 = y1.max(0.0);
    }
    if let XAxis::Categories(c) = &data.x_axis {
        x0 = -0.5;
        x1 = c.len().max(1) as f64 - 0.5;
    }
    let pad = |lo: f64, hi: f64, frac: f64| -> (f64, f64) {
        if !lo.is_finite() || !hi.is_finite() {
            return (0.0, 1.0);
        }
        if hi <= lo {
            let d = lo.abs().max(1.0) * 0.1;
            return (lo - d, hi + d);
        }
        let d = (hi - lo) * frac;
        (lo - d, hi + d)
    };
    let (x0, x1) = if matches!(data.x_axis, XAxis::Categories(_))
        || matches!(data.kind, PlotKind::Histogram)
    {
        pad(x0, x1, 0.0)
    } else {
        pad(x0, x1, 0.02)
    };
    let (mut y0, y1) = pad(y0, y1, 0.05);
    // Bars and bins stand on zero.
    if matches!(data.kind, PlotKind::Bar | PlotKind::Histogram) && y0 < 0.0 {
        let min_bar = data
            .series
            .iter()
            .filter_map(|s| match &s.shape {
                Shape::Bars(v) => v.iter().copied().filter(|v| v.is_finite()).reduce(f64::min),
                _ => None,
            })
            .fold(0.0, f64::min);
        if min_bar >= 0.0 {
            y0 = 0.0;
        }
    }
    ((x0, x1), (y0, y1))
}

/// Formats a time axis label (ms since the epoch, UTC) at a precision that suits the span shown.
fn time_label(ms: f64, span_ms: f64) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms.round() as i64) else {
        return String::new();
    };
    let day = 86_400_000.0;
    let format = if span_ms > 60.0 * day {
        "%Y-%m-%d"
    } else if span_ms > 2.0 * day {
        "%m-%d %H:%M"
    } else if span_ms > 120_000.0 {
        "%H:%M"
    } else if span_ms > 2_000.0 {
        "%H:%M:%S"
    } else {
        "%H:%M:%S%.3f"
    };
    t.format(format).to_string()
}

fn number_label(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v == 0.0 {
        "0".into()
    } else if !(1e-4..1e15).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 1e9 {
        trim(format!("{:.2}", v / 1e9)) + "G"
    } else if a >= 1e6 {
        trim(format!("{:.2}", v / 1e6)) + "M"
    } else if a >= 1e4 {
        trim(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 100.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.4}"))
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Draws the plot as an SVG document.
pub fn svg(data: &PlotData, args: &PlotArgs) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (args.width, args.height)).into_drawing_area();
        draw(&root, data, args).map_err(|e| format!("cannot draw the plot: {e}"))?;
        root.present()
            .map_err(|e| format!("cannot draw the plot: {e}"))?;
    }
    Ok(out)
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw(root: &DrawingArea<SVGBackend, Shift>, data: &PlotData, args: &PlotArgs) -> DrawResult {
    root.fill(&WHITE)?;
    let title = args.title.clone().unwrap_or_else(|| default_title(data));
    let ((x0, x1), (y0, y1)) = extent(data);
    let mut chart = ChartBuilder::on(root)
        .caption(&title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let span = x1 - x0;
    let categories = match &data.x_axis {
        XAxis::Categories(c) => Some(c.clone()),
        _ => None,
    };
    let x_format = |v: &f64| -> String {
        match (&data.x_axis, &categories) {
            (XAxis::Time, _) => time_label(*v, span),
            (_, Some(c)) => {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < c.len() {
                    shorten(&c[i as usize], 14)
                } else {
                    String::new()
                }
            }
            _ => number_label(*v),
        }
    };
    let y_format = |v: &f64| number_label(*v);
    let y_desc = if data.kind == PlotKind::Histogram {
        "count".to_string()
    } else {
        data.y_label.clone()
    };
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(data.x_label.as_str())
        .y_desc(y_desc.as_str())
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215));
    if let Some(c) = &categories {
        mesh.x_labels(c.len().clamp(1, 24)).disable_x_mesh();
    } else {
        mesh.x_labels(8);
    }
    mesh.draw()?;

    let n = data.series.len();
    for (k, s) in data.series.iter().enumerate() {
        let c = color(k);
        let legend =
            move |(x, y): (i32, i32)| Rectangle::new([(x, y - 4), (x + 14, y + 4)], c.filled());
        match &s.shape {
            Shape::Line(p) => {
                // NULLs broke the line into pieces (separated by NaN); the legend names the first.
                let pieces = p.split(|q| q.0.is_nan()).filter(|piece| !piece.is_empty());
                for (i, piece) in pieces.enumerate() {
                    let drawn = if data.kind == PlotKind::Area {
                        chart.draw_series(
                            AreaSeries::new(piece.iter().copied(), 0.0, c.mix(0.25))
                                .border_style(c.stroke_width(2)),
                        )?
                    } else if piece.len() == 1 {
                        chart.draw_series(std::iter::once(Circle::new(piece[0], 2, c.filled())))?
                    } else {
                        chart.draw_series(LineSeries::new(
                            piece.iter().copied(),
                            c.stroke_width(2),
                        ))?
                    };
                    if i == 0 {
                        drawn.label(&s.name).legend(legend);
                    }
                }
            }
            Shape::Points(p) => {
                chart
                    .draw_series(
                        p.iter()
                            .map(|&(x, y)| Circle::new((x, y), 2, c.mix(0.7).filled())),
                    )?
                    .label(&s.name)
                    .legend(legend);
            }
            Shape::Density {
                cells,
                width,
                height,
            } => {
                let most = cells.iter().map(|c| c.2).max().unwrap_or(1).max(2) as f64;
                chart
                    .draw_series(cells.iter().map(|&(x, y, count)| {
                        let alpha = 0.15 + 0.85 * ((count as f64).ln_1p() / most.ln_1p());
                        Rectangle::new([(x, y), (x + width, y + height)], c.mix(alpha).filled())
                    }))?
                    .label(&s.name)
                    .legend(legend);
            }
            Shape::Bars(values) => {
                let group = 0.8;
                let w = group / n as f64;
                chart
                    .draw_series(
                        values
                            .iter()
                            .enumerate()
                            .filter(|(_, v)| v.is_finite())
                            .map(|(i, &v)| {
                                let left = i as f64 - group / 2.0 + w * k as f64;
                                Rectangle::new([(left, 0.0), (left + w * 0.95, v)], c.filled())
                            }),
                    )?
                    .label(&s.name)
                    .legend(legend);
            }
            Shape::Box { at, stats } => draw_box(&mut chart, *at as f64, stats, c)?,
            Shape::Bins { lo, width, counts } => {
                let alpha = if n > 1 { 0.45 } else { 0.85 };
                chart
                    .draw_series(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(
                        |(i, &count)| {
                            let left = lo + width * i as f64;
                            Rectangle::new(
                                [(left, 0.0), (left + width, count as f64)],
                                c.mix(alpha).filled(),
                            )
                        },
                    ))?
                    .label(&s.name)
                    .legend(legend);
            }
        }
    }
    // A legend whenever there is more than one series to tell apart (boxes are named on the x axis).
    if n > 1 && data.kind != PlotKind::Box {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    Ok(())
}

/// The cell's output: the SVG and its text/plain description.
pub fn bundle(
    data: &PlotData,
    args: &PlotArgs,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let svg = svg(data, args)?;
    let mut bundle = serde_json::Map::new();
    bundle.insert("image/svg+xml".into(), serde_json::json!(svg));
    bundle.insert("text/plain".into(), serde_json::json!(describe(data, args)));
    Ok(bundle)
}

/// Writes a small grey line of text in the bottom right corner of an SVG (a watched plot's "updated ..." line).
pub fn with_footer(svg: &str, footer: &str) -> String {
    let Some(end) = svg.rfind("</svg>") else {
        return svg.to_string();
    };
    let text = footer
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "{}<text x=\"99%\" y=\"99%\" text-anchor=\"end\" font-family=\"sans-serif\" font-size=\"11\" \
         fill=\"#888\">{text}</text>\n{}",
        &svg[..end],
        &svg[end..]
    )
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A box from the first to the third quartile with the median across it, whiskers to the minimum and maximum.
fn draw_box(chart: &mut Chart, at: f64, s: &BoxStats, c: RGBColor) -> DrawResult {
    let (half, cap) = (0.25, 0.1);
    let line =
        |a: (f64, f64), b: (f64, f64), w: u32| PathElement::new(vec![a, b], c.stroke_width(w));
    chart.draw_series([
        Rectangle::new([(at - half, s.q1), (at + half, s.q3)], c.mix(0.3).filled()),
        Rectangle::new([(at - half, s.q1), (at + half, s.q3)], c.stroke_width(1)),
    ])?;
    chart.draw_series([
        line((at - half, s.median), (at + half, s.median), 3),
        line((at, s.q3), (at, s.max), 1),
        line((at, s.min), (at, s.q1), 1),
        line((at - cap, s.max), (at + cap, s.max), 1),
        line((at - cap, s.min), (at + cap, s.min), 1),
    ])?;
    Ok(())
}

/// What was drawn, for text/plain.
pub fn describe(data: &PlotData, args: &PlotArgs) -> String {
    let title = args.title.clone().unwrap_or_else(|| default_title(data));
    let mut parts = vec![format!("{} plot \"{title}\"", data.kind.name())];
    match data.kind {
        PlotKind::Histogram => parts.push(format!("of {}", data.x_label)),
        PlotKind::Box => parts.push(format!("of {}", data.y_label)),
        _ => {
            let x_kind = match &data.x_axis {
                XAxis::Time => " (time)",
                XAxis::Categories(_) => " (categories)",
                XAxis::Number => "",
            };
            parts.push(format!("x={}{x_kind}", data.x_label));
        }
    }
    let names: Vec<String> = data
        .series
        .iter()
        .map(|s| match &s.shape {
            Shape::Box { stats, .. } => format!(
                "{} (min {}, q1 {}, median {}, q3 {}, max {}, n={})",
                s.name,
                number_label(stats.min),
                number_label(stats.q1),
                number_label(stats.median),
                number_label(stats.q3),
                number_label(stats.max),
                stats.count
            ),
            _ => s.name.clone(),
        })
        .collect();
    parts.push(match names.len() {
        0 => "no data to draw".to_string(),
        1 => format!("y={}", names[0]),
        n => format!("{n} series: {}", names.join(", ")),
    });
    let mut text = parts.join(", ");
    text.push_str(&format!(
        "; {} rows, {} drawn",
        group_thousands(data.rows),
        match data.kind {
            PlotKind::Bar => format!("{} bars", group_thousands(data.drawn)),
            PlotKind::Histogram => format!("{} non-empty bins", group_thousands(data.drawn)),
            PlotKind::Box => format!("{} boxes", group_thousands(data.drawn)),
            _ => format!("{} points", group_thousands(data.drawn)),
        }
    ));
    if let Some(r) = &data.reduction {
        text.push_str(&format!(" ({r})"));
    }
    if !data.left_out.is_empty() {
        text.push_str(&format!("; left out: {}", data.left_out.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_lines_parse_with_quotes_and_defaults() {
        let a = parse_args("line x=ts y=a,b series=sensor title='Two words' width=600").unwrap();
        assert_eq!(a.request.kind, PlotKind::Line);
        assert_eq!(a.request.x.as_deref(), Some("ts"));
        assert_eq!(a.request.y, vec!["a", "b"]);
        assert_eq!(a.request.series.as_deref(), Some("sensor"));
        assert_eq!(a.title.as_deref(), Some("Two words"));
        assert_eq!((a.width, a.height), (600, DEFAULT_HEIGHT));
        assert_eq!(a.request.buckets, 2400);
        let h = parse_args("HIST bins=12 title=\"a 'quoted' title\"").unwrap();
        assert_eq!(h.request.kind, PlotKind::Histogram);
        assert_eq!(h.request.bins, 12);
        assert_eq!(h.title.as_deref(), Some("a 'quoted' title"));
    }

    #[test]
    fn bad_plot_lines_say_what_is_wrong() {
        let err = |s: &str| parse_args(s).unwrap_err();
        assert!(err("").contains("needs a kind"));
        assert!(err("pie").contains("unknown plot kind 'pie'; kinds: line, area, scatter"));
        assert!(err("line colour=red").contains("unknown option 'colour'"));
        assert!(err("line bins=0").contains("bins=0 is not a whole number from 1 to 1000"));
        assert!(err("line title='open").contains("unclosed quote"));
        assert!(err("line y=").contains("y= needs"));
        assert!(err("line ts").contains("'ts' is not an option"));
    }

    #[test]
    fn a_footer_goes_inside_the_svg() {
        let svg = with_footer("<svg a=\"1\">\n<rect/>\n</svg>\n", "updated 10:00 · a < b");
        assert!(svg.starts_with("<svg a=\"1\">\n<rect/>\n<text x=\"99%\""));
        assert!(
            svg.contains(">updated 10:00 · a &lt; b</text>\n</svg>\n"),
            "{svg}"
        );
    }

    #[test]
    fn number_labels_are_short() {
        let l = |v: f64| number_label(v);
        assert_eq!(
            [
                l(0.0),
                l(0.5),
                l(-1.25),
                l(150.0),
                l(12_000.0),
                l(1_500_000.0),
                l(2e9),
                l(1e-6)
            ],
            ["0", "0.5", "-1.25", "150", "12k", "1.5M", "2G", "1.00e-6"]
        );
    }

    #[test]
    fn time_labels_follow_the_span() {
        let t = 1_700_000_000_000.0; // 2023-11-14 22:13:20 UTC
        assert_eq!(time_label(t, 365.0 * 86_400_000.0), "2023-11-14");
        assert_eq!(time_label(t, 3.0 * 3_600_000.0), "22:13");
        assert_eq!(time_label(t, 60_000.0), "22:13:20");
    }
}
