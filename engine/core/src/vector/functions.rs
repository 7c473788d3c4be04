//! Vector functions: `vector_similarity` (CrateDB), `l2_distance`, `cosine_similarity`, `cosine_distance`,
//! `inner_product`, `vector_norm`, `normalize`, `vector_dims`. Arguments are vector columns or arrays of numbers
//! (`[0.1, 0.2]`); NULL in gives NULL out; vectors of different dimensions are an error naming both.

use super::convert::{is_vector_like, vector_type, Vectors};
use super::kernels;
use super::Metric;
use datafusion::arrow::array::{ArrayRef, Float32Array, Int32Array};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, DocSection, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Similarity,
    L2Distance,
    CosineSimilarity,
    CosineDistance,
    InnerProduct,
    Norm,
    Dims,
    Normalize,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Similarity => "vector_similarity",
            Op::L2Distance => "l2_distance",
            Op::CosineSimilarity => "cosine_similarity",
            Op::CosineDistance => "cosine_distance",
            Op::InnerProduct => "inner_product",
            Op::Norm => "vector_norm",
            Op::Dims => "vector_dims",
            Op::Normalize => "normalize",
        }
    }

    fn arity(self) -> usize {
        match self {
            Op::Norm | Op::Dims | Op::Normalize => 1,
            _ => 2,
        }
    }

    fn doc(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Op::Similarity => (
                "Similarity of two vectors as CrateDB defines it: 1 / (1 + squared euclidean distance). 1 for \
                 equal vectors, towards 0 as they move apart. It is the _score of KNN_MATCH for the euclidean metric.",
                "vector_similarity(a, b)",
                "SELECT vector_similarity([1.2, 1.3], [10.2, 10.3]);  -- 0.006134969",
            ),
            Op::L2Distance => (
                "Euclidean (L2) distance between two vectors: sqrt(Σ(aᵢ−bᵢ)²).",
                "l2_distance(a, b)",
                "SELECT l2_distance([0, 0], [3, 4]);  -- 5.0",
            ),
            Op::CosineSimilarity => (
                "Cosine of the angle between two vectors, from -1 to 1. NULL when either vector is all zeros.",
                "cosine_similarity(a, b)",
                "SELECT cosine_similarity([1, 0], [1, 1]);  -- 0.70710677",
            ),
            Op::CosineDistance => (
                "1 - cosine_similarity(a, b), from 0 (same direction) to 2 (opposite).",
                "cosine_distance(a, b)",
                "SELECT cosine_distance([1, 0], [0, 1]);  -- 1.0",
            ),
            Op::InnerProduct => (
                "Inner (dot) product Σaᵢbᵢ of two vectors.",
                "inner_product(a, b)",
                "SELECT inner_product([1, 2], [3, 4]);  -- 11.0",
            ),
            Op::Norm => (
                "Euclidean length of a vector: sqrt(Σaᵢ²).",
                "vector_norm(v)",
                "SELECT vector_norm([3, 4]);  -- 5.0",
            ),
            Op::Dims => (
                "Number of dimensions of a vector.",
                "vector_dims(v)",
                "SELECT vector_dims([0.1, 0.2, 0.3]);  -- 3",
            ),
            Op::Normalize => (
                "The vector scaled to length 1 (a zero vector stays zero); FLOAT_VECTOR in, FLOAT_VECTOR out.",
                "normalize(v)",
                "SELECT normalize([3, 4]);  -- [0.6, 0.8]",
            ),
        }
    }
}

#[derive(Debug)]
struct VectorFunction {
    op: Op,
    signature: Signature,
    doc: Documentation,
}

impl PartialEq for VectorFunction {
    fn eq(&self, other: &Self) -> bool {
        self.op == other.op
    }
}
impl Eq for VectorFunction {}
impl std::hash::Hash for VectorFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.op.hash(state)
    }
}

/// The section vector functions are listed under in documentation.
pub const DOC_SECTION: DocSection = DocSection {
    include: true,
    label: "Vector Functions",
    description: Some("Functions on FLOAT_VECTOR values (Kestrel)."),
};

/// Every vector function.
pub fn all() -> Vec<ScalarUDF> {
    [
        Op::Similarity,
        Op::L2Distance,
        Op::CosineSimilarity,
        Op::CosineDistance,
        Op::InnerProduct,
        Op::Norm,
        Op::Dims,
        Op::Normalize,
    ]
    .into_iter()
    .map(|op| {
        let (description, syntax, example) = op.doc();
        let mut doc =
            Documentation::builder(DOC_SECTION, description, syntax).with_sql_example(example);
        for arg in ["a", "b"].iter().take(op.arity()) {
            let name = if op.arity() == 1 { "v" } else { arg };
            doc = doc.with_argument(
                name,
                "A FLOAT_VECTOR value or an array of numbers such as [0.1, 0.2].",
            );
        }
        ScalarUDF::new_from_impl(VectorFunction {
            op,
            signature: Signature::user_defined(Volatility::Immutable),
            doc: doc.build(),
        })
    })
    .collect()
}

