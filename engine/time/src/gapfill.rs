//! Gap filling: `time_bucket_gapfill(interval, ts)` in a GROUP BY bounded by a WHERE range on `ts`, with
//! `locf(agg)` and `interpolate(agg)` (TimescaleDB's surface; the plan follows InfluxDB 3's design).
//!
//! The analyzer rule [`GapFills`] rewrites
//! `Projection(locf(avg(x))) ← Aggregate(time_bucket_gapfill(w, ts), k; avg(x)) ← Filter(ts >= lo AND ts < hi)`
//! into `Projection(col) ← GapFill ← Aggregate(time_bucket(w, ts), k; avg(x)) ← Filter(...)`. [`GapFillExec`]
//! sorts the aggregate's (small) output by (k, bucket) and emits every bucket of [lo, hi) for every k: rows that
//! exist keep their values, new rows get NULL aggregates, and each locf/interpolate argument gets a filled column.

use super::bucket::{self, bucket_start, from_nanos, to_nanos, Width, GAPFILL};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use datafusion::arrow::compute::{cast, concat_batches, lexsort_to_indices, take, SortColumn};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    exec_err, plan_err, Column, DFSchema, DFSchemaRef, DataFusionError, Result, ScalarValue,
};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Between, BinaryExpr, ColumnarValue, Expr, Extension, Filter, LogicalPlan, Operator,
    Projection, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, UserDefinedLogicalNode,
    UserDefinedLogicalNodeCore, Volatility,
};
use datafusion::optimizer::analyzer::AnalyzerRule;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, SendableRecordBatchStream,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::StreamExt;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Most buckets one gap-filled series may have.
const MAX_BUCKETS: i64 = 10_000_000;
/// Most rows a gap-filled result may have.
const MAX_ROWS: i64 = 100_000_000;

/// How a filled column fills its gaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
pub enum Fill {
    /// last observation carried forward
    Locf,
    /// linear between the neighbouring observations
    Interpolate,
}

impl Fill {
    fn name(self) -> &'static str {
        match self {
            Fill::Locf => "locf",
            Fill::Interpolate => "interpolate",
        }
    }
}

/// `locf(agg)` / `interpolate(agg)`: markers the rule replaces; calling them elsewhere is an error.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FillFunction {
    fill: Fill,
    signature: Signature,
}

impl FillFunction {
    pub fn udfs() -> Vec<ScalarUDF> {
        [Fill::Locf, Fill::Interpolate]
            .into_iter()
            .map(|fill| {
                ScalarUDF::new_from_impl(Self {
                    fill,
                    signature: Signature::any(1, Volatility::Immutable),
                })
            })
            .collect()
    }
}

impl ScalarUDFImpl for FillFunction {
    fn name(&self) -> &str {
        self.fill.name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.fill {
            Fill::Locf => arg_types[0].clone(),
            Fill::Interpolate => DataType::Float64,
        })
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "{}(aggregate) fills gaps of a query grouped by {GAPFILL}(interval, ts); there is none here",
            self.fill.name()
        )
    }
}

/// One end of the time range, from the WHERE clause.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct Bound {
    pub expr: Expr,
    pub inclusive: bool,
}

/// The logical gap-fill node, above the aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GapFillNode {
    pub input: Arc<LogicalPlan>,
    /// the bucket column of the input
    pub time: usize,
    /// the other group columns: one series per distinct value
    pub series: Vec<usize>,
    pub width: Expr,
    pub origin: Option<Expr>,
    pub lower: Bound,
    pub upper: Bound,
    /// extra columns: (input column, fill, output name)
    pub fills: Vec<(usize, Fill, String)>,
    schema: DFSchemaRef,
}

impl PartialOrd for GapFillNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, self.time, &self.series, &self.fills).partial_cmp(&(
            &other.input,
            other.time,
            &other.series,
            &other.fills,
        ))
    }
}

