//! kestrel-engine: the SQL engine behind the Kestrel kernel, embeddable anywhere (kernel, CLI, tests).
//!
//! An [`Engine`] is one DataFusion `SessionContext` with Kestrel's extensions registered. A cell's text is parsed
//! into statements up front (a syntax error anywhere runs nothing), then each statement is planned and executed in
//! order; a query's result is collected as a bounded preview plus an exact row count, so a two-million-row result
//! costs a counter, not memory. Errors are classified for the user in [`error`].
//!
//! The engine knows nothing of Jupyter: completion, inspection and input completeness are answered in terms of
//! text and byte offsets, and rendering is the caller's business.

//!
//! The engine is a facade over crates of its own, one per capability ([`kestrel_core`]: errors, results, the sys
//! tables, the SQL dialect, vectors, live tables and views; [`kestrel_text`]: embed(), full-text and hybrid
//! search; [`kestrel_time`]: time windows and ASOF joins). This crate parses cells, registers the capabilities with
//! one session and runs statements; their modules are re-exported under their old names.

pub mod catalog_view;
pub mod complete;
pub mod inspect;
pub mod parse;
#[cfg(test)]
mod tests;

pub use kestrel_core::{error, input, names, optimize, outcome, sql, stream, sys, vector, views};
pub use kestrel_text::{self as text, embed};
pub use kestrel_time as time;

pub use complete::Completion;
pub use error::{EngineError, ErrorKind};
pub use input::{input_state, InputState};
pub use inspect::Inspection;
pub use outcome::{group_thousands, rows as count_rows, Confirmation, Outcome, QueryResult};
pub use parse::Statement;
pub use stream::SourceState;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How much of a query result to keep, and where to report progress.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Keep at most this many rows of a query result (the rest is counted, not kept). `None` keeps everything.
    pub preview_rows: Option<usize>,
    /// Counters updated while the cell runs, for a progress display.
    pub progress: Option<Arc<Progress>>,
}

impl RunOptions {
    /// Keep every row (command-line output, tests).
    pub fn all_rows() -> Self {
        Self::default()
    }

    /// Keep the first `n` rows and count the rest (notebook display).
    pub fn preview(n: usize) -> Self {
        Self {
            preview_rows: Some(n),
            progress: None,
        }
    }

    pub fn with_progress(mut self, progress: Arc<Progress>) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// Live counters of a running cell: which statement runs and how many rows it has produced so far.
#[derive(Debug, Default)]
pub struct Progress {
    statement: AtomicUsize,
    statements: AtomicUsize,
    rows: AtomicU64,
    detail: std::sync::Mutex<Option<String>>,
    /// The session's embed() meter and its count when the running statement started.
    embedding: std::sync::Mutex<Option<(Arc<embed::Meter>, u64, std::time::Instant)>>,
}

impl Progress {
    /// (1-based statement running, statements in the cell).
    pub fn statement(&self) -> (usize, usize) {
        (
            self.statement.load(Ordering::Relaxed),
            self.statements.load(Ordering::Relaxed),
        )
    }

    /// Rows the running statement has produced so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// What a long statement is doing, when it says more than a row count ("building index ...: 40,000 of
    /// 100,000 vectors").
    pub fn detail(&self) -> Option<String> {
        if let Some(d) = self.detail.lock().ok().and_then(|d| d.clone()) {
            return Some(d);
        }
        // a statement embedding a column says how far it is: its rows only appear when a batch is done
        let embedding = self.embedding.lock().ok()?;
        let (meter, from, since) = embedding.as_ref()?;
        let texts = meter.embedded().saturating_sub(*from);
        (texts > 0).then(|| {
            let per_second = texts as f64 / since.elapsed().as_secs_f64().max(1e-3);
            format!(
                "embedding: {} texts ({per_second:.0}/s)",
                group_thousands(texts)
            )
        })
    }

    fn start_statement(&self, i: usize, count: usize, meter: &Arc<embed::Meter>) {
        self.statements.store(count, Ordering::Relaxed);
        self.statement.store(i + 1, Ordering::Relaxed);
        self.rows.store(0, Ordering::Relaxed);
        if let Ok(mut e) = self.embedding.lock() {
            *e = Some((meter.clone(), meter.embedded(), std::time::Instant::now()));
        }
    }

