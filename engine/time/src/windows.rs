//! Window table functions, as in Flink and RisingWave: `TUMBLE(t, ts, size)`, `HOP(t, ts, slide, size)` and
//! `SESSION(t, ts, gap [, key])` return the rows of table `t` with `window_start` and `window_end` added.
//!
//! - TUMBLE: the window is `time_bucket(size, ts)` (same alignment: 2000-01-03 for fixed sizes) and its end.
//! - HOP: a row appears once for every window [start, start + size) holding it; starts are multiples of `slide`
//!   from the same origin.
//! - SESSION: per key (or over the whole table), rows sorted by ts; a new session starts when a row comes more
//!   than `gap` after the previous one. window_start is the session's first ts, window_end its last ts + gap.
//!
//! Each function builds a logical plan over the table (time_bucket, an unnest, window functions) and returns it
//! as a view, so the optimizer sees through it.

use super::bucket::{self, bucket_start, coerce_time, from_nanos, to_nanos, Width};
use datafusion::arrow::array::{ArrayRef, Int64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, IntervalMonthDayNano};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{exec_err, plan_err, Column, Result, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, ViewTable};
use datafusion::execution::session_state::SessionState;
use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::functions_window::expr_fn::lag;
use datafusion::logical_expr::expr::{ScalarFunction, WindowFunction};
use datafusion::logical_expr::{
    case, col, lit, ColumnarValue, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, WindowFrame,
    WindowFunctionDefinition,
};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tumble,
    Hop,
    Session,
}

impl Kind {
    fn usage(self) -> &'static str {
        match self {
            Kind::Tumble => "TUMBLE(table, time_column, size)",
            Kind::Hop => "HOP(table, time_column, slide, size)",
            Kind::Session => "SESSION(table, time_column, gap [, key_column])",
        }
    }
}

/// One of the window table functions.
#[derive(Debug)]
pub struct WindowFunctionTable {
    kind: Kind,
}

/// The three functions with their SQL names.
pub fn all() -> Vec<(&'static str, Arc<dyn TableFunctionImpl>)> {
    vec![
        (
            "tumble",
            Arc::new(WindowFunctionTable { kind: Kind::Tumble }),
        ),
        ("hop", Arc::new(WindowFunctionTable { kind: Kind::Hop })),
        (
            "session",
            Arc::new(WindowFunctionTable {
                kind: Kind::Session,
            }),
        ),
    ]
}

fn interval(kind: Kind, what: &str, e: Option<&Expr>) -> Result<IntervalMonthDayNano> {
    match e {
        Some(Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(i)), _)) => Ok(*i),
        Some(Expr::Literal(ScalarValue::Utf8(Some(s)), _)) => {
            match ScalarValue::Utf8(Some(s.clone())).cast_to(&DataType::Interval(
                datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
            )) {
                Ok(ScalarValue::IntervalMonthDayNano(Some(i))) => Ok(i),
                _ => plan_err!("{}: the {what} '{s}' is not an interval", kind.usage()),
            }
        }
        Some(other) => plan_err!(
            "{}: the {what} must be an interval such as INTERVAL '5 minutes', got {other}",
            kind.usage()
        ),
        None => plan_err!("{}: the {what} is missing", kind.usage()),
    }
}

fn column_name(kind: Kind, what: &str, e: Option<&Expr>) -> Result<String> {
    match e {
        Some(Expr::Column(c)) => Ok(c.name.clone()),
        Some(other) => plan_err!(
            "{}: the {what} must be a column name, got {other}",
            kind.usage()
        ),
        None => plan_err!("{}: the {what} is missing", kind.usage()),
    }
}

/// The table or view the function reads.
fn source(kind: Kind, e: Option<&Expr>, args: &TableFunctionArgs) -> Result<LogicalPlan> {
    match e {
        Some(Expr::Column(c)) => {
            let name = TableReference::from(c.flat_name());
            let any = args.session().as_any();
            let Some(state) = any.downcast_ref::<SessionState>() else {
                return plan_err!("{}: cannot look up tables in this session", kind.usage());
            };
            let schema = state.schema_for_ref(name.clone())?;
            let table = futures::executor::block_on(schema.table(name.table()))?;
            let Some(table) = table else {
                return plan_err!("{}: table '{name}' not found", kind.usage());
            };
            LogicalPlanBuilder::scan(name, provider_as_source(table), None)?.build()
        }
        Some(other) => plan_err!(
            "{}: the first argument must be a table or view name (for a query, CREATE VIEW it first), got {other}",
            kind.usage()
        ),
        None => plan_err!("{}: the table is missing", kind.usage()),
    }
}