impl GapFillNode {
    #[allow(clippy::too_many_arguments)]
    fn try_new(
        input: Arc<LogicalPlan>,
        time: usize,
        series: Vec<usize>,
        width: Expr,
        origin: Option<Expr>,
        lower: Bound,
        upper: Bound,
        fills: Vec<(usize, Fill, String)>,
    ) -> Result<Self> {
        let in_schema = input.schema();
        let mut fields: Vec<(Option<datafusion::common::TableReference>, Arc<Field>)> = in_schema
            .iter()
            .enumerate()
            .map(|(i, (q, f))| {
                // gap rows have no aggregates
                let nullable = f.is_nullable() || !series.contains(&i);
                (
                    q.cloned(),
                    Arc::new(f.as_ref().clone().with_nullable(nullable)),
                )
            })
            .collect();
        for (i, fill, name) in &fills {
            let t = match fill {
                Fill::Locf => in_schema.field(*i).data_type().clone(),
                Fill::Interpolate => DataType::Float64,
            };
            fields.push((None, Arc::new(Field::new(name, t, true))));
        }
        let schema = Arc::new(DFSchema::new_with_metadata(
            fields,
            in_schema.metadata().clone(),
        )?);
        Ok(Self {
            input,
            time,
            series,
            width,
            origin,
            lower,
            upper,
            fills,
            schema,
        })
    }
}

impl UserDefinedLogicalNodeCore for GapFillNode {
    fn name(&self) -> &str {
        "GapFill"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        let mut out = vec![
            self.width.clone(),
            self.lower.expr.clone(),
            self.upper.expr.clone(),
        ];
        out.extend(self.origin.clone());
        out
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let fills: Vec<String> = self.fills.iter().map(|(_, _, n)| n.clone()).collect();
        write!(
            f,
            "GapFill: bucket={}, width={}, range={}{}, {}{}, fills=[{}]",
            self.input.schema().field(self.time).name(),
            self.width,
            if self.lower.inclusive { "[" } else { "(" },
            self.lower.expr,
            self.upper.expr,
            if self.upper.inclusive { "]" } else { ")" },
            fills.join(", ")
        )
    }
    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let (Some(input), 3..=4) = (inputs.pop(), exprs.len()) else {
            return plan_err!("GapFill takes one input and 3 or 4 expressions");
        };
        Self::try_new(
            Arc::new(input),
            self.time,
            self.series.clone(),
            exprs[0].clone(),
            exprs.get(3).cloned(),
            Bound {
                expr: exprs[1].clone(),
                inclusive: self.lower.inclusive,
            },
            Bound {
                expr: exprs[2].clone(),
                inclusive: self.upper.inclusive,
            },
            self.fills.clone(),
        )
    }
}

/// Analyzer rule planning gap-filled queries.
#[derive(Debug, Default)]
pub struct GapFills;

fn contains_call(e: &Expr, names: &[&str]) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        if let Expr::ScalarFunction(f) = e {
            if names.contains(&f.name()) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn strip_casts(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_casts(&c.expr),
        Expr::TryCast(c) => strip_casts(&c.expr),
        Expr::Alias(a) => strip_casts(&a.expr),
        other => other,
    }
}

