//! Materialized views: `CREATE MATERIALIZED VIEW v AS query`, `REFRESH MATERIALIZED VIEW v`,
//! `DROP MATERIALIZED VIEW v`, and `sys.views`.
//!
//! A view is a [`ViewTable`]-like provider whose rows are the query's result at the last refresh: over ordinary
//! tables a snapshot until REFRESH. Each view keeps its query (re-planned on refresh, so it sees tables created
//! since) and the analysis of its plan, [`Maintenance`]: whether the query is an append-only map (filter and
//! projection over one table) or a decomposable aggregate (count/sum/min/max/avg grouped by columns or time
//! buckets) over one table. That is what a live source (Kafka) needs to maintain a view incrementally: it hands
//! new rows to the view instead of re-running the query ([`continuous`]).

pub mod continuous;

use crate::outcome::group_thousands;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{plan_err, DataFusionError, Result, TableReference};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectName, ObjectType};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// How a view can be kept up to date when its source only grows.
#[derive(Debug, Clone, PartialEq)]
pub enum Maintenance {
    /// Filter/projection over one table: new source rows map to new view rows.
    AppendMap { source: TableReference },
    /// Aggregates that combine partial results (count, sum, min, max, avg, stddev, var) grouped by expressions of one table.
    Aggregate {
        source: TableReference,
        group_by: Vec<Expr>,
        aggregates: Vec<Expr>,
    },
    /// Anything else (joins, windows, DISTINCT, ORDER BY ... LIMIT, percentiles): recomputed on refresh.
    Recompute { reason: String },
}

impl Maintenance {
    pub fn incremental(&self) -> bool {
        !matches!(self, Maintenance::Recompute { .. })
    }

    /// Reads the plan's shape.
    pub fn of(plan: &LogicalPlan) -> Self {
        // aggregates whose partial states merge (variances through count, mean and M2)
        const DECOMPOSABLE: [&str; 11] = [
            "count",
            "sum",
            "min",
            "max",
            "avg",
            "stddev",
            "stddev_pop",
            "var",
            "var_pop",
            "bool_and",
            "bool_or",
        ];
        let recompute = |reason: &str| Maintenance::Recompute {
            reason: reason.into(),
        };
        // a window that moves with the clock drops rows that no new row tells about
        if moving_time(plan) {
            return recompute("a time window that moves with now()");
        }
        let mut p = plan;
        let mut aggregate = None;
        // ORDER BY / LIMIT above an aggregate re-run over the groups; over raw rows they are not append-only.
        let mut ordered = false;
        loop {
            match p {
                LogicalPlan::Projection(x) => p = &x.input,
                LogicalPlan::SubqueryAlias(x) => p = &x.input,
                // a subquery reads another table (or the whole source): not from new rows alone
                _ if p.expressions().iter().any(|e| {
                    e.exists(|e| {
                        Ok(matches!(
                            e,
                            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
                        ))
                    })
                    .unwrap_or(true)
                }) =>
                {
                    return recompute("a subquery");
                }
                // WHERE below an aggregate applies to new rows; HAVING above it re-runs over the groups.
                LogicalPlan::Filter(x) => p = &x.input,
                LogicalPlan::Sort(x) if aggregate.is_none() => {
                    ordered = true;
                    p = &x.input
                }
                LogicalPlan::Limit(x) if aggregate.is_none() => {
                    ordered = true;
                    p = &x.input
                }
                LogicalPlan::Aggregate(a) if aggregate.is_none() => {
                    if a.group_expr
                        .iter()
                        .any(|e| matches!(e, Expr::GroupingSet(_)))
                    {
                        return recompute("GROUPING SETS / ROLLUP / CUBE");
                    }
                    for e in &a.aggr_expr {
                        let Expr::AggregateFunction(f) = e.clone().unalias() else {
                            return recompute("an aggregate expression is not a plain call");
                        };
                        if f.params.distinct
                            || !f.params.order_by.is_empty()
                            || !DECOMPOSABLE.contains(&f.func.name())
                        {
                            return recompute(&format!(
                                "{}{} does not combine from partial results",
                                f.func.name(),
                                if f.params.distinct { " DISTINCT" } else { "" }
                            ));
                        }
                    }
                    aggregate = Some(a);
                    p = &a.input;
                }
                LogicalPlan::TableScan(scan) => {
                    let source = scan.table_name.clone();
                    return match aggregate {
                        Some(a) => Maintenance::Aggregate {
                            source,
                            group_by: a.group_expr.clone(),
                            aggregates: a.aggr_expr.clone(),
                        },
                        None if ordered => recompute("ORDER BY / LIMIT over rows"),
                        None => Maintenance::AppendMap { source },
                    };
                }
                LogicalPlan::Aggregate(_) => return recompute("nested aggregates"),
                other => {
                    return recompute(&format!(
                        "{} in the query",
                        other
                            .display()
                            .to_string()
                            .split(':')
                            .next()
                            .unwrap_or("a plan node")
                    ))
                }
            }
        }
    }
}

