//! The `sys` schema: live views of the engine's own state (`sys.indexes`, `sys.views`, `sys.sources`,
//! `sys.dead_letters`).

use crate::{stream, vector, views};
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
    sources: Arc<stream::Sources>,
) -> Result<()> {
    let schema = Arc::new(MemorySchemaProvider::new());
    schema.register_table(
        "indexes".into(),
        Arc::new(vector::statements::SysIndexes::new(indexes)),
    )?;
    schema.register_table("views".into(), Arc::new(views::SysViews::new(views)))?;
    schema.register_table(
        "dead_letters".into(),
        Arc::new(stream::SysDeadLetters::new(sources.dead.clone())),
    )?;
    schema.register_table("sources".into(), Arc::new(stream::SysSources::new(sources)))?;
    let state = ctx.state();
    let catalog_name = &state.config().options().catalog.default_catalog;
    if let Some(catalog) = ctx.catalog(catalog_name) {
        catalog.register_schema(SCHEMA, schema)?;
    }
    Ok(())
}
