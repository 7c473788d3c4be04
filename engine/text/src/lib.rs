//! Full-text search: CrateDB's `INDEX ... USING FULLTEXT`, `MATCH(...)` with `_score` (BM25), `highlight()`,
//! analyzers, and hybrid (full-text + vector) search. tantivy underneath.
//!
//! - [`syntax`]: MATCH, CREATE TABLE's INDEX elements and CREATE ANALYZER, rewritten or parsed from tokens;
//! - [`analyzers`]: built-in and CREATE ANALYZER analyzers;
//! - [`index`]: a table's tantivy index, kept fresh by the searches themselves;
//! - [`query`]: MATCH types and options as tantivy queries;
//! - [`matching`]: MATCH planned through filter pushdown into the table scan (as KNN_MATCH is);
//! - [`highlight`]: `highlight(text, query)` snippets;
//! - [`hybrid`]: `hybrid_search(...)`, reciprocal rank fusion of MATCH and KNN_MATCH.
//!
//! A statement's MATCH targets name indexes; which table's index is resolved here, on the AST, from the FROM clause
//! of the SELECT the MATCH is in ([`Text::prepare`]), because planning needs a column to route the condition to the
//! right table.

pub mod analyzers;
pub mod embed;
pub mod highlight;
pub mod hybrid;
pub mod index;
pub mod matching;
pub mod query;
pub mod syntax;

use crate::vector::index::IndexedTable;
use crate::vector::statements::ident_name;
use analyzers::{Analyzers, DEFAULT_ANALYZER};
use datafusion::catalog::TableProvider;
use datafusion::common::{plan_err, DataFusionError, Result, TableReference};
use datafusion::execution::context::SessionContext;
use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    self, visit_expressions, visit_relations, CreateIndex, Expr as SqlExpr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Ident, ObjectName, Select, TableFactor, Value, VisitMut,
    VisitorMut,
};
use index::{TableText, TextIndexDef};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

pub use syntax::MATCH_FN;

// The core's modules, under the names the code used inside the engine crate.
use kestrel_core::{outcome, sql, sys, vector};

/// The session's full-text state: every table's indexes, and the analyzers.
#[derive(Debug, Default)]
pub struct Text {
    tables: Mutex<Vec<Arc<TableText>>>,
    pub analyzers: Analyzers,
}

impl Text {
    /// Registers MATCH's marker, highlight() and hybrid_search() in a session.
    pub fn register(self: &Arc<Self>, ctx: &SessionContext) {
        ctx.register_udf(matching::MatchFn::udf());
        ctx.register_udf(highlight::Highlight::udf(self.clone()));
        ctx.register_udtf(
            "hybrid_search",
            Arc::new(hybrid::HybridSearch::new(self.clone())),
        );
    }

    /// DROP ANALYZER, refused while a full-text index uses the analyzer (its rows were split by it; queries and
    /// new rows must be split the same way).
    pub fn drop_analyzer(&self, name: &str, if_exists: bool) -> Result<String> {
        let key = name.to_ascii_lowercase();
        let users: Vec<String> = self
            .tables()
            .iter()
            .flat_map(|t| t.defs())
            .filter(|d| !d.analyzer.builtin && d.analyzer.name.eq_ignore_ascii_case(&key))
            .map(|d| format!("{} on {}", d.name, d.table))
            .collect();
        if !users.is_empty() {
            return plan_err!(
                "analyzer {key} is used by the full-text index{} {}; DROP INDEX {} first",
                if users.len() > 1 { "es" } else { "" },
                users.join(", "),
                if users.len() > 1 { "them" } else { "it" }
            );
        }
        self.analyzers.drop_analyzer(&key, if_exists)
    }

    /// Tables whose indexes are still there (a dropped or replaced table takes its indexes with it).
    pub fn tables(&self) -> Vec<Arc<TableText>> {
        let Ok(mut tables) = self.tables.lock() else {
            return Vec::new();
        };
        tables.retain(|t| t.table.upgrade().is_some() && !t.defs().is_empty());
        tables.clone()
    }

    /// The full-text indexes of a table provider, if it has any.
    pub fn for_provider(&self, provider: &Arc<dyn TableProvider>) -> Option<Arc<TableText>> {
        let indexed = crate::vector::knn::downcast::<IndexedTable>(provider)?;
        self.tables().into_iter().find(|t| {
            t.table
                .upgrade()
                .is_some_and(|p| std::ptr::eq(Arc::as_ptr(&p), indexed as *const IndexedTable))
        })
    }