/// Whether the plan reads the clock (`now()`, `current_date`, ...): its result changes as time passes.
pub fn moving_time(plan: &LogicalPlan) -> bool {
    const CLOCK: [&str; 4] = ["now", "current_timestamp", "current_date", "current_time"];
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        for e in p.expressions() {
            let uses = e
                .exists(|e| {
                    Ok(matches!(e, Expr::ScalarFunction(f) if CLOCK.contains(&f.func.name())))
                })
                .unwrap_or(false);
            if uses {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

#[derive(Debug, Clone)]
struct Refreshed {
    rows: u64,
    at: SystemTime,
    took: Duration,
}

/// One materialized view: its definition and its current rows.
#[derive(Debug)]
pub struct MaterializedView {
    pub name: TableReference,
    /// the query, as SQL
    pub definition: String,
    query: ast::Query,
    schema: SchemaRef,
    sources: Vec<String>,
    maintenance: Maintenance,
    /// The query's logical plan (re-run over new rows of a live source).
    plan: LogicalPlan,
    /// Progress through a live source.
    progress: Mutex<continuous::Progress>,
    /// Whether a live (Kafka) table keeps the view current.
    continuous: bool,
    /// `WITH (timescaledb.continuous)`: writes to its in-memory source tables refresh it.
    on_write: bool,
    /// Its query reads the clock: a continuous view is recomputed as time passes.
    moving: bool,
    /// Held while the view takes in rows (the maintainer) or is rebuilt (REFRESH).
    maintaining: tokio::sync::Mutex<()>,
    partitions: RwLock<Arc<Vec<Vec<RecordBatch>>>>,
    /// Bumped (under the `partitions` lock) each time the rows are replaced rather than appended to: an index over
    /// the view then rebuilds, while appended batches only extend it.
    generation: AtomicU64,
    refreshed: Mutex<Refreshed>,
}

impl MaterializedView {
    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    /// How the view is kept current, in words (sys.views.maintained).
    pub fn maintained(&self) -> String {
        let sources = self.sources.join(", ");
        let every = continuous::RECOMPUTE_EVERY.as_secs_f64();
        match (&self.maintenance, self.continuous, self.on_write) {
            (Maintenance::Recompute { reason }, true, _) if self.moving => format!(
                "recomputed every {every} s from {sources} ({reason}), and as rows arrive"
            ),
            (Maintenance::Recompute { reason }, true, _) => format!(
                "recomputed at most every {every} s as rows arrive on {sources} ({reason})"
            ),
            (_, true, _) => format!("incrementally, as rows arrive on {sources}"),
            (_, false, true) if self.moving => format!(
                "recomputed on every write to {sources}, and every {every} s (a time window that moves with now())"
            ),
            (_, false, true) => format!("recomputed on every write to {sources}"),
            (_, false, false) => "a snapshot: REFRESH MATERIALIZED VIEW re-runs it".to_string(),
        }
    }

    /// Whether the view reads this table.
    fn reads(&self, table: &TableReference) -> bool {
        self.sources.iter().any(|s| {
            let s = TableReference::from(s.as_str());
            s.table() == table.table()
                && (s.schema().is_none()
                    || table.schema().is_none()
                    || s.schema() == table.schema())
        })
    }

    /// Replaces the rows with a fresh result.
    fn install(&self, batches: Vec<RecordBatch>, took: Duration, partitions: usize) {
        let rows = batches.iter().map(|b| b.num_rows() as u64).sum();
        let parts = spread(batches, partitions);
        if let Ok(mut p) = self.partitions.write() {
            *p = Arc::new(parts);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        if let Ok(mut r) = self.refreshed.lock() {
            *r = Refreshed {
                rows,
                at: SystemTime::now(),
                took,
            };
        }
    }

    /// Appends rows computed from new source rows (append-only maps over a live source).
    fn append(&self, batches: Vec<RecordBatch>, took: Duration) {
        let added: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if let Ok(mut p) = self.partitions.write() {
            let mut parts = p.as_ref().clone();
            if parts.is_empty() {
                parts.push(Vec::new());
            }
            // spread appended batches over the partitions, smallest first
            for b in batches {
                if let Some(part) = parts.iter_mut().min_by_key(|p| p.len()) {
                    part.push(b);
                }
            }
            *p = Arc::new(parts);
        }
        if let Ok(mut r) = self.refreshed.lock() {
            r.rows += added;
            r.at = SystemTime::now();
            r.took = took;
        }
    }

    /// The maintainer's last error, if its last run failed.
    pub fn live_error(&self) -> Option<String> {
        self.progress.lock().ok().and_then(|p| p.error.clone())
    }

    fn snapshot(&self) -> Arc<Vec<Vec<RecordBatch>>> {
        self.rows().0
    }

    /// The rows now, by partition, and their generation. Appends push batches at the ends of partitions and keep
    /// the generation; a refresh or recompute replaces every batch and bumps it.
    pub fn rows(&self) -> (Arc<Vec<Vec<RecordBatch>>>, u64) {
        match self.partitions.read() {
            Ok(p) => (p.clone(), self.generation.load(Ordering::Acquire)),
            Err(_) => (Arc::new(vec![]), self.generation.load(Ordering::Acquire)),
        }
    }
}

/// The materialized view behind a registered table, if it is one.
pub fn view_behind(provider: &Arc<dyn TableProvider>) -> Option<Arc<MaterializedView>> {
    let any: &dyn std::any::Any = provider.as_ref();
    any.downcast_ref::<ViewTableProvider>().map(|v| v.0.clone())
}

fn spread(batches: Vec<RecordBatch>, partitions: usize) -> Vec<Vec<RecordBatch>> {
    let n = partitions.max(1).min(batches.len().max(1));
    let mut parts = vec![Vec::new(); n];
    for (i, b) in batches.into_iter().enumerate() {
        parts[i % n].push(b);
    }
    parts
}

/// The table a view is registered as.
#[derive(Debug)]
struct ViewTableProvider(Arc<MaterializedView>);

#[async_trait::async_trait]
impl TableProvider for ViewTableProvider {
    fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.0.definition)
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let parts = self.0.snapshot();
        Ok(MemorySourceConfig::try_new_exec(
            parts.as_ref(),
            self.0.schema.clone(),
            projection.cloned(),
        )?)
    }
}

/// Every materialized view of the session.
#[derive(Debug, Default)]
pub struct Registry {
    views: Mutex<BTreeMap<String, Arc<MaterializedView>>>,
}

/// A view statement recognised from the AST.
pub enum ViewStatement<'a> {
    Create(&'a ast::CreateView),
    Drop {
        names: &'a [ObjectName],
        if_exists: bool,
    },
}

/// CREATE/DROP MATERIALIZED VIEW, if that is what `s` is.
pub fn view_statement(s: &ast::Statement) -> Option<ViewStatement<'_>> {
    match s {
        ast::Statement::CreateView(c) if c.materialized => Some(ViewStatement::Create(c)),
        ast::Statement::Drop {
            object_type: ObjectType::MaterializedView,
            names,
            if_exists,
            ..
        } => Some(ViewStatement::Drop {
            names,
            if_exists: *if_exists,
        }),
        _ => None,
    }
}

use crate::names::resolve;

impl Registry {
    pub fn views(&self) -> Vec<Arc<MaterializedView>> {
        match self.views.lock() {
            Ok(v) => v.values().cloned().collect(),
            Err(_) => vec![],
        }
    }

    /// The view with this name, if it is one.
    pub fn get(&self, name: &TableReference) -> Option<Arc<MaterializedView>> {
        self.views.lock().ok()?.get(&name.to_string()).cloned()
    }

    /// The view a (user-typed) name refers to.
    pub fn find(
        &self,
        ctx: &SessionContext,
        name: &ObjectName,
    ) -> Result<Option<Arc<MaterializedView>>> {
        Ok(self.get(&resolve(ctx, name)?))
    }

    pub async fn run(
        ctx: &SessionContext,
        query: &ast::Query,
    ) -> Result<(LogicalPlan, Vec<RecordBatch>)> {
        let state = ctx.state();
        let statement =
            DfStatement::Statement(Box::new(ast::Statement::Query(Box::new(query.clone()))));
        let plan = state.statement_to_plan(statement).await?;
        let df = ctx.execute_logical_plan(plan.clone()).await?;
        Ok((plan, df.collect().await?))
    }

    /// CREATE MATERIALIZED VIEW: runs the query and registers its result under the view's name.
    pub async fn create(
        &self,
        ctx: &SessionContext,
        c: &ast::CreateView,
        live: &crate::stream::Sources,
    ) -> Result<String> {
        let name = resolve(ctx, &c.name)?;
        let exists = ctx.table_exist(name.clone())?;
        if exists && c.if_not_exists {
            return Ok(format!(
                "Materialized view {} already exists; nothing changed",
                c.name
            ));
        }
        if exists && !c.or_replace {
            return plan_err!("materialized view or table '{}' already exists", c.name);
        }
        if exists && self.get(&name).is_none() {
            return plan_err!(
                "'{}' is a table, not a materialized view; DROP it first",
                c.name
            );
        }
        let started = Instant::now();
        let (plan, batches) = Self::run(ctx, &c.query).await?;
        let mut schema = plan.schema().as_arrow().clone();
        if !c.columns.is_empty() {
            if c.columns.len() != schema.fields().len() {
                return plan_err!(
                    "materialized view {} names {} columns but its query returns {}",
                    c.name,
                    c.columns.len(),
                    schema.fields().len()
                );
            }
            let fields: Vec<Field> = schema
                .fields()
                .iter()
                .zip(&c.columns)
                .map(|(f, c)| f.as_ref().clone().with_name(c.name.value.clone()))
                .collect();
            schema = Schema::new_with_metadata(fields, schema.metadata().clone());
        }
        let schema = Arc::new(schema);
        let batches = batches
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut sources = Vec::new();
        plan.apply_with_subqueries(|p| {
            if let LogicalPlan::TableScan(s) = p {
                let t = s.table_name.to_string();
                if !sources.contains(&t) {
                    sources.push(t);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let continuous = sources.iter().any(|s| {
            live.get(s)
                .or_else(|| live.get(TableReference::from(s.as_str()).table()))
                .is_some()
        });
        let on_write = is_continuous(&c.options);
        let moving = moving_time(&plan);
        let view = Arc::new(MaterializedView {
            name: name.clone(),
            definition: c.query.to_string(),
            query: c.query.as_ref().clone(),
            schema,
            sources,
            maintenance: Maintenance::of(&plan),
            plan,
            progress: Mutex::new(continuous::Progress::default()),
            continuous,
            on_write,
            moving,
            maintaining: tokio::sync::Mutex::new(()),
            partitions: RwLock::new(Arc::new(vec![])),
            generation: AtomicU64::new(0),
            refreshed: Mutex::new(Refreshed {
                rows: 0,
                at: SystemTime::now(),
                took: Duration::ZERO,
            }),
        });
        let partitions = ctx.state_ref().read().config().target_partitions();
        view.install(batches, started.elapsed(), partitions);
        if let Some(source) = continuous::live_source(&view, live) {
            continuous::initial(ctx, &view, &source).await?;
        }
        let rows = view.refreshed.lock().map(|r| r.rows).unwrap_or(0);
        if exists {
            ctx.deregister_table(name.clone())?;
        }
        ctx.register_table(name.clone(), Arc::new(ViewTableProvider(view.clone())))?;
        if let Ok(mut v) = self.views.lock() {
            v.insert(name.to_string(), view);
        }
        Ok(format!(
            "Created materialized view {} ({} rows)",
            c.name,
            group_thousands(rows)
        ))
    }

    /// REFRESH MATERIALIZED VIEW: re-runs the query; readers see the old rows until the new ones are complete.
    pub async fn refresh(
        &self,
        ctx: &SessionContext,
        name: &ObjectName,
        live: &crate::stream::Sources,
    ) -> Result<String> {
        let Some(view) = self.find(ctx, name)? else {
            return Err(DataFusionError::Plan(format!(
                "materialized view '{name}' does not exist{}",
                if ctx.table_exist(resolve(ctx, name)?)? {
                    " (it is a table; only materialized views can be refreshed)"
                } else {
                    ""
                }
            )));
        };
        if let Some(source) = continuous::live_source(&view, live) {
            // rebuilt from the rows the live table holds now, then kept current again
            continuous::initial(ctx, &view, &source).await?;
            let rows = view.refreshed.lock().map(|r| r.rows).unwrap_or(0);
            return Ok(format!(
                "Refreshed materialized view {name} from the rows {} holds ({} rows); it is maintained continuously",
                source.name,
                group_thousands(rows)
            ));
        }
        self.rerun(ctx, &view).await?;
        if let Ok(mut p) = view.progress.lock() {
            p.error = None;
        }
        let rows = view.refreshed.lock().map(|r| r.rows).unwrap_or(0);
        Ok(format!(
            "Refreshed materialized view {name} ({} rows)",
            group_thousands(rows)
        ))
    }

    /// After an INSERT/UPDATE/DELETE into `table`: the continuous views over it (`WITH (timescaledb.continuous)`)
    /// are recomputed. A failure stays in `sys.views.last_error`; the write itself stands.
    pub async fn after_write(&self, ctx: &SessionContext, table: &TableReference) {
        for view in self.views() {
            if view.on_write && !view.continuous && view.reads(table) {
                self.recompute(ctx, &view).await;
            }
        }
    }

    /// Re-runs a continuous view over in-memory tables, keeping the outcome in its last_error.
    pub async fn recompute(&self, ctx: &SessionContext, view: &Arc<MaterializedView>) {
        let result = self.rerun(ctx, view).await;
        if let Ok(mut p) = view.progress.lock() {
            p.error = result.err().map(|e| e.to_string());
        }
    }

    async fn rerun(&self, ctx: &SessionContext, view: &MaterializedView) -> Result<()> {
        let _one_at_a_time = view.maintaining.lock().await;
        let started = Instant::now();
        let (plan, batches) = Self::run(ctx, &view.query).await?;
        let new_schema = plan.schema().as_arrow().clone();
        if new_schema.fields().len() != view.schema.fields().len()
            || new_schema
                .fields()
                .iter()
                .zip(view.schema.fields())
                .any(|(a, b)| a.data_type() != b.data_type())
        {
            return plan_err!(
                "materialized view {}: its query now returns different columns (a source table changed); \
                 DROP and CREATE it again",
                view.name
            );
        }
        let batches = batches
            .into_iter()
            .map(|b| RecordBatch::try_new(view.schema.clone(), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        view.install(
            batches,
            started.elapsed(),
            ctx.state_ref().read().config().target_partitions(),
        );
        Ok(())
    }

    /// DROP MATERIALIZED VIEW
    pub fn drop_views(
        &self,
        ctx: &SessionContext,
        names: &[ObjectName],
        if_exists: bool,
    ) -> Result<String> {
        let mut dropped = Vec::new();
        for name in names {
            let r = resolve(ctx, name)?;
            if self.get(&r).is_none() {
                if if_exists {
                    continue;
                }
                return plan_err!(
                    "materialized view '{name}' does not exist{}",
                    if ctx.table_exist(r.clone())? {
                        " (it is a table; use DROP TABLE)"
                    } else {
                        ""
                    }
                );
            }
            ctx.deregister_table(r.clone())?;
            if let Ok(mut v) = self.views.lock() {
                v.remove(&r.to_string());
            }
            dropped.push(name.to_string());
        }
        Ok(if dropped.is_empty() {
            "Materialized view does not exist; nothing changed".to_string()
        } else {
            format!("Dropped materialized view {}", dropped.join(", "))
        })
    }

    /// Whether DROP TABLE/VIEW or INSERT is about to touch a materialized view (they would leave the registry
    /// describing a table that is gone, or rows no refresh produced).
    pub fn guard(&self, ctx: &SessionContext, s: &ast::Statement) -> Result<()> {
        let check = |name: &ObjectName, what: &str| -> Result<()> {
            if self.find(ctx, name)?.is_some() {
                return plan_err!("'{name}' is a materialized view; {what}");
            }
            Ok(())
        };
        match s {
            ast::Statement::Drop {
                object_type: ObjectType::Table | ObjectType::View,
                names,
                ..
            } => {
                for n in names {
                    check(n, "use DROP MATERIALIZED VIEW")?;
                }
            }
            ast::Statement::Insert(i) => {
                if let ast::TableObject::TableName(n) = &i.table {
                    check(
                        n,
                        "its rows come from its query (REFRESH MATERIALIZED VIEW re-runs it)",
                    )?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// `sys.views`: one row per materialized view.
#[derive(Debug)]
pub struct SysViews {
    registry: Arc<Registry>,
    schema: SchemaRef,
}

impl crate::sys::SysTable for SysViews {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn batch(&self) -> Result<RecordBatch> {
        self.rows()
    }
}

impl SysViews {
    pub fn new(registry: Arc<Registry>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
            Field::new("sources", DataType::Utf8, false),
            Field::new("rows", DataType::Int64, false),
            Field::new(
                "last_refresh",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("refresh_ms", DataType::Float64, false),
            Field::new("incremental", DataType::Boolean, false),
            Field::new("continuous", DataType::Boolean, false),
            Field::new("maintained", DataType::Utf8, false),
            Field::new("last_error", DataType::Utf8, true),
        ]));
        Self { registry, schema }
    }

    fn rows(&self) -> Result<RecordBatch> {
        let views = self.registry.views();
        let info: Vec<Refreshed> = views
            .iter()
            .map(|v| {
                v.refreshed.lock().map(|r| r.clone()).unwrap_or(Refreshed {
                    rows: 0,
                    at: SystemTime::UNIX_EPOCH,
                    took: Duration::ZERO,
                })
            })
            .collect();
        let strings = |f: &dyn Fn(&MaterializedView) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(views.iter().map(|v| f(v))))
        };
        let columns: Vec<ArrayRef> = vec![
            strings(&|v| v.name.table().to_string()),
            strings(&|v| v.definition.clone()),
            strings(&|v| v.sources.join(", ")),
            Arc::new(Int64Array::from_iter_values(
                info.iter().map(|r| r.rows as i64),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(info.iter().map(|r| {
                    r.at.duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_micros() as i64)
                        .unwrap_or(0)
                }))
                .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(
                info.iter()
                    .map(|r| (r.took.as_secs_f64() * 1e6).round() / 1e3),
            )),
            Arc::new(BooleanArray::from_iter(
                views.iter().map(|v| Some(v.maintenance.incremental())),
            )),
            Arc::new(BooleanArray::from_iter(
                views.iter().map(|v| Some(v.continuous || v.on_write)),
            )),
            strings(&|v| v.maintained()),
            Arc::new(StringArray::from_iter(views.iter().map(|v| v.live_error()))),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Whether a CREATE MATERIALIZED VIEW asked to be continuous: `WITH (timescaledb.continuous)` or
/// `WITH (continuous = true)`.
pub fn is_continuous(options: &ast::CreateTableOptions) -> bool {
    let list = match options {
        ast::CreateTableOptions::With(l) | ast::CreateTableOptions::Options(l) => l,
        _ => return false,
    };
    list.iter().any(|o| match o {
        ast::SqlOption::KeyValue { key, value } => {
            let k = key.value.to_ascii_lowercase();
            (k == "timescaledb.continuous" || k == "continuous")
                && !matches!(value, ast::Expr::Value(v) if matches!(v.value, ast::Value::Boolean(false)))
        }
        _ => false,
    })
}

/// `REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH DATA]`, from its first word on: the view's name and whether
/// CONCURRENTLY was written. (Every refresh is concurrent in PostgreSQL's sense: readers keep the old rows until the
/// new ones are complete.)
pub fn parse_refresh(
    parser: &mut datafusion::sql::sqlparser::parser::Parser,
) -> std::result::Result<(ObjectName, bool), datafusion::sql::sqlparser::parser::ParserError> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::parser::ParserError;
    parser.expect_keyword(Keyword::REFRESH)?;
    parser.expect_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW])?;
    let concurrently = parser.parse_keyword(Keyword::CONCURRENTLY);
    let name = parser.parse_object_name(false)?;
    // PostgreSQL's WITH DATA (the default); WITH NO DATA would empty the view, which Kestrel does not do
    if parser.parse_keyword(Keyword::WITH) {
        if parser.parse_keyword(Keyword::NO) {
            return Err(ParserError::ParserError(format!(
                "REFRESH MATERIALIZED VIEW {name} WITH NO DATA is not supported: a Kestrel view always \
                 holds its query's rows (DROP MATERIALIZED VIEW to discard them)"
            )));
        }
        parser.expect_keyword(Keyword::DATA)?;
    }
    Ok((name, concurrently))
}
