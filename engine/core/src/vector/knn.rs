//! `KNN_MATCH(column, query, k)` and `_score`.
//!
//! A statement that calls KNN_MATCH is planned against a view of the catalog in which every table with a vector
//! column is a [`ScoredTable`]: the same table plus a `_score` column. The optimizer pushes WHERE conditions into
//! that table's scan (DataFusion's filter pushdown: we claim them all as exact), so the scan sees KNN_MATCH *and*
//! the other conditions together and can pre-filter: the k nearest rows among the rows that pass, never fewer when
//! enough rows pass. The scan becomes a [`KnnExec`], which searches exactly (one pass, bounded heap, partitions in
//! parallel) or through the table's HNSW index ([`super::index`]).
//!
//! KNN_MATCH anywhere else (inside OR, in a SELECT list, over a join's output) is never evaluated row by row: the
//! function itself fails with a message saying where it can be used.

use super::convert::{is_vector_like, vector_dims, Vectors};
use super::index::{IndexedTable, TableSnapshot};
use super::Metric;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Float32Array, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    exec_err, plan_err, Column, DFSchema, DataFusionError, Result, ScalarValue,
};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, Volatility,
};
use datafusion::physical_expr::{create_physical_expr, EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::{lit, Column as PhysicalColumn};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::GlobalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{visit_expressions, Expr as SqlExpr, Visit};
use futures::StreamExt;
use std::any::Any;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

pub const KNN_MATCH: &str = "knn_match";
/// The similarity column of a KNN_MATCH query: higher is nearer.
pub const SCORE: &str = "_score";

const MISPLACED: &str = "KNN_MATCH(column, query_vector, k) can only be used as a condition in the WHERE clause \
    of a query over a table, combined with other conditions by AND (not inside OR, NOT, CASE or a SELECT list)";

/// The KNN_MATCH function. It is planned into the table scan; evaluating it row by row means it was used where
/// it cannot work, and that is an error rather than a silent full scan.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct KnnMatch {
    signature: Signature,
}

