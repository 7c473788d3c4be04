//! Operators PostgreSQL defines and DataFusion's coercion does not, planned while the SQL is turned into a plan
//! (an [`ExprPlanner`] sees each operator with the types of both sides, before any projection is typed):
//!
//! - a UUID compared with text (`id = 'a0ee...'`, also in a SELECT list, where a plan's output types are fixed
//!   at planning time) reads the text as a UUID;
//! - `n * INTERVAL '1 minute'`, `INTERVAL '1 hour' * 1.5` and `INTERVAL '1 day' / 4` scale the interval as
//!   PostgreSQL does (fractions of a month carry into days of 30, fractions of a day into time), where DataFusion
//!   answers "Invalid interval arithmetic operation".

use super::types::UUID_TYPE;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, IntervalMonthDayNanoArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano, IntervalUnit};
use datafusion::common::{exec_err, DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    lit, ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Operators;

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_number(t: &DataType) -> bool {
    t.is_integer()
        || t.is_floating()
        || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

impl ExprPlanner for Operators {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let (Ok(left), Ok(right)) = (expr.left.get_type(schema), expr.right.get_type(schema))
        else {
            return Ok(PlannerResult::Original(expr));
        };
        let interval = |t: &DataType| matches!(t, DataType::Interval(_));
        let scale = |interval: Expr, factor: Expr| {
            Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(interval_scale()),
                vec![interval, factor],
            ))
        };
        use BinaryOperator as B;
        match expr.op {
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq
                if (left == UUID_TYPE && is_text(&right))
                    || (right == UUID_TYPE && is_text(&left)) =>
            {
                let to_uuid = Arc::new(super::uuid::to_uuid(true));
                let as_uuid = |e: Expr, t: &DataType| {
                    if is_text(t) {
                        Expr::ScalarFunction(ScalarFunction::new_udf(to_uuid.clone(), vec![e]))
                    } else {
                        e
                    }
                };
                Ok(PlannerResult::Original(RawBinaryExpr {
                    op: expr.op,
                    left: as_uuid(expr.left, &left),
                    right: as_uuid(expr.right, &right),
                }))
            }
            B::Multiply if interval(&left) && is_number(&right) => {
                Ok(PlannerResult::Planned(scale(expr.left, expr.right)))
            }
            B::Multiply if is_number(&left) && interval(&right) => {
                Ok(PlannerResult::Planned(scale(expr.right, expr.left)))
            }
            B::Divide if interval(&left) && is_number(&right) => {
                let reciprocal = lit(1.0_f64) / expr.right.cast_to(&DataType::Float64, schema)?;
                Ok(PlannerResult::Planned(scale(expr.left, reciprocal)))
            }
            _ => Ok(PlannerResult::Original(expr)),
        }
    }
}

/// An interval times a number, PostgreSQL's way.
pub fn scale(i: IntervalMonthDayNano, factor: f64) -> Option<IntervalMonthDayNano> {
    if !factor.is_finite() {
        return None;
    }
    let months = i.months as f64 * factor;
    let whole_months = months.trunc();
    let days = i.days as f64 * factor + (months - whole_months) * 30.0;
    let whole_days = days.trunc();
    let nanos = (i.nanoseconds as f64 * factor + (days - whole_days) * 86_400e9).round();
    let fits_i32 = |v: f64| v >= i32::MIN as f64 && v <= i32::MAX as f64;
    if !fits_i32(whole_months) || !fits_i32(whole_days) || !(nanos.abs() < i64::MAX as f64) {
        return None;
    }
    Some(IntervalMonthDayNano::new(
        whole_months as i32,
        whole_days as i32,
        nanos as i64,
    ))
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IntervalScale {
    signature: Signature,
}

/// `interval * number` (the planner routes `*` and `/` of an interval here).
pub fn interval_scale() -> ScalarUDF {
    ScalarUDF::new_from_impl(IntervalScale {
        signature: Signature::any(2, Volatility::Immutable),
    })
}

impl ScalarUDFImpl for IntervalScale {
    fn name(&self) -> &str {
        "__kestrel_interval_scale"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Interval(IntervalUnit::MonthDayNano))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        super::over_arrays(&args.args, |arrays| match arrays {
            [interval, factor] => scale_column(interval, factor),
            _ => exec_err!("interval scaling takes an interval and a number"),
        })
    }
}

/// Each interval of a column times the factor beside it.
fn scale_column(interval: &ArrayRef, factor: &ArrayRef) -> Result<ArrayRef> {
    let interval = cast(interval, &DataType::Interval(IntervalUnit::MonthDayNano))?;
    let factor = cast(factor, &DataType::Float64)?;
    let intervals =
        interval.as_primitive::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>();
    let factors = factor.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
    let mut out = Vec::with_capacity(intervals.len());
    for row in 0..intervals.len() {
        if intervals.is_null(row) || factors.is_null(row) {
            out.push(None);
            continue;
        }
        let (i, f) = (intervals.value(row), factors.value(row));
        match scale(i, f) {
            Some(v) => out.push(Some(v)),
            None if f.is_infinite() || f.is_nan() => {
                return exec_err!("division by zero (an interval divided by 0)")
            }
            None => return exec_err!("interval out of range (an interval times {f})"),
        }
    }
    Ok(Arc::new(IntervalMonthDayNanoArray::from(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_as_postgres_does() {
        let minute = IntervalMonthDayNano::new(0, 0, 60_000_000_000);
        assert_eq!(
            scale(minute, 3.0),
            Some(IntervalMonthDayNano::new(0, 0, 180_000_000_000))
        );
        // 1.5 months = 1 month 15 days; 1.5 days = 1 day 12 hours
        let month = IntervalMonthDayNano::new(1, 0, 0);
        assert_eq!(scale(month, 1.5), Some(IntervalMonthDayNano::new(1, 15, 0)));
        let day = IntervalMonthDayNano::new(0, 1, 0);
        assert_eq!(
            scale(day, 1.5),
            Some(IntervalMonthDayNano::new(0, 1, 43_200_000_000_000))
        );
        assert_eq!(scale(day, -2.0), Some(IntervalMonthDayNano::new(0, -2, 0)));
        assert_eq!(scale(day, f64::INFINITY), None);
        assert_eq!(scale(month, 1e12), None);
    }
}
