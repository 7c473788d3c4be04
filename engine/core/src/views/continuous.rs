//! Materialized views over live (Kafka) tables, kept current by a background maintainer.
//!
//! - Append-only maps (filter/projection of one live table): the view's query runs over the new rows only and its
//!   result is appended.
//! - Decomposable aggregates (count/sum/min/max/avg/stddev/var/bool_and/bool_or grouped by columns or time
//!   buckets, over one live table): the view keeps a partial state per group (counts, sums, sums of squares,
//!   minima, maxima); new rows are aggregated into partials, merged into the state, and the view's rows are
//!   computed from the state (HAVING, ORDER BY and the outer projection re-run over the groups only).
//! - Anything else is re-run in full, at most once a second, when the source has new rows.
//!
//! Each view subscribes to its source's appends, so it takes in every row once, even rows the table's retention
//! evicts before the maintainer runs; those stay counted in incremental views (a continuous aggregate keeps history
//! the raw table no longer holds, as TimescaleDB's do).

use super::{Maintenance, MaterializedView, Registry};
use crate::stream::live::Subscription;
use crate::stream::{LiveTable, Sources};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{plan_err, Result, TableReference};
use datafusion::datasource::{provider_as_source, MemTable};
use datafusion::execution::context::SessionContext;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::{
    case, cast, col, lit, Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, Projection,
    TableScanBuilder,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the maintainer looks for new rows.
const TICK: Duration = Duration::from_millis(100);
/// Full recomputes run at most this often.
pub const RECOMPUTE_EVERY: Duration = Duration::from_secs(1);

/// A view's progress through its live source.
#[derive(Debug, Default)]
pub struct Progress {
    /// New source rows not taken in yet, and the live table they come from (a DROP and CREATE of the source
    /// makes a new table: the view then starts over from it).
    subscription: Option<Arc<Subscription>>,
    subscribed_to: std::sync::Weak<LiveTable>,
    /// Batches drained but not yet reflected in the view (a recompute waiting for its interval).
    undone: usize,
    /// Rows received but not yet taken in (a recompute view waits for its interval).
    pending: bool,
    /// Source batches whose update failed, tried again (before newer ones) on the next runs.
    retry: Vec<RecordBatch>,
    /// Failed runs in a row over the batches in `retry`.
    failures: usize,
    /// Partial aggregate state (incremental aggregates).
    state: Option<Vec<RecordBatch>>,
    last_recompute: Option<Instant>,
    pub error: Option<String>,
}

/// The live table a view reads, if it reads one.
pub fn live_source(view: &MaterializedView, sources: &Sources) -> Option<Arc<LiveTable>> {
    view.sources.iter().find_map(|s| {
        let r = TableReference::from(s.as_str());
        sources.get(s).or_else(|| sources.get(r.table()))
    })
}

/// One partial column per aggregate (avg and the variances need several).
#[derive(Debug, Clone)]
enum Merge {
    /// merged with sum (count, sum) / min / max / bool_and / bool_or over one partial column
    Same(usize, &'static str),
    Avg {
        sum: usize,
        count: usize,
    },
    Var {
        sum: usize,
        sq: usize,
        count: usize,
        population: bool,
        root: bool,
    },
}

struct Shape<'a> {
    aggregate: &'a Aggregate,
    source: TableReference,
    partials: Vec<Expr>,
    merges: Vec<Merge>,
}

fn shape<'a>(plan: &'a LogicalPlan, source: &TableReference) -> Result<Shape<'a>> {
    let mut found = None;
    plan.apply(|p| {
        if let LogicalPlan::Aggregate(a) = p {
            found = Some(a);
            return Ok(datafusion::common::tree_node::TreeNodeRecursion::Stop);
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    let Some(aggregate) = found else {
        return plan_err!("no aggregate in the view's plan");
    };
    let mut partials = Vec::new();
    let mut merges = Vec::new();
    for e in &aggregate.aggr_expr {
        let Expr::AggregateFunction(f) = e.clone().unalias() else {
            return plan_err!("aggregate expression {e} is not a plain call");
        };
        let with = |func: Expr| -> Expr {
            // keep the FILTER clause of the original call
            match (func, &f.params.filter) {
                (Expr::AggregateFunction(mut g), Some(filter)) => {
                    g.params.filter = Some(filter.clone());
                    Expr::AggregateFunction(g)
                }
                (func, _) => func,
            }
        };
        let arg = || f.params.args.first().cloned().unwrap_or(lit(1i64));
        let float = || cast(arg(), DataType::Float64);
        let mut push = |e: Expr| {
            partials.push(e.alias(format!("__p{}", partials.len())));
            partials.len() - 1
        };
        let merge = match f.func.name() {
            "count" => Merge::Same(push(Expr::AggregateFunction(f.clone())), "sum"),
            "sum" => Merge::Same(push(Expr::AggregateFunction(f.clone())), "sum"),
            "min" => Merge::Same(push(Expr::AggregateFunction(f.clone())), "min"),
            "max" => Merge::Same(push(Expr::AggregateFunction(f.clone())), "max"),
            "bool_and" => Merge::Same(push(Expr::AggregateFunction(f.clone())), "bool_and"),
            "bool_or" => Merge::Same(push(Expr::AggregateFunction(f.clone())), "bool_or"),
            "avg" => Merge::Avg {
                sum: push(with(sum(float()))),
                count: push(with(count(arg()))),
            },
            name @ ("stddev" | "stddev_pop" | "var" | "var_pop") => Merge::Var {
                sum: push(with(sum(float()))),
                sq: push(with(sum(float() * float()))),
                count: push(with(count(arg()))),
                population: name.ends_with("_pop"),
                root: name.starts_with("stddev"),
            },
            other => return plan_err!("{other} is not maintained incrementally"),
        };
        merges.push(merge);
    }
    Ok(Shape {
        aggregate,
        source: source.clone(),
        partials,
        merges,
    })
}

/// The plan with the source's scan reading `batches` instead.
fn over(
    plan: &LogicalPlan,
    source: &TableReference,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<LogicalPlan> {
    let table = Arc::new(MemTable::try_new(schema, vec![batches])?);
    Ok(plan
        .clone()
        .transform_up(|p| match p {
            LogicalPlan::TableScan(s) if &s.table_name == source => {
                let scan =
                    TableScanBuilder::new(s.table_name.clone(), provider_as_source(table.clone()))
                        .with_projection(s.projection.clone())
                        .with_filters(s.filters.clone())
                        .with_fetch(s.fetch)
                        .build()?;
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

fn loose(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ))
}

/// The batches with `schema`'s field names and types (casting where an aggregate of an aggregate widened a type,
/// as sum of a DECIMAL sum does).
fn rewrap(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
    batches
        .into_iter()
        .map(|b| {
            let columns = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    if c.data_type() == f.data_type() {
                        Ok(c.clone())
                    } else {
                        datafusion::arrow::compute::cast(c, f.data_type())
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

async fn collect(ctx: &SessionContext, plan: LogicalPlan) -> Result<Vec<RecordBatch>> {
    ctx.execute_logical_plan(plan).await?.collect().await
}

/// Takes in the source rows appended since the view last looked. Returns whether anything changed. One run at a
/// time per view (the maintainer and REFRESH both come here).
pub async fn maintain(
    ctx: &SessionContext,
    view: &MaterializedView,
    live: &Arc<LiveTable>,
) -> Result<bool> {
    let _one_at_a_time = view.maintaining.lock().await;
    let poisoned = || datafusion::common::DataFusionError::Internal("view state poisoned".into());
    let (rows, taken, sub) = {
        let mut p = view.progress.lock().map_err(|_| poisoned())?;
        let same_table = p
            .subscribed_to
            .upgrade()
            .is_some_and(|t| Arc::ptr_eq(&t, live));
        if p.subscription.is_none() || !same_table {
            // the first look (or a new source table): everything held now, then every append
            let (sub, held) = live.subscribe();
            let fresh = p.subscription.is_some();
            *p = Progress {
                subscription: Some(sub),
                subscribed_to: Arc::downgrade(live),
                ..Progress::default()
            };
            drop(p);
            if fresh {
                view.install(vec![], Duration::ZERO, 1);
            }
            // rows held at subscription are not counted as pending in the subscription
            (held, 0, None)
        } else {
            let sub = p.subscription.clone();
            let fresh = sub.as_ref().map(|s| s.drain()).unwrap_or_default();
            let taken = fresh.len();
            // batches of an earlier failed run go first, so the view takes rows in their order
            let mut rows = std::mem::take(&mut p.retry);
            rows.extend(fresh);
            (rows, taken, sub)
        }
    };
    finish(ctx, view, live, rows, taken, sub).await
}

/// A view update that fails is tried again with the next runs (a transient failure loses nothing); after this
/// many failures in a row its rows are skipped and the error says how many.
const TRIES: usize = 3;

async fn finish(
    ctx: &SessionContext,
    view: &MaterializedView,
    live: &Arc<LiveTable>,
    rows: Vec<RecordBatch>,
    taken: usize,
    sub: Option<Arc<Subscription>>,
) -> Result<bool> {
    let poisoned = || datafusion::common::DataFusionError::Internal("view state poisoned".into());
    let kept = rows.clone();
    let result = apply(ctx, view, live, rows).await;
    let mut p = view.progress.lock().map_err(|_| poisoned())?;
    let recompute = matches!(view.maintenance, Maintenance::Recompute { .. });
    let result = match result {
        // a recompute re-runs the whole query next time anyway: nothing to keep
        Err(e) if !recompute && !kept.is_empty() => {
            p.failures += 1;
            if p.failures < TRIES {
                p.retry = kept;
                // still pending for kafka_wait
                p.undone += taken;
                return Err(e);
            }
            p.failures = 0;
            let rows: usize = kept.iter().map(|b| b.num_rows()).sum();
            Err(datafusion::common::DataFusionError::Execution(format!(
                "{rows} source rows were skipped after {TRIES} failed updates: {e}"
            )))
        }
        other => {
            p.failures = 0;
            other
        }
    };
    if recompute && matches!(result, Ok(false)) {
        // not recomputed yet: these rows are still pending for kafka_wait
        p.undone += taken;
    } else if let Some(sub) = sub {
        // applied, or given up on (the failure shows in sys.views.last_error)
        sub.done(taken + std::mem::take(&mut p.undone));
    }
    result
}

async fn apply(
    ctx: &SessionContext,
    view: &MaterializedView,
    live: &LiveTable,
    rows: Vec<RecordBatch>,
) -> Result<bool> {
    let started = Instant::now();
    match &view.maintenance {
        Maintenance::Recompute { .. } => {
            let due = {
                let mut p = view.progress.lock().map_err(|_| {
                    datafusion::common::DataFusionError::Internal("poisoned".into())
                })?;
                p.pending |= !rows.is_empty();
                // a window moving with now() changes with the clock, new rows or not
                (p.pending || view.moving)
                    && p.last_recompute
                        .is_none_or(|t| t.elapsed() >= RECOMPUTE_EVERY)
            };
            if !due {
                return Ok(false);
            }
            let (_, batches) = super::Registry::run(ctx, &view.query).await?;
            let batches = rewrap(&view.schema, batches)?;
            view.install(
                batches,
                started.elapsed(),
                ctx.state_ref().read().config().target_partitions(),
            );
            if let Ok(mut p) = view.progress.lock() {
                p.pending = false;
                p.last_recompute = Some(Instant::now());
            }
            Ok(true)
        }
        Maintenance::AppendMap { source } => {
            if rows.is_empty() {
                return Ok(false);
            }
            let plan = over(&view.plan, source, live.schema(), rows)?;
            let batches = rewrap(&view.schema, collect(ctx, plan).await?)?;
            view.append(batches, started.elapsed());
            Ok(true)
        }
        Maintenance::Aggregate { source, .. } => {
            if rows.is_empty() {
                return Ok(false);
            }
            let s = shape(&view.plan, source)?;
            // partial aggregates of the new rows
            let input = over(&s.aggregate.input, &s.source, live.schema(), rows)?;
            let groups: Vec<Expr> = s
                .aggregate
                .group_expr
                .iter()
                .enumerate()
                .map(|(i, g)| g.clone().alias(format!("__g{i}")))
                .collect();
            let partial = LogicalPlan::Aggregate(Aggregate::try_new(
                Arc::new(input),
                groups,
                s.partials.clone(),
            )?);
            let state_schema = loose(partial.schema().as_arrow());
            let fresh = rewrap(&state_schema, collect(ctx, partial).await?)?;
            // merged with the state so far
            let old = view
                .progress
                .lock()
                .ok()
                .and_then(|p| p.state.clone())
                .unwrap_or_default();
            let mut all = old;
            all.extend(fresh);
            let n_groups = s.aggregate.group_expr.len();
            let merge_table = Arc::new(MemTable::try_new(state_schema.clone(), vec![all])?);
            let merge_exprs: Vec<Expr> = (0..s.partials.len())
                .map(|j| {
                    let c = col(format!("__p{j}"));
                    let how = s.merges.iter().find_map(|m| match m {
                        Merge::Same(i, how) if *i == j => Some(*how),
                        _ => None,
                    });
                    let e = match how {
                        Some("min") => min(c),
                        Some("max") => max(c),
                        Some("bool_and") => datafusion::functions_aggregate::expr_fn::bool_and(c),
                        Some("bool_or") => datafusion::functions_aggregate::expr_fn::bool_or(c),
                        _ => sum(c),
                    };
                    e.alias(format!("__p{j}"))
                })
                .collect();
            let merged =
                LogicalPlanBuilder::scan("__state", provider_as_source(merge_table), None)?
                    .aggregate(
                        (0..n_groups)
                            .map(|i| col(format!("__g{i}")))
                            .collect::<Vec<_>>(),
                        merge_exprs,
                    )?
                    .build()?;
            let state = rewrap(&state_schema, collect(ctx, merged).await?)?;
            // the view's rows from the state
            let state_table = Arc::new(MemTable::try_new(
                state_schema.clone(),
                vec![state.clone()],
            )?);
            let scan = LogicalPlanBuilder::scan("__state", provider_as_source(state_table), None)?
                .build()?;
            let out = s.aggregate.schema.clone();
            let mut exprs = Vec::new();
            for i in 0..n_groups {
                let (q, f) = out.qualified_field(i);
                exprs.push(col(format!("__g{i}")).alias_qualified(q.cloned(), f.name()));
            }
            for (j, m) in s.merges.iter().enumerate() {
                let (q, f) = out.qualified_field(n_groups + j);
                let p = |i: usize| col(format!("__p{i}"));
                let e = match m {
                    Merge::Same(i, _) => p(*i),
                    Merge::Avg { sum, count } => case(p(*count).gt(lit(0i64)))
                        .when(
                            lit(true),
                            cast(p(*sum), DataType::Float64) / cast(p(*count), DataType::Float64),
                        )
                        .end()?,
                    Merge::Var {
                        sum,
                        sq,
                        count,
                        population,
                        root,
                    } => {
                        let n = cast(p(*count), DataType::Float64);
                        let ss = p(*sq) - p(*sum) * p(*sum) / n.clone();
                        let (min_n, denom) = if *population {
                            (0i64, n)
                        } else {
                            (1i64, n - lit(1.0))
                        };
                        let var =
                            datafusion::functions::expr_fn::greatest(vec![ss / denom, lit(0.0)]);
                        let v = if *root {
                            datafusion::functions::expr_fn::sqrt(var)
                        } else {
                            var
                        };
                        case(p(*count).gt(lit(min_n))).when(lit(true), v).end()?
                    }
                };
                exprs.push(cast(e, f.data_type().clone()).alias_qualified(q.cloned(), f.name()));
            }
            let replacement = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(scan))?);
            let mut replaced = false;
            let plan = view
                .plan
                .clone()
                .transform_down(|p| match p {
                    LogicalPlan::Aggregate(_) if !replaced => {
                        replaced = true;
                        Ok(Transformed::yes(replacement.clone()))
                    }
                    other => Ok(Transformed::no(other)),
                })?
                .data;
            let batches = rewrap(&view.schema, collect(ctx, plan).await?)?;
            view.install(
                batches,
                started.elapsed(),
                ctx.state_ref().read().config().target_partitions(),
            );
            if let Ok(mut p) = view.progress.lock() {
                p.state = Some(state);
            }
            Ok(true)
        }
    }
}

/// Stops the maintainer when the last handle of the engine goes away.
#[derive(Debug)]
pub struct MaintainerHandle(Arc<AtomicBool>);

impl Drop for MaintainerHandle {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Starts the background maintainer of continuous views (one thread, its own small runtime).
pub fn spawn(ctx: SessionContext, views: Arc<Registry>, sources: Arc<Sources>) -> MaintainerHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let started = std::thread::Builder::new()
        .name("kestrel-views".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                for view in views.views() {
                    let Some(live) = live_source(&view, &sources) else {
                        // a continuous view over in-memory tables whose window moves with the clock
                        let due = view.on_write
                            && view.moving
                            && view.refreshed.lock().is_ok_and(|r| {
                                r.at.elapsed().unwrap_or_default() >= RECOMPUTE_EVERY
                            });
                        if due {
                            let run = std::panic::AssertUnwindSafe(|| {
                                rt.block_on(views.recompute(&ctx, &view))
                            });
                            let _ = std::panic::catch_unwind(run);
                        }
                        continue;
                    };
                    let run =
                        std::panic::AssertUnwindSafe(|| rt.block_on(maintain(&ctx, &view, &live)));
                    let r = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                        Err(datafusion::common::DataFusionError::Internal(
                            "maintaining the view panicked; REFRESH MATERIALIZED VIEW rebuilds it"
                                .into(),
                        ))
                    });
                    if let Ok(mut p) = view.progress.lock() {
                        // an error stays until an update succeeds (an idle run says nothing new)
                        match r {
                            Err(e) => p.error = Some(e.to_string()),
                            Ok(true) => p.error = None,
                            Ok(false) => {}
                        }
                    }
                }
            }
        });
    if started.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    MaintainerHandle(stop)
}

/// Used by CREATE MATERIALIZED VIEW over a live table: the first rows come through the same path as later ones,
/// so no row is counted twice or missed between the snapshot and the first update.
pub async fn initial(
    ctx: &SessionContext,
    view: &MaterializedView,
    live: &Arc<LiveTable>,
) -> Result<()> {
    {
        let _one_at_a_time = view.maintaining.lock().await;
        if let Ok(mut p) = view.progress.lock() {
            *p = Progress::default();
        }
        view.install(vec![], Duration::ZERO, 1);
    }
    maintain(ctx, view, live).await?;
    Ok(())
}
