//! The names a session knows — tables, their columns, functions — and the tables a statement refers to.
//! Shared by completion and inspection.

use crate::input::{lex, Token, TokenKind};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, INFORMATION_SCHEMA_TABLES};
use datafusion::common::TableReference;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{Documentation, Signature};
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use std::collections::BTreeSet;

/// A table as a user would type it: bare in the default schema, `schema.table` elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    /// As SQL needs it written: parts quoted where they are not plain lowercase identifiers (`"Sales"`).
    pub typed: String,
    /// The parts joined without quotes (`Sales`), for matching what a statement names.
    pub plain: String,
}

/// A name as SQL must write it: as is when a plain lowercase identifier, else double-quoted (an unquoted
/// `UserId` would be read as `userid`).
pub fn quote_ident(name: &str) -> String {
    let mut chars = name.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl TableName {
    fn new(parts: &[&str]) -> Self {
        TableName {
            typed: parts
                .iter()
                .map(|p| quote_ident(p))
                .collect::<Vec<_>>()
                .join("."),
            plain: parts.join("."),
        }
    }
}

impl TableName {
    fn reference(&self) -> TableReference {
        TableReference::parse_str(&self.typed)
    }
}

/// Every table of the session, default schema first. `information_schema` is listed qualified only.
pub fn list_tables(ctx: &SessionContext) -> Vec<TableName> {
    let state = ctx.state();
    let options = state.config().options();
    let (default_catalog, default_schema) = (
        options.catalog.default_catalog.clone(),
        options.catalog.default_schema.clone(),
    );
    let mut out = Vec::new();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for table in schema.table_names() {
                out.push(
                    if catalog_name == default_catalog && schema_name == default_schema {
                        TableName::new(&[&table])
                    } else if catalog_name == default_catalog {
                        TableName::new(&[&schema_name, &table])
                    } else {
                        TableName::new(&[&catalog_name, &schema_name, &table])
                    },
                );
            }
        }
    }
    // The information schema is resolved by the session, not listed by the catalog.
    if options.catalog.information_schema {
        out.extend(
            INFORMATION_SCHEMA_TABLES
                .iter()
                .map(|t| TableName::new(&[INFORMATION_SCHEMA, t])),
        );
    }
    out.sort_by_key(|t| (t.typed.contains('.'), t.typed.clone()));
    out
}

/// Finds a table by the name a statement gives it, quotes removed: exactly, or as an unquoted name, which
/// SQL reads in lowercase.
pub fn find_table(tables: &[TableName], name: &str) -> Option<TableName> {
    let lower = name.to_lowercase();
    tables
        .iter()
        .find(|t| t.plain == name)
        .or_else(|| tables.iter().find(|t| t.plain == lower))
        .cloned()
}

pub async fn table_schema(ctx: &SessionContext, table: &TableName) -> Option<SchemaRef> {
    ctx.table_provider(table.reference())
        .await
        .ok()
        .map(|p| p.schema())
}

pub async fn table_kind(ctx: &SessionContext, table: &TableName) -> Option<String> {
    use datafusion::datasource::TableType;
    let provider = ctx.table_provider(table.reference()).await.ok()?;
    Some(
        match provider.table_type() {
            TableType::Base => "table",
            TableType::View => "view",
            TableType::Temporary => "temporary table",
        }
        .to_string(),
    )
}

/// A table a statement names, with the alias it is given there.
#[derive(Debug, Clone)]
pub struct TableUse {
    pub table: TableName,
    pub alias: Option<String>,
}

/// The tokens of the statement that contains byte offset `cursor`.
pub fn statement_tokens(code: &str, cursor: usize) -> Vec<Token> {
    let tokens = lex(code);
    let mut current = Vec::new();
    for token in tokens {
        if token.kind == TokenKind::Punct(';') {
            if token.start >= cursor {
                break;
            }
            current.clear();
            continue;
        }
        if !matches!(token.kind, TokenKind::Comment { .. }) {
            current.push(token);
        }
    }
    current
}

fn is_keyword(word: &str) -> bool {
    let upper = word.to_ascii_uppercase();
    ALL_KEYWORDS.binary_search(&upper.as_str()).is_ok()
}

/// Unquoted name text of a word or quoted-name token.
fn name_text<'a>(code: &'a str, token: &Token) -> Option<&'a str> {
    match token.kind {
        TokenKind::Word => Some(token.text(code)),
        TokenKind::QuotedName { closed: true } => {
            let t = token.text(code);
            Some(&t[1..t.len() - 1])
        }
        _ => None,
    }
}

