//! TimescaleDB's SQL, as users paste it:
//!
//! - `SELECT create_hypertable('t', 'time' [, chunk_time_interval => INTERVAL '1 hour'] [, if_not_exists =>
//!   TRUE] ...)` (and the newer `create_hypertable('t', by_range('time'))`) marks `t`'s time column and answers as
//!   TimescaleDB does, `(1,public,t,t)`; `sys.hypertables` lists them. Kestrel's tables are not chunked: the chunk
//!   interval is recorded, not used.
//! - `CREATE MATERIALIZED VIEW v WITH (timescaledb.continuous) AS ...` makes a continuous view. sqlparser reads a
//!   view's WITH options as `key = value` only, so the options are rewritten on the token stream into
//!   `WITH ("timescaledb.continuous" = TRUE)`; a trailing `WITH [NO] DATA` is dropped (the view is always filled).

use crate::sys::SysTable;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{plan_err, Result, TableReference};
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Value,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One hypertable: a table with its time column marked.
#[derive(Debug, Clone)]
pub struct Hypertable {
    pub id: usize,
    pub table: String,
    pub time_column: String,
    pub chunk_time_interval: String,
    pub created: SystemTime,
}

/// The session's hypertables, by table name.
#[derive(Debug, Default)]
pub struct Hypertables(Mutex<BTreeMap<String, Hypertable>>);

impl Hypertables {
    pub fn get(&self, table: &str) -> Option<Hypertable> {
        self.0.lock().ok()?.get(table).cloned()
    }

    fn all(&self) -> Vec<Hypertable> {
        self.0
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets tables that were dropped.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|t, _| exists(t));
        }
    }
}

/// `SELECT create_hypertable(...)` alone, as TimescaleDB's docs write it: the call.
pub fn hypertable_call(statement: &ast::Statement) -> Option<&ast::Function> {
    let ast::Statement::Query(q) = statement else {
        return None;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    if !select.from.is_empty() || select.projection.len() != 1 {
        return None;
    }
    let expr = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
        _ => return None,
    };
    match expr {
        Expr::Function(f)
            if f.name.0.len() == 1
                && f.name.to_string().eq_ignore_ascii_case("create_hypertable") =>
        {
            Some(f)
        }
        _ => None,
    }
}

/// A constant argument as text: a string's value, an identifier's name, an interval's text.
fn text(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(p) => Some(
            p.iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join("."),
        ),
        Expr::Interval(i) => text(&i.value).map(|v| match &i.leading_field {
            Some(f) => format!("{v} {f}"),
            None => v,
        }),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => text(expr),
        _ => None,
    }
}

const USAGE: &str =
    "create_hypertable('table', 'time_column' [, chunk_time_interval => INTERVAL '1 day'])";