impl KnnMatch {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::user_defined(Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for KnnMatch {
    fn name(&self) -> &str {
        KNN_MATCH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 3 {
            return plan_err!(
                "KNN_MATCH takes 3 arguments (column, query_vector, k), got {}",
                arg_types.len()
            );
        }
        if vector_dims(&arg_types[0]).is_none() {
            return plan_err!(
                "KNN_MATCH: the first argument must be a FLOAT_VECTOR column, got {}",
                arg_types[0]
            );
        }
        if !is_vector_like(&arg_types[1]) {
            return plan_err!(
                "KNN_MATCH: the query vector must be a vector or an array of numbers, got {}",
                arg_types[1]
            );
        }
        if !arg_types[2].is_integer() {
            return plan_err!("KNN_MATCH: k must be an integer, got {}", arg_types[2]);
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("{MISPLACED}")
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        use std::sync::OnceLock;
        static DOC: OnceLock<datafusion::logical_expr::Documentation> = OnceLock::new();
        Some(DOC.get_or_init(|| {
            datafusion::logical_expr::Documentation::builder(
                super::functions::DOC_SECTION,
                "True for the k rows whose vectors are nearest to the query among the rows that pass the other \
                 WHERE conditions. Select or order by _score (higher is nearer). Exact without an index; \
                 approximate through an HNSW index (CREATE INDEX ... USING hnsw).",
                "KNN_MATCH(column, query_vector, k)",
            )
            .with_sql_example(
                "SELECT id, _score FROM docs WHERE KNN_MATCH(embedding, [0.1, 0.2, 0.3], 10) AND lang = 'en' \
                 ORDER BY _score DESC",
            )
            .with_argument("column", "A FLOAT_VECTOR column of the table.")
            .with_argument("query_vector", "A constant vector, or a scalar subquery returning one.")
            .with_argument("k", "How many nearest rows to return (a positive integer).")
            .build()
        }))
    }
}

/// The arguments of a top-level `KNN_MATCH(...)` call.
fn knn_args(expr: &Expr) -> Option<&[Expr]> {
    match expr {
        Expr::ScalarFunction(f) if f.name() == KNN_MATCH && f.args.len() == 3 => Some(&f.args),
        _ => None,
    }
}

/// Whether an expression calls KNN_MATCH anywhere inside.
pub fn contains_knn(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        if matches!(e, Expr::ScalarFunction(f) if f.name() == KNN_MATCH) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// A table provider as its concrete type.
pub fn downcast<T: 'static>(table: &Arc<dyn TableProvider>) -> Option<&T> {
    let any: &dyn Any = table.as_ref();
    any.downcast_ref::<T>()
}

fn references_score(expr: &Expr) -> bool {
    expr.column_refs().iter().any(|c| c.name == SCORE)
}

/// Whether a parsed statement calls KNN_MATCH anywhere (walks sqlparser's AST, not the text).
pub fn statement_uses_knn(statement: &DFStatement) -> bool {
    fn uses<V: Visit>(node: &V) -> bool {
        visit_expressions(node, |e| match e {
            SqlExpr::Function(f)
                if f.name
                    .0
                    .last()
                    .and_then(|p| p.as_ident())
                    .is_some_and(|i| i.value.eq_ignore_ascii_case(KNN_MATCH)) =>
            {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    }
    match statement {
        DFStatement::Statement(s) => uses(s.as_ref()),
        DFStatement::Explain(e) => statement_uses_knn(&e.statement),
        DFStatement::CopyTo(c) => match &c.source {
            CopyToSource::Query(q) => uses(q.as_ref()),
            CopyToSource::Relation(_) => false,
        },
        _ => false,
    }
}

/// Whether a table has a vector column, and so gets a `_score` column in KNN statements.
fn has_vector_column(schema: &Schema) -> bool {
    schema
        .fields()
        .iter()
        .any(|f| vector_dims(f.data_type()).is_some())
}

/// The table as a KNN statement sees it: with `_score` if it has a vector column.
pub fn scored(table: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
    if has_vector_column(&table.schema()) {
        Arc::new(ScoredTable::new(table))
    } else {
        table
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The table with `_score`.

/// A table with vector columns as seen by a KNN statement: its columns plus `_score` (NULL unless KNN_MATCH on
/// this table ranks the rows). Evaluates every condition pushed into its scan itself.
#[derive(Debug)]
pub struct ScoredTable {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
}

impl ScoredTable {
    fn new(inner: Arc<dyn TableProvider>) -> Self {
        let base = inner.schema();
        let mut fields: Vec<Arc<Field>> = base.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(SCORE, DataType::Float32, true)));
        let schema = Arc::new(Schema::new_with_metadata(fields, base.metadata().clone()));
        Self { inner, schema }
    }

    fn score_index(&self) -> usize {
        self.schema.fields().len() - 1
    }
}

/// Drops table qualifiers so an expression can be planned against the table's own (unqualified) schema.
pub fn unqualified(expr: &Expr) -> Result<Expr> {
    expr.clone()
        .transform(|e| match e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name),
            ))),
            e => Ok(Transformed::no(e)),
        })
        .map(|t| t.data)
}

pub fn physical(
    expr: &Expr,
    schema: &SchemaRef,
    state: &dyn Session,
) -> Result<Arc<dyn PhysicalExpr>> {
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    create_physical_expr(
        &unqualified(expr)?,
        &df_schema,
        state.execution_props(),
        &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext::default(),
    )
}

pub fn conjunction(filters: &[Expr]) -> Option<Expr> {
    filters.iter().cloned().reduce(|a, b| a.and(b))
}

/// Evaluates a constant expression (a literal, `[1, 2]`, `normalize([...])`).
pub fn constant(expr: &Expr, state: &dyn Session, what: &str) -> Result<ScalarValue> {
    if !expr.column_refs().is_empty() {
        return plan_err!(
            "{what} must be a constant or a scalar subquery, not a column expression"
        );
    }
    let empty = Arc::new(Schema::empty());
    let e = physical(expr, &empty, state)?;
    let batch = RecordBatch::try_new_with_options(
        empty,
        vec![],
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    match e.evaluate(&batch)? {
        ColumnarValue::Scalar(v) => Ok(v),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
    }
}

#[async_trait::async_trait]
impl TableProvider for ScoredTable {
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
        Ok(filters
            .iter()
            .map(|f| {
                let nested_knn = contains_knn(f) && knn_args(f).is_none();
                // `_score` only exists after ranking, so conditions on it apply to the KNN result.
                if nested_knn || references_score(f) {
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
        let score_index = self.score_index();
        let output: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let base = self.inner.schema();
        let (knn, others): (Vec<&Expr>, Vec<&Expr>) =
            filters.iter().partition(|f| knn_args(f).is_some());
        if knn.len() > 1 {
            return plan_err!("only one KNN_MATCH per table is supported in a query");
        }
        let others: Vec<Expr> = others.into_iter().cloned().collect();
        let filter = conjunction(&others)
            .map(|e| physical(&e, &base, state))
            .transpose()?;

        if let Some(knn) = knn.first() {
            let Some(args) = knn_args(knn) else {
                return plan_err!("{MISPLACED}");
            };
            let column = match unqualified(&args[0])? {
                Expr::Column(c) => c.name,
                other => {
                    return plan_err!(
                        "KNN_MATCH: the first argument must be a column of the table, got {other}"
                    )
                }
            };
            let column_index = base.index_of(&column)?;
            let Some(dims) = vector_dims(base.field(column_index).data_type()) else {
                return plan_err!("KNN_MATCH: column {column} is not a FLOAT_VECTOR column");
            };
            let query = constant(&args[1], state, "KNN_MATCH: the query vector")?;
            let what = format!("KNN_MATCH query vector for {column} FLOAT_VECTOR({dims})");
            let Some(query) = Vectors::scalar(&query, &what, Some(dims))? else {
                return plan_err!("KNN_MATCH: the query vector is NULL");
            };
            let k = match constant(&args[2], state, "KNN_MATCH: k")? {
                v if v.is_null() => return plan_err!("KNN_MATCH: k is NULL"),
                v => match v.cast_to(&DataType::Int64)? {
                    ScalarValue::Int64(Some(k)) if k > 0 => k as usize,
                    v => return plan_err!("KNN_MATCH: k must be a positive integer, got {v}"),
                },
            };
            let indexed = downcast::<IndexedTable>(&self.inner).is_some();
            let source = if indexed {
                KnnSource::Indexed(self.inner.clone())
            } else {
                KnnSource::Scan(self.inner.scan(state, None, &[], None).await?)
            };
            let exec = KnnExec::new(
                source,
                base.clone(),
                output.clone(),
                score_index,
                column_index,
                query,
                k,
                filter,
                others.clone(),
                limit,
            );
            return Ok(Arc::new(exec));
        }

        // No ranking on this table: its own scan, the pushed conditions, and a NULL `_score`.
        let mut needed: Vec<usize> = output
            .iter()
            .copied()
            .filter(|&i| i != score_index)
            .collect();
        for f in &others {
            for c in f.column_refs() {
                if let Ok(i) = base.index_of(&c.name) {
                    if !needed.contains(&i) {
                        needed.push(i);
                    }
                }
            }
        }
        needed.sort_unstable();
        let scan_limit = if others.is_empty() { limit } else { None };
        let mut plan = self
            .inner
            .scan(state, Some(&needed), &[], scan_limit)
            .await?;
        let scanned = plan.schema();
        if let Some(e) = conjunction(&others) {
            let predicate = physical(&e, &scanned, state)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
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
        plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        if let (Some(n), false) = (limit, others.is_empty()) {
            plan = Arc::new(GlobalLimitExec::new(plan, 0, Some(n)));
        }
        Ok(plan)
    }

    async fn insert_into(
        &self,
        state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The target's `_score` column is not stored: drop it from the rows to write.
        let schema = input.schema();
        let kept = schema.fields().len().saturating_sub(1);
        let exprs = (0..kept)
            .map(|i| {
                let name = schema.field(i).name().clone();
                let e: Arc<dyn PhysicalExpr> = Arc::new(PhysicalColumn::new(&name, i));
                (e, name)
            })
            .collect::<Vec<_>>();
        let input: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(exprs, input)?);
        self.inner.insert_into(state, input, insert_op).await
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Execution.

enum KnnSource {
    /// Any table: scan it all once.
    Scan(Arc<dyn ExecutionPlan>),
    /// An in-memory table with indexes.
    Indexed(Arc<dyn TableProvider>),
}

/// Ranks a table's rows by distance to a query vector and returns the k nearest that pass the filter, nearest
/// first, with their `_score`.
pub struct KnnExec {
    /// The search itself, shared with every stream that runs it.
    run: Arc<KnnRun>,
    base: SchemaRef,
    filter_exprs: Vec<Expr>,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for KnnExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnnExec")
            .field("column", &self.base.field(self.run.column).name())
            .field("k", &self.run.k)
            .finish()
    }
}

impl KnnExec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        source: KnnSource,
        base: SchemaRef,
        output: Vec<usize>,
        score_index: usize,
        column: usize,
        query: Vec<f32>,
        k: usize,
        filter: Option<Arc<dyn PhysicalExpr>>,
        filter_exprs: Vec<Expr>,
        limit: Option<usize>,
    ) -> Self {
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
        let run = Arc::new(KnnRun {
            source,
            output,
            score_index,
            column,
            query: Arc::new(query),
            k,
            filter,
            limit,
            schema,
        });
        Self {
            run,
            base,
            filter_exprs,
            properties,
        }
    }

    async fn run(source: Arc<KnnRun>, context: Arc<TaskContext>) -> Result<RecordBatch> {
        let (batches, hits, metric) = match &source.source {
            KnnSource::Scan(plan) => {
                let (batches, hits) = exact_scan(plan.clone(), &source, context).await?;
                (batches, hits, Metric::Euclidean)
            }
            KnnSource::Indexed(table) => {
                let table = downcast::<IndexedTable>(table).ok_or_else(|| {
                    DataFusionError::Internal("indexed KNN source is not indexed".into())
                })?;
                let snapshot = table.snapshot().await;
                let masks = match &source.filter {
                    Some(f) => Some(snapshot.masks(f)?),
                    None => None,
                };
                let (hits, metric) = table.search(
                    &snapshot,
                    source.column,
                    &source.query,
                    source.k,
                    masks.as_deref(),
                )?;
                (snapshot.into_batches(), hits, metric)
            }
        };
        source.assemble(&batches, hits, metric)
    }
}

/// What a running KNN search needs (owned, so it can move into the stream).
struct KnnRun {
    source: KnnSource,
    output: Vec<usize>,
    score_index: usize,
    column: usize,
    query: Arc<Vec<f32>>,
    k: usize,
    filter: Option<Arc<dyn PhysicalExpr>>,
    limit: Option<usize>,
    schema: SchemaRef,
}

impl KnnRun {
    /// Builds the result: the hit rows, nearest first, projected, with `_score`.
    fn assemble(
        &self,
        batches: &[RecordBatch],
        hits: Vec<Hit>,
        metric: Metric,
    ) -> Result<RecordBatch> {
        let mut hits = hits;
        hits.truncate(self.limit.unwrap_or(usize::MAX).min(self.k));
        let indices: Vec<(usize, usize)> = hits.iter().map(|h| (h.batch, h.row)).collect();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let rows = if indices.is_empty() || refs.is_empty() {
            None
        } else {
            Some(interleave_record_batch(&refs, &indices)?)
        };
        let scores: ArrayRef = Arc::new(Float32Array::from_iter_values(
            hits.iter().map(|h| metric.score_from_distance(h.distance)),
        ));
        let columns = self
            .output
            .iter()
            .map(|&i| {
                if i == self.score_index {
                    Ok(scores.clone())
                } else {
                    match &rows {
                        Some(b) => Ok(b.column(i).clone()),
                        None => Ok(datafusion::arrow::array::new_empty_array(
                            self.schema
                                .field(self.output.iter().position(|&j| j == i).unwrap_or(0))
                                .data_type(),
                        )),
                    }
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(hits.len())),
        )?)
    }
}

/// One candidate row: its batch (index into the batches the search saw), row, and distance (smaller is nearer).
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub distance: f32,
    pub batch: usize,
    pub row: usize,
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Hit {
    /// By distance, then position, so that ties break the same way every time.
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.batch.cmp(&other.batch))
            .then(self.row.cmp(&other.row))
    }
}

/// The k smallest hits seen so far (a max-heap whose top is the worst kept hit).
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Hit>,
    /// Reused distance buffer for block scans.
    scratch: Vec<f32>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.min(1 << 16) + 1),
            scratch: Vec::new(),
        }
    }

    #[inline]
    pub fn push(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(hit);
        } else if let Some(mut top) = self.heap.peek_mut() {
            if hit < *top {
                *top = hit;
            }
        }
    }

    /// The distance a new hit must beat to be kept.
    #[inline]
    pub fn bound(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |h| h.distance)
        }
    }

    /// Ranks every row of one batch whose vector is not NULL and whose mask (if any) is true.
    pub fn push_batch(
        &mut self,
        batch: usize,
        vectors: &Vectors,
        mask: Option<&BooleanArray>,
        metric: Metric,
        query: &PreparedQuery,
        rows: std::ops::Range<usize>,
    ) {
        let dense = mask.is_none_or(|m| m.true_count() * 2 >= m.len());
        if dense && metric != Metric::Cosine && !rows.is_empty() {
            // Most rows count: distances for the whole block in one vectorised pass, then the heap.
            let mut distances = std::mem::take(&mut self.scratch);
            let block = vectors.rows(rows.clone());
            match metric {
                Metric::Euclidean => super::kernels::l2_squared_rows(
                    &query.vector,
                    block,
                    vectors.dim(),
                    &mut distances,
                ),
                _ => super::kernels::dot_rows(&query.vector, block, vectors.dim(), &mut distances),
            }
            let negate = metric == Metric::Dot;
            for (row, d) in rows.zip(distances.iter().copied()) {
                let distance = if negate { -d } else { d };
                if !distance.is_nan()
                    && (distance < self.bound() || self.heap.len() < self.k)
                    && !vectors.is_null(row)
                    && mask.is_none_or(|m| m.is_valid(row) && m.value(row))
                {
                    self.push(Hit {
                        distance,
                        batch,
                        row,
                    });
                }
            }
            self.scratch = distances;
            return;
        }
        for row in rows {
            if let Some(m) = mask {
                if !m.is_valid(row) || !m.value(row) {
                    continue;
                }
            }
            let Some(v) = vectors.get(row) else { continue };
            let Some(distance) = metric.distance_prepared(query, v) else {
                continue;
            };
            if distance < self.bound() || self.heap.len() < self.k {
                self.push(Hit {
                    distance,
                    batch,
                    row,
                });
            }
        }
    }

    pub fn merge(&mut self, other: TopK) {
        for h in other.heap {
            self.push(h);
        }
    }

    pub fn into_sorted(self) -> Vec<Hit> {
        self.heap.into_sorted_vec()
    }
}