impl AnalyzerRule for GapFills {
    fn name(&self) -> &str {
        "kestrel_gap_fill"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let plan = plan
            .transform_up_with_subqueries(|plan| match plan {
                LogicalPlan::Aggregate(agg)
                    if agg.group_expr.iter().any(|e| contains_call(e, &[GAPFILL])) =>
                {
                    plan_aggregate(agg).map(Transformed::yes)
                }
                LogicalPlan::Projection(p)
                    if p.expr
                        .iter()
                        .any(|e| contains_call(e, &["locf", "interpolate"])) =>
                {
                    plan_fills(p).map(Transformed::yes)
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        // Anything left over was used where it cannot work.
        let mut stray: Option<String> = None;
        plan.apply_with_subqueries(|p| {
            p.apply_expressions(|e| {
                if contains_call(e, &["locf", "interpolate", GAPFILL]) {
                    stray = Some(e.to_string());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        if let Some(e) = stray {
            return plan_err!(
                "{e}: {GAPFILL}(interval, ts) goes in the GROUP BY of a query with a WHERE range on ts, and \
                 locf(...)/interpolate(...) wrap that query's aggregates"
            );
        }
        Ok(plan)
    }
}

/// `Aggregate(time_bucket_gapfill(...))` → `GapFill ← Aggregate(time_bucket(...))`.
fn plan_aggregate(agg: Aggregate) -> Result<LogicalPlan> {
    let mut found: Option<(usize, ScalarFunction)> = None;
    for (i, e) in agg.group_expr.iter().enumerate() {
        if let Expr::ScalarFunction(f) = strip_casts(e) {
            if f.name() == GAPFILL {
                if found.is_some() {
                    return plan_err!("{GAPFILL} can appear once in a GROUP BY");
                }
                found = Some((i, f.clone()));
                continue;
            }
        }
        if contains_call(e, &[GAPFILL]) {
            return plan_err!(
                "{GAPFILL}(interval, ts) must be a GROUP BY expression of its own, not {e}"
            );
        }
    }
    let Some((time, call)) = found else {
        return plan_err!("{GAPFILL} cannot be used in GROUPING SETS, CUBE or ROLLUP");
    };
    let (width, ts, origin) = match call.args.as_slice() {
        [w, t] => (w.clone(), t.clone(), None),
        [w, t, o] => (w.clone(), t.clone(), Some(o.clone())),
        _ => return plan_err!("{GAPFILL}(interval, ts [, origin]) takes 2 or 3 arguments"),
    };
    let (lower, upper) = time_range(&agg.input, &ts)?;
    let old_name = agg.group_expr[time].schema_name().to_string();
    let bucketed = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(bucket::TimeBucket::udf()),
        call.args.clone(),
    ))
    .alias(old_name);
    let mut group_expr = agg.group_expr.clone();
    group_expr[time] = bucketed;
    let n_groups = group_expr.len();
    let new_agg = Aggregate::try_new(agg.input.clone(), group_expr, agg.aggr_expr.clone())?;
    let series = (0..n_groups).filter(|&i| i != time).collect();
    let node = GapFillNode::try_new(
        Arc::new(LogicalPlan::Aggregate(new_agg)),
        time,
        series,
        width,
        origin,
        lower,
        upper,
        vec![],
    )?;
    Ok(LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    }))
}

/// The range on `ts` in the WHERE clauses below the aggregate.
fn time_range(input: &LogicalPlan, ts: &Expr) -> Result<(Bound, Bound)> {
    let target = strip_casts(ts);
    let mut lower: Option<Bound> = None;
    let mut upper: Option<Bound> = None;
    let mut plan = input;
    loop {
        match plan {
            LogicalPlan::Filter(Filter {
                predicate, input, ..
            }) => {
                for c in split_conjunction(predicate) {
                    collect_bound(c, target, &mut lower, &mut upper);
                }
                plan = input;
            }
            LogicalPlan::Projection(p) => plan = &p.input,
            LogicalPlan::SubqueryAlias(a) => plan = &a.input,
            LogicalPlan::TableScan(scan) => {
                for c in scan.filters.iter().flat_map(split_conjunction) {
                    collect_bound(c, target, &mut lower, &mut upper);
                }
                break;
            }
            _ => break,
        }
    }
    match (lower, upper) {
        (Some(l), Some(u)) => Ok((l, u)),
        _ => plan_err!(
            "{GAPFILL} needs the time range to fill in the WHERE clause: {target} >= start AND {target} < end \
             (or BETWEEN start AND end)"
        ),
    }
}

fn is_constant(e: &Expr) -> bool {
    e.column_refs().is_empty() && !contains_subquery(e)
}

fn contains_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|e| {
        if matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn collect_bound(c: &Expr, target: &Expr, lower: &mut Option<Bound>, upper: &mut Option<Bound>) {
    match c {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (value, op) = if strip_casts(left) == target && is_constant(right) {
                (right.as_ref(), *op)
            } else if strip_casts(right) == target && is_constant(left) {
                match op.swap() {
                    Some(op) => (left.as_ref(), op),
                    None => return,
                }
            } else {
                return;
            };
            let bound = |inclusive| Bound {
                expr: value.clone(),
                inclusive,
            };
            match op {
                Operator::GtEq => *lower = Some(bound(true)),
                Operator::Gt => *lower = Some(bound(false)),
                Operator::LtEq => *upper = Some(bound(true)),
                Operator::Lt => *upper = Some(bound(false)),
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if strip_casts(expr) == target && is_constant(low) && is_constant(high) => {
            *lower = Some(Bound {
                expr: low.as_ref().clone(),
                inclusive: true,
            });
            *upper = Some(Bound {
                expr: high.as_ref().clone(),
                inclusive: true,
            });
        }
        _ => {}
    }
}

/// A projection using locf/interpolate over a GapFill: the fills become columns of the GapFill node.
fn plan_fills(p: Projection) -> Result<LogicalPlan> {
    // Find the GapFill node under the projection (through a HAVING filter).
    let (gap, having): (&GapFillNode, Option<&Filter>) = match p.input.as_ref() {
        LogicalPlan::Extension(e) => match e.node.as_any().downcast_ref::<GapFillNode>() {
            Some(g) => (g, None),
            None => return no_gapfill(),
        },
        LogicalPlan::Filter(f) => match f.input.as_ref() {
            LogicalPlan::Extension(e) => match e.node.as_any().downcast_ref::<GapFillNode>() {
                Some(g) => (g, Some(f)),
                None => return no_gapfill(),
            },
            _ => return no_gapfill(),
        },
        _ => return no_gapfill(),
    };
    let in_schema = gap.input.schema();
    let mut fills = gap.fills.clone();
    let mut exprs = Vec::with_capacity(p.expr.len());
    for e in &p.expr {
        let name = e.schema_name().to_string();
        let rewritten = e.clone().transform_up(|e| {
            let Expr::ScalarFunction(f) = &e else {
                return Ok(Transformed::no(e));
            };
            let fill = match f.name() {
                "locf" => Fill::Locf,
                "interpolate" => Fill::Interpolate,
                _ => return Ok(Transformed::no(e)),
            };
            let Some(Expr::Column(c)) = f.args.first().map(strip_casts) else {
                return plan_err!(
                    "{}() takes an aggregate of the gap-filled query, such as {}(avg(temperature)); got {e}",
                    fill.name(),
                    fill.name()
                );
            };
            let Ok(i) = in_schema.index_of_column(c) else {
                return plan_err!("{}(): {c} is not a column of the gap-filled aggregate", fill.name());
            };
            if gap.series.contains(&i) || i == gap.time {
                return plan_err!("{}() fills aggregates, not the GROUP BY column {c}", fill.name());
            }
            if fill == Fill::Interpolate && !in_schema.field(i).data_type().is_numeric() {
                return plan_err!(
                    "interpolate() needs a numeric aggregate; {c} is {}",
                    in_schema.field(i).data_type()
                );
            }
            let out_name = e.schema_name().to_string();
            if !fills.iter().any(|(_, _, n)| *n == out_name) {
                fills.push((i, fill, out_name.clone()));
            }
            Ok(Transformed::yes(Expr::Column(Column::from_name(out_name))))
        })?;
        exprs.push(if rewritten.transformed {
            let data = rewritten.data.unalias();
            match e {
                Expr::Alias(a) => data.alias(a.name.clone()),
                _ => data.alias(name),
            }
        } else {
            rewritten.data
        });
    }
    let node = GapFillNode::try_new(
        gap.input.clone(),
        gap.time,
        gap.series.clone(),
        gap.width.clone(),
        gap.origin.clone(),
        gap.lower.clone(),
        gap.upper.clone(),
        fills,
    )?;
    let mut input = LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    });
    if let Some(f) = having {
        input = LogicalPlan::Filter(Filter::try_new(f.predicate.clone(), Arc::new(input))?);
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(input),
    )?))
}

fn no_gapfill() -> Result<LogicalPlan> {
    plan_err!("locf(...) and interpolate(...) need {GAPFILL}(interval, ts) in the query's GROUP BY")
}

/// The physical gap filler.
#[derive(Debug)]
pub struct GapFillExec {
    input: Arc<dyn ExecutionPlan>,
    time: usize,
    series: Vec<usize>,
    width: Arc<dyn PhysicalExpr>,
    origin: Option<Arc<dyn PhysicalExpr>>,
    lower: (Arc<dyn PhysicalExpr>, bool),
    upper: (Arc<dyn PhysicalExpr>, bool),
    fills: Vec<(usize, Fill)>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl GapFillExec {
    fn with_input(&self, input: Arc<dyn ExecutionPlan>) -> Self {
        Self {
            input,
            time: self.time,
            series: self.series.clone(),
            width: self.width.clone(),
            origin: self.origin.clone(),
            lower: self.lower.clone(),
            upper: self.upper.clone(),
            fills: self.fills.clone(),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        }
    }
}

impl DisplayAs for GapFillExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GapFillExec: bucket={}, width={}, range={}{}, {}{}",
            self.input.schema().field(self.time).name(),
            self.width,
            if self.lower.1 { "[" } else { "(" },
            self.lower.0,
            self.upper.0,
            if self.upper.1 { "]" } else { ")" },
        )
    }
}

