//! The `sys` schema: live views of the engine's own state (`sys.indexes`, `sys.views`; sources and dead letters
//! join it with the Kafka extension).

use crate::{vector, views};
use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use std::sync::Arc;

pub const SCHEMA: &str = "sys";

/// Registers `sys` in the session's default catalog.
pub fn register(
    ctx: &SessionContext,
    indexes: Arc<vector::Registry>,
    views: Arc<views::Registry>,
) -> Result<()> {
    let schema = Arc::new(MemorySchemaProvider::new());
    schema.register_table(
        "indexes".into(),
        Arc::new(vector::statements::SysIndexes::new(indexes)),
    )?;
    schema.register_table("views".into(), Arc::new(views::SysViews::new(views)))?;
    let state = ctx.state();
    let catalog_name = &state.config().options().catalog.default_catalog;
    if let Some(catalog) = ctx.catalog(catalog_name) {
        catalog.register_schema(SCHEMA, schema)?;
    }
    Ok(())
}
