//! `time_bucket(interval, ts [, origin | offset])` with TimescaleDB/DuckDB semantics.
//!
//! Buckets of a fixed width (microseconds up to weeks) are aligned to 2000-01-03 00:00:00, a Monday, so weekly
//! buckets start on Mondays; buckets of months or years are aligned to 2000-01-01. The third argument is either an
//! origin timestamp (buckets are aligned to it instead) or an offset interval (the default origin shifted by it).
//! The result has the type of `ts` (a timestamp of any unit, or a date). Timestamps with a time zone are bucketed
//! on their UTC value.

use chrono::{DateTime, Datelike, Months, Timelike};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, IntervalMonthDayNano, IntervalUnit, TimeUnit,
};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use std::sync::{Arc, OnceLock};

/// 2000-01-03 00:00:00 UTC (a Monday) in nanoseconds since the epoch: the default origin of fixed-width buckets.
pub const DEFAULT_ORIGIN_NS: i64 = 946_857_600_000_000_000;
/// 2000-01-01 00:00:00 UTC: the default origin of month and year buckets.
pub const DEFAULT_MONTH_ORIGIN_NS: i64 = 946_684_800_000_000_000;
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// A bucket width: whole months, or a fixed number of nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Months(i32),
    Nanos(i64),
}

impl Width {
    /// The width an interval literal describes; mixing months with days or time is ambiguous and refused.
    pub fn of(function: &str, interval: IntervalMonthDayNano) -> Result<Self> {
        let IntervalMonthDayNano {
            months,
            days,
            nanoseconds,
        } = interval;
        if months != 0 && (days != 0 || nanoseconds != 0) {
            return plan_err!(
                "{function}: a bucket width cannot mix months with days or time (got {months} months, {days} days, \
                 {nanoseconds} ns); use one or the other"
            );
        }
        if months != 0 {
            if months < 0 {
                return plan_err!("{function}: the bucket width must be positive");
            }
            return Ok(Width::Months(months));
        }
        let nanos = (days as i64)
            .checked_mul(NANOS_PER_DAY)
            .and_then(|d| d.checked_add(nanoseconds));
        match nanos {
            Some(n) if n > 0 => Ok(Width::Nanos(n)),
            Some(_) => plan_err!("{function}: the bucket width must be positive"),
            None => plan_err!("{function}: the bucket width is too large"),
        }
    }

    /// The width in nanoseconds, for fixed widths.
    pub fn nanos(self) -> Option<i64> {
        match self {
            Width::Nanos(n) => Some(n),
            Width::Months(_) => None,
        }
    }
}

/// The start of the bucket holding `t` (nanoseconds since the epoch), buckets aligned to `origin`.
pub fn bucket_start(t: i64, width: Width, origin: i64) -> Option<i64> {
    match width {
        Width::Nanos(w) => {
            let k = (t as i128 - origin as i128).div_euclid(w as i128);
            i64::try_from(origin as i128 + k * w as i128).ok()
        }
        Width::Months(m) => {
            let t = DateTime::from_timestamp_nanos(t).naive_utc();
            let o = DateTime::from_timestamp_nanos(origin).naive_utc();
            let mut diff = (t.year() - o.year()) * 12 + t.month() as i32 - o.month() as i32;
            // Within the month, is t before the origin's day and time?
            if (t.day(), t.num_seconds_from_midnight(), t.nanosecond())
                < (o.day(), o.num_seconds_from_midnight(), o.nanosecond())
            {
                diff -= 1;
            }
            let k = diff.div_euclid(m) * m;
            let start = if k >= 0 {
                o.checked_add_months(Months::new(k as u32))
            } else {
                o.checked_sub_months(Months::new(k.unsigned_abs()))
            }?;
            start.and_utc().timestamp_nanos_opt()
        }
    }
}

fn unit_nanos(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// The `time_bucket` scalar function; with `gapfill`, `time_bucket_gapfill`, which only means something in a
/// GROUP BY (where [`super::gapfill`] plans it) and is an error anywhere else.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    signature: Signature,
    gapfill: bool,
}

pub const GAPFILL: &str = "time_bucket_gapfill";

impl TimeBucket {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::user_defined(Volatility::Immutable),
            gapfill: false,
        })
    }

    pub fn gapfill_udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::user_defined(Volatility::Immutable),
            gapfill: true,
        })
    }
}

/// The timestamp-like types time functions accept; strings are read as timestamps.
pub fn coerce_time(function: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Timestamp(_, _) | DataType::Date32 => Ok(t.clone()),
        DataType::Date64 => Ok(DataType::Timestamp(TimeUnit::Millisecond, None)),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            Ok(DataType::Timestamp(TimeUnit::Nanosecond, None))
        }
        other => plan_err!("{function}: expected a timestamp or date, got {other}"),
    }
}

/// The interval type time functions accept for widths.
pub fn coerce_interval(function: &str, what: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Interval(_) | DataType::Null | DataType::Utf8 | DataType::Utf8View => {
            Ok(DataType::Interval(IntervalUnit::MonthDayNano))
        }
        other => plan_err!(
            "{function}: the {what} must be an interval such as INTERVAL '5 minutes', got {other}"
        ),
    }
}

