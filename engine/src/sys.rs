//! The `sys` schema: live views of the engine's own state (today `sys.indexes`; sources, dead letters and views
//! join it as their extensions land).

use crate::vector;
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use std::sync::Arc;

pub const SCHEMA: &str = "sys";

/// Registers `sys` in the session's default catalog.
pub fn register(ctx: &SessionContext, indexes: Arc<vector::Registry>) -> Result<()> {
    let schema = Arc::new(MemorySchemaProvider::new());
    schema.register_table(
        "indexes".into(),
        Arc::new(vector::statements::SysIndexes::new(indexes)),
    )?;
    let state = ctx.state();
    let catalog_name = &state.config().options().catalog.default_catalog;
    if let Some(catalog) = ctx.catalog(catalog_name) {
        catalog.register_schema(SCHEMA, schema)?;
    }
    Ok(())
}