/// Runs `create_hypertable(...)`: returns TimescaleDB's answer.
pub async fn create_hypertable(
    ctx: &SessionContext,
    hypertables: &Hypertables,
    call: &ast::Function,
) -> Result<RecordBatch> {
    let FunctionArguments::List(list) = &call.args else {
        return plan_err!("usage: {USAGE}");
    };
    let mut positional = Vec::new();
    let mut named = BTreeMap::new();
    for arg in &list.args {
        match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => positional.push(e),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                named.insert(name.value.to_ascii_lowercase(), e);
            }
            FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                named.insert(name.value.to_ascii_lowercase(), e);
            }
            other => {
                return plan_err!("create_hypertable: unexpected argument {other}; usage: {USAGE}")
            }
        }
    }
    let relation = positional
        .first()
        .copied()
        .or_else(|| named.get("relation").copied())
        .and_then(text);
    let Some(relation) = relation else {
        return plan_err!("create_hypertable needs the table's name; usage: {USAGE}");
    };
    let mut chunk = named.get("chunk_time_interval").and_then(|e| text(e));
    // the time column: a name, or by_range('time' [, interval]) (TimescaleDB 2.13+)
    let column_arg = positional
        .get(1)
        .copied()
        .or_else(|| named.get("time_column_name").copied())
        .or_else(|| named.get("dimension").copied());
    let column = match column_arg {
        Some(Expr::Function(f)) if f.name.to_string().eq_ignore_ascii_case("by_range") => {
            let FunctionArguments::List(l) = &f.args else {
                return plan_err!("by_range needs the time column: by_range('time')");
            };
            let mut args = l.args.iter().filter_map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
                _ => None,
            });
            let column = args.next().and_then(text);
            if let Some(interval) = args.next().and_then(text) {
                chunk = Some(interval);
            }
            column
        }
        Some(e) => text(e),
        None => None,
    };
    let Some(column) = column else {
        return plan_err!("create_hypertable needs the time column; usage: {USAGE}");
    };
    let if_not_exists = named
        .get("if_not_exists")
        .and_then(|e| text(e))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let reference = TableReference::from(relation.as_str());
    let table = match ctx.table_provider(reference.clone()).await {
        Ok(t) => t,
        Err(_) => return plan_err!("relation \"{relation}\" does not exist"),
    };
    let schema = table.schema();
    let Some(field) = schema
        .fields()
        .iter()
        .find(|f| f.name() == &column)
        .or_else(|| {
            schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(&column))
        })
    else {
        return plan_err!(
            "column \"{column}\" does not exist in \"{relation}\"; its columns are: {}",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    if !(matches!(
        field.data_type(),
        DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64
    ) || field.data_type().is_integer())
    {
        return plan_err!(
            "invalid type for dimension \"{column}\": {} (a hypertable's time column is a TIMESTAMP, \
             TIMESTAMPTZ, DATE or integer)",
            field.data_type()
        );
    }
    let key = reference.to_string();
    let Ok(mut all) = hypertables.0.lock() else {
        return plan_err!("hypertables registry poisoned");
    };
    let schema_name = reference.schema().unwrap_or("public").to_string();
    let answer = |id: usize, created: bool| -> Result<RecordBatch> {
        let value = format!(
            "({id},{schema_name},{},{})",
            reference.table(),
            if created { "t" } else { "f" }
        );
        let schema = Arc::new(Schema::new(vec![Field::new(
            "create_hypertable",
            DataType::Utf8,
            false,
        )]));
        Ok(RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![value])) as ArrayRef],
        )?)
    };
    if let Some(existing) = all.get(&key) {
        if if_not_exists {
            return answer(existing.id, false);
        }
        return plan_err!("table \"{relation}\" is already a hypertable");
    }
    let id = all.values().map(|h| h.id).max().unwrap_or(0) + 1;
    all.insert(
        key.clone(),
        Hypertable {
            id,
            table: key,
            time_column: field.name().clone(),
            chunk_time_interval: chunk.unwrap_or_else(|| "7 days".into()),
            created: SystemTime::now(),
        },
    );
    answer(id, true)
}

/// `sys.hypertables`
#[derive(Debug)]
pub struct SysHypertables(pub Arc<Hypertables>);

impl SysTable for SysHypertables {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("time_column", DataType::Utf8, false),
            Field::new("chunk_time_interval", DataType::Utf8, false),
            Field::new(
                "created",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))
    }
    fn batch(&self) -> Result<RecordBatch> {
        let all = self.0.all();
        let strings = |f: &dyn Fn(&Hypertable) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(all.iter().map(f)))
        };
        Ok(RecordBatch::try_new(
            self.schema(),
            vec![
                strings(&|h| h.table.clone()),
                strings(&|h| h.time_column.clone()),
                strings(&|h| h.chunk_time_interval.clone()),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(all.iter().map(|h| {
                        h.created
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map(|d| d.as_micros() as i64)
                            .unwrap_or(0)
                    }))
                    .with_timezone("UTC"),
                ),
            ],
        )?)
    }
}

fn is_word(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(Word { keyword, quote_style: None, .. }) if *keyword == k)
}

fn solid(tokens: &[TokenWithSpan], mut i: usize) -> usize {
    while i < tokens.len() && matches!(tokens[i].token, Token::Whitespace(_)) {
        i += 1;
    }
    i
}

