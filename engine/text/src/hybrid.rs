//! `hybrid_search(table, text_index, vector_column, 'query', k [, 'options'])`: full-text and vector search of
//! one question, fused.
//!
//! The question is searched twice on the same snapshot of the table: by BM25 through the full-text index, and by
//! nearness of `embed(query)` to the vector column (through its HNSW index, or exactly). Each side keeps its best
//! `candidates` rows; the two rankings are fused by reciprocal rank fusion, `Σ 1 / (rrf_k + rank)` (default
//! rrf_k = 60), or with `fusion = 'convex'` by `alpha · vector + (1 − alpha) · text` of min-max-normalised scores.
//! A row found by only one side keeps its one term (CrateDB's documented recipe joins the two rankings and so
//! drops it). Result: the table's columns, `_score` (fused), `text_rank`, `vector_rank`, `text_score`,
//! `vector_score` (NULL on the side that did not find the row), best first.
//!
//! Why a table function and not `MATCH(...) OR KNN_MATCH(...)`: a WHERE clause says which rows qualify, not how
//! two scores combine, and OR of two top-k conditions is not a fusion (the scores are on different scales, and a
//! row in both gets no credit for it). A table function names the inputs, the fusion and its parameters in one
//! place, and keeps the hand-written CTE form (two ranked CTEs, a FULL OUTER JOIN) available for anything else.

use super::index::TableText;
use super::query::{MatchOptions, MatchSpec, MatchType, TargetRef};
use super::Text;
use crate::vector::index::IndexedTable;
use datafusion::arrow::array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionImpl};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

const USAGE: &str = "hybrid_search(table, text_index, vector_column, 'query text', k [, 'rrf_k=60, candidates=100, \
    fusion=rrf|convex, alpha=0.5'])";

#[derive(Debug)]
pub struct HybridSearch {
    text: Arc<Text>,
}

impl HybridSearch {
    pub fn new(text: Arc<Text>) -> Self {
        Self { text }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fusion {
    Rrf { k: f64 },
    Convex { alpha: f64 },
}

#[derive(Debug, Clone)]
struct Options {
    fusion: Fusion,
    candidates: Option<usize>,
}

fn parse_options(text: &str) -> Result<Options> {
    let mut rrf_k = 60.0;
    let mut alpha = 0.5;
    let mut convex = false;
    let mut candidates = None;
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return plan_err!("hybrid_search option '{part}' is not key=value: {USAGE}");
        };
        let (key, value) = (
            key.trim().to_ascii_lowercase(),
            value.trim().trim_matches('\''),
        );
        let number = || -> Result<f64> {
            value.parse::<f64>().map_err(|_| {
                DataFusionError::Plan(format!(
                    "hybrid_search option {key} must be a number, got '{value}'"
                ))
            })
        };
        match key.as_str() {
            "rrf_k" | "k" => {
                rrf_k = number()?;
                if rrf_k < 0.0 {
                    return plan_err!("hybrid_search option rrf_k must be at least 0, got {rrf_k}");
                }
            }
            "alpha" => {
                alpha = number()?;
                if !(0.0..=1.0).contains(&alpha) {
                    return plan_err!("hybrid_search option alpha (the vector side's weight) is between 0 and 1, got {alpha}");
                }
            }
            "fusion" => match value.to_ascii_lowercase().as_str() {
                "rrf" => convex = false,
                "convex" => convex = true,
                other => {
                    return plan_err!(
                        "hybrid_search option fusion is 'rrf' or 'convex', got '{other}'"
                    )
                }
            },
            "candidates" => match value.parse::<usize>() {
                Ok(n) if n > 0 => candidates = Some(n),
                _ => {
                    return plan_err!(
                        "hybrid_search option candidates must be a positive integer, got '{value}'"
                    )
                }
            },
            other => {
                return plan_err!(
                "unknown hybrid_search option '{other}' (known: rrf_k, candidates, fusion, alpha)"
            )
            }
        }
    }
    Ok(Options {
        fusion: if convex {
            Fusion::Convex { alpha }
        } else {
            Fusion::Rrf { k: rrf_k }
        },
        candidates,
    })
}

fn literal(e: &Expr, what: &str) -> Result<ScalarValue> {
    match e {
        Expr::Literal(v, _) => Ok(v.clone()),
        Expr::Cast(c) => literal(&c.expr, what)?.cast_to(c.field.data_type()),
        other => plan_err!("hybrid_search: {what} must be a constant, got {other}: {USAGE}"),
    }
}

fn text_arg(e: &Expr, what: &str) -> Result<String> {
    match literal(e, what)?.cast_to(&DataType::Utf8)? {
        ScalarValue::Utf8(Some(s)) => Ok(s),
        _ => plan_err!("hybrid_search: {what} must be text, not NULL: {USAGE}"),
    }
}