/// A query vector with what the metric needs precomputed (its norm, for cosine).
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    pub vector: Vec<f32>,
    pub norm: f32,
}

impl PreparedQuery {
    pub fn new(vector: &[f32]) -> Self {
        Self {
            vector: vector.to_vec(),
            norm: super::kernels::norm_squared(vector).sqrt(),
        }
    }
}

/// A boolean mask from a filter; NULL counts as false.
pub fn evaluate_mask(filter: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<BooleanArray> {
    let value = filter.evaluate(batch)?.into_array(batch.num_rows())?;
    match value.as_any().downcast_ref::<BooleanArray>() {
        Some(b) => Ok(b.clone()),
        None => exec_err!(
            "a WHERE condition did not evaluate to a boolean ({})",
            value.data_type()
        ),
    }
}

/// Exact search over a full scan: each partition ranks its own rows concurrently, then the heaps merge.
async fn exact_scan(
    plan: Arc<dyn ExecutionPlan>,
    run: &KnnRun,
    context: Arc<TaskContext>,
) -> Result<(Vec<RecordBatch>, Vec<Hit>)> {
    let partitions = plan.properties().output_partitioning().partition_count();
    let query = Arc::new(PreparedQuery::new(&run.query));
    let mut tasks = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let mut stream = plan.execute(p, context.clone())?;
        let (filter, query, column, k) = (run.filter.clone(), query.clone(), run.column, run.k);
        tasks.push(datafusion::common::runtime::SpawnedTask::spawn(
            async move {
                let mut top = TopK::new(k);
                let mut kept: Vec<RecordBatch> = Vec::new();
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    let mask = filter
                        .as_ref()
                        .map(|f| evaluate_mask(f, &batch))
                        .transpose()?;
                    let vectors = Vectors::read(batch.column(column), "KNN_MATCH column", None)?;
                    let before = top.bound();
                    let index = kept.len();
                    top.push_batch(
                        index,
                        &vectors,
                        mask.as_ref(),
                        Metric::Euclidean,
                        &query,
                        0..batch.num_rows(),
                    );
                    // Keep a batch only while it can hold hits (the heap changed); others are never looked at again.
                    if top.bound() != before || top.heap.iter().any(|h| h.batch == index) {
                        kept.push(batch);
                    } else {
                        kept.push(batch.slice(0, 0));
                    }
                }
                Ok::<_, DataFusionError>((kept, top))
            },
        ));
    }
    let mut batches = Vec::new();
    let mut all = TopK::new(run.k);
    for task in tasks {
        let (kept, top) = task
            .join()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))??;
        let offset = batches.len();
        for mut h in top.heap {
            h.batch += offset;
            all.push(h);
        }
        batches.extend(kept);
    }
    Ok((batches, all.into_sorted()))
}