    /// The index called `name`, with its table.
    pub fn find(&self, name: &str) -> Option<(Arc<TableText>, TextIndexDef)> {
        self.tables()
            .into_iter()
            .find_map(|t| t.def(name).map(|d| (t.clone(), d)))
    }

    /// `CREATE INDEX name ON table USING fulltext (columns) [WITH (analyzer = '...')]`.
    pub async fn create_index(
        &self,
        ctx: &SessionContext,
        stmt: &CreateIndex,
        taken: impl Fn(&str) -> bool,
        progress: Arc<dyn Fn(usize, usize) + Send + Sync>,
    ) -> Result<String> {
        let usage = "CREATE INDEX name ON table USING fulltext (column [, ...]) [WITH (analyzer = 'english')]";
        let Some(name) = &stmt.name else {
            return plan_err!("CREATE INDEX needs a name: {usage}");
        };
        let name = ident_name(name);
        if stmt.unique {
            return plan_err!("a full-text index cannot be UNIQUE");
        }
        if stmt.predicate.is_some() {
            return plan_err!("partial indexes (CREATE INDEX ... WHERE) are not supported");
        }
        if self.find(&name).is_some() || taken(&name) {
            if stmt.if_not_exists {
                return Ok(format!("Index {name} already exists; nothing changed"));
            }
            return plan_err!("index {name} already exists");
        }
        let mut analyzer = DEFAULT_ANALYZER.to_string();
        for option in &stmt.with {
            let SqlExpr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } = option
            else {
                return plan_err!("index options are written name = value, got {option}");
            };
            let key = match left.as_ref() {
                SqlExpr::Identifier(i) => i.value.to_lowercase(),
                other => return plan_err!("index options are written name = value, got {other}"),
            };
            let value = match right.as_ref() {
                SqlExpr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                SqlExpr::Identifier(i) => i.value.clone(),
                other => other.to_string(),
            };
            match key.as_str() {
                "analyzer" => analyzer = value,
                other => {
                    return plan_err!("unknown full-text index option '{other}' (known: analyzer)")
                }
            }
        }
        let analyzer = self.analyzers.get(&analyzer)?;
        let table_name = ident_name(&stmt.table_name);
        let provider = ctx
            .table_provider(TableReference::from(table_name.as_str()))
            .await?;
        let schema = provider.schema();
        let mut columns = Vec::new();
        let mut column_indices = Vec::new();
        for c in &stmt.columns {
            let column = match &c.column.expr {
                SqlExpr::Identifier(i) if i.quote_style.is_some() => i.value.clone(),
                SqlExpr::Identifier(i) => i.value.to_lowercase(),
                other => {
                    return plan_err!("a full-text index is built on columns, got {other}: {usage}")
                }
            };
            let Ok(i) = schema.index_of(&column) else {
                return plan_err!("table {table_name} has no column {column}");
            };
            let t = schema.field(i).data_type();
            if !matches!(
                t,
                datafusion::arrow::datatypes::DataType::Utf8
                    | datafusion::arrow::datatypes::DataType::LargeUtf8
                    | datafusion::arrow::datatypes::DataType::Utf8View
            ) {
                return plan_err!(
                    "column {column} of {table_name} is {t}, not TEXT: a full-text index needs text columns"
                );
            }
            columns.push(column);
            column_indices.push(i);
        }
        if columns.is_empty() {
            return plan_err!("a full-text index needs at least one column: {usage}");
        }
        let table = IndexedTable::attach(ctx, &table_name, "a full-text index").await?;
        let text = {
            let mut tables = self
                .tables
                .lock()
                .map_err(|_| DataFusionError::Internal("full-text registry poisoned".into()))?;
            tables.retain(|t| t.table.upgrade().is_some());
            match tables
                .iter()
                .find(|t| t.table.upgrade().is_some_and(|p| Arc::ptr_eq(&p, &table)))
            {
                Some(t) => t.clone(),
                None => {
                    let t = Arc::new(TableText::new(&table, &table_name));
                    tables.push(t.clone());
                    t
                }
            }
        };
        let mut defs = text.defs();
        defs.push(TextIndexDef {
            name: name.clone(),
            table: table_name.clone(),
            columns: columns.clone(),
            column_indices,
            analyzer: analyzer.clone(),
        });
        text.set_defs(defs)?;
        let snapshot = table.snapshot().await;
        let started = std::time::Instant::now();
        let worker = text.clone();
        tokio::task::spawn_blocking(move || worker.refresh(&snapshot, &*progress))
            .await
            .map_err(|e| DataFusionError::Execution(format!("index build stopped: {e}")))??;
        let rows = text.stats().rows_indexed;
        Ok(format!(
            "Created full-text index {name} on {table_name} ({}): {} rows, analyzer {}, in {:.1} s",
            columns.join(", "),
            crate::outcome::group_thousands(rows as u64),
            analyzer.name,
            started.elapsed().as_secs_f64()
        ))
    }

    /// Drops the full-text index `name`; `false` if there is none.
    pub fn drop_index(&self, name: &str) -> Result<bool> {
        let Some((text, _)) = self.find(name) else {
            return Ok(false);
        };
        let defs: Vec<TextIndexDef> = text.defs().into_iter().filter(|d| d.name != name).collect();
        text.set_defs(defs)?;
        Ok(true)
    }

    /// Resolves the MATCH targets and highlight() analyzers of a statement (see the module's documentation).
    /// Returns whether the statement uses MATCH.
    pub async fn prepare(&self, ctx: &SessionContext, statement: &mut DfStatement) -> Result<bool> {
        let (uses_match, uses_highlight) = calls(statement);
        if !uses_match && !uses_highlight {
            return Ok(false);
        }
        // the indexes of every table the statement names
        let mut names = Vec::new();
        for_each_part(statement, |part| {
            part.visit_rels(&mut |r| names.push(r.clone()))
        });
        let mut known: BTreeMap<String, Vec<TextIndexDef>> = BTreeMap::new();
        for n in names {
            let key = ident_name(&n);
            if known.contains_key(&key) {
                continue;
            }
            let Ok(provider) = ctx.table_provider(TableReference::from(key.as_str())).await else {
                continue;
            };
            if let Some(t) = self.for_provider(&provider) {
                known.insert(key, t.defs());
            }
        }
        let mut resolver = Resolver {
            known: &known,
            error: None,
        };
        for_each_part_mut(statement, |part| {
            let _ = part.visit(&mut resolver);
        });
        if let Some(e) = resolver.error {
            return Err(e);
        }
        Ok(uses_match)
    }
}

