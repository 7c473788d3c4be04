//! What a plot of a query's result needs, reduced in the engine: never millions of points.
//!
//! The caller (the kernel's `%%plot`) names a kind and columns; [`Engine::plot`] runs the query once (histograms:
//! an aggregate for the range, then the counts) and streams its batches through a bounded reduction:
//! - line, area: M4 over pixel buckets of x (first, last, lowest, highest point per bucket), which draws the same
//!   picture as every point;
//! - scatter: the points themselves up to [`RAW_POINTS`], beyond that a density grid of counts;
//! - bar: one bar per category (the first [`MAX_CATEGORIES`]), values of repeated categories summed;
//! - histogram: exact counts in `bins` equal bins over the column's range;
//! - box: exact quartiles, minimum and maximum per series (one grouped aggregate).
//!
//! Drawing is the caller's business; the engine returns coordinates as f64 (times as milliseconds since the epoch).

pub mod grid;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, StringArray};
use datafusion::arrow::compute::{cast, cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Column, DFSchema};
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::{count, max, min};
use datafusion::logical_expr::Expr;
use datafusion::prelude::lit;
use futures::StreamExt;
use grid::{Density, Grid, M4Line};
use kestrel_engine::error::{EngineError, ErrorKind};
use kestrel_engine::outcome::group_thousands;
use kestrel_engine::Engine;
use std::collections::HashMap;

/// Scatter plots draw at most this many points; more become a density grid.
pub const RAW_POINTS: usize = 10_000;
/// Bar charts show at most this many categories.
pub const MAX_CATEGORIES: usize = 100;
/// Plots show at most this many series (values of the series column times y columns).
pub const MAX_SERIES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotKind {
    Line,
    Area,
    Scatter,
    Bar,
    Histogram,
    Box,
}

impl PlotKind {
    pub const ALL: [(&'static str, PlotKind); 6] = [
        ("line", PlotKind::Line),
        ("area", PlotKind::Area),
        ("scatter", PlotKind::Scatter),
        ("bar", PlotKind::Bar),
        ("histogram", PlotKind::Histogram),
        ("box", PlotKind::Box),
    ];

    pub fn parse(name: &str) -> Option<PlotKind> {
        let name = name.to_ascii_lowercase();
        let name = match name.as_str() {
            "hist" => "histogram",
            "boxplot" => "box",
            "points" => "scatter",
            other => other,
        };
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map(|(n, _)| *n)
            .unwrap_or("plot")
    }
}

/// What to plot. Columns left out are chosen from the result: x is the first column, y every other numeric column.
#[derive(Debug, Clone)]
pub struct PlotRequest {
    pub kind: PlotKind,
    pub x: Option<String>,
    pub y: Vec<String>,
    pub series: Option<String>,
    /// Histogram bins.
    pub bins: usize,
    /// Buckets along x for line reduction (a few per pixel of the plot's width).
    pub buckets: usize,
}

/// How x is drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum XAxis {
    Number,
    /// Milliseconds since the epoch (UTC).
    Time,
    /// Bar categories, in the order they first appear.
    Categories(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// Points of a line (or the outline of an area) in x order.
    Line(Vec<(f64, f64)>),
    /// Scatter points.
    Points(Vec<(f64, f64)>),
    /// Scatter density: (x start, y start, count) of occupied cells of the given size.
    Density {
        cells: Vec<(f64, f64, u64)>,
        width: f64,
        height: f64,
    },
    /// One value per category of [`XAxis::Categories`] (NaN where the series has none).
    Bars(Vec<f64>),
    /// Counts of equal bins from `lo`, `width` wide.
    Bins {
        lo: f64,
        width: f64,
        counts: Vec<u64>,
    },
    /// The five numbers of a box (exact quartiles), at position `at` of [`XAxis::Categories`].
    Box { at: usize, stats: BoxStats },
}

/// Minimum, quartiles and maximum of a series' values, and how many there were.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxStats {
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub shape: Shape,
}

/// A reduced plot, ready to draw.
#[derive(Debug, Clone)]
pub struct PlotData {
    pub kind: PlotKind,
    pub x_label: String,
    pub y_label: String,
    pub x_axis: XAxis,
    pub series: Vec<Series>,
    /// Rows the query produced.
    pub rows: u64,
    /// Points (or bars, bins, cells) drawn.
    pub drawn: u64,
    /// How the result was reduced, when it was ("M4: 2,000,000 rows → 12,304 points").
    pub reduction: Option<String>,
    /// Series or categories beyond the limits that were left out.
    pub left_out: Vec<String>,
}