impl TableFunctionImpl for HybridSearch {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        if !(5..=6).contains(&args.len()) {
            return plan_err!(
                "hybrid_search takes 5 or 6 arguments, got {}: {USAGE}",
                args.len()
            );
        }
        let table_name = text_arg(&args[0], "the table")?.to_lowercase();
        let index = text_arg(&args[1], "the full-text index")?.to_lowercase();
        let column = text_arg(&args[2], "the vector column")?;
        let query = text_arg(&args[3], "the query")?;
        let k = match literal(&args[4], "k")?.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(Some(k)) if k > 0 => k as usize,
            v => return plan_err!("hybrid_search: k must be a positive integer, got {v}"),
        };
        let options = match args.get(5) {
            Some(e) => parse_options(&text_arg(e, "the options")?)?,
            None => parse_options("")?,
        };
        let Some((text, def)) = self.text.find(&index) else {
            return plan_err!(
                "hybrid_search: there is no full-text index {index}; create one: CREATE INDEX {index} ON \
                 {table_name} USING fulltext (column)"
            );
        };
        if def.table != table_name {
            return plan_err!(
                "hybrid_search: index {index} is on table {}, not {table_name}",
                def.table
            );
        }
        let Some(indexed) = text.table.upgrade() else {
            return plan_err!("hybrid_search: table {table_name} no longer exists");
        };
        let schema = indexed.schema();
        let Ok(column_index) = schema
            .index_of(&column.to_lowercase())
            .or_else(|_| schema.index_of(&column))
        else {
            return plan_err!("hybrid_search: table {table_name} has no column {column}");
        };
        let Some(dims) =
            crate::vector::convert::vector_dims(schema.field(column_index).data_type())
        else {
            return plan_err!(
                "hybrid_search: column {column} of {table_name} is not a FLOAT_VECTOR column"
            );
        };
        if dims != crate::embed::DIMS {
            return plan_err!(
                "hybrid_search: column {column} is FLOAT_VECTOR({dims}), and embed() makes FLOAT_VECTOR({}) with {}",
                crate::embed::DIMS,
                crate::embed::DEFAULT_MODEL
            );
        }
        let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
        for (name, t) in [
            ("_score", DataType::Float64),
            ("text_rank", DataType::Int64),
            ("vector_rank", DataType::Int64),
            ("text_score", DataType::Float32),
            ("vector_score", DataType::Float32),
        ] {
            fields.push(Arc::new(Field::new(name, t, true)));
        }
        Ok(Arc::new(HybridTable(Arc::new(HybridQuery {
            indexed,
            text,
            index,
            column_index,
            query,
            k,
            options,
            schema: Arc::new(Schema::new(fields)),
        }))))
    }
}

/// The table a hybrid_search call stands for: its question and options; the search runs when the plan runs.
#[derive(Debug)]
struct HybridTable(Arc<HybridQuery>);

#[derive(Debug)]
struct HybridQuery {
    indexed: Arc<IndexedTable>,
    text: Arc<TableText>,
    index: String,
    column_index: usize,
    query: String,
    k: usize,
    options: Options,
    schema: SchemaRef,
}

/// One fused row: where it is, its ranks and scores.
#[derive(Debug, Clone, Default)]
struct Fused {
    text: Option<(usize, f32)>,
    vector: Option<(usize, f32)>,
    score: f64,
}

fn normalised(scores: &[f32]) -> impl Fn(f32) -> f64 {
    let lo = scores.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    move |s| {
        if hi > lo {
            (s as f64 - lo) / (hi - lo)
        } else {
            1.0
        }
    }
}