/// Whether a statement calls MATCH, and highlight().
fn calls(statement: &DfStatement) -> (bool, bool) {
    let mut m = false;
    let mut h = false;
    for_each_part(statement, |part| {
        part.visit_exprs(&mut |e| {
            if let SqlExpr::Function(f) = e {
                let name = f.name.to_string().to_lowercase();
                m |= name == MATCH_FN;
                h |= name == "highlight";
            }
        })
    });
    (m, h)
}

/// Runs `f` on the SQL parts of a statement (the statement, an EXPLAIN's, a COPY's query).
fn for_each_part(statement: &DfStatement, mut f: impl FnMut(&dyn VisitPart)) {
    match statement {
        DfStatement::Statement(s) => f(s.as_ref()),
        DfStatement::Explain(e) => for_each_part(&e.statement, f),
        DfStatement::CopyTo(c) => {
            if let CopyToSource::Query(q) = &c.source {
                f(q.as_ref())
            }
        }
        _ => {}
    }
}

fn for_each_part_mut(statement: &mut DfStatement, mut f: impl FnMut(&mut dyn VisitPartMut)) {
    match statement {
        DfStatement::Statement(s) => f(s.as_mut()),
        DfStatement::Explain(e) => for_each_part_mut(&mut e.statement, f),
        DfStatement::CopyTo(c) => {
            if let CopyToSource::Query(q) = &mut c.source {
                f(q.as_mut())
            }
        }
        _ => {}
    }
}

/// The AST nodes a statement's SQL lives in, visitable either way.
trait VisitPart {
    fn visit_exprs(&self, f: &mut dyn FnMut(&SqlExpr));
    fn visit_rels(&self, f: &mut dyn FnMut(&ObjectName));
}
trait VisitPartMut {
    fn visit(&mut self, v: &mut Resolver<'_>) -> ControlFlow<()>;
}

impl<T: ast::Visit> VisitPart for T {
    fn visit_exprs(&self, f: &mut dyn FnMut(&SqlExpr)) {
        let _ = visit_expressions(self, |e| {
            f(e);
            ControlFlow::<()>::Continue(())
        });
    }
    fn visit_rels(&self, f: &mut dyn FnMut(&ObjectName)) {
        let _ = visit_relations(self, |r| {
            f(r);
            ControlFlow::<()>::Continue(())
        });
    }
}

impl<T: VisitMut> VisitPartMut for T {
    fn visit(&mut self, v: &mut Resolver<'_>) -> ControlFlow<()> {
        VisitMut::visit(self, v)
    }
}

/// The tables a SELECT reads directly: (normalised name, alias, the name as written).
fn scope(select: &Select) -> Vec<(String, Option<Ident>, ObjectName)> {
    let mut out = Vec::new();
    let mut add = |f: &TableFactor| {
        if let TableFactor::Table { name, alias, .. } = f {
            out.push((
                ident_name(name),
                alias.as_ref().map(|a| a.name.clone()),
                name.clone(),
            ));
        }
    };
    for t in &select.from {
        add(&t.relation);
        for j in &t.joins {
            add(&j.relation);
        }
    }
    out
}

fn ident_key(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn string_arg(s: &str) -> FunctionArg {
    FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(
        Value::SingleQuotedString(s.to_string()).into(),
    )))
}