fn usage(message: impl Into<String>) -> EngineError {
    EngineError::new(ErrorKind::Plan, message)
}

/// The result's column for a name the user typed: exact, else the only case-insensitive match.
fn resolve(schema: &DFSchema, name: &str, role: &str) -> Result<usize, EngineError> {
    let fields = schema.fields();
    if let Some(i) = fields.iter().position(|f| f.name() == name) {
        return Ok(i);
    }
    let folded: Vec<usize> = (0..fields.len())
        .filter(|&i| fields[i].name().eq_ignore_ascii_case(name))
        .collect();
    if let [i] = folded[..] {
        return Ok(i);
    }
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    Err(usage(format!(
        "%%plot {role}: no column '{name}' in the query's result; its columns are: {}",
        names.join(", ")
    )))
}

fn arrow(e: datafusion::arrow::error::ArrowError) -> EngineError {
    EngineError::new(ErrorKind::Execution, e.to_string())
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric()
}

fn is_time(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
    )
}

/// Values of a numeric or time column as f64 (times in ms since the epoch); NULLs stay NULL.
fn as_f64(a: &ArrayRef) -> Result<Float64Array, EngineError> {
    let scale = match a.data_type() {
        DataType::Timestamp(unit, _) => Some(match unit {
            TimeUnit::Second => 1e3,
            TimeUnit::Millisecond => 1.0,
            TimeUnit::Microsecond => 1e-3,
            TimeUnit::Nanosecond => 1e-6,
        }),
        DataType::Date32 => Some(86_400_000.0),
        DataType::Date64 => Some(1.0),
        _ => None,
    };
    let opts = CastOptions {
        safe: true,
        ..Default::default()
    };
    let f = match scale {
        Some(scale) => {
            let ints = cast(a, &DataType::Int64).map_err(arrow)?;
            let f = cast_with_options(&ints, &DataType::Float64, &opts).map_err(arrow)?;
            let f = f
                .as_any()
                .downcast_ref::<Float64Array>()
                .cloned()
                .ok_or_else(|| usage("cannot read times as numbers"))?;
            f.unary(|v| v * scale)
        }
        None => cast_with_options(a, &DataType::Float64, &opts)
            .map_err(arrow)?
            .as_any()
            .downcast_ref::<Float64Array>()
            .cloned()
            .ok_or_else(|| usage(format!("cannot read {} as numbers", a.data_type())))?,
    };
    Ok(f)
}

fn as_text(a: &ArrayRef) -> Result<StringArray, EngineError> {
    let s = cast(a, &DataType::Utf8).map_err(arrow)?;
    s.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| usage(format!("cannot show {} as text", a.data_type())))
}

/// The columns a plot reads, as positions in the query's result.
struct Columns {
    x: Option<usize>,
    ys: Vec<usize>,
    series: Option<usize>,
}

fn choose_columns(schema: &DFSchema, req: &PlotRequest) -> Result<Columns, EngineError> {
    let fields = schema.fields();
    if fields.is_empty() {
        return Err(usage("%%plot: the query returns no columns"));
    }
    let series = req
        .series
        .as_deref()
        .map(|s| resolve(schema, s, "series"))
        .transpose()?;
    // Histograms and boxes summarise their y columns; `x=col` names the column when no y is given.
    let histogram = matches!(req.kind, PlotKind::Histogram | PlotKind::Box);
    let x = if histogram {
        None
    } else {
        Some(match &req.x {
            Some(x) => resolve(schema, x, "x")?,
            None => (0..fields.len())
                .find(|i| Some(*i) != series)
                .ok_or_else(|| usage("%%plot: the query has no column for x"))?,
        })
    };
    let mut named: Vec<String> = req.y.clone();
    if histogram && named.is_empty() {
        if let Some(x) = &req.x {
            named.push(x.clone());
        }
    }
    let ys: Vec<usize> = if named.is_empty() {
        let ys: Vec<usize> = (0..fields.len())
            .filter(|i| Some(*i) != x && Some(*i) != series)
            .filter(|i| is_numeric(fields[*i].data_type()))
            .collect();
        if ys.is_empty() {
            return Err(usage(format!(
                "%%plot {}: no numeric column to plot on y; the result has {}",
                req.kind.name(),
                describe_columns(schema)
            )));
        }
        ys
    } else {
        named
            .iter()
            .map(|y| resolve(schema, y, "y"))
            .collect::<Result<_, _>>()?
    };
    for &y in &ys {
        let f = &fields[y];
        if !(is_numeric(f.data_type()) || histogram && is_time(f.data_type())) {
            return Err(usage(format!(
                "%%plot {}: y column '{}' is {}, not numeric",
                req.kind.name(),
                f.name(),
                f.data_type()
            )));
        }
    }
    if let Some(x) = x {
        let f = &fields[x];
        let t = f.data_type();
        if req.kind != PlotKind::Bar && !is_numeric(t) && !is_time(t) {
            return Err(usage(format!(
                "%%plot {}: x column '{}' is {t}; a {} plot needs numbers or times on x (a bar chart takes \
                 categories)",
                req.kind.name(),
                f.name(),
                req.kind.name()
            )));
        }
    }
    Ok(Columns { x, ys, series })
}

