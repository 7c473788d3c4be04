//! CREATE INDEX ... USING hnsw and DROP INDEX, recognised from sqlparser's AST (DataFusion cannot plan them), and
//! the registry of indexes behind `sys.indexes`.

use super::convert::vector_dims;
use super::index::{HnswParams, IndexedTable, VectorIndex};
use super::Metric;
use crate::outcome::group_thousands;
use datafusion::common::{plan_err, DataFusionError, Result, TableReference};
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, CreateIndex, Expr as SqlExpr, IndexType, ObjectName, Value,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

struct Entry {
    table: Weak<IndexedTable>,
    index: Arc<VectorIndex>,
}

/// Every index of the session, by name.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<BTreeMap<String, Entry>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({} indexes)", self.live().len())
    }
}

impl Registry {
    /// Indexes whose table still exists (a dropped or replaced table takes its indexes with it).
    pub fn live(&self) -> Vec<(Arc<IndexedTable>, Arc<VectorIndex>)> {
        let Ok(mut entries) = self.entries.lock() else {
            return Vec::new();
        };
        entries.retain(|_, e| {
            e.table
                .upgrade()
                .is_some_and(|t| t.indexes().iter().any(|i| Arc::ptr_eq(i, &e.index)))
        });
        entries
            .values()
            .filter_map(|e| Some((e.table.upgrade()?, e.index.clone())))
            .collect()
    }

    fn get(&self, name: &str) -> Option<(Arc<IndexedTable>, Arc<VectorIndex>)> {
        self.live().into_iter().find(|(_, i)| i.name == name)
    }

    /// The index with this name, for tests and benchmarks.
    pub fn index(&self, name: &str) -> Option<Arc<VectorIndex>> {
        self.get(name).map(|(_, i)| i)
    }
}

