//! The `sys` schema: live views of the engine's own state (`sys.indexes`, `sys.views`, `sys.sources`,
//! `sys.dead_letters`).

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider, Session};
use datafusion::common::Result;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use std::sync::Arc;

/// A `sys` table: its rows are computed afresh by each query.
pub trait SysTable: std::fmt::Debug + Send + Sync + 'static {
    fn schema(&self) -> SchemaRef;
    /// The current rows, in one batch.
    fn batch(&self) -> Result<RecordBatch>;
}

/// The table DataFusion sees for a [`SysTable`].
#[derive(Debug)]
struct Table<T>(T);

#[async_trait::async_trait]
impl<T: SysTable> TableProvider for Table<T> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![self.0.batch()?]],
            self.0.schema(),
            projection.cloned(),
        )?)
    }
}

pub const SCHEMA: &str = "sys";

/// The `sys` schema of a session: each extension hands it its tables ([`SysTables::add`]), so this module knows
/// none of them.
#[derive(Debug, Clone)]
pub struct SysTables(Arc<MemorySchemaProvider>);

impl SysTables {
    /// Registers an empty `sys` schema in the session's default catalog.
    pub fn register(ctx: &SessionContext) -> Result<Self> {
        let schema = Arc::new(MemorySchemaProvider::new());
        let state = ctx.state();
        let catalog_name = &state.config().options().catalog.default_catalog;
        if let Some(catalog) = ctx.catalog(catalog_name) {
            catalog.register_schema(SCHEMA, schema.clone())?;
        }
        Ok(Self(schema))
    }

    /// Adds `sys.<name>`.
    pub fn add(&self, name: &str, t: impl SysTable) {
        // a MemorySchemaProvider only refuses a name it already holds; extensions name distinct tables
        let _ = self.0.register_table(name.into(), Arc::new(Table(t)));
    }
}

/// One row of `sys.indexes`. Each index kind (vector/, text/) lists its own through [`IndexLister`].
#[derive(Debug, Clone, Default)]
pub struct IndexRow {
    pub name: String,
    pub table: String,
    /// The indexed column (columns, comma-separated, for a composite full-text index).
    pub column: String,
    pub dims: Option<i32>,
    pub metric: Option<String>,
    pub rows_indexed: i64,
    pub rows_pending: i64,
    pub segments: i32,
    pub m: Option<i32>,
    pub ef_construction: Option<i32>,
    pub ef_search: Option<i32>,
    pub build_seconds: f64,
    pub building: bool,
    pub last_error: Option<String>,
    /// The index kind: hnsw, fulltext.
    pub using: String,
    pub analyzer: Option<String>,
}

/// What lists indexes in `sys.indexes`.
pub trait IndexLister: std::fmt::Debug + Send + Sync {
    fn index_rows(&self) -> Vec<IndexRow>;
}

/// `sys.indexes`: one row per index of every kind.
#[derive(Debug)]
pub struct SysIndexes {
    listers: Vec<Arc<dyn IndexLister>>,
    schema: SchemaRef,
}

impl SysIndexes {
    pub fn new(listers: Vec<Arc<dyn IndexLister>>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("table", DataType::Utf8, false),
            Field::new("column", DataType::Utf8, false),
            Field::new("dims", DataType::Int32, true),
            Field::new("metric", DataType::Utf8, true),
            Field::new("rows_indexed", DataType::Int64, false),
            Field::new("rows_pending", DataType::Int64, false),
            Field::new("segments", DataType::Int32, false),
            Field::new("m", DataType::Int32, true),
            Field::new("ef_construction", DataType::Int32, true),
            Field::new("ef_search", DataType::Int32, true),
            Field::new("build_seconds", DataType::Float64, false),
            Field::new("building", DataType::Boolean, false),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("using", DataType::Utf8, false),
            Field::new("analyzer", DataType::Utf8, true),
        ]));
        Self { listers, schema }
    }
}

impl SysTable for SysIndexes {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn batch(&self) -> Result<RecordBatch> {
        let mut rows: Vec<IndexRow> = self.listers.iter().flat_map(|l| l.index_rows()).collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let text = |f: &dyn Fn(&IndexRow) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let opt_text = |f: &dyn Fn(&IndexRow) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter(rows.iter().map(f)))
        };
        let opt_int = |f: &dyn Fn(&IndexRow) -> Option<i32>| -> ArrayRef {
            Arc::new(Int32Array::from_iter(rows.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            text(&|r| r.name.clone()),
            text(&|r| r.table.clone()),
            text(&|r| r.column.clone()),
            opt_int(&|r| r.dims),
            opt_text(&|r| r.metric.clone()),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.rows_indexed),
            )),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.rows_pending),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.segments),
            )),
            opt_int(&|r| r.m),
            opt_int(&|r| r.ef_construction),
            opt_int(&|r| r.ef_search),
            Arc::new(Float64Array::from_iter_values(
                rows.iter()
                    .map(|r| (r.build_seconds * 1000.0).round() / 1000.0),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.building)),
            )),
            opt_text(&|r| r.last_error.clone()),
            text(&|r| r.using.clone()),
            opt_text(&|r| r.analyzer.clone()),
        ];
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}