/// The tables named in the statement around `cursor`, with their aliases.
pub fn tables_in_statement(code: &str, cursor: usize, tables: &[TableName]) -> Vec<TableUse> {
    let tokens = statement_tokens(code, cursor);
    let mut uses: Vec<TableUse> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // Longest dotted name starting here: a, a.b, a.b.c
        let mut parts = Vec::new();
        let mut j = i;
        while let Some(part) = tokens.get(j).and_then(|t| name_text(code, t)) {
            parts.push(part);
            if tokens.get(j + 1).map(|t| t.kind) == Some(TokenKind::Punct('.')) {
                j += 2;
            } else {
                j += 1;
                break;
            }
        }
        if parts.is_empty() {
            i += 1;
            continue;
        }
        let typed = parts.join(".");
        if let Some(table) = find_table(tables, &typed) {
            let mut alias = None;
            let mut k = j;
            if tokens.get(k).is_some_and(|t| {
                t.kind == TokenKind::Word && t.text(code).eq_ignore_ascii_case("AS")
            }) {
                k += 1;
            }
            if let Some(word) = tokens.get(k).and_then(|t| name_text(code, t)) {
                if !is_keyword(word) || k > j {
                    alias = Some(word.to_string());
                }
            }
            if !uses.iter().any(|u| u.table == table && u.alias == alias) {
                uses.push(TableUse { table, alias });
            }
        }
        i = j.max(i + 1);
    }
    uses
}

/// Table functions (`generate_series`, `range`, `tumble`, ...), sorted; a function registered under several
/// spellings (TUMBLE, Tumble, tumble) is offered once, in lower case.
pub fn table_function_names(ctx: &SessionContext) -> BTreeSet<String> {
    ctx.state()
        .table_functions()
        .keys()
        .map(|k| k.to_lowercase())
        .collect()
}

/// A function of any kind, as much as inspection needs to know.
pub struct FunctionInfo<'a> {
    pub name: String,
    pub kind: &'static str,
    pub signature: &'a Signature,
    pub documentation: Option<&'a Documentation>,
}

/// Every function name the session knows (scalar, aggregate, window, table), lowercase, sorted.
pub fn function_names(ctx: &SessionContext) -> BTreeSet<String> {
    let state = ctx.state();
    let mut names = BTreeSet::new();
    names.extend(state.scalar_functions().keys().cloned());
    names.extend(state.aggregate_functions().keys().cloned());
    names.extend(state.window_functions().keys().cloned());
    names.extend(state.table_functions().keys().cloned());
    names
}

/// Calls `f` with what the session knows of function `name`, if it is one.
pub fn with_function<R>(
    ctx: &SessionContext,
    name: &str,
    f: impl FnOnce(FunctionInfo<'_>) -> R,
) -> Option<R> {
    let state = ctx.state();
    let key = name.to_ascii_lowercase();
    if let Some(udf) = state.scalar_functions().get(&key) {
        return Some(f(FunctionInfo {
            name: udf.name().to_string(),
            kind: "scalar function",
            signature: udf.signature(),
            documentation: udf.documentation(),
        }));
    }
    if let Some(udaf) = state.aggregate_functions().get(&key) {
        return Some(f(FunctionInfo {
            name: udaf.name().to_string(),
            kind: "aggregate function",
            signature: udaf.signature(),
            documentation: udaf.documentation(),
        }));
    }
    if let Some(udwf) = state.window_functions().get(&key) {
        return Some(f(FunctionInfo {
            name: udwf.name().to_string(),
            kind: "window function",
            signature: udwf.signature(),
            documentation: udwf.documentation(),
        }));
    }
    None
}

pub fn sql_keywords() -> &'static [&'static str] {
    ALL_KEYWORDS
}

/// The fully qualified table a user-typed name refers to (identifier normalisation and default catalog/schema as
/// the session is configured).
pub fn resolve(
    ctx: &SessionContext,
    name: &datafusion::sql::sqlparser::ast::ObjectName,
) -> datafusion::common::Result<TableReference> {
    let state = ctx.state_ref();
    let state = state.read();
    let options = state.config().options();
    let normalize = options.sql_parser.enable_ident_normalization;
    let r = datafusion::sql::planner::object_name_to_table_reference(name.clone(), normalize)?;
    let full = r.resolve(
        &options.catalog.default_catalog,
        &options.catalog.default_schema,
    );
    Ok(TableReference::full(full.catalog, full.schema, full.table))
}