/// An identifier as SQL means it: unquoted names fold to lower case.
pub fn ident_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|p| p.as_ident())
        .map(|i| {
            if i.quote_style.is_some() {
                i.value.clone()
            } else {
                i.value.to_lowercase()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn option_value(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        SqlExpr::Identifier(i) => Some(i.value.clone()),
        _ => None,
    }
}

fn parse_options(with: &[SqlExpr]) -> Result<(Metric, HnswParams)> {
    let mut metric = Metric::Euclidean;
    let mut params = HnswParams::default();
    for option in with {
        let SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = option
        else {
            return plan_err!("index options are written name = value, got {option}");
        };
        let SqlExpr::Identifier(key) = left.as_ref() else {
            return plan_err!("index options are written name = value, got {option}");
        };
        let key = key.value.to_lowercase();
        let Some(value) = option_value(right) else {
            return plan_err!("index option {key} needs a number or a quoted string, got {right}");
        };
        let number = |lo: usize, hi: usize| -> Result<usize> {
            match value.parse::<usize>() {
                Ok(n) if (lo..=hi).contains(&n) => Ok(n),
                _ => plan_err!(
                    "index option {key} must be an integer from {lo} to {hi}, got {value}"
                ),
            }
        };
        match key.as_str() {
            "metric" => {
                metric = Metric::parse(&value).ok_or_else(|| {
                    DataFusionError::Plan(format!(
                        "unknown metric '{value}': use 'euclidean', 'cosine' or 'dot'"
                    ))
                })?
            }
            "m" => params.m = number(2, 128)?,
            "ef_construction" => params.ef_construction = number(1, 10_000)?,
            "ef_search" => params.ef_search = number(1, 10_000)?,
            other => {
                return plan_err!(
                    "unknown index option '{other}' (known: metric, m, ef_construction, ef_search)"
                )
            }
        }
    }
    Ok((metric, params))
}

/// CREATE INDEX name ON table USING hnsw (column) [WITH (...)]. Returns the confirmation message.
pub async fn create_index(
    ctx: &SessionContext,
    registry: &Registry,
    stmt: &CreateIndex,
    taken: impl Fn(&str) -> bool,
    progress: Arc<dyn Fn(usize, usize) + Send + Sync>,
) -> Result<String> {
    let usage =
        "CREATE INDEX name ON table USING hnsw (vector_column) [WITH (metric = 'cosine', m = 16, \
                 ef_construction = 200, ef_search = 64)]";
    match &stmt.using {
        Some(IndexType::Custom(i)) if i.value.eq_ignore_ascii_case("hnsw") => {}
        Some(other) => {
            return plan_err!(
                "index type {other} is not supported; Kestrel builds vector indexes ({usage}) and \
                 full-text indexes (CREATE INDEX name ON table USING fulltext (columns))"
            )
        }
        None => {
            return plan_err!(
            "CREATE INDEX needs USING hnsw (a vector index: {usage}) or USING fulltext (columns)"
        )
        }
    }
    let Some(name) = &stmt.name else {
        return plan_err!("CREATE INDEX needs a name: {usage}");
    };
    let name = ident_name(name);
    if stmt.unique {
        return plan_err!("an hnsw index cannot be UNIQUE");
    }
    if stmt.predicate.is_some() {
        return plan_err!("partial indexes (CREATE INDEX ... WHERE) are not supported");
    }
    let column = match stmt.columns.as_slice() {
        [c] => match &c.column.expr {
            SqlExpr::Identifier(i) => {
                if i.quote_style.is_some() {
                    i.value.clone()
                } else {
                    i.value.to_lowercase()
                }
            }
            other => return plan_err!("an hnsw index is built on one column, got {other}"),
        },
        _ => return plan_err!("an hnsw index is built on exactly one column: {usage}"),
    };
    let (metric, params) = parse_options(&stmt.with)?;
    if registry.get(&name).is_some() || taken(&name) {
        if stmt.if_not_exists {
            return Ok(format!("Index {name} already exists; nothing changed"));
        }
        return plan_err!("index {name} already exists");
    }

    let table_name = ident_name(&stmt.table_name);
    let table_ref = TableReference::from(table_name.as_str());
    let provider = ctx.table_provider(table_ref.clone()).await?;
    let schema = provider.schema();
    let Ok(column_index) = schema.index_of(&column) else {
        return plan_err!("table {table_name} has no column {column}");
    };
    let Some(dim) = vector_dims(schema.field(column_index).data_type()) else {
        return plan_err!(
            "column {column} of {table_name} is {}, not FLOAT_VECTOR: an hnsw index needs a vector column",
            schema.field(column_index).data_type()
        );
    };
    let table = IndexedTable::attach(ctx, &table_name, "CREATE INDEX").await?;
    let threads = ctx.state_ref().read().config().target_partitions().max(1);
    let index = VectorIndex::new(
        name.clone(),
        table_name.clone(),
        column.clone(),
        column_index,
        dim,
        metric,
        params,
    );
    let index = table.create_index(index, threads, progress).await?;
    let stats = index.stats();
    if let Ok(mut entries) = registry.entries.lock() {
        entries.insert(
            name.clone(),
            Entry {
                table: Arc::downgrade(&table),
                index: index.clone(),
            },
        );
    }
    Ok(format!(
        "Created index {name} on {table_name} ({column}): {} vectors, {}, in {:.1} s",
        group_thousands(stats.rows_indexed as u64),
        metric.name(),
        stats.build_time.as_secs_f64()
    ))
}

/// DROP INDEX [IF EXISTS] name [, ...].
pub fn drop_index(registry: &Registry, names: &[ObjectName], if_exists: bool) -> Result<String> {
    let mut dropped = Vec::new();
    for n in names {
        let name = ident_name(n);
        match registry.get(&name) {
            Some((table, _)) => {
                table.remove_index(&name);
                registry.live();
                dropped.push(name);
            }
            None if if_exists => {}
            None => return plan_err!("index {name} does not exist"),
        }
    }
    Ok(match dropped.as_slice() {
        [] => "No index dropped; nothing changed".to_string(),
        [one] => format!("Dropped index {one}"),
        many => format!("Dropped indexes {}", many.join(", ")),
    })
}

/// Whether a statement is one of ours, and which.
pub enum IndexStatement<'a> {
    Create(&'a CreateIndex),
    Drop {
        names: &'a [ObjectName],
        if_exists: bool,
    },
}

pub fn index_statement(statement: &ast::Statement) -> Option<IndexStatement<'_>> {
    match statement {
        ast::Statement::CreateIndex(c) => Some(IndexStatement::Create(c)),
        ast::Statement::Drop {
            object_type: ast::ObjectType::Index,
            names,
            if_exists,
            ..
        } => Some(IndexStatement::Drop {
            names,
            if_exists: *if_exists,
        }),
        _ => None,
    }
}

/// The vector indexes' rows of `sys.indexes`.
impl crate::sys::IndexLister for Registry {
    fn index_rows(&self) -> Vec<crate::sys::IndexRow> {
        self.live()
            .into_iter()
            .map(|(table, i)| {
                let s = i.stats();
                crate::sys::IndexRow {
                    name: i.name.clone(),
                    table: i.table.clone(),
                    column: i.column.clone(),
                    dims: Some(i.dim as i32),
                    metric: Some(i.metric.name().to_string()),
                    rows_indexed: s.rows_indexed as i64,
                    rows_pending: table.pending_rows(&i) as i64,
                    segments: s.segments as i32,
                    m: Some(i.params.m as i32),
                    ef_construction: Some(i.params.ef_construction as i32),
                    ef_search: Some(i.ef_search() as i32),
                    build_seconds: s.build_time.as_secs_f64(),
                    building: s.building,
                    last_error: s.last_error,
                    using: "hnsw".into(),
                    analyzer: None,
                }
            })
            .collect()
    }
}
