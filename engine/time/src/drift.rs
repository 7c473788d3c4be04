//! Drift statistics between a reference sample and a current one, as aggregates over one column:
//!
//! - `ks_statistic(x, is_reference)`: the two-sample Kolmogorov–Smirnov statistic D = max |F_ref(v) − F_cur(v)|
//!   over all values v, the same number as `scipy.stats.ks_2samp(ref, cur).statistic`.
//! - `psi(x, is_reference [, bins])`: the population stability index Σ (cᵢ − rᵢ) · ln(cᵢ / rᵢ), where rᵢ and cᵢ are
//!   the shares of reference and current values in bin i. The bins (default 10) are cut at the reference's
//!   quantiles k/bins (linear interpolation, numpy's default), repeated edges merged; bin i holds
//!   edgeᵢ₋₁ < x ≤ edgeᵢ. Shares are floored at 0.0001 so an empty bin does not make the index infinite.
//!   Rule of thumb: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 significant shift.
//!
//! NULL values and rows whose `is_reference` is NULL are ignored; with no reference or no current values the
//! result is NULL.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, ListArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, DocSection, Documentation, Signature, Volatility,
};
use datafusion::physical_expr::expressions::Literal;
use std::sync::{Arc, OnceLock};

/// Shares below this are raised to it in the PSI sum.
pub const PSI_FLOOR: f64 = 1e-4;
const DEFAULT_BINS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Stat {
    Ks,
    Psi,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Drift {
    stat: Stat,
    signature: Signature,
}

pub fn udafs() -> Vec<AggregateUDF> {
    [Stat::Ks, Stat::Psi]
        .into_iter()
        .map(|stat| {
            AggregateUDF::new_from_impl(Drift {
                stat,
                signature: Signature::user_defined(Volatility::Immutable),
            })
        })
        .collect()
}

impl AggregateUDFImpl for Drift {
    fn name(&self) -> &str {
        match self.stat {
            Stat::Ks => "ks_statistic",
            Stat::Psi => "psi",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.name();
        let max = if self.stat == Stat::Psi { 3 } else { 2 };
        if arg_types.len() < 2 || arg_types.len() > max {
            return plan_err!(
                "{name}{} takes {} arguments, got {}",
                if max == 3 {
                    "(x, is_reference [, bins])"
                } else {
                    "(x, is_reference)"
                },
                if max == 3 { "2 or 3" } else { "2" },
                arg_types.len()
            );
        }
        if !(arg_types[0].is_numeric() || arg_types[0] == DataType::Null) {
            return plan_err!("{name}: x must be numeric, got {}", arg_types[0]);
        }
        if !matches!(arg_types[1], DataType::Boolean | DataType::Null) {
            return plan_err!(
                "{name}: is_reference must be a boolean (true for reference rows), got {}",
                arg_types[1]
            );
        }
        let mut out = vec![DataType::Float64, DataType::Boolean];
        if let Some(b) = arg_types.get(2) {
            if !b.is_integer() {
                return plan_err!("{name}: bins must be an integer, got {b}");
            }
            out.push(DataType::Int64);
        }
        Ok(out)
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let bins = match args.exprs.get(2) {
            None => DEFAULT_BINS,
            Some(e) => {
                let any: &dyn std::any::Any = e.as_ref();
                match any.downcast_ref::<Literal>().map(|l| l.value()) {
                    Some(ScalarValue::Int64(Some(b))) if (2..=1000).contains(b) => *b as usize,
                    Some(ScalarValue::Int64(Some(b))) => {
                        return plan_err!("psi: bins must be between 2 and 1000, got {b}")
                    }
                    _ => return plan_err!("psi: bins must be a constant integer"),
                }
            }
        };
        Ok(Box::new(DriftAccumulator {
            stat: self.stat,
            bins,
            reference: Vec::new(),
            current: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[reference]", args.name),
                list.clone(),
                true,
            )),
            Arc::new(Field::new(format!("{}[current]", args.name), list, true)),
        ])
    }

    fn documentation(&self) -> Option<&Documentation> {
        static KS: OnceLock<Documentation> = OnceLock::new();
        static PSI: OnceLock<Documentation> = OnceLock::new();
        let section = DocSection {
            include: true,
            label: "Drift Functions",
            description: None,
        };
        Some(match self.stat {
            Stat::Ks => KS.get_or_init(|| {
                Documentation::builder(
                    section,
                    "Two-sample Kolmogorov–Smirnov statistic D between the reference rows (is_reference true) and \
                     the current rows: the largest gap between their empirical distribution functions, from 0 \
                     (same distribution) to 1. Equals scipy.stats.ks_2samp(ref, cur).statistic.",
                    "ks_statistic(x, is_reference)",
                )
                .with_sql_example(
                    "SELECT ks_statistic(temperature, ts < '2026-11-09') FROM readings;",
                )
                .build()
            }),
            Stat::Psi => PSI.get_or_init(|| {
                Documentation::builder(
                    section,
                    "Population stability index Σ (cur_i − ref_i)·ln(cur_i / ref_i) over bins cut at the \
                     reference's quantiles (default 10 bins; shares floored at 0.0001). < 0.1: stable; \
                     0.1–0.25: moderate shift; > 0.25: significant shift.",
                    "psi(x, is_reference [, bins])",
                )
                .with_sql_example("SELECT psi(temperature, ts < '2026-11-09', 10) FROM readings;")
                .build()
            }),
        })
    }
}

#[derive(Debug)]
struct DriftAccumulator {
    stat: Stat,
    bins: usize,
    reference: Vec<f64>,
    current: Vec<f64>,
}

fn list_of(values: &[f64]) -> ScalarValue {
    let arr: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
    ScalarValue::List(Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Float64, true)),
        datafusion::arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
        arr,
        None,
    )))
}

