//! Time windows and feature engineering: `time_bucket`, the window table functions TUMBLE/HOP/SESSION, gap
//! filling (`time_bucket_gapfill`, `locf`, `interpolate`), ASOF joins, and the drift statistics `ks_statistic`
//! and `psi`. JSON access (`->`, `->>`, `json_*`) comes from datafusion-functions-json, registered in lib.rs.

pub mod asof;
pub mod bucket;
pub mod drift;
pub mod gapfill;
pub mod sliding;
pub mod windows;

use datafusion::execution::context::SessionContext;
use std::sync::Arc;

/// Registers the functions of this extension (the analyzer rules and planners are set up with the session).
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(bucket::TimeBucket::udf());
    ctx.register_udf(bucket::TimeBucket::gapfill_udf());
    for f in gapfill::FillFunction::udfs() {
        ctx.register_udf(f);
    }
    ctx.register_udf(asof::AsofMarker::udf());
    for f in drift::udafs() {
        ctx.register_udaf(f);
    }
    // Table functions are looked up by the name as typed; accept the usual spellings.
    for (name, f) in windows::all() {
        let mut cap = name.to_string();
        cap[..1].make_ascii_uppercase();
        for spelling in [name.to_string(), name.to_uppercase(), cap] {
            ctx.register_udtf(&spelling, f.clone());
        }
    }
}

/// The physical planners for this extension's plan nodes.
pub fn extension_planners(
) -> Vec<Arc<dyn datafusion::physical_planner::ExtensionPlanner + Send + Sync>> {
    vec![
        Arc::new(asof::AsofPlanner),
        Arc::new(gapfill::GapFillPlanner),
    ]
}

/// `ExecutionPlan::apply_expressions` for an operator holding these expressions: visits each in turn, stopping
/// where `f` says so.
pub fn visit_exprs<'a>(
    exprs: impl IntoIterator<Item = &'a Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    f: &mut dyn FnMut(
        &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    ) -> datafusion::common::Result<
        datafusion::common::tree_node::TreeNodeRecursion,
    >,
) -> datafusion::common::Result<datafusion::common::tree_node::TreeNodeRecursion> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    for e in exprs {
        if f(e)? == TreeNodeRecursion::Stop {
            return Ok(TreeNodeRecursion::Stop);
        }
    }
    Ok(TreeNodeRecursion::Continue)
}