/// The constant interval argument of a time function.
pub fn interval_arg(function: &str, what: &str, v: &ColumnarValue) -> Result<IntervalMonthDayNano> {
    match v {
        ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(i))) => Ok(*i),
        ColumnarValue::Scalar(s) if s.is_null() => {
            exec_err!("{function}: the {what} is NULL")
        }
        _ => exec_err!("{function}: the {what} must be a constant interval"),
    }
}

/// A timestamp or date column as nanoseconds since the epoch.
pub fn to_nanos(array: &ArrayRef) -> Result<Int64Array> {
    match array.data_type() {
        DataType::Timestamp(unit, _) => {
            let scale = unit_nanos(*unit);
            let raw = cast(array, &DataType::Int64)?;
            Ok(raw
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .unary_opt(|v: i64| v.checked_mul(scale)))
        }
        DataType::Date32 => Ok(array
            .as_primitive::<Date32Type>()
            .unary_opt(|d: i32| (d as i64).checked_mul(NANOS_PER_DAY))),
        other => exec_err!("expected a timestamp or date, got {other}"),
    }
}

/// Nanoseconds since the epoch back into the type `like` (truncating towards the past).
pub fn from_nanos(nanos: Int64Array, like: &DataType) -> Result<ArrayRef> {
    match like {
        DataType::Timestamp(unit, _) => {
            let scale = unit_nanos(*unit);
            let raw: Int64Array = nanos.unary(|v: i64| v.div_euclid(scale));
            Ok(cast(&raw, like)?)
        }
        DataType::Date32 => Ok(Arc::new(
            nanos.unary::<_, Date32Type>(|v: i64| v.div_euclid(NANOS_PER_DAY) as i32),
        ) as ArrayRef),
        other => exec_err!("expected a timestamp or date, got {other}"),
    }
}

impl ScalarUDFImpl for TimeBucket {
    fn name(&self) -> &str {
        if self.gapfill {
            GAPFILL
        } else {
            "time_bucket"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=3).contains(&arg_types.len()) {
            return plan_err!(
                "time_bucket(interval, ts [, origin]) takes 2 or 3 arguments, got {}",
                arg_types.len()
            );
        }
        let width = coerce_interval("time_bucket", "bucket width", &arg_types[0])?;
        let ts = coerce_time("time_bucket", &arg_types[1])?;
        let mut out = vec![width, ts.clone()];
        if let Some(third) = arg_types.get(2) {
            out.push(match third {
                DataType::Interval(_) => DataType::Interval(IntervalUnit::MonthDayNano),
                _ => {
                    coerce_time("time_bucket", third)?;
                    DataType::Timestamp(TimeUnit::Nanosecond, None)
                }
            });
        }
        Ok(out)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[1].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if self.gapfill {
            return exec_err!(
                "{GAPFILL}(interval, ts) belongs in a GROUP BY of a query with a WHERE range on ts \
                 (ts >= start AND ts < end); use time_bucket elsewhere"
            );
        }
        let width = Width::of(
            "time_bucket",
            interval_arg("time_bucket", "bucket width", &args.args[0])?,
        )?;
        let default_origin = match width {
            Width::Months(_) => DEFAULT_MONTH_ORIGIN_NS,
            Width::Nanos(_) => DEFAULT_ORIGIN_NS,
        };
        let origin = match args.args.get(2) {
            None => default_origin,
            Some(ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(offset)))) => {
                offset_origin(default_origin, *offset)?
            }
            Some(ColumnarValue::Scalar(s)) if s.is_null() => {
                return Ok(ColumnarValue::Scalar(ScalarValue::try_from(
                    args.return_field.data_type(),
                )?))
            }
            Some(ColumnarValue::Scalar(s)) => {
                match s.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None))? {
                    ScalarValue::TimestampNanosecond(Some(o), _) => o,
                    _ => return exec_err!("time_bucket: the origin must be a timestamp"),
                }
            }
            Some(ColumnarValue::Array(_)) => {
                return exec_err!("time_bucket: the origin must be a constant")
            }
        };
        let ts_type = args.return_field.data_type().clone();
        let is_scalar = matches!(args.args[1], ColumnarValue::Scalar(_));
        let ts = args.args[1].to_array(1)?;
        let out = match (ts.data_type(), width) {
            // The common case: a timestamp column and a fixed width that are whole units of it; bucket in the
            // column's own unit, no conversions.
            (DataType::Timestamp(unit, _), Width::Nanos(w))
                if w % unit_nanos(*unit) == 0 && origin % unit_nanos(*unit) == 0 =>
            {
                let scale = unit_nanos(*unit);
                let (w, o) = (w / scale, origin / scale);
                let raw = cast(&ts, &DataType::Int64)?;
                let raw = raw.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                let out: Int64Array = raw.unary_opt(|t| match t.checked_sub(o) {
                    Some(d) => o.checked_add(d.div_euclid(w) * w),
                    None => bucket_start(t, Width::Nanos(w), o),
                });
                cast(&out, &ts_type)?
            }
            _ => {
                let nanos = to_nanos(&ts)?;
                let out: Int64Array = nanos.unary_opt(|t| bucket_start(t, width, origin));
                from_nanos(out, &ts_type)?
            }
        };
        Ok(if is_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }

    fn documentation(&self) -> Option<&Documentation> {
        if self.gapfill {
            static GAP_DOC: OnceLock<Documentation> = OnceLock::new();
            return Some(GAP_DOC.get_or_init(|| {
                Documentation::builder(
                    DocSection {
                        include: true,
                        label: "Time Functions",
                        description: None,
                    },
                    "time_bucket that fills gaps: in a GROUP BY bounded by a WHERE range on ts (ts >= start AND \
                     ts < end), every bucket of the range appears for every group, with NULL aggregates where \
                     there were no rows; wrap an aggregate in locf(...) to carry the last value forward or in \
                     interpolate(...) to fill linearly between neighbours.",
                    "time_bucket_gapfill(interval, ts [, origin])",
                )
                .with_sql_example(
                    "SELECT time_bucket_gapfill(INTERVAL '1 hour', ts) AS hour, locf(avg(temperature)) \
                     FROM readings WHERE ts >= '2026-01-01' AND ts < '2026-01-02' GROUP BY 1",
                )
                .build()
            }));
        }
        static DOC: OnceLock<Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            Documentation::builder(
                DocSection {
                    include: true,
                    label: "Time Functions",
                    description: None,
                },
                "The start of the time bucket of the given width that holds ts (TimescaleDB/DuckDB semantics). \
                 Fixed widths are aligned to 2000-01-03 00:00 (a Monday), so weekly buckets start on Mondays; \
                 month and year widths to 2000-01-01. A third argument is an origin timestamp to align to, or an \
                 offset interval added to the default origin.",
                "time_bucket(interval, ts [, origin | offset])",
            )
            .with_sql_example(
                "SELECT time_bucket(INTERVAL '5 minutes', TIMESTAMP '2026-11-01 10:07:30');  -- 2026-11-01T10:05:00",
            )
            .build()
        }))
    }
}

