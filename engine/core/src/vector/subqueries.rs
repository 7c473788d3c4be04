//! Uncorrelated subqueries in a KNN_MATCH filter, evaluated before the scan is planned.
//!
//! DataFusion turns subqueries into joins before filters are pushed into scans, which would leave them out of
//! KNN_MATCH's pre-filter: `KNN_MATCH(e, q, 10) AND id IN (SELECT ...)` would rank first and filter after, returning
//! fewer than 10 rows. In a WHERE clause that calls KNN_MATCH, every uncorrelated subquery is therefore run first:
//! the query vector `(SELECT embedding ...)` and any scalar subquery become constants, `x [NOT] IN (SELECT ...)`
//! becomes `x [NOT] IN (values)`. Correlated subqueries are left to DataFusion.

use super::knn::{contains_knn, KNN_MATCH};
use datafusion::arrow::array::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{plan_err, Result, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::expr::{InList, InSubquery};
use datafusion::logical_expr::{Expr, LogicalPlan, Subquery};

/// What a subquery of a KNN filter becomes.
enum Resolved {
    Scalar(Subquery, ScalarValue),
    List(Subquery, Vec<Expr>),
}

fn is_query_vector(predicate: &Expr, s: &Subquery) -> bool {
    let mut found = false;
    let _ = predicate.apply(|e| {
        if let Expr::ScalarFunction(f) = e {
            if f.name() == KNN_MATCH
                && matches!(f.args.get(1), Some(Expr::ScalarSubquery(q)) if q == s)
            {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

async fn run(ctx: &SessionContext, s: &Subquery) -> Result<Vec<RecordBatch>> {
    let batches = ctx
        .execute_logical_plan(s.subquery.as_ref().clone())
        .await?
        .collect()
        .await?;
    if batches.first().is_some_and(|b| b.num_columns() != 1) {
        return plan_err!("a subquery in a KNN_MATCH filter must return one column");
    }
    Ok(batches)
}

fn values(batches: &[RecordBatch]) -> Result<Vec<ScalarValue>> {
    let mut out = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            out.push(ScalarValue::try_from_array(b.column(0), row)?);
        }
    }
    Ok(out)
}

/// Evaluates the uncorrelated subqueries of every WHERE clause that calls KNN_MATCH.
pub async fn resolve(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan> {
    // Collect: (subquery, is it KNN_MATCH's query vector, is it an IN list)
    let mut found: Vec<(Subquery, bool, bool)> = Vec::new();
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Filter(filter) = node {
            if contains_knn(&filter.predicate) {
                filter.predicate.apply(|e| {
                    match e {
                        Expr::ScalarSubquery(s) if s.outer_ref_columns.is_empty() => {
                            found.push((s.clone(), is_query_vector(&filter.predicate, s), false));
                        }
                        Expr::InSubquery(InSubquery { subquery, .. })
                            if subquery.outer_ref_columns.is_empty() =>
                        {
                            found.push((subquery.clone(), false, true));
                        }
                        _ => {}
                    }
                    Ok(TreeNodeRecursion::Continue)
                })?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if found.is_empty() {
        return Ok(plan);
    }
    let mut resolved = Vec::with_capacity(found.len());
    for (s, query_vector, in_list) in found {
        let batches = run(ctx, &s).await?;
        let mut vals = values(&batches)?;
        if in_list {
            let list = vals.into_iter().map(|v| Expr::Literal(v, None)).collect();
            resolved.push(Resolved::List(s, list));
            continue;
        }
        if query_vector && vals.len() != 1 {
            return plan_err!(
                "KNN_MATCH: the query vector subquery returned {} rows; it must return exactly one vector",
                vals.len()
            );
        }
        let value = match vals.len() {
            0 => ScalarValue::Null,
            1 => vals.remove(0),
            n => {
                return plan_err!(
                    "a scalar subquery in a KNN_MATCH filter returned {n} rows; it must return one"
                )
            }
        };
        resolved.push(Resolved::Scalar(s, value));
    }
    let plan = plan
        .transform_up_with_subqueries(|node| {
            node.map_expressions(|e| {
                e.transform_up(|e| {
                    let replacement = match &e {
                        Expr::ScalarSubquery(s) => resolved.iter().find_map(|r| match r {
                            Resolved::Scalar(q, v) if q == s => {
                                Some(Expr::Literal(v.clone(), None))
                            }
                            _ => None,
                        }),
                        Expr::InSubquery(InSubquery {
                            expr,
                            subquery,
                            negated,
                        }) => resolved.iter().find_map(|r| match r {
                            Resolved::List(q, list) if q == subquery => Some(Expr::InList(
                                InList::new(expr.clone(), list.clone(), *negated),
                            )),
                            _ => None,
                        }),
                        _ => None,
                    };
                    Ok(match replacement {
                        Some(r) => Transformed::yes(r),
                        None => Transformed::no(e),
                    })
                })
            })
        })?
        .data;
    Ok(plan)
}