fn arg_expr(a: &FunctionArg) -> Option<&SqlExpr> {
    match a {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
        FunctionArg::Named {
            arg: FunctionArgExpr::Expr(e),
            ..
        } => Some(e),
        _ => None,
    }
}

struct Resolver<'a> {
    known: &'a BTreeMap<String, Vec<TextIndexDef>>,
    error: Option<DataFusionError>,
}

impl Resolver<'_> {
    /// The index a target names in this SELECT, and the column reference that routes the condition to its table.
    fn resolve(
        &self,
        scope: &[(String, Option<Ident>, ObjectName)],
        parts: &[Ident],
    ) -> Result<(TextIndexDef, SqlExpr)> {
        let (qualifier, name) = match parts {
            [n] => (None, ident_key(n)),
            [.., q, n] => (Some(ident_key(q)), ident_key(n)),
            [] => return plan_err!("MATCH needs an index or column"),
        };
        let mut found: Vec<(TextIndexDef, Ident)> = Vec::new();
        for (table, alias, written) in scope {
            let visible = alias
                .clone()
                .or_else(|| written.0.last().and_then(|p| p.as_ident()).cloned())
                .unwrap_or_else(|| Ident::new(table.clone()));
            if let Some(q) = &qualifier {
                if ident_key(&visible) != *q && table != q {
                    continue;
                }
            }
            let Some(defs) = self.known.get(table) else {
                continue;
            };
            let hit = defs
                .iter()
                .find(|d| d.name == name)
                .or_else(|| {
                    defs.iter()
                        .find(|d| d.columns.len() == 1 && d.columns[0] == name)
                })
                .or_else(|| defs.iter().find(|d| d.columns.contains(&name)));
            if let Some(d) = hit {
                found.push((d.clone(), visible));
            }
        }
        match found.len() {
            1 => {
                let (def, visible) = found.remove(0);
                let column = SqlExpr::CompoundIdentifier(vec![
                    visible,
                    Ident::with_quote('"', def.columns[0].clone()),
                ]);
                Ok((def, column))
            }
            0 => {
                let tables: Vec<&str> = scope.iter().map(|(t, _, _)| t.as_str()).collect();
                let indexed: Vec<String> = scope
                    .iter()
                    .filter_map(|(t, _, _)| self.known.get(t))
                    .flatten()
                    .map(|d| format!("{} ({})", d.name, d.columns.join(", ")))
                    .collect();
                let shown = parts.iter().map(|p| p.value.clone()).collect::<Vec<_>>().join(".");
                if indexed.is_empty() {
                    plan_err!(
                        "MATCH({shown}, ...): no full-text index on {}; create one: CREATE INDEX {}_ft ON {} USING \
                         fulltext ({shown}) (MATCH searches a table read directly in the FROM clause of its SELECT)",
                        if tables.is_empty() { "this query's tables".to_string() } else { tables.join(", ") },
                        tables.first().copied().unwrap_or("t"),
                        tables.first().copied().unwrap_or("t")
                    )
                } else {
                    plan_err!(
                        "MATCH({shown}, ...): {shown} is neither a full-text index nor an indexed column of {} \
                         (indexes: {})",
                        tables.join(", "),
                        indexed.join(", ")
                    )
                }
            }
            _ => plan_err!(
                "MATCH: {} is ambiguous (more than one table of the FROM clause has it); qualify it: t.{}",
                name,
                name
            ),
        }
    }

    fn rewrite_match(
        &self,
        scope: &[(String, Option<Ident>, ObjectName)],
        args: &mut Vec<FunctionArg>,
    ) -> Result<()> {
        // unresolved: (query, type, n, target, boost, ...); resolved: (query, type, n, 'index', column, boost, ...)
        let n = match args.get(2).and_then(arg_expr) {
            Some(SqlExpr::Value(v)) => match &v.value {
                Value::Number(n, _) => n.parse::<usize>().unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        };
        let resolved = matches!(args.get(3).and_then(arg_expr), Some(SqlExpr::Value(_)));
        if resolved || n == 0 || args.len() < 3 + 2 * n {
            return Ok(());
        }
        let mut out: Vec<FunctionArg> = args[..3].to_vec();
        for t in 0..n {
            let target = arg_expr(&args[3 + 2 * t]);
            let parts: Vec<Ident> = match target {
                Some(SqlExpr::Identifier(i)) => vec![i.clone()],
                Some(SqlExpr::CompoundIdentifier(p)) => p.clone(),
                other => {
                    return plan_err!(
                        "MATCH: expected an index or column, got {}",
                        other.map(|e| e.to_string()).unwrap_or_default()
                    )
                }
            };
            let (def, column) = self.resolve(scope, &parts)?;
            out.push(string_arg(&def.name));
            out.push(FunctionArg::Unnamed(FunctionArgExpr::Expr(column)));
            out.push(args[4 + 2 * t].clone());
        }
        out.extend_from_slice(&args[3 + 2 * n..]);
        *args = out;
        Ok(())
    }

    fn rewrite_highlight(
        &self,
        scope: &[(String, Option<Ident>, ObjectName)],
        args: &mut Vec<FunctionArg>,
    ) {
        if args.len() != 2 {
            return;
        }
        let parts: Vec<Ident> = match args.first().and_then(arg_expr) {
            Some(SqlExpr::Identifier(i)) => vec![i.clone()],
            Some(SqlExpr::CompoundIdentifier(p)) => p.clone(),
            _ => return,
        };
        let column = parts.last().map(ident_key).unwrap_or_default();
        let qualifier = (parts.len() > 1).then(|| ident_key(&parts[parts.len() - 2]));
        let analyzer = scope
            .iter()
            .filter(|(t, alias, _)| {
                qualifier
                    .as_ref()
                    .is_none_or(|q| t == q || alias.as_ref().is_some_and(|a| ident_key(a) == *q))
            })
            .filter_map(|(t, _, _)| self.known.get(t))
            .flatten()
            .find(|d| d.columns.contains(&column))
            .map(|d| d.analyzer.name.clone());
        if let Some(a) = analyzer {
            args.push(string_arg(&a));
        }
    }
}