impl TableFunctionImpl for WindowFunctionTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let kind = self.kind;
        let exprs = args.exprs();
        let expected = match kind {
            Kind::Tumble => 3..=3,
            Kind::Hop => 4..=4,
            Kind::Session => 3..=4,
        };
        if !expected.contains(&exprs.len()) {
            return plan_err!(
                "{} takes {} arguments, got {}",
                kind.usage(),
                expected.start(),
                exprs.len()
            );
        }
        let input = source(kind, exprs.first(), &args)?;
        let ts_name = column_name(kind, "time column", exprs.get(1))?;
        let schema = input.schema().clone();
        let Some((q, field)) = schema.iter().find(|(_, f)| f.name() == &ts_name) else {
            return plan_err!(
                "{}: the table has no column '{ts_name}' (it has {})",
                kind.usage(),
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if coerce_time(kind.usage(), field.data_type()).is_err()
            || !matches!(
                field.data_type(),
                DataType::Timestamp(_, _) | DataType::Date32
            )
        {
            return plan_err!(
                "{}: '{ts_name}' must be a timestamp or date column, it is {}",
                kind.usage(),
                field.data_type()
            );
        }
        for reserved in ["window_start", "window_end"] {
            if schema.fields().iter().any(|f| f.name() == reserved) {
                return plan_err!(
                    "{}: the table already has a column named {reserved}",
                    kind.usage()
                );
            }
        }
        let ts = Expr::Column(Column::new(q.cloned(), ts_name.clone()));
        let mut all: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
        let builder = LogicalPlanBuilder::from(input);
        let bucket_fn = Arc::new(bucket::TimeBucket::udf());
        let plan = match kind {
            Kind::Tumble => {
                let size = interval(kind, "size", exprs.get(2))?;
                Width::of("TUMBLE", size)?;
                let start = Expr::ScalarFunction(ScalarFunction::new_udf(
                    bucket_fn,
                    vec![lit(ScalarValue::IntervalMonthDayNano(Some(size))), ts],
                ));
                all.push(start.clone().alias("window_start"));
                all.push(
                    (start + lit(ScalarValue::IntervalMonthDayNano(Some(size))))
                        .alias("window_end"),
                );
                builder.project(all)?.build()?
            }
            Kind::Hop => {
                let slide = interval(kind, "slide", exprs.get(2))?;
                let size = interval(kind, "size", exprs.get(3))?;
                let (Width::Nanos(s), Width::Nanos(z)) =
                    (Width::of("HOP", slide)?, Width::of("HOP", size)?)
                else {
                    return plan_err!("HOP: slide and size must be fixed intervals (not months)");
                };
                if z / s > 1000 {
                    return plan_err!(
                        "HOP: size / slide is {}; at most 1000 windows per row",
                        z / s
                    );
                }
                let starts = Expr::ScalarFunction(ScalarFunction::new_udf(
                    Arc::new(ScalarUDF::new_from_impl(HopStarts::new())),
                    vec![lit(s), lit(z), ts],
                ));
                all.push(starts.alias("window_start"));
                let mut cols: Vec<Expr> = schema.columns().into_iter().map(Expr::Column).collect();
                cols.push(col("window_start"));
                cols.push(
                    (col("window_start") + lit(ScalarValue::IntervalMonthDayNano(Some(size))))
                        .alias("window_end"),
                );
                builder
                    .project(all)?
                    .unnest_column("window_start")?
                    .project(cols)?
                    .build()?
            }
            Kind::Session => {
                let gap = interval(kind, "gap", exprs.get(2))?;
                Width::of("SESSION", gap)?;
                let gap = lit(ScalarValue::IntervalMonthDayNano(Some(gap)));
                let partition: Vec<Expr> = match exprs.get(3) {
                    Some(_) => {
                        let key = column_name(kind, "key column", exprs.get(3))?;
                        let Some((kq, _)) = schema.iter().find(|(_, f)| f.name() == &key) else {
                            return plan_err!("SESSION: the table has no column '{key}'");
                        };
                        vec![Expr::Column(Column::new(kq.cloned(), key))]
                    }
                    None => vec![],
                };
                let order = vec![ts.clone().sort(true, false)];
                let prev = lag(ts.clone(), Some(1), None)
                    .partition_by(partition.clone())
                    .order_by(order.clone())
                    .build()?
                    .alias("__kestrel_prev");
                let is_new = case(
                    col("__kestrel_prev")
                        .is_null()
                        .or((ts.clone() - col("__kestrel_prev")).gt(gap.clone())),
                )
                .when(lit(true), lit(1i64))
                .otherwise(lit(0i64))?;
                let session_id = Expr::from(WindowFunction::new(
                    WindowFunctionDefinition::AggregateUDF(sum_udaf()),
                    vec![col("__kestrel_new")],
                ))
                .partition_by(partition.clone())
                .order_by(order)
                .window_frame(WindowFrame::new_bounds(
                    datafusion::logical_expr::WindowFrameUnits::Rows,
                    datafusion::logical_expr::WindowFrameBound::Preceding(ScalarValue::UInt64(
                        None,
                    )),
                    datafusion::logical_expr::WindowFrameBound::CurrentRow,
                ))
                .build()?
                .alias("__kestrel_session");
                let mut by_session = partition.clone();
                by_session.push(col("__kestrel_session"));
                let agg = |f| {
                    Expr::from(WindowFunction::new(
                        WindowFunctionDefinition::AggregateUDF(f),
                        vec![ts.clone()],
                    ))
                    .partition_by(by_session.clone())
                    .build()
                };
                let start = agg(min_udaf())?.alias("window_start");
                let end = agg(max_udaf())?.alias("__kestrel_last");
                let mut with_new = all.clone();
                with_new.push(is_new.alias("__kestrel_new"));
                let mut cols = all.clone();
                cols.push(col("window_start"));
                cols.push((col("__kestrel_last") + gap).alias("window_end"));
                builder
                    .window(vec![prev])?
                    .project({
                        let mut p = all.clone();
                        p.push(col("__kestrel_prev"));
                        p
                    })?
                    .project(with_new)?
                    .window(vec![session_id])?
                    .window(vec![start, end])?
                    .project(cols)?
                    .build()?
            }
        };
        Ok(Arc::new(ViewTable::new(plan, None)))
    }
}