fn describe_columns(schema: &DFSchema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} ({})", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Series: one per (value of the series column, y column) pair, numbered in order of appearance, at most
/// [`MAX_SERIES`] of them. Looking up a row's series costs one hash lookup of its value and no allocation.
struct SeriesKeys {
    y_names: Vec<String>,
    names: Vec<String>,
    /// The series of each y column for rows without a series column (numbered at the first such row).
    plain: Option<Vec<Option<usize>>>,
    /// The series of each y column for a value of the series column.
    by_value: HashMap<String, Vec<Option<usize>>>,
    dropped: Vec<String>,
}

impl SeriesKeys {
    fn new(y_names: &[String]) -> Self {
        Self {
            y_names: y_names.to_vec(),
            names: Vec::new(),
            plain: None,
            by_value: HashMap::new(),
            dropped: Vec::new(),
        }
    }

    fn number(&mut self, name: String) -> Option<usize> {
        if self.names.len() >= MAX_SERIES {
            if self.dropped.len() < 5 {
                self.dropped.push(name);
            }
            return None;
        }
        self.names.push(name);
        Some(self.names.len() - 1)
    }

    /// The series of each y column for a row whose series column holds `value` (`None`: no series column).
    fn of(&mut self, value: Option<&str>) -> &[Option<usize>] {
        let Some(v) = value else {
            if self.plain.is_none() {
                let ks = (0..self.y_names.len())
                    .map(|j| self.number(self.y_names[j].clone()))
                    .collect();
                self.plain = Some(ks);
            }
            return self.plain.as_deref().unwrap_or(&[]);
        };
        if !self.by_value.contains_key(v) {
            let ny = self.y_names.len();
            let ks = (0..ny)
                .map(|j| {
                    let name = if ny == 1 {
                        v.to_string()
                    } else {
                        format!("{v} · {}", self.y_names[j])
                    };
                    self.number(name)
                })
                .collect();
            self.by_value.insert(v.to_string(), ks);
        }
        self.by_value.get(v).map(|k| k.as_slice()).unwrap_or(&[])
    }

    /// The names of the series numbered so far.
    fn finish(self) -> (Vec<String>, Vec<String>) {
        let dropped = self
            .dropped
            .into_iter()
            .map(|d| format!("series {d}"))
            .collect();
        (self.names, dropped)
    }
}