    fn set_detail(&self, detail: Option<String>) {
        if let Ok(mut d) = self.detail.lock() {
            *d = detail;
        }
    }
}

/// The progress report of a CREATE INDEX: "building full-text index docs_ft: 40,000 of 100,000 rows".
fn build_progress(
    opts: &RunOptions,
    kind: &'static str,
    create: &datafusion::sql::sqlparser::ast::CreateIndex,
    units: &'static str,
) -> Arc<dyn Fn(usize, usize) + Send + Sync> {
    let progress = opts.progress.clone();
    let name = create
        .name
        .as_ref()
        .map(|n| n.to_string())
        .unwrap_or_default();
    Arc::new(move |done: usize, total: usize| {
        if let Some(p) = &progress {
            p.rows.store(done as u64, Ordering::Relaxed);
            p.set_detail(Some(format!(
                "building {kind} {name}: {} of {} {units}",
                group_thousands(done as u64),
                group_thousands(total as u64)
            )));
        }
    })
}

/// Statements that change the session's objects report failures as plan errors, whatever stage they failed in.
fn plan_error(e: datafusion::error::DataFusionError) -> EngineError {
    let mut e = EngineError::from(e);
    if e.kind == ErrorKind::Execution {
        e.kind = ErrorKind::Plan;
    }
    e
}

/// One embedded SQL session. Cloning is cheap and shares the session (tables, settings).
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    indexes: Arc<vector::Registry>,
    text: Arc<text::Text>,
    views: Arc<views::Registry>,
    sources: Arc<stream::Sources>,
    dialect: sql::Dialect,
    /// What embed() has done, and how an interrupt stops it.
    embed: Arc<embed::Meter>,
    /// Keeps continuous views current; stops with the last clone of the engine.
    _maintainer: Arc<views::continuous::MaintainerHandle>,
}

/// The physical planner with Kestrel's plan nodes (ASOF join, gap fill).
#[derive(Debug)]
struct KestrelQueryPlanner;