impl VisitorMut for Resolver<'_> {
    type Break = ();

    // after the SELECT's subqueries, so each MATCH is resolved against the innermost SELECT it is in
    fn post_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        if self.error.is_some() {
            return ControlFlow::Break(());
        }
        let scope = scope(select);
        let mut error = None;
        let mut visit = |e: &mut SqlExpr| {
            if let SqlExpr::Function(f) = e {
                let name = f.name.to_string().to_lowercase();
                if let FunctionArguments::List(list) = &mut f.args {
                    if name == MATCH_FN {
                        if let Err(err) = self.rewrite_match(&scope, &mut list.args) {
                            error.get_or_insert(err);
                        }
                    } else if name == "highlight" {
                        self.rewrite_highlight(&scope, &mut list.args);
                    }
                }
            }
            ControlFlow::<()>::Continue(())
        };
        let _ = ast::visit_expressions_mut(&mut select.projection, &mut visit);
        let _ = ast::visit_expressions_mut(&mut select.selection, &mut visit);
        let _ = ast::visit_expressions_mut(&mut select.having, &mut visit);
        if let Some(e) = error {
            self.error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// The rows of `sys.indexes` for full-text indexes.
impl crate::sys::IndexLister for Text {
    fn index_rows(&self) -> Vec<crate::sys::IndexRow> {
        let mut rows = Vec::new();
        for t in self.tables() {
            let stats = t.stats();
            let pending = t
                .table
                .upgrade()
                .and_then(|table| table.try_snapshot())
                .map(|s| t.pending_rows(&s))
                .unwrap_or(0);
            for d in t.defs() {
                rows.push(crate::sys::IndexRow {
                    name: d.name.clone(),
                    table: d.table.clone(),
                    column: d.columns.join(", "),
                    rows_indexed: stats.rows_indexed as i64,
                    rows_pending: pending as i64,
                    segments: stats.segments as i32,
                    build_seconds: stats.build_time.as_secs_f64(),
                    using: "fulltext".into(),
                    analyzer: Some(d.analyzer.name.clone()),
                    metric: Some("bm25".into()),
                    ..Default::default()
                });
            }
        }
        rows
    }
}