impl DisplayAs for KnnExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = self.base.field(self.run.column).name();
        write!(f, "KnnExec: column={column}, k={}", self.run.k)?;
        match &self.run.source {
            KnnSource::Scan(_) => write!(f, ", search=exact")?,
            KnnSource::Indexed(t) => match downcast::<IndexedTable>(t) {
                Some(t) => write!(f, ", search={}", t.describe_search(self.run.column))?,
                None => write!(f, ", search=exact")?,
            },
        }
        if !self.filter_exprs.is_empty() {
            let shown: Vec<String> = self.filter_exprs.iter().map(|e| e.to_string()).collect();
            write!(f, ", filter=[{}]", shown.join(" AND "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for KnnExec {
    fn name(&self) -> &'static str {
        "KnnExec"
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
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return exec_err!("KnnExec has one partition, asked for {partition}");
        }
        let run = self.run.clone();
        let stream = futures::stream::once(async move { KnnExec::run(run, context).await });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.run.schema.clone(),
            stream,
        )))
    }
}

/// Snapshot helper used by the indexed path: the masks of a filter over every batch.
impl TableSnapshot {
    pub fn masks(&self, filter: &Arc<dyn PhysicalExpr>) -> Result<Vec<BooleanArray>> {
        self.batches()
            .iter()
            .map(|b| evaluate_mask(filter, b))
            .collect()
    }
}