#[async_trait::async_trait]
impl datafusion::execution::context::QueryPlanner for KestrelQueryPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn datafusion::catalog::Session,
    ) -> datafusion::common::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_planner::PhysicalPlanner;
        datafusion::physical_planner::DefaultPhysicalPlanner::with_extension_planners(
            time::extension_planners(),
        )
        .create_physical_plan(plan, session)
        .await
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// The plan of a cell whose last statement is a query: earlier statements run first.
    pub async fn query_frame(
        &self,
        sql: &str,
    ) -> Result<datafusion::dataframe::DataFrame, EngineError> {
        let mut statements = self.parse(sql)?;
        let Some(last) = statements.pop() else {
            return Err(EngineError::new(
                ErrorKind::Plan,
                "expected a query (SELECT ...), found no statement",
            ));
        };
        let count = statements.len() + 1;
        let opts = crate::RunOptions::preview(0);
        for (i, s) in statements.into_iter().enumerate() {
            self.execute(s, &opts)
                .await
                .map_err(|e| e.in_statement(i, count))?;
        }
        let crate::Statement::Sql(last) = last else {
            return Err(EngineError::new(
                ErrorKind::Plan,
                "expected a query (SELECT ...) as the last statement",
            ));
        };
        let plan = self
            .logical_plan(last)
            .await
            .map_err(|e| e.in_statement(count - 1, count))?;
        let exists = |_: &datafusion::common::TableReference| false;
        if !matches!(
            crate::outcome::StatementKind::of(&plan, &exists),
            crate::outcome::StatementKind::Query
        ) {
            return Err(EngineError::new(
                ErrorKind::Plan,
                "expected a query (SELECT ...) as the last statement, not a command",
            ));
        }
        Ok(datafusion::dataframe::DataFrame::new(
            self.ctx.state(),
            plan,
        ))
    }

    /// A fresh session with every Kestrel extension registered.
    pub fn new() -> Self {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(true);
        // A notebook shows the first rows of a result. Round-robin repartitioning of a single-partition source
        // (a memory table, generate_series) interleaves its batches, so "the first rows" came from anywhere; it
        // buys little (aggregates and joins still repartition by hash), so keep the source's order instead.
        config
            .options_mut()
            .optimizer
            .enable_round_robin_repartition = false;
        // Time-bucketed features group by (key, bucket) with barely more rows than groups: when the first 100k
        // rows show that a partial aggregate halves the rows at best, skip it and hash-partition the rows
        // straight to the final aggregate (DataFusion's default gives up only at 0.8; measured on the 10M-row
        // 5-minute feature query: 1,027 → 699 ms, bench/RESULTS.md).
        config
            .options_mut()
            .execution
            .skip_partial_aggregation_probe_ratio_threshold = 0.5;
        let sources = Arc::new(stream::Sources::default());
        // a live table stays live under its vector indexes
        sources.add_wrapper(vector::index::IndexedTable::live_under);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_table_factory(
                "KAFKA".into(),
                Arc::new(stream::KafkaFactory::new(sources.clone())),
            )
            .with_type_planner(Arc::new(sql::types::Types::default()))
            .with_query_planner(Arc::new(KestrelQueryPlanner))
            .with_physical_optimizer_rule(Arc::new(time::sliding::SlidingWindows))
            .with_physical_optimizer_rule(Arc::new(text::matching::TextTopK))
            .build();
        // Our array-literal planner goes first: DataFusion's own turns `[...]` into make_array(...).
        let mut planners: Vec<Arc<dyn datafusion::logical_expr::planner::ExprPlanner>> = vec![
            Arc::new(vector::ArrayLiterals),
            Arc::new(sql::operators::Operators),
        ];
        planners.extend(state.expr_planners().iter().cloned());
        // Text compared with a UUID is read as a UUID before DataFusion's coercion, which has no rule for it.
        let mut analyzers: Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> =
            vec![Arc::new(sql::casts::UuidComparisons)];
        analyzers.extend(state.analyzer().rules.iter().cloned());
        let mut state = SessionStateBuilder::new_from_existing(state)
            .with_expr_planners(planners)
            .with_analyzer_rules(analyzers)
            .build();
        // `->`, `->>` and json_*: registering into a fresh state cannot fail.
        let _ = datafusion_functions_json::register_all(&mut state);
        let ctx = SessionContext::new_with_state(state);
        ctx.add_analyzer_rule(Arc::new(vector::convert::VectorCasts));
        ctx.add_analyzer_rule(Arc::new(sql::casts::DialectCasts));
        ctx.add_analyzer_rule(Arc::new(time::asof::AsofJoins));
        ctx.add_analyzer_rule(Arc::new(time::gapfill::GapFills));
        ctx.add_optimizer_rule(Arc::new(time::asof::AsofFilterPushdown));
        ctx.add_optimizer_rule(Arc::new(optimize::CheapConditionsFirst));
        time::register(&ctx);
        let embed = embed::register(&ctx);
        stream::register(&ctx, &sources);
        for f in vector::functions::all() {
            ctx.register_udf(f);
        }
        ctx.register_udf(vector::knn::KnnMatch::udf());
        ctx.register_udf(vector::convert::ToVector::udf());
        let indexes = Arc::new(vector::Registry::default());
        let text = Arc::new(text::Text::default());
        text.register(&ctx);
        let views = Arc::new(views::Registry::default());
        let dialect = sql::Dialect::default();
        // Registering a schema in the default catalog cannot fail for a fresh session.
        if let Ok(sys) = sys::SysTables::register(&ctx) {
            sys.add(
                "indexes",
                sys::SysIndexes::new(vec![indexes.clone(), text.clone()]),
            );
            sys.add("views", views::SysViews::new(views.clone()));
            sys.add(
                "dead_letters",
                stream::SysDeadLetters::new(sources.dead.clone()),
            );
            sys.add("sources", stream::SysSources::new(sources.clone()));
            dialect.register(&ctx, &sys);
        }
        let maintainer = views::continuous::spawn(ctx.clone(), views.clone(), sources.clone());
        Self {
            ctx,
            indexes,
            text,
            views,
            sources,
            dialect,
            embed,
            _maintainer: Arc::new(maintainer),
        }
    }

    /// The interrupt of a running cell: its task is aborted by the caller; this stops the synchronous work that
    /// an abort cannot reach (a column being embedded gives up after its current sub-batch of texts).
    pub fn interrupt(&self) {
        self.embed.interrupt();
    }

    /// The session's vector indexes (for tests and benchmarks that wait for a settled index).
    pub fn indexes(&self) -> &vector::Registry {
        &self.indexes
    }

    /// The session's Kafka live tables.
    pub fn sources(&self) -> &stream::Sources {
        &self.sources
    }

    /// The DataFusion session, for callers that register their own tables or functions.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Splits a cell into its statements. Comments and empty statements are dropped; a syntax error anywhere fails
    /// the whole cell, so a typo in the third statement does not leave the first two half-applied.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, EngineError> {
        // read the setting under the session's lock: `ctx.state()` would clone every function map per cell
        let dialect_name = self
            .ctx
            .state_ref()
            .read()
            .config()
            .options()
            .sql_parser
            .dialect;
        let dialect = dialect_from_str(dialect_name).ok_or_else(|| {
            EngineError::new(
                ErrorKind::Plan,
                format!(
                    "unsupported SQL dialect '{dialect_name}' in datafusion.sql_parser.dialect"
                ),
            )
        })?;
        Ok(parse::parse(sql, dialect.as_ref())?)
    }

    /// Plans and runs one statement.
    pub async fn execute(
        &self,
        statement: Statement,
        opts: &RunOptions,
    ) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        let done = |message: String| {
            Ok(Outcome::Done(Confirmation {
                message,
                rows_affected: None,
                elapsed: started.elapsed(),
            }))
        };
        let mut statement = match statement {
            Statement::RefreshMaterializedView { name, .. } => {
                return done(
                    self.views
                        .refresh(&self.ctx, &name, &self.sources)
                        .await
                        .map_err(plan_error)?,
                );
            }
            Statement::CreateAnalyzer(c) => {
                return done(
                    self.text
                        .analyzers
                        .create(c.def, c.or_replace)
                        .map_err(plan_error)?,
                );
            }
            Statement::DropAnalyzer { name, if_exists } => {
                return done(
                    self.text
                        .drop_analyzer(&name, if_exists)
                        .map_err(plan_error)?,
                );
            }
            Statement::Sql(s) => s,
        };
        match self.dialect.prepare(&self.ctx, &mut statement).await {
            Err(e) => return Err(plan_error(e)),
            Ok(None) => {}
            Ok(Some(sql::Answer::Done(message))) => return done(message),
            Ok(Some(sql::Answer::Refresh(view))) => {
                return done(
                    self.views
                        .refresh(&self.ctx, &view, &self.sources)
                        .await
                        .map_err(plan_error)?,
                );
            }
            Ok(Some(sql::Answer::Rows(batch))) => {
                return Ok(Outcome::Rows(QueryResult {
                    schema: batch.schema(),
                    total_rows: batch.num_rows() as u64,
                    batches: vec![batch],
                    elapsed: started.elapsed(),
                }));
            }
        }
        if let DfStatement::Statement(ast) = &mut statement {
            self.sources.complete_insert(&self.ctx, ast);
        }
        if let DfStatement::Statement(ast) = &statement {
            self.views.guard(&self.ctx, ast).map_err(plan_error)?;
            match views::view_statement(ast) {
                Some(views::ViewStatement::Create(c)) => {
                    return done(
                        self.views
                            .create(&self.ctx, c, &self.sources)
                            .await
                            .map_err(plan_error)?,
                    );
                }
                Some(views::ViewStatement::Drop { names, if_exists }) => {
                    return done(
                        self.views
                            .drop_views(&self.ctx, names, if_exists)
                            .map_err(plan_error)?,
                    );
                }
                None => {}
            }
            if let Some(stmt) = vector::statements::index_statement(ast) {
                let message = self.index_statement(stmt, opts).await?;
                return Ok(Outcome::Done(Confirmation {
                    message,
                    rows_affected: None,
                    elapsed: started.elapsed(),
                }));
            }
        }
        let plan = self.logical_plan(statement).await?;
        let exists = |name: &datafusion::common::TableReference| {
            self.ctx.table_exist(name.clone()).unwrap_or(false)
        };
        let kind = outcome::StatementKind::of(&plan, &exists);
        let created_live =
            match &plan {
                LogicalPlan::Ddl(datafusion::logical_expr::DdlStatement::CreateExternalTable(
                    t,
                )) if t.file_type.eq_ignore_ascii_case("kafka") => Some(t.name.to_string()),
                _ => None,
            };
        let is_command = kind.is_command();
        let written = match &plan {
            LogicalPlan::Dml(dml) => Some(dml.table_name.clone()),
            _ => None,
        };
        let df = self.ctx.execute_logical_plan(plan).await.map_err(|e| {
            let mut e = EngineError::from(e);
            if is_command && e.kind == ErrorKind::Execution {
                e.kind = ErrorKind::Plan;
            }
            e
        })?;
        let schema = df.schema().inner().clone();
        let mut stream = df.execute_stream().await?;
        if is_command {
            // DROP TABLE / CREATE OR REPLACE of a Kafka table: stop the consumer that lost its table.
            self.sources.reconcile(&self.ctx).await;
            self.dialect
                .hypertables
                .retain(|t| self.ctx.table_exist(t).unwrap_or(false));
        }

        let keep = opts.preview_rows.unwrap_or(usize::MAX);
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut kept = 0usize;
        let mut total: u64 = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            total += batch.num_rows() as u64;
            if let Some(p) = &opts.progress {
                p.rows.store(total, Ordering::Relaxed);
            }
            if kept < keep {
                let take = (keep - kept).min(batch.num_rows());
                kept += take;
                batches.push(if take == batch.num_rows() {
                    batch
                } else {
                    batch.slice(0, take)
                });
            }
        }
        if let Some(table) = written {
            // continuous views over an in-memory table follow its writes
            self.views.after_write(&self.ctx, &table).await;
        }
        let mut outcome = kind.into_outcome(schema, batches, total, started.elapsed());
        if let (Outcome::Done(done), Some(name)) = (&mut outcome, created_live) {
            if let Some(live) = self.sources.get(&name) {
                done.message = live.describe_start();
            }
        }
        Ok(outcome)
    }

    /// Plans a statement the way [`Engine::execute`] does: KNN statements see tables with vector columns with
    /// their `_score` column, and KNN_MATCH's query subqueries are evaluated first.
    async fn logical_plan(&self, mut statement: DfStatement) -> Result<LogicalPlan, EngineError> {
        let mut state = self.ctx.state();
        let uses_match = self
            .text
            .prepare(&self.ctx, &mut statement)
            .await
            .map_err(plan_error)?;
        let uses_knn = vector::knn::statement_uses_knn(&statement);
        if uses_knn || uses_match {
            let text = self.text.clone();
            let wrap: catalog_view::Wrap = Arc::new(move |_name, table| {
                let seen = if uses_knn {
                    vector::knn::scored(table.clone())
                } else {
                    table.clone()
                };
                if uses_match {
                    text::matching::MatchTable::wrap(&text, &table, seen)
                } else {
                    seen
                }
            });
            let view = Arc::new(catalog_view::CatalogView::new(
                state.catalog_list().clone(),
                &statement,
                wrap,
            ));
            // `state` is this statement's own copy: swapping its catalog costs nothing, where
            // SessionStateBuilder::new_from_existing(..).build() re-registered every function on each statement.
            state.register_catalog_list(view);
        }
        let plan = state.statement_to_plan(statement).await?;
        Ok(vector::subqueries::resolve(&self.ctx, plan).await?)
    }

    /// The physical plan of a one-statement query, for benchmarks that time planning and execution apart.
    pub async fn physical_plan(
        &self,
        sql: &str,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>, EngineError> {
        let mut statements = self.parse(sql)?;
        let (Some(statement), true) = (statements.pop(), statements.is_empty()) else {
            return Err(EngineError::new(
                ErrorKind::Plan,
                "expected exactly one statement",
            ));
        };
        let Statement::Sql(mut statement) = statement else {
            return Err(EngineError::new(ErrorKind::Plan, "expected a query"));
        };
        self.dialect.prepare(&self.ctx, &mut statement).await?;
        let plan = self.logical_plan(statement).await?;
        Ok(self.ctx.state().create_physical_plan(&plan).await?)
    }

    async fn index_statement(
        &self,
        stmt: vector::statements::IndexStatement<'_>,
        opts: &RunOptions,
    ) -> Result<String, EngineError> {
        use vector::statements::IndexStatement;
        match stmt {
            IndexStatement::Create(create)
                if matches!(&create.using, Some(datafusion::sql::sqlparser::ast::IndexType::Custom(i))
                    if i.value.eq_ignore_ascii_case("fulltext")) =>
            {
                let report = build_progress(opts, "full-text index", create, "rows");
                let vectors = self.indexes.clone();
                let result = self
                    .text
                    .create_index(
                        &self.ctx,
                        create,
                        move |n| vectors.index(n).is_some(),
                        report,
                    )
                    .await;
                if let Some(p) = &opts.progress {
                    p.set_detail(None);
                }
                result.map_err(plan_error)
            }
            IndexStatement::Create(create) => {
                let report = build_progress(opts, "index", create, "vectors");
                let text = self.text.clone();
                let result = vector::statements::create_index(
                    &self.ctx,
                    &self.indexes,
                    create,
                    move |n| text.find(n).is_some(),
                    report,
                )
                .await;
                if let Some(p) = &opts.progress {
                    p.set_detail(None);
                }
                result.map_err(plan_error)
            }
            IndexStatement::Drop { names, if_exists } => {
                // full-text indexes first, then vector indexes
                let mut dropped = Vec::new();
                let mut rest = Vec::new();
                for n in names {
                    let name = vector::statements::ident_name(n);
                    if self.text.drop_index(&name).map_err(plan_error)? {
                        dropped.push(name);
                    } else {
                        rest.push(n.clone());
                    }
                }
                if rest.is_empty() && !dropped.is_empty() {
                    return Ok(match dropped.as_slice() {
                        [one] => format!("Dropped index {one}"),
                        many => format!("Dropped indexes {}", many.join(", ")),
                    });
                }
                let message = vector::statements::drop_index(&self.indexes, &rest, if_exists)
                    .map_err(plan_error)?;
                Ok(if dropped.is_empty() {
                    message
                } else {
                    format!("Dropped index {}; {message}", dropped.join(", "))
                })
            }
        }
    }

    /// Runs every statement of a cell in order and returns the last one's outcome (`None` for a cell with no
    /// statements). An error names the failing statement when the cell holds several.
    pub async fn run_cell(
        &self,
        sql: &str,
        opts: &RunOptions,
    ) -> Result<Option<Outcome>, EngineError> {
        let statements = self.parse(sql)?;
        let count = statements.len();
        let mut last = None;
        for (i, statement) in statements.into_iter().enumerate() {
            if let Some(p) = &opts.progress {
                p.start_statement(i, count, &self.embed);
            }
            let outcome = self
                .execute(statement, opts)
                .await
                .map_err(|e| e.in_statement(i, count))?;
            last = Some(outcome);
        }
        Ok(last)
    }

    /// Completion candidates at byte offset `cursor` of `code`.
    pub async fn complete(&self, code: &str, cursor: usize) -> Completion {
        complete::complete(&self.ctx, code, cursor).await
    }

    /// What is known about the name at byte offset `cursor` of `code`: a table's columns or a function's docs.
    pub async fn inspect(&self, code: &str, cursor: usize) -> Option<Inspection> {
        inspect::inspect(&self.ctx, code, cursor).await
    }
}