/// `CREATE MATERIALIZED VIEW v WITH (a.b [= x], ...) AS ...` → `... WITH ("a.b" = x|TRUE, ...) AS ...`, and a
/// trailing `WITH [NO] DATA` dropped.
pub fn rewrite_view_options(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    // inside CREATE MATERIALIZED VIEW, until its statement ends
    let mut in_view = false;
    let mut before_as = false;
    let mut depth = 0i32;
    while i < tokens.len() {
        let t = &tokens[i].token;
        if is_word(t, Keyword::MATERIALIZED) {
            let j = solid(&tokens, i + 1);
            if j < tokens.len() && is_word(&tokens[j].token, Keyword::VIEW) {
                let created = out
                    .iter()
                    .rev()
                    .find(|t| !matches!(t.token, Token::Whitespace(_)))
                    .is_some_and(|t| {
                        is_word(&t.token, Keyword::CREATE) || is_word(&t.token, Keyword::REPLACE)
                    });
                if created {
                    in_view = true;
                    before_as = true;
                    depth = 0;
                }
            }
        }
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon => in_view = false,
            _ => {}
        }
        if in_view && before_as && depth == 0 && is_word(t, Keyword::AS) {
            before_as = false;
        }
        if in_view && depth == 0 && is_word(t, Keyword::WITH) {
            let j = solid(&tokens, i + 1);
            // WITH ( options ) before AS
            if before_as && j < tokens.len() && tokens[j].token == Token::LParen {
                if let Some((rewritten, end)) = options(&tokens, j) {
                    out.push(tokens[i].clone());
                    out.extend(rewritten);
                    i = end + 1;
                    continue;
                }
            }
            // WITH [NO] DATA at the end
            if !before_as {
                let mut k = j;
                if k < tokens.len() && is_word(&tokens[k].token, Keyword::NO) {
                    k = solid(&tokens, k + 1);
                }
                if k < tokens.len() && is_word(&tokens[k].token, Keyword::DATA) {
                    let after = solid(&tokens, k + 1);
                    if after >= tokens.len()
                        || matches!(tokens[after].token, Token::SemiColon | Token::EOF)
                    {
                        i = k + 1;
                        continue;
                    }
                }
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

/// The options list starting at `open` (a `(`), rewritten; and the index of its `)`.
fn options(tokens: &[TokenWithSpan], open: usize) -> Option<(Vec<TokenWithSpan>, usize)> {
    let like = |t: Token| TokenWithSpan {
        token: t,
        span: tokens[open].span,
    };
    let mut out = vec![like(Token::LParen)];
    let mut i = open + 1;
    loop {
        // a dotted name
        let mut name = String::new();
        loop {
            i = solid(tokens, i);
            match tokens.get(i).map(|t| &t.token) {
                Some(Token::Word(w)) => name.push_str(&w.value),
                _ => return None,
            }
            i = solid(tokens, i + 1);
            if tokens.get(i).map(|t| &t.token) == Some(&Token::Period) {
                name.push('.');
                i += 1;
                continue;
            }
            break;
        }
        out.push(like(Token::make_word(&name, Some('"'))));
        out.push(like(Token::Eq));
        // [= value]
        if tokens.get(i).map(|t| &t.token) == Some(&Token::Eq) {
            i = solid(tokens, i + 1);
            let mut depth = 0;
            while let Some(t) = tokens.get(i) {
                match &t.token {
                    Token::Comma | Token::RParen if depth == 0 => break,
                    Token::LParen => depth += 1,
                    Token::RParen => depth -= 1,
                    Token::EOF | Token::SemiColon => return None,
                    _ => {}
                }
                out.push(t.clone());
                i += 1;
            }
        } else {
            out.push(like(Token::make_keyword("TRUE")));
        }
        match tokens.get(i).map(|t| &t.token) {
            Some(Token::Comma) => {
                out.push(like(Token::Comma));
                i += 1;
            }
            Some(Token::RParen) => {
                out.push(like(Token::RParen));
                return Some((out, i));
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    #[test]
    fn continuous_view_options_parse() {
        let sql = "CREATE MATERIALIZED VIEW v WITH (timescaledb.continuous, timescaledb.materialized_only = false) \
                   AS SELECT 1 WITH NO DATA; SELECT 2";
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .unwrap();
        let mut parser = DFParserBuilder::new(super::rewrite_view_options(tokens))
            .with_dialect(&GenericDialect {})
            .build()
            .unwrap();
        let s = parser.parse_statements().unwrap();
        assert_eq!(s.len(), 2);
        let DfStatement::Statement(st) = &s[0] else {
            panic!()
        };
        let datafusion::sql::sqlparser::ast::Statement::CreateView(c) = st.as_ref() else {
            panic!("{st}")
        };
        assert!(crate::views::is_continuous(&c.options), "{st}");
    }
}