/// The default origin moved by an offset interval.
fn offset_origin(origin: i64, offset: IntervalMonthDayNano) -> Result<i64> {
    let moved = DateTime::from_timestamp_nanos(origin).naive_utc();
    let moved = if offset.months >= 0 {
        moved.checked_add_months(Months::new(offset.months as u32))
    } else {
        moved.checked_sub_months(Months::new(offset.months.unsigned_abs()))
    };
    let moved = moved.and_then(|m| m.and_utc().timestamp_nanos_opt());
    let shift = (offset.days as i64)
        .checked_mul(NANOS_PER_DAY)
        .and_then(|d| d.checked_add(offset.nanoseconds));
    match (moved, shift) {
        (Some(m), Some(s)) => match m.checked_add(s) {
            Some(v) => Ok(v),
            None => exec_err!("time_bucket: the offset is out of range"),
        },
        _ => exec_err!("time_bucket: the offset is out of range"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDateTime;

    fn ns(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn default_origin_is_a_monday() {
        assert_eq!(ns("2000-01-03 00:00:00"), DEFAULT_ORIGIN_NS);
        assert_eq!(ns("2000-01-01 00:00:00"), DEFAULT_MONTH_ORIGIN_NS);
        let week = Width::Nanos(7 * NANOS_PER_DAY);
        // 2026-11-22 is a Sunday: its week started Monday 2026-11-16.
        assert_eq!(
            bucket_start(ns("2026-11-22 13:00:00"), week, DEFAULT_ORIGIN_NS),
            Some(ns("2026-11-16 00:00:00"))
        );
    }

    #[test]
    fn months_and_times_before_the_origin() {
        let quarter = Width::Months(3);
        assert_eq!(
            bucket_start(ns("2026-05-31 23:59:59"), quarter, DEFAULT_MONTH_ORIGIN_NS),
            Some(ns("2026-04-01 00:00:00"))
        );
        assert_eq!(
            bucket_start(
                ns("1999-12-31 23:00:00"),
                Width::Months(1),
                DEFAULT_MONTH_ORIGIN_NS
            ),
            Some(ns("1999-12-01 00:00:00"))
        );
        let five_min = Width::Nanos(300_000_000_000);
        assert_eq!(
            bucket_start(ns("1999-12-31 23:58:00"), five_min, DEFAULT_ORIGIN_NS),
            Some(ns("1999-12-31 23:55:00"))
        );
    }

    #[test]
    fn mixed_widths_are_refused() {
        let mixed = IntervalMonthDayNano {
            months: 1,
            days: 1,
            nanoseconds: 0,
        };
        assert!(Width::of("time_bucket", mixed).is_err());
        let zero = IntervalMonthDayNano {
            months: 0,
            days: 0,
            nanoseconds: 0,
        };
        assert!(Width::of("time_bucket", zero).is_err());
    }
}
