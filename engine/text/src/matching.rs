//! MATCH planned into the table scan.
//!
//! A statement that calls MATCH sees every table with full-text indexes as a [`MatchTable`]: the table plus
//! `_score` (as KNN statements see tables with vectors). The optimizer pushes the WHERE conditions into its scan (we
//! claim them as exact), so the scan sees MATCH and the other conditions together: the other conditions become the
//! set of rows MATCH may return (pre-filtering: rows they reject never take a place among the matches), and the
//! scan becomes a [`TextSearchExec`]. `ORDER BY _score DESC LIMIT k` above it is pushed into the search as a top-k
//! ([`TextTopK`]), so tantivy can skip documents that cannot make the top.

use super::index::{Allowed, TableText};
use super::query::{MatchOptions, MatchSpec, MatchType, TargetRef};
use super::MATCH_FN;
use crate::vector::index::IndexedTable;
use crate::vector::knn::{conjunction, constant, downcast, evaluate_mask, physical, SCORE};
use datafusion::arrow::array::{ArrayRef, Float32Array, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{exec_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, Volatility,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::{lit, Column as PhysicalColumn};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use std::any::Any;
use std::fmt;
use std::sync::Arc;

const MISPLACED: &str = "MATCH(index, 'query') can only be used as a condition in the WHERE clause of a query over \
    a table with a full-text index, combined with other conditions by AND (not inside OR, NOT, CASE or a SELECT \
    list); for a score in the SELECT list, select _score";

/// The function MATCH becomes. It is planned into the table scan; evaluated row by row it was used where it
/// cannot work, and that is an error.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MatchFn {
    signature: Signature,
}

impl MatchFn {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for MatchFn {
    fn name(&self) -> &str {
        MATCH_FN
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("{MISPLACED}")
    }
}

fn is_match(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(f) if f.name() == MATCH_FN)
}

fn contains_match(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        if is_match(e) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

fn references_score(expr: &Expr) -> bool {
    expr.column_refs().iter().any(|c| c.name == SCORE)
}

/// A resolved MATCH call's arguments: (query, type, n, 'index', column, boost, ..., 'key', 'value', ...).
fn spec_of(expr: &Expr, state: &dyn Session) -> Result<MatchSpec> {
    let Expr::ScalarFunction(f) = expr else {
        return plan_err!("{MISPLACED}");
    };
    let args = &f.args;
    let text = |e: &Expr, what: &str| -> Result<Option<String>> {
        let v = constant(e, state, what)?;
        if v.is_null() {
            return Ok(None);
        }
        match v.cast_to(&DataType::Utf8)? {
            ScalarValue::Utf8(s) => Ok(s),
            other => plan_err!("{what} must be text, got {other}"),
        }
    };
    if args.len() < 3 {
        return plan_err!("{MISPLACED}");
    }
    let Some(query) = text(&args[0], "MATCH: the query text")? else {
        return plan_err!("MATCH: the query text is NULL");
    };
    let kind = MatchType::parse(&text(&args[1], "MATCH: the match type")?.unwrap_or_default())?;
    let n = match constant(&args[2], state, "MATCH")?.cast_to(&DataType::Int64)? {
        ScalarValue::Int64(Some(n)) if n > 0 => n as usize,
        _ => return plan_err!("{MISPLACED}"),
    };
    if args.len() < 3 + 3 * n || (args.len() - 3 - 3 * n) % 2 != 0 {
        return plan_err!("MATCH: its targets were not resolved ({MISPLACED})");
    }
    let mut targets = Vec::with_capacity(n);
    for t in 0..n {
        let index = text(&args[3 + 3 * t], "MATCH: the index")?.unwrap_or_default();
        let boost = match constant(&args[5 + 3 * t], state, "MATCH: a boost")?
            .cast_to(&DataType::Float64)?
        {
            ScalarValue::Float64(Some(b)) if b >= 0.0 => b as f32,
            other => {
                return plan_err!("MATCH: a boost must be a number of at least 0, got {other}")
            }
        };
        targets.push(TargetRef { index, boost });
    }
    let mut pairs = Vec::new();
    let mut i = 3 + 3 * n;
    while i + 1 < args.len() {
        let key = text(&args[i], "MATCH option")?.unwrap_or_default();
        let value = text(&args[i + 1], "MATCH option")?.unwrap_or_default();
        pairs.push((key, value));
        i += 2;
    }
    let options = MatchOptions::parse(&pairs)?;
    Ok(MatchSpec {
        targets,
        query,
        kind,
        options,
    })
}

/// A table with full-text indexes as a MATCH statement sees it: its columns plus `_score`.
#[derive(Debug)]
pub struct MatchTable {
    /// What the statement would otherwise see (the table, or it with `_score` for KNN_MATCH).
    inner: Arc<dyn TableProvider>,
    indexed: Arc<IndexedTable>,
    text: Arc<TableText>,
    schema: SchemaRef,
    inner_has_score: bool,
}

impl MatchTable {
    pub fn new(
        inner: Arc<dyn TableProvider>,
        indexed: Arc<IndexedTable>,
        text: Arc<TableText>,
    ) -> Self {
        let base = inner.schema();
        let inner_has_score = base.index_of(SCORE).is_ok();
        let schema = if inner_has_score {
            base
        } else {
            let mut fields: Vec<Arc<Field>> = base.fields().iter().cloned().collect();
            fields.push(Arc::new(Field::new(SCORE, DataType::Float32, true)));
            Arc::new(Schema::new_with_metadata(fields, base.metadata().clone()))
        };
        Self {
            inner,
            indexed,
            text,
            schema,
            inner_has_score,
        }
    }

    /// The statement's view of a table: a MatchTable if it has full-text indexes.
    pub fn wrap(
        text: &super::Text,
        original: &Arc<dyn TableProvider>,
        seen: Arc<dyn TableProvider>,
    ) -> Arc<dyn TableProvider> {
        let Some(t) = text.for_provider(original) else {
            return seen;
        };
        let Some(indexed) = t.table.upgrade() else {
            return seen;
        };
        Arc::new(MatchTable::new(seen, indexed, t))
    }
}

#[async_trait::async_trait]
impl TableProvider for MatchTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        if !filters.iter().any(|f| is_match(f)) {
            return self.inner.supports_filters_pushdown(filters);
        }
        Ok(filters
            .iter()
            .map(|f| {
                let nested = contains_match(f) && !is_match(f);
                if nested || references_score(f) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Exact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let score_index = self.schema.fields().len() - 1;
        let output: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let (matches, others): (Vec<&Expr>, Vec<&Expr>) = filters.iter().partition(|f| is_match(f));
        if matches.is_empty() {
            if self.inner_has_score {
                return self.inner.scan(state, projection, filters, limit).await;
            }
            // no score here: the table's own scan and a NULL `_score`
            let inner: Vec<usize> = output
                .iter()
                .copied()
                .filter(|&i| i != score_index)
                .collect();
            let plan = self.inner.scan(state, Some(&inner), filters, limit).await?;
            let scanned = plan.schema();
            let exprs = output
                .iter()
                .map(|&i| {
                    let name = self.schema.field(i).name().clone();
                    let e: Arc<dyn PhysicalExpr> = if i == score_index {
                        lit(ScalarValue::Float32(None))
                    } else {
                        Arc::new(PhysicalColumn::new(&name, scanned.index_of(&name)?))
                    };
                    Ok((e, name))
                })
                .collect::<Result<Vec<_>>>()?;
            return Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?));
        }
        if others.iter().any(|f| crate::vector::knn::contains_knn(f)) {
            return plan_err!(
                "MATCH and KNN_MATCH on the same table in one WHERE clause: fuse the two rankings with \
                 hybrid_search(table, text_index, vector_column, 'query', k) or with two ranked CTEs"
            );
        }
        let specs = matches
            .iter()
            .map(|m| spec_of(m, state))
            .collect::<Result<Vec<_>>>()?;
        // the query is built now, so a malformed one fails at planning
        let base = self.indexed.schema();
        let others: Vec<Expr> = others.into_iter().cloned().collect();
        let filter = conjunction(&others)
            .map(|e| physical(&e, &base, state))
            .transpose()?;
        let fields: Vec<Arc<Field>> = output
            .iter()
            .map(|&i| {
                if i == score_index {
                    Arc::new(Field::new(SCORE, DataType::Float32, true))
                } else {
                    base.fields()[i].clone()
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(TextSearchExec {
            run: Arc::new(SearchRun {
                indexed: self.indexed.clone(),
                text: self.text.clone(),
                specs,
                filter,
                output,
                score_index,
                schema,
                top_k: limit,
            }),
            filter_exprs: others,
            properties,
        }))
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.insert_into(state, input, insert_op).await
    }
}

struct SearchRun {
    indexed: Arc<IndexedTable>,
    text: Arc<TableText>,
    specs: Vec<MatchSpec>,
    filter: Option<Arc<dyn PhysicalExpr>>,
    output: Vec<usize>,
    score_index: usize,
    schema: SchemaRef,
    /// Only the best this many rows (ORDER BY _score DESC LIMIT k, or a LIMIT).
    top_k: Option<usize>,
}

/// Searches a table's full-text index and returns the matching rows that pass the other conditions, best first,
/// with `_score`.
pub struct TextSearchExec {
    run: Arc<SearchRun>,
    filter_exprs: Vec<Expr>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for TextSearchExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextSearchExec")
            .field("top_k", &self.run.top_k)
            .finish()
    }
}

impl TextSearchExec {
    fn with_top_k(&self, k: usize) -> Self {
        let r = &self.run;
        Self {
            run: Arc::new(SearchRun {
                indexed: r.indexed.clone(),
                text: r.text.clone(),
                specs: r.specs.clone(),
                filter: r.filter.clone(),
                output: r.output.clone(),
                score_index: r.score_index,
                schema: r.schema.clone(),
                top_k: Some(r.top_k.map_or(k, |t| t.min(k))),
            }),
            filter_exprs: self.filter_exprs.clone(),
            properties: self.properties.clone(),
        }
    }

    fn search(
        run: &SearchRun,
        snapshot: crate::vector::index::TableSnapshot,
    ) -> Result<RecordBatch> {
        run.text.refresh(&snapshot, &|_, _| {})?;
        let mut queries = run
            .specs
            .iter()
            .map(|s| run.text.query(s))
            .collect::<Result<Vec<_>>>()?;
        let query: Box<dyn tantivy::query::Query> = if queries.len() == 1 {
            queries.remove(0)
        } else {
            Box::new(tantivy::query::BooleanQuery::new(
                queries
                    .into_iter()
                    .map(|q| (tantivy::query::Occur::Must, q))
                    .collect(),
            ))
        };
        let allowed = match &run.filter {
            Some(f) => {
                let masks = snapshot
                    .batches()
                    .iter()
                    .map(|b| evaluate_mask(f, b))
                    .collect::<Result<Vec<_>>>()?;
                Some(Arc::new(Allowed {
                    snapshot: snapshot.clone(),
                    masks,
                }))
            }
            None => None,
        };
        let hits = run.text.search(query.as_ref(), allowed, run.top_k)?;
        let located: Vec<((usize, usize), f32)> = hits
            .into_iter()
            .filter_map(|(key, score)| snapshot.locate_key(key).map(|at| (at, score)))
            .collect();
        let batches = snapshot.batches();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let indices: Vec<(usize, usize)> = located.iter().map(|(at, _)| *at).collect();
        let rows = if indices.is_empty() {
            None
        } else {
            Some(interleave_record_batch(&refs, &indices)?)
        };
        let scores: ArrayRef = Arc::new(Float32Array::from_iter_values(
            located.iter().map(|(_, s)| *s),
        ));
        let columns = run
            .output
            .iter()
            .enumerate()
            .map(|(pos, &i)| {
                if i == run.score_index {
                    Ok(scores.clone())
                } else {
                    match &rows {
                        Some(b) => Ok(b.column(i).clone()),
                        None => Ok(datafusion::arrow::array::new_empty_array(
                            run.schema.field(pos).data_type(),
                        )),
                    }
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            run.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(located.len())),
        )?)
    }
}

impl DisplayAs for TextSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .run
            .specs
            .iter()
            .map(|s| {
                let targets: Vec<String> = s.targets.iter().map(|t| t.index.clone()).collect();
                format!("{}: {:?} {:?}", targets.join("+"), s.query, s.kind)
            })
            .collect();
        write!(f, "TextSearchExec: match=[{}]", shown.join(" AND "))?;
        if let Some(k) = self.run.top_k {
            write!(f, ", top_k={k}")?;
        }
        if !self.filter_exprs.is_empty() {
            let shown: Vec<String> = self.filter_exprs.iter().map(|e| e.to_string()).collect();
            write!(f, ", filter=[{}]", shown.join(" AND "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TextSearchExec {
    fn name(&self) -> &'static str {
        "TextSearchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        match &self.run.filter {
            Some(e) => f(e),
            None => Ok(TreeNodeRecursion::Continue),
        }
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return exec_err!("TextSearchExec has one partition, asked for {partition}");
        }
        let run = self.run.clone();
        let stream = futures::stream::once(async move {
            let snapshot = run.indexed.snapshot().await;
            if run.text.is_current(&snapshot) {
                // nothing to take in: the search is CPU work like any operator's, done where the stream is
                // polled (a hand-off to the blocking pool cost more than a top-10 search on 100k documents)
                return TextSearchExec::search(&run, snapshot);
            }
            // rows to index and a commit first, which may take seconds: off the async workers
            let worker = run.clone();
            tokio::task::spawn_blocking(move || TextSearchExec::search(&worker, snapshot))
                .await
                .map_err(|e| DataFusionError::Execution(format!("full-text search stopped: {e}")))?
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.run.schema.clone(),
            stream,
        )))
    }
}

/// `ORDER BY _score DESC LIMIT k` over a full-text search: the search keeps only its best k rows (the sort stays
/// and is then trivial).
#[derive(Debug, Default)]
pub struct TextTopK;

/// The TextSearchExec under `plan` reached through projections that keep `column` as `_score`, with the position
/// of `_score` in its output.
fn search_below(plan: &Arc<dyn ExecutionPlan>, column: usize) -> Option<()> {
    let any: &dyn Any = plan.as_ref();
    if let Some(t) = any.downcast_ref::<TextSearchExec>() {
        return (t.run.output.get(column) == Some(&t.run.score_index)).then_some(());
    }
    if let Some(p) = any.downcast_ref::<ProjectionExec>() {
        let e = p.expr().get(column)?;
        let expr: &dyn Any = e.expr.as_ref();
        let c = expr.downcast_ref::<PhysicalColumn>()?;
        return search_below(p.input(), c.index());
    }
    // wrappers that pass rows through unchanged
    if matches!(plan.name(), "CooperativeExec" | "CoalesceBatchesExec")
        && plan.children().len() == 1
    {
        return search_below(plan.children()[0], column);
    }
    None
}

fn with_top_k(plan: &Arc<dyn ExecutionPlan>, k: usize) -> Result<Arc<dyn ExecutionPlan>> {
    let any: &dyn Any = plan.as_ref();
    if let Some(t) = any.downcast_ref::<TextSearchExec>() {
        return Ok(Arc::new(t.with_top_k(k)));
    }
    let children: Vec<Arc<dyn ExecutionPlan>> = plan
        .children()
        .into_iter()
        .map(|c| with_top_k(c, k))
        .collect::<Result<_>>()?;
    datafusion::physical_plan::execution_plan::replace_children_if_necessary(plan.clone(), children)
}

impl PhysicalOptimizerRule for TextTopK {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            let any: &dyn Any = node.as_ref();
            let Some(sort) = any.downcast_ref::<SortExec>() else {
                return Ok(Transformed::no(node));
            };
            let (Some(k), [first]) = (sort.fetch(), sort.expr().as_ref()) else {
                return Ok(Transformed::no(node));
            };
            let sort_expr: &dyn Any = first.expr.as_ref();
            let Some(c) = sort_expr.downcast_ref::<PhysicalColumn>() else {
                return Ok(Transformed::no(node));
            };
            if !first.options.descending || search_below(sort.input(), c.index()).is_none() {
                return Ok(Transformed::no(node));
            }
            let input = with_top_k(sort.input(), k)?;
            Ok(Transformed::yes(
                datafusion::physical_plan::execution_plan::replace_children_if_necessary(
                    node.clone(),
                    vec![input],
                )?,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "text_top_k"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Whether `t` is a [`MatchTable`] (for tests).
pub fn is_match_table(t: &Arc<dyn TableProvider>) -> bool {
    downcast::<MatchTable>(t).is_some()
}
