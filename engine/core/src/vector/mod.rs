//! Vector search: the `FLOAT_VECTOR(n)` type, vector functions, `KNN_MATCH` with `_score`, and HNSW indexes.
//!
//! - [`convert`]: the type (Arrow `FixedSizeList<Float32, n>`) and checked conversions into it;
//! - [`functions`]: `vector_similarity`, `l2_distance`, `cosine_similarity`, ... ;
//! - [`knn`]: KNN_MATCH planning (filter pushdown into a scoring table) and exact search;
//! - [`index`]: segmented HNSW indexes (hora behind our own trait) that stay fresh as rows arrive;
//! - [`statements`]: CREATE INDEX / DROP INDEX, recognised from the parsed statement.

pub mod convert;
pub mod functions;
pub mod index;
pub mod kernels;
pub mod knn;
pub mod statements;
pub mod subqueries;

use datafusion::arrow::datatypes::{Field, FieldRef};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast;
use std::sync::Arc;

pub use statements::Registry;

/// How nearness is measured. Distances are "smaller is nearer"; scores are "higher is nearer".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Squared L2 distance; score = 1 / (1 + d) (CrateDB's VECTOR_SIMILARITY).
    Euclidean,
    /// 1 - cosine similarity; score = cosine similarity.
    Cosine,
    /// Negative inner product; score = inner product.
    Dot,
}

impl Metric {
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "euclidean" | "l2" => Some(Metric::Euclidean),
            "cosine" => Some(Metric::Cosine),
            "dot" | "inner_product" | "ip" => Some(Metric::Dot),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
        }
    }

    /// Distance from a prepared query; `None` where the metric is undefined (cosine with a zero vector).
    #[inline]
    pub fn distance_prepared(self, query: &knn::PreparedQuery, v: &[f32]) -> Option<f32> {
        match self {
            Metric::Euclidean => Some(kernels::l2_squared(&query.vector, v)),
            Metric::Cosine => {
                let norm = kernels::norm_squared(v).sqrt() * query.norm;
                (norm > 0.0).then(|| 1.0 - (kernels::dot(&query.vector, v) / norm).clamp(-1.0, 1.0))
            }
            Metric::Dot => Some(-kernels::dot(&query.vector, v)),
        }
        // Overflow to infinity or NaN cannot be ranked.
        .filter(|d| !d.is_nan())
    }

    pub fn score_from_distance(self, distance: f32) -> f32 {
        match self {
            Metric::Euclidean => 1.0 / (1.0 + distance),
            Metric::Cosine => 1.0 - distance,
            Metric::Dot => -distance,
        }
    }

    /// The score of two vectors (for euclidean: VECTOR_SIMILARITY).
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        let q = knn::PreparedQuery::new(a);
        self.distance_prepared(&q, b)
            .map_or(f32::NAN, |d| self.score_from_distance(d))
    }
}

/// Plans `FLOAT_VECTOR(n)` in CREATE TABLE and CAST.
#[derive(Debug, Default)]
pub struct VectorTypes;

impl TypePlanner for VectorTypes {
    fn plan_type_field(&self, sql_type: &ast::DataType) -> Result<Option<FieldRef>> {
        let ast::DataType::Custom(name, modifiers) = sql_type else {
            return Ok(None);
        };
        let is_vector = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case("float_vector"));
        if !is_vector {
            return Ok(None);
        }
        let dims = match modifiers.as_slice() {
            [n] => match n.trim().parse::<i64>() {
                Ok(n) => convert::check_dims(n)?,
                Err(_) => return plan_err!("FLOAT_VECTOR dimension must be a number, got '{n}'"),
            },
            [] => return plan_err!("FLOAT_VECTOR needs its dimension, e.g. FLOAT_VECTOR(384)"),
            _ => return plan_err!("FLOAT_VECTOR takes one dimension, e.g. FLOAT_VECTOR(384)"),
        };
        Ok(Some(Arc::new(Field::new(
            "",
            convert::vector_type(dims),
            true,
        ))))
    }
}

/// Plans an array literal of plain numbers (`[0.12, -0.5, ...]`, how a query vector is written) as one constant
/// list, typed as `make_array` would type it (Int64 for whole numbers, Float64 otherwise). `make_array` with 384
/// arguments costs milliseconds in every optimizer pass; a single literal costs nothing.
#[derive(Debug, Default)]
pub struct ArrayLiterals;

impl datafusion::logical_expr::planner::ExprPlanner for ArrayLiterals {
    fn plan_array_literal(
        &self,
        exprs: Vec<datafusion::logical_expr::Expr>,
        _schema: &datafusion::common::DFSchema,
    ) -> Result<datafusion::logical_expr::planner::PlannerResult<Vec<datafusion::logical_expr::Expr>>>
    {
        use datafusion::arrow::datatypes::DataType;
        use datafusion::common::ScalarValue;
        use datafusion::logical_expr::planner::PlannerResult;
        use datafusion::logical_expr::Expr;
        let mut any_float = false;
        let mut literals = Vec::with_capacity(exprs.len());
        for e in &exprs {
            // `-0.5` arrives as Negative(0.5).
            let (v, negative) = match e {
                Expr::Literal(v, None) => (v, false),
                Expr::Negative(inner) => match inner.as_ref() {
                    Expr::Literal(v, None) => (v, true),
                    _ => return Ok(PlannerResult::Original(exprs)),
                },
                _ => return Ok(PlannerResult::Original(exprs)),
            };
            let t = v.data_type();
            if v.is_null() || !(t.is_integer() || t.is_floating()) {
                return Ok(PlannerResult::Original(exprs));
            }
            any_float |= t.is_floating();
            literals.push(if negative {
                v.arithmetic_negate()?
            } else {
                v.clone()
            });
        }
        if literals.is_empty() {
            return Ok(PlannerResult::Original(exprs));
        }
        let target = if any_float {
            DataType::Float64
        } else {
            DataType::Int64
        };
        let values = literals
            .iter()
            .map(|v| v.cast_to(&target))
            .collect::<Result<Vec<ScalarValue>>>()?;
        let list = ScalarValue::new_list_nullable(&values, &target);
        Ok(PlannerResult::Planned(Expr::Literal(
            ScalarValue::List(list),
            None,
        )))
    }
}