impl HybridQuery {
    async fn search(&self) -> Result<RecordBatch> {
        let snapshot = self.indexed.snapshot().await;
        let rows: usize = snapshot.batches().iter().map(|b| b.num_rows()).sum();
        let candidates = self
            .options
            .candidates
            .unwrap_or((self.k * 10).max(100))
            .min(rows.max(1));
        // full-text side
        let text = self.text.clone();
        let spec = MatchSpec {
            targets: vec![TargetRef {
                index: self.index.clone(),
                boost: 1.0,
            }],
            query: self.query.clone(),
            kind: MatchType::BestFields,
            options: MatchOptions::default(),
        };
        let snap = snapshot.clone();
        let text_hits = tokio::task::spawn_blocking(move || -> Result<Vec<(u64, f32)>> {
            text.refresh(&snap, &|_, _| {})?;
            let q = text.query(&spec)?;
            text.search(q.as_ref(), None, Some(candidates))
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("hybrid_search stopped: {e}")))??;
        // vector side
        let query = self.query.clone();
        let vector = tokio::task::spawn_blocking(move || -> Result<Vec<f32>> {
            let model = crate::embed::model().map_err(DataFusionError::Plan)?;
            let mut v = model
                .embed(&[query.as_str()], &mut |_| Ok(()))
                .map_err(DataFusionError::Execution)?;
            v.pop()
                .ok_or_else(|| DataFusionError::Internal("embed returned nothing".into()))
        })
        .await
        .map_err(|e| DataFusionError::Execution(format!("hybrid_search stopped: {e}")))??;
        let (vector_hits, metric) =
            self.indexed
                .search(&snapshot, self.column_index, &vector, candidates, None)?;

        let mut fused: HashMap<(usize, usize), Fused> = HashMap::new();
        for (rank, (key, score)) in text_hits.iter().enumerate() {
            if let Some(at) = snapshot.locate_key(*key) {
                fused.entry(at).or_default().text = Some((rank + 1, *score));
            }
        }
        for (rank, h) in vector_hits.iter().enumerate() {
            let score = metric.score_from_distance(h.distance);
            fused.entry((h.batch, h.row)).or_default().vector = Some((rank + 1, score));
        }
        let text_norm = normalised(&text_hits.iter().map(|h| h.1).collect::<Vec<_>>());
        let vector_scores: Vec<f32> = vector_hits
            .iter()
            .map(|h| metric.score_from_distance(h.distance))
            .collect();
        let vector_norm = normalised(&vector_scores);
        for f in fused.values_mut() {
            f.score = match self.options.fusion {
                Fusion::Rrf { k } => {
                    f.text.map_or(0.0, |(r, _)| 1.0 / (k + r as f64))
                        + f.vector.map_or(0.0, |(r, _)| 1.0 / (k + r as f64))
                }
                Fusion::Convex { alpha } => {
                    (1.0 - alpha) * f.text.map_or(0.0, |(_, s)| text_norm(s))
                        + alpha * f.vector.map_or(0.0, |(_, s)| vector_norm(s))
                }
            };
        }
        let mut ranked: Vec<((usize, usize), Fused)> = fused.into_iter().collect();
        ranked.sort_by(|a, b| {
            b.1.score
                .total_cmp(&a.1.score)
                .then(
                    a.1.text
                        .map(|t| t.0)
                        .unwrap_or(usize::MAX)
                        .cmp(&b.1.text.map(|t| t.0).unwrap_or(usize::MAX)),
                )
                .then(a.0.cmp(&b.0))
        });
        ranked.truncate(self.k);
        let batches = snapshot.batches();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let indices: Vec<(usize, usize)> = ranked.iter().map(|r| r.0).collect();
        let base = self.indexed.schema();
        let mut columns: Vec<ArrayRef> = if indices.is_empty() {
            base.fields()
                .iter()
                .map(|f| datafusion::arrow::array::new_empty_array(f.data_type()))
                .collect()
        } else {
            interleave_record_batch(&refs, &indices)?.columns().to_vec()
        };
        columns.push(Arc::new(Float64Array::from_iter_values(
            ranked.iter().map(|r| r.1.score),
        )));
        columns.push(Arc::new(Int64Array::from_iter(
            ranked.iter().map(|r| r.1.text.map(|t| t.0 as i64)),
        )));
        columns.push(Arc::new(Int64Array::from_iter(
            ranked.iter().map(|r| r.1.vector.map(|t| t.0 as i64)),
        )));
        columns.push(Arc::new(Float32Array::from_iter(
            ranked.iter().map(|r| r.1.text.map(|t| t.1)),
        )));
        columns.push(Arc::new(Float32Array::from_iter(
            ranked.iter().map(|r| r.1.vector.map(|t| t.1)),
        )));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait::async_trait]
impl TableProvider for HybridTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.0.schema.project(p)?),
            None => self.0.schema.clone(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Arc::new(HybridSearchExec {
            query: self.0.clone(),
            projection: projection.cloned(),
            schema,
            properties,
        }))
    }
}

/// Runs one hybrid_search: both searches and the fusion happen when the plan executes (EXPLAIN searches nothing).
#[derive(Debug)]
struct HybridSearchExec {
    query: Arc<HybridQuery>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for HybridSearchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = &self.query;
        write!(
            f,
            "HybridSearchExec: text_index={}, vector_column={}, query={:?}, k={}, fusion={:?}",
            q.index,
            q.indexed.schema().field(q.column_index).name(),
            q.query,
            q.k,
            q.options.fusion
        )
    }
}

impl ExecutionPlan for HybridSearchExec {
    fn name(&self) -> &'static str {
        "HybridSearchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
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
            return exec_err!("HybridSearchExec has one partition, asked for {partition}");
        }
        let query = self.query.clone();
        let projection = self.projection.clone();
        let stream = futures::stream::once(async move {
            let batch = query.search().await?;
            match projection {
                Some(p) => Ok(batch.project(&p)?),
                None => Ok(batch),
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}