/// Runs the cell's query (earlier statements first) and reduces its result for a plot.
pub async fn plot(engine: &Engine, sql: &str, req: &PlotRequest) -> Result<PlotData, EngineError> {
    let df = engine.query_frame(sql).await?;
    let schema = df.schema().clone();
    let cols = choose_columns(&schema, req)?;
    let column = |i: usize| Expr::Column(Column::from(schema.qualified_field(i)));
    let name = |i: usize| schema.field(i).name().clone();
    let y_names: Vec<String> = cols.ys.iter().map(|&i| name(i)).collect();
    let x_label = match cols.x {
        Some(x) => name(x),
        None => String::new(),
    };
    let y_label = match (req.kind, y_names.as_slice()) {
        (PlotKind::Histogram, _) => "count".to_string(),
        (_, [one]) => one.clone(),
        _ => String::new(),
    };
    let mut data = PlotData {
        kind: req.kind,
        x_label,
        y_label,
        x_axis: XAxis::Number,
        series: Vec::new(),
        rows: 0,
        drawn: 0,
        reduction: None,
        left_out: Vec::new(),
    };
    if req.kind == PlotKind::Box {
        data.y_label = y_names.join(", ");
        data.x_label = match cols.series {
            Some(s) => name(s),
            None => String::new(),
        };
        boxes(df, &cols, &column, &y_names, &mut data).await?;
        return Ok(data);
    }
    if req.kind == PlotKind::Histogram {
        data.x_label = y_names.join(", ");
        if cols
            .ys
            .iter()
            .all(|&y| is_time(schema.field(y).data_type()))
        {
            data.x_axis = XAxis::Time;
        }
        histogram(df, &cols, &column, &y_names, req, &mut data).await?;
        return Ok(data);
    }
    let x = cols.x.unwrap_or(0);
    if is_time(schema.field(x).data_type()) {
        data.x_axis = XAxis::Time;
    }
    // Only the columns the plot reads leave the scan.
    // (Aliased: the same column may be both x and y.)
    let mut exprs = vec![column(x).alias("_x")];
    exprs.extend(
        cols.ys
            .iter()
            .enumerate()
            .map(|(j, &y)| column(y).alias(format!("_y{j}"))),
    );
    if let Some(s) = cols.series {
        exprs.push(column(s).alias("_series"));
    }
    let mut stream = df.select(exprs)?.execute_stream().await?;
    let ny = cols.ys.len();
    let has_series = cols.series.is_some();
    let mut keys = SeriesKeys::new(&y_names);
    let mut reducer = Reducer::new(req);
    while let Some(batch) = stream.next().await {
        let batch: RecordBatch = batch?;
        data.rows += batch.num_rows() as u64;
        let series = if has_series {
            Some(as_text(batch.column(ny + 1))?)
        } else {
            None
        };
        let ys = (0..ny)
            .map(|j| as_f64(batch.column(j + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        // The series of this batch's rows, for each y column.
        let mut row_keys: Vec<Vec<Option<usize>>> = vec![Vec::with_capacity(batch.num_rows()); ny];
        for r in 0..batch.num_rows() {
            let value = series
                .as_ref()
                .map(|s| if s.is_null(r) { "NULL" } else { s.value(r) });
            let ks = keys.of(value);
            for (j, keys_j) in row_keys.iter_mut().enumerate() {
                keys_j.push(ks.get(j).copied().flatten());
            }
        }
        match req.kind {
            PlotKind::Bar => {
                let cats = as_text(batch.column(0))?;
                for (j, y) in ys.iter().enumerate() {
                    reducer.bars(&cats, y, &row_keys[j]);
                }
            }
            _ => {
                let xs = as_f64(batch.column(0))?;
                for (j, y) in ys.iter().enumerate() {
                    reducer.points(&xs, y, &row_keys[j]);
                }
            }
        }
    }
    let (names, left_out) = keys.finish();
    data.left_out = left_out;
    reducer.finish(names, &mut data);
    Ok(data)
}

/// The streaming part of [`Engine::plot`] for every kind but histograms.
struct Reducer {
    kind: PlotKind,
    buckets: usize,
    lines: Vec<M4Line>,
    /// Scatter: raw points per series until there are too many, then densities.
    raw: Vec<Vec<(f64, f64)>>,
    raw_total: usize,
    density: Option<Vec<Density>>,
    categories: Vec<String>,
    category_index: HashMap<String, usize>,
    categories_dropped: u64,
    /// Bars: per series, per category (NaN until set).
    bars: Vec<Vec<f64>>,
    summed: bool,
}

impl Reducer {
    fn new(req: &PlotRequest) -> Self {
        Self {
            kind: req.kind,
            buckets: req.buckets.max(16),
            lines: Vec::new(),
            raw: Vec::new(),
            raw_total: 0,
            density: None,
            categories: Vec::new(),
            category_index: HashMap::new(),
            categories_dropped: 0,
            bars: Vec::new(),
            summed: false,
        }
    }

    fn points(&mut self, xs: &Float64Array, ys: &Float64Array, keys: &[Option<usize>]) {
        // The batch's x range is the first guess of a line's range.
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for x in xs.iter().flatten().filter(|x| x.is_finite()) {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        for (r, key) in keys.iter().enumerate() {
            let Some(k) = *key else { continue };
            if xs.is_null(r) || !xs.value(r).is_finite() {
                continue;
            }
            let x = xs.value(r);
            if ys.is_null(r) || !ys.value(r).is_finite() {
                // A NULL breaks a line (a scatter just has no point there).
                if self.kind != PlotKind::Scatter {
                    self.line(k).add_gap(x, lo, hi);
                }
                continue;
            }
            let y = ys.value(r);
            match self.kind {
                PlotKind::Scatter => self.scatter(k, x, y),
                _ => self.line(k).add(x, y, lo, hi),
            }
        }
    }

    fn line(&mut self, k: usize) -> &mut M4Line {
        while self.lines.len() <= k {
            self.lines.push(M4Line::new(self.buckets));
        }
        &mut self.lines[k]
    }

    fn scatter(&mut self, k: usize, x: f64, y: f64) {
        if let Some(d) = &mut self.density {
            while d.len() <= k {
                d.push(Density::new(d[0].x, d[0].y));
            }
            d[k].add(x, y);
            return;
        }
        while self.raw.len() <= k {
            self.raw.push(Vec::new());
        }
        self.raw[k].push((x, y));
        self.raw_total += 1;
        if self.raw_total > RAW_POINTS {
            // Too many to draw one by one: count them in grids fitted to the points so far.
            let all = self.raw.iter().flatten();
            let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
            for &(x, y) in all {
                x0 = x0.min(x);
                x1 = x1.max(x);
                y0 = y0.min(y);
                y1 = y1.max(y);
            }
            let (gx, gy) = (Grid::fitted(x0, x1, 128), Grid::fitted(y0, y1, 80));
            let mut grids = Vec::new();
            for pts in self.raw.drain(..) {
                let mut d = Density::new(gx, gy);
                for (x, y) in pts {
                    d.add(x, y);
                }
                grids.push(d);
            }
            self.density = Some(grids);
        }
    }

    fn bars(&mut self, cats: &StringArray, ys: &Float64Array, keys: &[Option<usize>]) {
        for (r, key) in keys.iter().enumerate() {
            let Some(k) = *key else { continue };
            let cat = if cats.is_null(r) {
                "NULL"
            } else {
                cats.value(r)
            };
            let c = match self.category_index.get(cat) {
                Some(c) => *c,
                None if self.categories.len() < MAX_CATEGORIES => {
                    self.category_index
                        .insert(cat.to_string(), self.categories.len());
                    self.categories.push(cat.to_string());
                    self.categories.len() - 1
                }
                None => {
                    self.categories_dropped += 1;
                    continue;
                }
            };
            while self.bars.len() <= k {
                self.bars.push(Vec::new());
            }
            let bars = &mut self.bars[k];
            if bars.len() <= c {
                bars.resize(c + 1, f64::NAN);
            }
            if ys.is_null(r) {
                continue;
            }
            let v = ys.value(r);
            if bars[c].is_nan() {
                bars[c] = v;
            } else {
                bars[c] += v;
                self.summed = true;
            }
        }
    }

    fn finish(self, names: Vec<String>, data: &mut PlotData) {
        let rows = group_thousands(data.rows);
        match self.kind {
            PlotKind::Bar => {
                let n = self.categories.len();
                for (k, mut values) in self.bars.into_iter().enumerate() {
                    values.resize(n, f64::NAN);
                    data.drawn += values.iter().filter(|v| !v.is_nan()).count() as u64;
                    data.series.push(Series {
                        name: names.get(k).cloned().unwrap_or_default(),
                        shape: Shape::Bars(values),
                    });
                }
                if self.categories_dropped > 0 {
                    data.left_out.push(format!(
                        "{} rows beyond the first {MAX_CATEGORIES} categories",
                        group_thousands(self.categories_dropped)
                    ));
                }
                if self.summed {
                    data.reduction = Some("values of repeated categories are summed".into());
                }
                data.x_axis = XAxis::Categories(self.categories);
            }
            PlotKind::Scatter => match self.density {
                Some(grids) => {
                    for (k, d) in grids.into_iter().enumerate() {
                        let cells = d.cells();
                        data.drawn += cells.len() as u64;
                        data.series.push(Series {
                            name: names.get(k).cloned().unwrap_or_default(),
                            shape: Shape::Density {
                                cells,
                                width: d.x.width,
                                height: d.y.width,
                            },
                        });
                    }
                    data.reduction = Some(format!(
                        "density: {rows} rows → {} occupied cells",
                        group_thousands(data.drawn)
                    ));
                }
                None => {
                    for (k, pts) in self.raw.into_iter().enumerate() {
                        data.drawn += pts.len() as u64;
                        data.series.push(Series {
                            name: names.get(k).cloned().unwrap_or_default(),
                            shape: Shape::Points(pts),
                        });
                    }
                }
            },
            _ => {
                let mut counted = 0;
                for (k, line) in self.lines.into_iter().enumerate() {
                    counted += line.count;
                    let points = line.points();
                    data.drawn += points.iter().filter(|p| !p.0.is_nan()).count() as u64;
                    data.series.push(Series {
                        name: names.get(k).cloned().unwrap_or_default(),
                        shape: Shape::Line(points),
                    });
                }
                if counted > data.drawn {
                    data.reduction = Some(format!(
                        "M4: {} points → {}",
                        group_thousands(counted),
                        group_thousands(data.drawn)
                    ));
                }
            }
        }
    }
}

/// Exact box statistics: one aggregate, grouped by the series column when there is one.
async fn boxes(
    df: DataFrame,
    cols: &Columns,
    column: &(dyn Fn(usize) -> Expr + Send + Sync),
    y_names: &[String],
    data: &mut PlotData,
) -> Result<(), EngineError> {
    use datafusion::functions_aggregate::expr_fn::percentile_cont;
    use datafusion::logical_expr::{cast, SortExpr};
    let mut aggs = vec![count(lit(1i64)).alias("_rows")];
    for (j, &y) in cols.ys.iter().enumerate() {
        let v = cast(column(y), DataType::Float64);
        let quartile = |q: f64, name: &str| {
            percentile_cont(SortExpr::new(v.clone(), true, false), lit(q))
                .alias(format!("_{name}{j}"))
        };
        aggs.extend([
            min(v.clone()).alias(format!("_min{j}")),
            quartile(0.25, "q1"),
            quartile(0.5, "median"),
            quartile(0.75, "q3"),
            max(v.clone()).alias(format!("_max{j}")),
            count(v.clone()).alias(format!("_n{j}")),
        ]);
    }
    let group: Vec<Expr> = cols
        .series
        .map(|s| vec![column(s).alias("_series")])
        .unwrap_or_default();
    let grouped = !group.is_empty();
    let mut df = df.aggregate(group, aggs)?;
    if grouped {
        df = df.sort(vec![SortExpr::new(
            Expr::Column(Column::new_unqualified("_series")),
            true,
            true,
        )])?;
    }
    let batches = df.collect().await?;
    let mut keys = SeriesKeys::new(y_names);
    let mut found: Vec<Option<BoxStats>> = Vec::new();
    for b in &batches {
        let series = match b.schema().index_of("_series") {
            Ok(i) => Some(as_text(b.column(i))?),
            Err(_) => None,
        };
        let value = |name: &str, r: usize| -> Result<Option<f64>, EngineError> {
            let Ok(i) = b.schema().index_of(name) else {
                return Ok(None);
            };
            let v = as_f64(b.column(i))?;
            Ok((!v.is_null(r)).then(|| v.value(r)))
        };
        for r in 0..b.num_rows() {
            data.rows += value("_rows", r)?.unwrap_or(0.0) as u64;
            let label = series
                .as_ref()
                .map(|s| if s.is_null(r) { "NULL" } else { s.value(r) });
            let ks = keys.of(label).to_vec();
            for j in 0..y_names.len() {
                let (Some(k), Some(n)) =
                    (ks.get(j).copied().flatten(), value(&format!("_n{j}"), r)?)
                else {
                    continue;
                };
                let get =
                    |name: &str| value(&format!("_{name}{j}"), r).map(|v| v.unwrap_or(f64::NAN));
                if n == 0.0 {
                    continue;
                }
                let stats = BoxStats {
                    min: get("min")?,
                    q1: get("q1")?,
                    median: get("median")?,
                    q3: get("q3")?,
                    max: get("max")?,
                    count: n as u64,
                };
                while found.len() <= k {
                    found.push(None);
                }
                found[k] = Some(stats);
            }
        }
    }
    let (labels, left_out) = keys.finish();
    let mut categories = Vec::new();
    for (k, stats) in found.into_iter().enumerate() {
        let Some(stats) = stats else { continue };
        let name = labels.get(k).cloned().unwrap_or_default();
        data.series.push(Series {
            name: name.clone(),
            shape: Shape::Box {
                at: categories.len(),
                stats,
            },
        });
        categories.push(name);
    }
    data.drawn = data.series.len() as u64;
    data.x_axis = XAxis::Categories(categories);
    data.left_out = left_out;
    data.reduction = Some("exact quartiles; whiskers at the minimum and maximum".into());
    Ok(())
}

/// Exact histogram: the range of the binned columns first (one aggregate), then the counts (one pass).
async fn histogram(
    df: DataFrame,
    cols: &Columns,
    column: &(dyn Fn(usize) -> Expr + Send + Sync),
    y_names: &[String],
    req: &PlotRequest,
    data: &mut PlotData,
) -> Result<(), EngineError> {
    let bins = req.bins.clamp(1, 10_000);
    let mut aggs = vec![count(lit(1i64))];
    for &y in &cols.ys {
        aggs.push(min(column(y)));
        aggs.push(max(column(y)));
    }
    let ranges = df.clone().aggregate(vec![], aggs)?.collect().await?;
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    if let Some(b) = ranges.first().filter(|b| b.num_rows() == 1) {
        for c in 1..b.num_columns() {
            let v = as_f64(b.column(c))?;
            if !v.is_null(0) && v.value(0).is_finite() {
                lo = lo.min(v.value(0));
                hi = hi.max(v.value(0));
            }
        }
    }
    let ny = cols.ys.len();
    let mut keys = SeriesKeys::new(y_names);
    let mut counts: Vec<Vec<u64>> = Vec::new();
    let width = if hi > lo {
        (hi - lo) / bins as f64
    } else {
        1.0
    };
    let mut exprs: Vec<Expr> = cols
        .ys
        .iter()
        .enumerate()
        .map(|(j, &y)| column(y).alias(format!("_y{j}")))
        .collect();
    if let Some(s) = cols.series {
        exprs.push(column(s).alias("_series"));
    }
    let mut stream = df.select(exprs)?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        data.rows += batch.num_rows() as u64;
        let series = match cols.series {
            Some(_) => Some(as_text(batch.column(ny))?),
            None => None,
        };
        let values = (0..ny)
            .map(|j| as_f64(batch.column(j)))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..batch.num_rows() {
            let value = series
                .as_ref()
                .map(|s| if s.is_null(r) { "NULL" } else { s.value(r) });
            let ks = keys.of(value);
            for (j, v) in values.iter().enumerate() {
                let Some(k) = ks.get(j).copied().flatten() else {
                    continue;
                };
                if v.is_null(r) || !v.value(r).is_finite() {
                    continue;
                }
                while counts.len() <= k {
                    counts.push(vec![0; bins]);
                }
                let b = (((v.value(r) - lo) / width) as usize).min(bins - 1);
                counts[k][b] += 1;
            }
        }
    }
    let (names, left_out) = keys.finish();
    for (k, counts) in counts.into_iter().enumerate() {
        data.drawn += counts.iter().filter(|c| **c > 0).count() as u64;
        data.series.push(Series {
            name: names.get(k).cloned().unwrap_or_default(),
            shape: Shape::Bins {
                lo: if lo.is_finite() { lo } else { 0.0 },
                width,
                counts,
            },
        });
    }
    data.left_out = left_out;
    data.reduction = Some(format!(
        "{bins} bins over {} rows",
        group_thousands(data.rows)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: PlotKind) -> PlotRequest {
        PlotRequest {
            kind,
            x: None,
            y: Vec::new(),
            series: None,
            bins: 10,
            buckets: 64,
        }
    }

    async fn plot(sql: &str, req: PlotRequest) -> Result<PlotData, EngineError> {
        super::plot(&Engine::new(), sql, &req).await
    }

    #[tokio::test]
    async fn lines_are_reduced_per_series_and_keep_every_extreme() {
        let sql =
            "SELECT value AS x, CASE WHEN value % 2 = 0 THEN 'even' ELSE 'odd' END AS parity, \
                   sin(value / 100.0) AS y, value % 7 AS z FROM generate_series(1, 100000)";
        let mut req = request(PlotKind::Line);
        req.series = Some("parity".into());
        req.y = vec!["y".into(), "Z".into()];
        let d = plot(sql, req).await.unwrap();
        assert_eq!(d.rows, 100_000);
        let names: Vec<&str> = d.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["odd · y", "odd · z", "even · y", "even · z"]);
        for s in &d.series {
            let Shape::Line(p) = &s.shape else {
                panic!("{s:?}")
            };
            assert!(p.len() <= 4 * 64 && p.windows(2).all(|w| w[0].0 <= w[1].0));
            if s.name.ends_with('z') {
                let max = p.iter().map(|p| p.1).fold(f64::MIN, f64::max);
                assert_eq!(max, 6.0);
            }
        }
        assert!(d
            .reduction
            .as_deref()
            .unwrap()
            .starts_with("M4: 200,000 points → "));
        assert_eq!(d.x_axis, XAxis::Number);
    }

    #[tokio::test]
    async fn default_columns_and_times() {
        let sql = "SELECT to_timestamp(v * 60) AS t, 'a' AS label, v * 1.5 AS y FROM (VALUES (1), (2), (3)) AS s(v)";
        let d = plot(sql, request(PlotKind::Line)).await.unwrap();
        assert_eq!(d.x_axis, XAxis::Time);
        assert_eq!(d.x_label, "t");
        assert_eq!(d.y_label, "y");
        assert_eq!(
            d.series,
            vec![Series {
                name: "y".into(),
                shape: Shape::Line(vec![(60_000.0, 1.5), (120_000.0, 3.0), (180_000.0, 4.5)])
            }]
        );
        assert!(d.reduction.is_none());
    }

    #[tokio::test]
    async fn bars_sum_repeated_categories_and_keep_their_order() {
        let sql = "SELECT * FROM (VALUES ('b', 1.0, 's'), ('a', 2.0, 's'), ('b', 3.0, 's'), ('a', 5.0, 't')) \
                   AS v(cat, n, grp)";
        let mut req = request(PlotKind::Bar);
        req.series = Some("grp".into());
        let d = plot(sql, req).await.unwrap();
        assert_eq!(d.x_axis, XAxis::Categories(vec!["b".into(), "a".into()]));
        assert_eq!(d.series[0].shape, Shape::Bars(vec![4.0, 2.0]));
        let Shape::Bars(t) = &d.series[1].shape else {
            panic!()
        };
        assert!(t[0].is_nan() && t[1] == 5.0);
        assert_eq!(d.drawn, 3);
        assert_eq!(
            d.reduction.as_deref(),
            Some("values of repeated categories are summed")
        );
    }

    #[tokio::test]
    async fn histograms_count_every_value_exactly_once() {
        let sql = "SELECT value AS v, CAST(NULL AS DOUBLE) AS nothing FROM generate_series(0, 999)";
        let mut req = request(PlotKind::Histogram);
        req.y = vec!["v".into()];
        let d = plot(sql, req).await.unwrap();
        let Shape::Bins { lo, width, counts } = &d.series[0].shape else {
            panic!()
        };
        assert_eq!((*lo, *width), (0.0, 99.9));
        assert_eq!(counts, &vec![100; 10]);
        assert_eq!(d.x_label, "v");
        // x= names the column to bin when y is not given; a column of NULLs draws nothing
        let mut req = request(PlotKind::Histogram);
        req.x = Some("nothing".into());
        let d = plot(sql, req).await.unwrap();
        assert!(matches!(
            &d.series[..],
            [] | [Series {
                shape: Shape::Bins { .. },
                ..
            }]
        ));
    }

    #[tokio::test]
    async fn boxes_have_exact_quartiles_per_series() {
        let sql = "SELECT CASE WHEN value <= 100 THEN 'low' ELSE 'high' END AS grp, value AS v \
                   FROM generate_series(1, 300)";
        let mut req = request(PlotKind::Box);
        req.y = vec!["v".into()];
        req.series = Some("grp".into());
        let d = plot(sql, req).await.unwrap();
        assert_eq!(d.rows, 300);
        assert_eq!(
            d.x_axis,
            XAxis::Categories(vec!["high".into(), "low".into()])
        );
        assert_eq!(
            d.series[1].shape,
            Shape::Box {
                at: 1,
                stats: BoxStats {
                    min: 1.0,
                    q1: 25.75,
                    median: 50.5,
                    q3: 75.25,
                    max: 100.0,
                    count: 100
                }
            }
        );
        assert!(matches!(d.series[0].shape, Shape::Box { at: 0, stats } if stats.median == 200.5));
    }

    #[tokio::test]
    async fn scatter_switches_to_density_past_the_raw_limit() {
        let few = "SELECT value AS a, value * 2 AS b FROM generate_series(1, 100)";
        let d = plot(few, request(PlotKind::Scatter)).await.unwrap();
        assert!(matches!(&d.series[0].shape, Shape::Points(p) if p.len() == 100));
        let many = "SELECT value AS a, (value * 31) % 101 AS b FROM generate_series(1, 50000)";
        let d = plot(many, request(PlotKind::Scatter)).await.unwrap();
        let Shape::Density { cells, .. } = &d.series[0].shape else {
            panic!()
        };
        assert_eq!(cells.iter().map(|c| c.2).sum::<u64>(), 50_000);
        assert!(cells.len() <= 128 * 80);
    }

    #[tokio::test]
    async fn mistakes_are_named() {
        let sql = "SELECT 'x' AS name, 1 AS n";
        let err = |req: PlotRequest| async move { plot(sql, req).await.unwrap_err().message };
        let mut r = request(PlotKind::Line);
        r.x = Some("nope".into());
        assert_eq!(
            err(r).await,
            "%%plot x: no column 'nope' in the query's result; its columns are: name, n"
        );
        let mut r = request(PlotKind::Bar);
        r.y = vec!["name".into()];
        assert_eq!(
            err(r).await,
            "%%plot bar: y column 'name' is Utf8, not numeric"
        );
        let r = request(PlotKind::Line);
        assert!(err(r)
            .await
            .starts_with("%%plot line: x column 'name' is Utf8"));
        let mut r = request(PlotKind::Line);
        r.x = Some("n".into());
        assert!(err(r)
            .await
            .starts_with("%%plot line: no numeric column to plot on y"));
        let e = super::plot(
            &Engine::new(),
            "CREATE TABLE t AS SELECT 1",
            &request(PlotKind::Line),
        )
        .await
        .unwrap_err();
        assert!(e.message.contains("not a command"), "{}", e.message);
    }
}