/// `__kestrel_hop_starts(slide_ns, size_ns, ts)`: the starts of the HOP windows holding ts, ascending.
#[derive(Debug, PartialEq, Eq, Hash)]
struct HopStarts {
    signature: Signature,
}

impl HopStarts {
    fn new() -> Self {
        Self {
            signature: Signature::any(3, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for HopStarts {
    fn name(&self) -> &str {
        "__kestrel_hop_starts"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            arg_types[2].clone(),
            true,
        ))))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (Some(ScalarValue::Int64(Some(slide))), Some(ScalarValue::Int64(Some(size)))) =
            (scalar(&args.args[0]), scalar(&args.args[1]))
        else {
            return exec_err!("HOP: slide and size must be constants");
        };
        let ts = args.args[2].to_array(args.number_rows)?;
        let nanos = to_nanos(&ts)?;
        let mut starts: Vec<Option<i64>> = Vec::new();
        let mut lengths: Vec<usize> = Vec::with_capacity(nanos.len());
        for t in nanos.iter() {
            let Some(t) = t else {
                lengths.push(0);
                continue;
            };
            let mut n = 0;
            let Some(last) = bucket_start(t, Width::Nanos(slide), bucket::DEFAULT_ORIGIN_NS) else {
                lengths.push(0);
                continue;
            };
            let mut s = last;
            let mut these = Vec::new();
            while s > t - size {
                these.push(Some(s));
                n += 1;
                s -= slide;
            }
            these.reverse();
            starts.extend(these);
            lengths.push(n);
        }
        let values = from_nanos(Int64Array::from(starts), ts.data_type())?;
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(ts.data_type().clone(), true)),
            OffsetBuffer::from_lengths(lengths),
            values,
            None,
        )?;
        Ok(ColumnarValue::Array(Arc::new(list) as ArrayRef))
    }
}

fn scalar(v: &ColumnarValue) -> Option<ScalarValue> {
    match v {
        ColumnarValue::Scalar(s) => Some(s.clone()),
        ColumnarValue::Array(_) => None,
    }
}