impl ExecutionPlan for GapFillExec {
    fn name(&self) -> &'static str {
        "GapFillExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::SinglePartition]
    }
    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        super::visit_exprs(
            [&self.width, &self.lower.0, &self.upper.0]
                .into_iter()
                .chain(self.origin.as_ref()),
            f,
        )
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match (children.pop(), children.is_empty()) {
            (Some(c), true) => Ok(Arc::new(self.with_input(c))),
            _ => exec_err!("GapFillExec takes one child"),
        }
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return exec_err!("GapFillExec has one partition, asked for {partition}");
        }
        let me = Arc::new(self.with_input(self.input.clone()));
        let stream = futures::stream::once(async move { me.run(context).await });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// A constant expression's value.
fn constant(e: &Arc<dyn PhysicalExpr>) -> Result<ScalarValue> {
    let empty = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match e.evaluate(&empty)? {
        ColumnarValue::Scalar(s) => Ok(s),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

/// A constant time as nanoseconds since the epoch.
fn constant_nanos(e: &Arc<dyn PhysicalExpr>, what: &str) -> Result<i64> {
    let v = constant(e)?;
    if v.is_null() {
        return exec_err!("{GAPFILL}: the {what} of the time range is NULL");
    }
    let ts = v.cast_to(&DataType::Timestamp(
        datafusion::arrow::datatypes::TimeUnit::Nanosecond,
        None,
    ))?;
    match ts {
        ScalarValue::TimestampNanosecond(Some(n), _) => Ok(n),
        _ => exec_err!("{GAPFILL}: the {what} of the time range is not a time: {v}"),
    }
}

fn next_bucket(t: i64, width: Width) -> Option<i64> {
    match width {
        Width::Nanos(w) => t.checked_add(w),
        Width::Months(m) => {
            let d = chrono::DateTime::from_timestamp_nanos(t).naive_utc();
            d.checked_add_months(chrono::Months::new(m as u32))?
                .and_utc()
                .timestamp_nanos_opt()
        }
    }
}

impl GapFillExec {
    async fn run(&self, context: Arc<TaskContext>) -> Result<RecordBatch> {
        let width = match constant(&self.width)? {
            ScalarValue::IntervalMonthDayNano(Some(i)) => Width::of(GAPFILL, i)?,
            other => {
                return exec_err!("{GAPFILL}: the bucket width must be an interval, got {other}")
            }
        };
        let origin = match &self.origin {
            None => match width {
                Width::Months(_) => bucket::DEFAULT_MONTH_ORIGIN_NS,
                Width::Nanos(_) => bucket::DEFAULT_ORIGIN_NS,
            },
            Some(o) => constant_nanos(o, "origin")?,
        };
        let lo = constant_nanos(&self.lower.0, "start")?;
        let hi = constant_nanos(&self.upper.0, "end")?;
        let first = bucket_start(
            if self.lower.1 {
                lo
            } else {
                lo.saturating_add(1)
            },
            width,
            origin,
        );
        let last_time = if self.upper.1 {
            hi
        } else {
            hi.saturating_sub(1)
        };
        let last = bucket_start(last_time, width, origin);
        let (Some(first), Some(last)) = (first, last) else {
            return exec_err!("{GAPFILL}: the time range is out of bounds");
        };
        let buckets: i128 = match width {
            Width::Nanos(w) => (last as i128 - first as i128) / w as i128 + 1,
            Width::Months(m) => {
                ((last as i128 - first as i128) / (28 * 86_400_000_000_000i128)) / m as i128 + 1
            }
        };
        if buckets > MAX_BUCKETS as i128 {
            return exec_err!(
                "{GAPFILL}: the time range holds {buckets} buckets per series, more than {MAX_BUCKETS}; narrow \
                 the WHERE range or widen the buckets"
            );
        }

        // Everything the aggregate produced, sorted by (series, bucket).
        let in_schema = self.input.schema();
        let mut batches = Vec::new();
        for p in 0..self.input.output_partitioning().partition_count() {
            let mut s = self.input.execute(p, context.clone())?;
            while let Some(b) = s.next().await {
                batches.push(b?);
            }
        }
        let batch = concat_batches(&in_schema, &batches)?;
        let mut sort_columns: Vec<SortColumn> = self
            .series
            .iter()
            .map(|&i| SortColumn {
                values: batch.column(i).clone(),
                options: None,
            })
            .collect();
        sort_columns.push(SortColumn {
            values: batch.column(self.time).clone(),
            options: None,
        });
        let order = lexsort_to_indices(&sort_columns, None)?;
        let sorted: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &order, None))
            .collect::<std::result::Result<_, _>>()?;
        let times = to_nanos(&sorted[self.time])?;
        let n = times.len();

        // Walk each series, emitting every bucket of the range.
        let series_rows = if self.series.is_empty() {
            None
        } else {
            let cols: Vec<ArrayRef> = self.series.iter().map(|&i| sorted[i].clone()).collect();
            let converter = RowConverter::new(
                cols.iter()
                    .map(|c| SortField::new(c.data_type().clone()))
                    .collect(),
            )?;
            Some(converter.convert_columns(&cols)?)
        };
        let same_series = |a: usize, b: usize| -> bool {
            match &series_rows {
                Some(rows) => rows.row(a) == rows.row(b),
                None => true,
            }
        };
        let series_count = (1..n).filter(|&i| !same_series(i - 1, i)).count() + usize::from(n > 0);
        if series_count as i128 * buckets > MAX_ROWS as i128 {
            return exec_err!(
                "{GAPFILL}: filling {series_count} series with {buckets} buckets each would make more than \
                 {MAX_ROWS} rows; narrow the WHERE range, widen the buckets or filter the series"
            );
        }
        // per output row: the row it copies series values from, its real row (if any), its time
        let mut series_row: Vec<u32> = Vec::new();
        let mut real_row: Vec<Option<u32>> = Vec::new();
        let mut out_time: Vec<i64> = Vec::new();
        let mut emit = |series: usize, real: Option<usize>, t: i64| {
            series_row.push(series as u32);
            real_row.push(real.map(|r| r as u32));
            out_time.push(t);
        };
        // a real row's own time (NULL buckets sort first and are kept as they are)
        let time_of = |r: usize| {
            if times.is_null(r) {
                i64::MIN
            } else {
                times.value(r)
            }
        };
        let mut start = 0usize;
        while start < n {
            let mut end = start + 1;
            while end < n && same_series(start, end) {
                end += 1;
            }
            let mut t = first;
            let mut r = start;
            loop {
                // rows before the range are kept as they are
                while r < end && time_of(r) < t {
                    emit(start, Some(r), time_of(r));
                    r += 1;
                }
                if t > last {
                    break;
                }
                // the bucket's row (an aggregate has one; keep several if they come), or a gap
                let mut found = false;
                while r < end && !times.is_null(r) && times.value(r) == t {
                    emit(start, Some(r), t);
                    r += 1;
                    found = true;
                }
                if !found {
                    emit(start, None, t);
                }
                match next_bucket(t, width) {
                    Some(next) if next > t => t = next,
                    _ => break,
                }
            }
            // rows after the range
            while r < end {
                emit(start, Some(r), time_of(r));
                r += 1;
            }
            start = end;
        }
        let rows = series_row.len();
        let series_idx = UInt32Array::from(series_row);
        let real_idx: UInt32Array = real_row.iter().copied().collect();
        let time_values: Int64Array = out_time
            .iter()
            .enumerate()
            .map(|(i, &t)| match real_row[i] {
                Some(r) if times.is_null(r as usize) => None,
                _ => Some(t),
            })
            .collect();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, c) in sorted.iter().enumerate() {
            columns.push(if i == self.time {
                from_nanos(time_values.clone(), c.data_type())?
            } else if self.series.contains(&i) {
                take(c.as_ref(), &series_idx, None)?
            } else {
                take(c.as_ref(), &real_idx, None)?
            });
        }
        for &(col, fill) in &self.fills {
            let source = &sorted[col];
            columns.push(match fill {
                Fill::Locf => {
                    let mut idx: Vec<Option<u32>> = Vec::with_capacity(rows);
                    let mut last: Option<u32> = None;
                    for (i, real) in real_row.iter().enumerate() {
                        if i > 0 && series_idx.value(i) != series_idx.value(i - 1) {
                            last = None;
                        }
                        if let Some(r) = real {
                            last = Some(*r);
                        }
                        idx.push(last);
                    }
                    take(source.as_ref(), &UInt32Array::from(idx), None)?
                }
                Fill::Interpolate => {
                    let v = cast(source, &DataType::Float64)?;
                    let v = v.as_primitive::<Float64Type>();
                    Arc::new(interpolate(v, &series_idx, &real_row, &out_time)) as ArrayRef
                }
            });
        }
        let columns = columns
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    cast(&c, f.data_type()).map_err(DataFusionError::from)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Linear interpolation at each gap between the neighbouring observed (non-NULL) values of its series.
fn interpolate(
    values: &datafusion::arrow::array::Float64Array,
    series: &UInt32Array,
    real: &[Option<u32>],
    times: &[i64],
) -> Float64Array {
    let n = real.len();
    let mut out: Vec<Option<f64>> = vec![None; n];
    let observed = |i: usize| -> Option<f64> {
        let r = real[i]? as usize;
        values.is_valid(r).then(|| values.value(r))
    };
    let mut i = 0;
    while i < n {
        let s = series.value(i);
        let mut j = i;
        while j < n && series.value(j) == s {
            j += 1;
        }
        // rows i..j are one series
        let mut prev: Option<(i64, f64)> = None;
        for k in i..j {
            if let Some(v) = observed(k) {
                out[k] = Some(v);
                prev = Some((times[k], v));
                continue;
            }
            if real[k].is_some() {
                // an observed NULL stays NULL
                continue;
            }
            let next = (k + 1..j).find_map(|m| observed(m).map(|v| (times[m], v)));
            if let (Some((t0, v0)), Some((t1, v1))) = (prev, next) {
                let f = (times[k] - t0) as f64 / (t1 - t0) as f64;
                out[k] = Some(v0 + (v1 - v0) * f);
            }
        }
        i = j;
    }
    out.into_iter().collect()
}

/// Plans [`GapFillNode`] as [`GapFillExec`].
#[derive(Debug, Default)]
pub struct GapFillPlanner;

#[async_trait::async_trait]
impl ExtensionPlanner for GapFillPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<GapFillNode>() else {
            return Ok(None);
        };
        let empty = DFSchema::empty();
        let phys = |e: &Expr| planner.create_physical_expr(e, &empty, session, planning_ctx);
        let schema: SchemaRef =
            Arc::new(UserDefinedLogicalNodeCore::schema(node).as_arrow().clone());
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Some(Arc::new(GapFillExec {
            input: physical_inputs[0].clone(),
            time: node.time,
            series: node.series.clone(),
            width: phys(&node.width)?,
            origin: node.origin.as_ref().map(phys).transpose()?,
            lower: (phys(&node.lower.expr)?, node.lower.inclusive),
            upper: (phys(&node.upper.expr)?, node.upper.inclusive),
            fills: node.fills.iter().map(|(i, f, _)| (*i, *f)).collect(),
            schema,
            properties,
        })))
    }
}