impl Engine {
    /// Makes `batches` the in-memory table `name` (SQL rules: unquoted names are lower-cased), replacing an
    /// in-memory table of that name; a live table, view or file table of that name is an error. Returns the
    /// confirmation ("Registered table features (3 rows)").
    pub async fn register_batches(
        &self,
        name: &str,
        schema: datafusion::arrow::datatypes::SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<String, EngineError> {
        use datafusion::catalog::MemTable;
        use datafusion::common::TableReference;
        let name = name.trim();
        if name.is_empty() {
            return Err(EngineError::new(ErrorKind::Plan, "a table needs a name"));
        }
        let table = TableReference::from(name);
        if let Ok(existing) = self.ctx.table_provider(table.clone()).await {
            let any: &dyn std::any::Any = existing.as_ref();
            if any.downcast_ref::<MemTable>().is_none() || self.views.get(&table).is_some() {
                return Err(EngineError::new(
                    ErrorKind::Plan,
                    format!(
                        "{table} exists and is not an in-memory table (a live table, file table or view); DROP it \
                         first or choose another name"
                    ),
                ));
            }
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let mem = MemTable::try_new(schema, vec![batches])?;
        self.ctx.deregister_table(table.clone())?;
        self.ctx.register_table(table.clone(), Arc::new(mem))?;
        Ok(format!(
            "Registered table {table} ({})",
            outcome::rows(rows as u64)
        ))
    }
}
