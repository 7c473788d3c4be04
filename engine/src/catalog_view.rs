//! The catalog as one statement sees it: every table passed through a function first. KNN_MATCH and MATCH
//! statements see their tables with a `_score` column this way (see [`crate::vector::knn`], [`crate::text`]),
//! except the table an INSERT writes to, whose columns are the ones it stores.

use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::Result;
use datafusion::datasource::TableProvider;
use datafusion::sql::parser::Statement as DFStatement;
use std::sync::Arc;

/// How a statement sees a table: `(name, table) -> table`.
pub type Wrap = Arc<dyn Fn(&str, Arc<dyn TableProvider>) -> Arc<dyn TableProvider> + Send + Sync>;

#[derive(Clone)]
struct View {
    wrap: Wrap,
    insert_target: Option<String>,
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "View(insert target {:?})", self.insert_target)
    }
}

/// A catalog whose tables are seen through a [`Wrap`].
#[derive(Debug)]
pub struct CatalogView(Arc<dyn CatalogProviderList>, View);

#[derive(Debug)]
struct ViewCatalog(Arc<dyn CatalogProvider>, View);

#[derive(Debug)]
struct ViewSchema(Arc<dyn SchemaProvider>, View);

impl CatalogView {
    /// The catalog `inner` as `statement` sees it.
    pub fn new(inner: Arc<dyn CatalogProviderList>, statement: &DFStatement, wrap: Wrap) -> Self {
        Self(
            inner,
            View {
                wrap,
                insert_target: insert_target(statement),
            },
        )
    }
}

/// The (unqualified, normalised) name of the table an INSERT writes to.
fn insert_target(statement: &DFStatement) -> Option<String> {
    let DFStatement::Statement(s) = statement else {
        return None;
    };
    let datafusion::sql::sqlparser::ast::Statement::Insert(insert) = s.as_ref() else {
        return None;
    };
    let datafusion::sql::sqlparser::ast::TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let ident = name.0.last()?.as_ident()?;
    Some(if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    })
}

impl CatalogProviderList for CatalogView {
    fn register_catalog(
        &self,
        name: String,
        catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        self.0.register_catalog(name, catalog)
    }
    fn catalog_names(&self) -> Vec<String> {
        self.0.catalog_names()
    }
    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.0
            .catalog(name)
            .map(|c| Arc::new(ViewCatalog(c, self.1.clone())) as Arc<dyn CatalogProvider>)
    }
}

impl CatalogProvider for ViewCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.0.schema_names()
    }
    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.0
            .schema(name)
            .map(|s| Arc::new(ViewSchema(s, self.1.clone())) as Arc<dyn SchemaProvider>)
    }
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        self.0.register_schema(name, schema)
    }
}

#[async_trait::async_trait]
impl SchemaProvider for ViewSchema {
    fn table_names(&self) -> Vec<String> {
        self.0.table_names()
    }
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.0.table(name).await?.map(|t| {
            if self.1.insert_target.as_deref() == Some(name) {
                t
            } else {
                (self.1.wrap)(name, t)
            }
        }))
    }
    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.0.register_table(name, table)
    }
    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.0.deregister_table(name)
    }
    fn table_exist(&self, name: &str) -> bool {
        self.0.table_exist(name)
    }
}
