//! The `sys` schema: live views of the engine's own state (`sys.indexes`, `sys.views`, `sys.sources`,
//! `sys.dead_letters`).

use datafusion::arrow::datatypes::SchemaRef;
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