impl ScalarUDFImpl for VectorFunction {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.op.name();
        if arg_types.len() != self.op.arity() {
            return plan_err!(
                "{name} takes {} argument{}, got {}",
                self.op.arity(),
                if self.op.arity() == 1 { "" } else { "s" },
                arg_types.len()
            );
        }
        for (i, t) in arg_types.iter().enumerate() {
            if !is_vector_like(t) {
                return plan_err!(
                    "{name}: argument {} must be a vector (FLOAT_VECTOR or an array of numbers), got {t}",
                    i + 1
                );
            }
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.op {
            Op::Dims => DataType::Int32,
            Op::Normalize => match arg_types.first() {
                Some(DataType::FixedSizeList(_, n)) => vector_type(*n as usize),
                _ => DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))),
            },
            _ => DataType::Float32,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if all_scalar { 1 } else { args.number_rows };
        let name = self.op.name();
        let inputs = args
            .args
            .iter()
            .enumerate()
            .map(|(i, arg)| {
                let what = format!("{name} argument {}", i + 1);
                Ok(match arg {
                    ColumnarValue::Scalar(v) => {
                        (Vectors::read(&v.to_array_of_size(1)?, &what, None)?, true)
                    }
                    ColumnarValue::Array(a) => (Vectors::read(a, &what, None)?, false),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        fn at(input: &(Vectors, bool), row: usize) -> Option<&[f32]> {
            input.0.get(if input.1 { 0 } else { row })
        }

        let out: ArrayRef = match self.op {
            Op::Dims => {
                let dim = inputs[0].0.dim() as i32;
                Arc::new(Int32Array::from_iter(
                    (0..rows).map(|r| at(&inputs[0], r).map(|_| dim)),
                ))
            }
            Op::Norm => {
                Arc::new(Float32Array::from_iter((0..rows).map(|r| {
                    at(&inputs[0], r).map(|v| kernels::norm_squared(v).sqrt())
                })))
            }
            Op::Normalize => {
                let declared = match args.return_field.data_type() {
                    DataType::FixedSizeList(_, n) => Some(*n as usize),
                    _ => None,
                };
                let dim = inputs[0].0.dim();
                let mut values = Vec::with_capacity(rows * dim);
                let mut valid = Vec::with_capacity(rows);
                for r in 0..rows {
                    match at(&inputs[0], r) {
                        Some(v) => {
                            let norm = kernels::norm_squared(v).sqrt();
                            let scale = if norm > 0.0 { 1.0 / norm } else { 1.0 };
                            values.extend(v.iter().map(|x| x * scale));
                            valid.push(true);
                        }
                        None => {
                            values.extend(std::iter::repeat_n(0f32, dim));
                            valid.push(false);
                        }
                    }
                }
                let fixed = datafusion::arrow::array::FixedSizeListArray::new(
                    Arc::new(Field::new_list_field(DataType::Float32, true)),
                    dim as i32,
                    Arc::new(Float32Array::from(values)),
                    Some(valid.into()),
                );
                match declared {
                    Some(_) => Arc::new(fixed),
                    None => {
                        datafusion::arrow::compute::cast(&fixed, args.return_field.data_type())?
                    }
                }
            }
            op => {
                let (a, b) = (&inputs[0], &inputs[1]);
                if a.0.dim() != b.0.dim() && !a.0.is_empty() && !b.0.is_empty() {
                    let any_a = (0..a.0.len()).any(|r| a.0.get(r).is_some());
                    let any_b = (0..b.0.len()).any(|r| b.0.get(r).is_some());
                    if any_a && any_b {
                        return exec_err!(
                            "{name}: the vectors have different dimensions ({} and {})",
                            a.0.dim(),
                            b.0.dim()
                        );
                    }
                }
                let mut out = Vec::with_capacity(rows);
                for r in 0..rows {
                    out.push(match (at(a, r), at(b, r)) {
                        (Some(x), Some(y)) => pair(op, x, y),
                        _ => None,
                    });
                }
                Arc::new(Float32Array::from(out))
            }
        };
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }
}

fn pair(op: Op, a: &[f32], b: &[f32]) -> Option<f32> {
    match op {
        Op::Similarity => Some(Metric::Euclidean.score(a, b)),
        Op::L2Distance => Some(kernels::l2_squared(a, b).sqrt()),
        Op::CosineSimilarity => cosine(a, b),
        Op::CosineDistance => cosine(a, b).map(|c| 1.0 - c),
        Op::InnerProduct => Some(kernels::dot(a, b)),
        _ => None,
    }
}

/// Cosine similarity; `None` when either vector has length zero.
pub fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    let denom = (kernels::norm_squared(a) * kernels::norm_squared(b)).sqrt();
    (denom > 0.0).then(|| (kernels::dot(a, b) / denom).clamp(-1.0, 1.0))
}