impl Accumulator for DriftAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let x = cast(&values[0], &DataType::Float64)?;
        let x = x.as_primitive::<Float64Type>();
        let is_ref: &BooleanArray = values[1].as_boolean();
        for i in 0..x.len() {
            if x.is_null(i) || is_ref.is_null(i) {
                continue;
            }
            let v = x.value(i);
            if v.is_nan() {
                continue;
            }
            if is_ref.value(i) {
                self.reference.push(v);
            } else {
                self.current.push(v);
            }
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for (state, into) in states.iter().zip([&mut self.reference, &mut self.current]) {
            let lists = state.as_list::<i32>();
            for i in 0..lists.len() {
                if lists.is_null(i) {
                    continue;
                }
                let v = lists.value(i);
                let v = v.as_primitive::<Float64Type>();
                into.extend(v.iter().flatten());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![list_of(&self.reference), list_of(&self.current)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.reference.is_empty() || self.current.is_empty() {
            return Ok(ScalarValue::Float64(None));
        }
        let mut r = std::mem::take(&mut self.reference);
        let mut c = std::mem::take(&mut self.current);
        r.sort_unstable_by(f64::total_cmp);
        c.sort_unstable_by(f64::total_cmp);
        let v = match self.stat {
            Stat::Ks => ks(&r, &c),
            Stat::Psi => psi(&r, &c, self.bins),
        };
        self.reference = r;
        self.current = c;
        Ok(ScalarValue::Float64(Some(v)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + (self.reference.capacity() + self.current.capacity()) * 8
    }
}

/// KS D of two sorted samples.
pub fn ks(a: &[f64], b: &[f64]) -> f64 {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut d: f64 = 0.0;
    while i < a.len() && j < b.len() {
        let v = a[i].min(b[j]);
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        d = d.max((i as f64 / n1 - j as f64 / n2).abs());
    }
    d
}

/// The q-quantile of a sorted sample, linear interpolation between closest ranks (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// PSI of two sorted samples over `bins` reference-quantile bins.
pub fn psi(reference: &[f64], current: &[f64], bins: usize) -> f64 {
    let mut edges: Vec<f64> = (1..bins)
        .map(|k| quantile(reference, k as f64 / bins as f64))
        .collect();
    edges.dedup();
    let shares = |sample: &[f64]| -> Vec<f64> {
        let mut counts = vec![0usize; edges.len() + 1];
        for &x in sample {
            // bin i holds edges[i-1] < x <= edges[i]
            counts[edges.partition_point(|&e| e < x)] += 1;
        }
        counts
            .into_iter()
            .map(|c| (c as f64 / sample.len() as f64).max(PSI_FLOOR))
            .collect()
    };
    let (r, c) = (shares(reference), shares(current));
    r.iter().zip(&c).map(|(r, c)| (c - r) * (c / r).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_matches_scipy() {
        // scipy.stats.ks_2samp([1, 2, 3, 4], [3, 4, 5, 6, 7]).statistic == 0.6
        assert!((ks(&[1., 2., 3., 4.], &[3., 4., 5., 6., 7.]) - 0.6).abs() < 1e-12);
        assert_eq!(ks(&[1., 2.], &[1., 2.]), 0.0);
        assert_eq!(ks(&[1., 2.], &[3., 4.]), 1.0);
    }

    #[test]
    fn psi_of_the_same_sample_is_zero() {
        let r: Vec<f64> = (0..100).map(|i| i as f64).collect();
        assert!(psi(&r, &r, 10).abs() < 1e-12);
        let shifted: Vec<f64> = (50..150).map(|i| i as f64).collect();
        assert!(psi(&r, &shifted, 10) > 0.25);
    }
}
