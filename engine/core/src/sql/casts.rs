//! Where UUID and JSON values meet text, routed through Kestrel's checked conversions:
//!
//! - [`UuidComparisons`] runs before DataFusion's type coercion (which knows no rule for 16-byte binary against
//!   text): `id = 'a0ee...'`, `id IN ('...', ...)` and `BETWEEN` read the text side as a UUID.
//! - [`DialectCasts`] runs after it: every cast to a UUID (CAST, `::uuid`, INSERT of text into a UUID column)
//!   parses text as PostgreSQL does, a cast of a UUID to text writes its canonical form, a cast to JSON checks the
//!   text, a cast of text to a list reads PostgreSQL's `'{a,b}'` form, and INSERT/UPDATE of a JSON column checks
//!   every value it writes.

use super::json::check_call;
use super::types::{is_json, UUID_TYPE};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::{Between, Cast, InList, ScalarFunction, TryCast};
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{
    BinaryExpr, DmlStatement, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
    ScalarUDF, WriteOp,
};
use datafusion::optimizer::AnalyzerRule;
use std::sync::Arc;

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn call(udf: &Arc<ScalarUDF>, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), args))
}

/// Text compared with a UUID is read as a UUID.
#[derive(Debug, Default)]
pub struct UuidComparisons;

impl AnalyzerRule for UuidComparisons {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let to_uuid = Arc::new(super::uuid::to_uuid(true));
        plan.transform_up_with_subqueries(|plan| {
            let schema = merge_schema(&plan.inputs());
            let type_of = |e: &Expr| e.get_type(&schema).ok();
            let as_uuid = |e: Box<Expr>| -> Box<Expr> {
                if type_of(&e).is_some_and(|t| is_text(&t)) {
                    Box::new(call(&to_uuid, vec![*e]))
                } else {
                    e
                }
            };
            let is_uuid = |e: &Expr| type_of(e).is_some_and(|t| t == UUID_TYPE);
            plan.map_expressions(|expr| {
                expr.transform_up(|e| {
                    Ok(match e {
                        Expr::BinaryExpr(b)
                            if matches!(
                                b.op,
                                Operator::Eq
                                    | Operator::NotEq
                                    | Operator::Lt
                                    | Operator::LtEq
                                    | Operator::Gt
                                    | Operator::GtEq
                                    | Operator::IsDistinctFrom
                                    | Operator::IsNotDistinctFrom
                            ) =>
                        {
                            if is_uuid(&b.left) && !is_uuid(&b.right) {
                                Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                                    b.left,
                                    b.op,
                                    as_uuid(b.right),
                                )))
                            } else if is_uuid(&b.right) && !is_uuid(&b.left) {
                                Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                                    as_uuid(b.left),
                                    b.op,
                                    b.right,
                                )))
                            } else {
                                Transformed::no(Expr::BinaryExpr(b))
                            }
                        }
                        Expr::InList(l) if is_uuid(&l.expr) => {
                            let list = l.list.into_iter().map(|e| *as_uuid(Box::new(e))).collect();
                            Transformed::yes(Expr::InList(InList::new(l.expr, list, l.negated)))
                        }
                        Expr::Between(b) if is_uuid(&b.expr) => Transformed::yes(Expr::Between(
                            Between::new(b.expr, b.negated, as_uuid(b.low), as_uuid(b.high)),
                        )),
                        other => Transformed::no(other),
                    })
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kestrel_uuid_comparisons"
    }
}

/// Casts to and from UUID and JSON, and the JSON check on INSERT/UPDATE.
#[derive(Debug, Default)]
pub struct DialectCasts;

impl AnalyzerRule for DialectCasts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let to_uuid = Arc::new(super::uuid::to_uuid(true));
        let try_uuid = Arc::new(super::uuid::to_uuid(false));
        let uuid_text = Arc::new(super::uuid::uuid_text());
        let check_json = Arc::new(super::json::check_json());
        plan.transform_up_with_subqueries(|plan| {
            check_json_writes(plan, &check_json)?.transform_data(|plan| {
                let schema = merge_schema(&plan.inputs());
                plan.map_expressions(|expr| {
                    expr.transform_up(|e| {
                        let (inner, field, strict) = match &e {
                            Expr::Cast(Cast { expr, field }) => (expr, field, true),
                            Expr::TryCast(TryCast { expr, field }) => (expr, field, false),
                            _ => return Ok(Transformed::no(e)),
                        };
                        let target = field.data_type();
                        let from = inner.get_type(&schema).ok();
                        if target == &UUID_TYPE && from.as_ref() != Some(&UUID_TYPE) {
                            let f = if strict { &to_uuid } else { &try_uuid };
                            return Ok(Transformed::yes(call(f, vec![(**inner).clone()])));
                        }
                        if is_text(target) && from.as_ref() == Some(&UUID_TYPE) {
                            let text = call(&uuid_text, vec![(**inner).clone()]);
                            return Ok(Transformed::yes(if target == &DataType::Utf8 {
                                text
                            } else {
                                Expr::Cast(Cast::new(Box::new(text), target.clone()))
                            }));
                        }
                        if let (DataType::List(element), Some(from)) = (target, &from) {
                            if is_text(from) {
                                let f =
                                    Arc::new(super::arrays::text_to_array(element.clone(), strict));
                                return Ok(Transformed::yes(call(&f, vec![(**inner).clone()])));
                            }
                        }
                        if is_json(field) && strict {
                            return Ok(Transformed::yes(check_call(
                                check_json.clone(),
                                (**inner).clone(),
                                "JSON",
                            )));
                        }
                        Ok(Transformed::no(e))
                    })
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "kestrel_dialect_casts"
    }
}

/// INSERT and UPDATE of a table with JSON columns check the values written to them.
fn check_json_writes(
    plan: LogicalPlan,
    check_json: &Arc<ScalarUDF>,
) -> Result<Transformed<LogicalPlan>> {
    let dml = match plan {
        LogicalPlan::Dml(dml)
            if matches!(dml.op, WriteOp::Insert(_) | WriteOp::Update)
                && dml.target.schema().fields().iter().any(|f| is_json(f))
                && dml.input.schema().fields().len() == dml.target.schema().fields().len() =>
        {
            dml
        }
        other => return Ok(Transformed::no(other)),
    };
    let target = dml.target.schema();
    let input_schema: &DFSchema = dml.input.schema();
    let exprs: Vec<Expr> = input_schema
        .columns()
        .into_iter()
        .zip(target.fields())
        .map(|(column, field)| {
            let name = column.name.clone();
            let e = Expr::Column(column);
            if is_json(field) {
                check_call(check_json.clone(), e, &format!("column {}", field.name())).alias(name)
            } else {
                e
            }
        })
        .collect();
    let input = LogicalPlanBuilder::from(dml.input.as_ref().clone())
        .project(exprs)?
        .build()?;
    Ok(Transformed::yes(LogicalPlan::Dml(DmlStatement {
        input: Arc::new(input),
        ..dml
    })))
}
