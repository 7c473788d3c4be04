//! Engine-wide plan rules that are not tied to one extension.
//!
//! [`CheapConditionsFirst`]: DataFusion evaluates the conditions of a WHERE clause in the order written, and only
//! narrows the rows a later condition sees when an earlier one leaves few. A training-set query typically writes
//! `sensor_id IN (... 200 names ...) AND ts >= ... AND ts < ...`: the string IN list runs on every row while the
//! time range would have dropped most of them first. This rule moves simple comparisons of a column with a
//! constant (which cannot fail) ahead of the other conditions, keeping the order within each group. (DataFusion
//! may still evaluate a later condition on every row, so this never promises guard semantics; it only makes the
//! cheap filtering come first.) Measured on the 10M-row training-set query of bench/time_windows.py: 131 → 106 ms.

use datafusion::common::tree_node::Transformed;
use datafusion::common::Result;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Filter, LogicalPlan, Operator};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct CheapConditionsFirst;

fn is_column(e: &Expr) -> bool {
    match e {
        Expr::Column(_) => true,
        Expr::Cast(c) => is_column(&c.expr),
        _ => false,
    }
}

fn is_constant(e: &Expr) -> bool {
    match e {
        Expr::Literal(..) => true,
        Expr::Cast(c) => is_constant(&c.expr),
        _ => false,
    }
}

/// A comparison of a column with constants: cheap, and it cannot raise an error.
fn is_simple(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
            ) && ((is_column(left) && is_constant(right))
                || (is_constant(left) && is_column(right)))
        }
        Expr::Between(Between {
            expr, low, high, ..
        }) => is_column(expr) && is_constant(low) && is_constant(high),
        Expr::IsNull(e) | Expr::IsNotNull(e) => is_column(e),
        _ => false,
    }
}

impl OptimizerRule for CheapConditionsFirst {
    fn name(&self) -> &str {
        "kestrel_cheap_conditions_first"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Filter(filter) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let parts = split_conjunction(&filter.predicate);
        if parts.len() < 2 || parts.iter().any(|e| e.is_volatile()) {
            return Ok(Transformed::no(plan));
        }
        let first_complex = parts.iter().position(|e| !is_simple(e));
        let needs_move = match first_complex {
            Some(i) => parts[i..].iter().any(|e| is_simple(e)),
            None => false,
        };
        if !needs_move {
            return Ok(Transformed::no(plan));
        }
        let (simple, rest): (Vec<&Expr>, Vec<&Expr>) =
            parts.into_iter().partition(|e| is_simple(e));
        let Some(predicate) = conjunction(simple.into_iter().chain(rest).cloned()) else {
            return Ok(Transformed::no(plan));
        };
        Ok(Transformed::yes(LogicalPlan::Filter(Filter::try_new(
            predicate,
            Arc::clone(&filter.input),
        )?)))
    }
}
