//! `CREATE FUNCTION`: SQL functions as macros (DuckDB's word), expanded into the statements that call them
//! before planning.
//!
//! - `CREATE FUNCTION f(x INT, ...) RETURNS type AS 'SELECT <expr>' LANGUAGE SQL` is a scalar macro: `f(1)` is
//!   replaced by `(<expr>)` with the arguments in place of the parameters (a body that reads a table becomes a
//!   scalar subquery).
//! - A body returning rows (`RETURNS TABLE (...)`, `RETURNS SETOF ...`), and PL/pgSQL whose body is a single
//!   `RETURN QUERY SELECT ...`, is a table macro: `FROM f()` reads `(SELECT ...) AS f`, its columns named and
//!   cast as RETURNS TABLE declares.
//! - PL/pgSQL whose body is a single `REFRESH MATERIALIZED VIEW [CONCURRENTLY] v` is a procedure run by `SELECT
//!   f()`.
//! - Any other PL/pgSQL (loops, cursors, variables, triggers) is refused at CREATE with the Kestrel way to get
//!   the same result.

use datafusion::common::{plan_datafusion_err, plan_err, DataFusionError, Result};
use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    self, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, FunctionReturnType, Ident,
    ObjectName, SelectItem, SetExpr, TableAlias, TableFactor, Value, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

/// What calling the function does.
#[derive(Debug, Clone)]
pub enum Body {
    /// An expression over the parameters.
    Scalar(Expr),
    /// Rows: a query over the parameters.
    Table(Box<ast::Query>),
    /// `SELECT f()` refreshes a materialized view.
    Refresh(ObjectName),
}

/// One function made by CREATE FUNCTION.
#[derive(Debug)]
pub struct Macro {
    pub name: String,
    params: Vec<(Ident, Option<Expr>)>,
    pub body: Body,
    /// `CREATE FUNCTION ...` as written (for sys.functions and inspection).
    pub definition: String,
}

impl Macro {
    pub fn kind(&self) -> &'static str {
        match self.body {
            Body::Scalar(_) => "scalar",
            Body::Table(_) => "table",
            Body::Refresh(_) => "procedure",
        }
    }

    pub fn signature(&self) -> String {
        format!(
            "{}({})",
            self.name,
            self.params
                .iter()
                .map(|(p, _)| p.value.clone())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The session's functions, by lower-cased name.
#[derive(Debug, Default)]
pub struct Macros(Mutex<BTreeMap<String, Arc<Macro>>>);

fn key(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_none() => i.value.to_lowercase(),
            Some(i) => i.value.clone(),
            None => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// What the Kestrel way is, for PL/pgSQL it cannot run.
const KESTREL_WAY: &str = "Kestrel runs PL/pgSQL functions whose body is a single RETURN QUERY SELECT ... (called as \
     SELECT * FROM f()) or a single REFRESH MATERIALIZED VIEW (called as SELECT f()). For the same result: read a \
     Kafka topic with a live table (CREATE EXTERNAL TABLE ... STORED AS KAFKA), keep derived rows current with a \
     continuous view (CREATE MATERIALIZED VIEW ... WITH (timescaledb.continuous) AS SELECT ...), and copy rows \
     with INSERT INTO ... SELECT ...";

impl Macros {
    pub fn get(&self, name: &ObjectName) -> Option<Arc<Macro>> {
        self.0.lock().ok()?.get(&key(name)).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Macro>> {
        self.0
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.0.lock().map(|m| m.is_empty()).unwrap_or(true)
    }

    /// CREATE [OR REPLACE] FUNCTION
    pub fn create(&self, c: &ast::CreateFunction, function_exists: bool) -> Result<String> {
        let name = key(&c.name);
        let exists = self.get(&c.name).is_some();
        if exists && !c.or_replace {
            if c.if_not_exists {
                return Ok(format!(
                    "Function {} already exists; nothing changed",
                    c.name
                ));
            }
            return plan_err!(
                "function {} already exists; use CREATE OR REPLACE FUNCTION to change it",
                c.name
            );
        }
        if !exists && function_exists {
            return plan_err!(
                "{} is a built-in function; choose another name for your function",
                c.name
            );
        }
        let params = c
            .args
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| match &a.name {
                Some(n) => Ok((n.clone(), a.default_expr.clone())),
                None => plan_err!(
                    "parameter {} of {} needs a name (Kestrel's functions are macros that refer to \
                     parameters by name)",
                    i + 1,
                    c.name
                ),
            })
            .collect::<Result<Vec<_>>>()?;
        let language = c
            .language
            .as_ref()
            .map(|l| l.value.to_ascii_lowercase())
            .unwrap_or_else(|| "sql".into());
        let text = match &c.function_body {
            Some(ast::CreateFunctionBody::AsBeforeOptions { body, .. })
            | Some(ast::CreateFunctionBody::AsAfterOptions(body)) => match body {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => s.clone(),
                    Value::DollarQuotedString(d) => d.value.clone(),
                    _ => body.to_string(),
                },
                // BigQuery's AS (expr)
                other => format!("SELECT {other}"),
            },
            Some(ast::CreateFunctionBody::Return(e)) => format!("SELECT {e}"),
            Some(other) => {
                return plan_err!("CREATE FUNCTION {}: unsupported body {other:?}", c.name)
            }
            None => return plan_err!("CREATE FUNCTION {} needs a body: AS 'SELECT ...'", c.name),
        };
        let returns_rows = matches!(
            &c.return_type,
            Some(FunctionReturnType::SetOf(_))
                | Some(FunctionReturnType::DataType(ast::DataType::Table(_)))
        );
        let returns_trigger = matches!(
            &c.return_type,
            Some(FunctionReturnType::DataType(ast::DataType::Trigger))
        );
        let body = match language.as_str() {
            "sql" => sql_body(&c.name, &text, returns_rows)?,
            "plpgsql" => plpgsql_body(&c.name, &text, returns_trigger)?,
            other => {
                return plan_err!(
                    "CREATE FUNCTION {}: language {other} is not supported; Kestrel runs LANGUAGE SQL functions \
                     (and simple PL/pgSQL), and Rust in %%rust cells",
                    c.name
                )
            }
        };
        let body = match (body, &c.return_type) {
            (
                Body::Table(q),
                Some(FunctionReturnType::DataType(ast::DataType::Table(Some(cols)))),
            ) => Body::Table(Box::new(typed_columns(&c.name, &q, cols)?)),
            (b, _) => b,
        };
        let what = match &body {
            Body::Scalar(_) => "function",
            Body::Table(_) => "table function",
            Body::Refresh(_) => "procedure",
        };
        if let Ok(mut m) = self.0.lock() {
            m.insert(
                name,
                Arc::new(Macro {
                    name: c.name.to_string(),
                    params,
                    body,
                    definition: c.to_string(),
                }),
            );
        }
        Ok(format!(
            "{} {what} {}",
            if exists { "Replaced" } else { "Created" },
            c.name
        ))
    }

    /// DROP FUNCTION
    pub fn drop_functions(&self, d: &ast::DropFunction) -> Result<String> {
        let mut dropped = vec![];
        for f in &d.func_desc {
            let removed = self.0.lock().ok().and_then(|mut m| m.remove(&key(&f.name)));
            match removed {
                Some(_) => dropped.push(f.name.to_string()),
                None if d.if_exists => {}
                None => return plan_err!("function {} does not exist", f.name),
            }
        }
        Ok(if dropped.is_empty() {
            "Function does not exist; nothing dropped".into()
        } else {
            format!("Dropped function {}", dropped.join(", "))
        })
    }

    /// `SELECT f()` alone, where `f` is a procedure: the view it refreshes.
    pub fn procedure_call(&self, statement: &ast::Statement) -> Option<ObjectName> {
        let ast::Statement::Query(q) = statement else {
            return None;
        };
        let SetExpr::Select(select) = q.body.as_ref() else {
            return None;
        };
        if !select.from.is_empty() || select.projection.len() != 1 {
            return None;
        }
        let (SelectItem::UnnamedExpr(Expr::Function(f))
        | SelectItem::ExprWithAlias {
            expr: Expr::Function(f),
            ..
        }) = &select.projection[0]
        else {
            return None;
        };
        match &self.get(&f.name)?.body {
            Body::Refresh(view) => Some(view.clone()),
            _ => None,
        }
    }

    /// Replaces every call of a function of this session by its body.
    pub fn expand(&self, statement: &mut DfStatement) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        // a macro may call another: expand until nothing changes
        for _ in 0..16 {
            let mut x = Expander {
                macros: self,
                changed: false,
            };
            let flow = match statement {
                DfStatement::Statement(s) => s.visit(&mut x),
                DfStatement::CopyTo(copy) => match &mut copy.source {
                    CopyToSource::Query(q) => q.visit(&mut x),
                    _ => ControlFlow::Continue(()),
                },
                DfStatement::Explain(e) => return self.expand(&mut e.statement),
                _ => ControlFlow::Continue(()),
            };
            if let ControlFlow::Break(e) = flow {
                return Err(e);
            }
            if !x.changed {
                return Ok(());
            }
        }
        plan_err!("functions call each other more than 16 levels deep (a recursive function?)")
    }
}

fn parse_query(text: &str) -> Result<ast::Query> {
    let mut parser = Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .map_err(|e| plan_datafusion_err!("{e}"))?;
    let q = parser
        .parse_query()
        .map_err(|e| plan_datafusion_err!("{e}"))?;
    // nothing may follow but a semicolon
    while parser.consume_token(&Token::SemiColon) {}
    if parser.peek_token().token != Token::EOF {
        return plan_err!(
            "expected one SELECT, found more after it: {}",
            parser.peek_token()
        );
    }
    Ok(*q)
}

/// A LANGUAGE SQL body.
fn sql_body(name: &ObjectName, text: &str, returns_rows: bool) -> Result<Body> {
    let query = parse_query(text).map_err(|e| {
        plan_datafusion_err!(
            "the body of function {name} must be one SELECT (e.g. AS 'SELECT x + 1'): {}",
            e.strip_backtrace()
        )
    })?;
    if returns_rows {
        return Ok(Body::Table(Box::new(query)));
    }
    // a SELECT of one expression without FROM is the expression; anything else a scalar subquery
    if let SetExpr::Select(s) = query.body.as_ref() {
        if s.from.is_empty()
            && s.selection.is_none()
            && s.projection.len() == 1
            && query.order_by.is_none()
            && query.limit_clause.is_none()
            && query.with.is_none()
        {
            if let SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } =
                &s.projection[0]
            {
                return Ok(Body::Scalar(e.clone()));
            }
        }
    }
    Ok(Body::Scalar(Expr::Subquery(Box::new(query))))
}

fn is_kw(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(Word { keyword, quote_style: None, .. }) if *keyword == k)
}

/// A PL/pgSQL body: `[DECLARE ...] BEGIN <statements> END`.
fn plpgsql_body(name: &ObjectName, text: &str, returns_trigger: bool) -> Result<Body> {
    let refuse = |what: &str| -> Result<Body> {
        plan_err!("function {name} uses {what}, which Kestrel does not run. {KESTREL_WAY}")
    };
    if returns_trigger {
        return refuse("a trigger (RETURNS TRIGGER)");
    }
    let tokens = Tokenizer::new(&GenericDialect {}, text)
        .tokenize()
        .map_err(|e| plan_datafusion_err!("the body of function {name}: {e}"))?;
    let solid: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let begin = solid.iter().position(|t| is_kw(t, Keyword::BEGIN));
    let end = solid.iter().rposition(|t| is_kw(t, Keyword::END));
    let (Some(begin), Some(end)) = (begin, end) else {
        return plan_err!("the PL/pgSQL body of function {name} must be BEGIN ... END");
    };
    if begin > 0 {
        return refuse("variables (DECLARE)");
    }
    for t in &solid[begin + 1..end] {
        for (k, what) in [
            ("LOOP", "a loop"),
            ("FOR", "a loop (FOR ... LOOP)"),
            ("WHILE", "a loop (WHILE)"),
            ("CURSOR", "a cursor"),
            ("FETCH", "a cursor (FETCH)"),
            ("IF", "conditions (IF)"),
            ("RAISE", "RAISE"),
            ("EXCEPTION", "exception handling"),
        ] {
            if matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(k))
            {
                return refuse(what);
            }
        }
    }
    // the statements between BEGIN and END, as text
    let mut depth = 0usize;
    let mut seen_begin = false;
    let mut statements: Vec<String> = vec![String::new()];
    let mut solid_i = 0usize;
    for t in &tokens {
        let is_solid = !matches!(t, Token::Whitespace(_));
        if is_solid {
            if solid_i == begin {
                seen_begin = true;
                solid_i += 1;
                continue;
            }
            if solid_i >= end {
                break;
            }
            solid_i += 1;
        }
        if !seen_begin {
            continue;
        }
        match t {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::SemiColon if depth == 0 => {
                statements.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = statements.last_mut() {
            last.push_str(&t.to_string());
        }
    }
    let statements: Vec<String> = statements
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let [statement] = statements.as_slice() else {
        return refuse(&format!(
            "{} statements (only one RETURN QUERY or REFRESH is run)",
            statements.len()
        ));
    };
    let words: Vec<String> = statement
        .split_whitespace()
        .take(2)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    match words
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["RETURN", "QUERY"] => {
            let rest = statement
                .split_once(char::is_whitespace)
                .map(|(_, r)| r.trim_start())
                .and_then(|r| r.split_once(char::is_whitespace))
                .map(|(_, r)| r)
                .unwrap_or("");
            Ok(Body::Table(Box::new(parse_query(rest).map_err(|e| {
                plan_datafusion_err!("RETURN QUERY of function {name}: {}", e.strip_backtrace())
            })?)))
        }
        ["REFRESH", ..] => {
            let mut parser = Parser::new(&GenericDialect {})
                .try_with_sql(statement)
                .map_err(|e| plan_datafusion_err!("{e}"))?;
            let (view, _) = crate::views::parse_refresh(&mut parser)
                .map_err(|e| plan_datafusion_err!("{e}"))?;
            while parser.consume_token(&Token::SemiColon) {}
            if parser.peek_token().token != Token::EOF {
                return refuse("a statement other than REFRESH MATERIALIZED VIEW");
            }
            Ok(Body::Refresh(view))
        }
        ["RETURN", ..] => {
            let rest = statement.trim_start()[6..].trim();
            sql_body(name, &format!("SELECT {rest}"), false)
        }
        _ => refuse(&format!(
            "a statement other than RETURN QUERY ({})",
            statement.chars().take(40).collect::<String>()
        )),
    }
}

/// RETURNS TABLE (a T, b U): the body's columns named and cast so.
fn typed_columns(name: &ObjectName, q: &ast::Query, cols: &[ast::ColumnDef]) -> Result<ast::Query> {
    let quoted = |i: &Ident| format!("\"{}\"", i.value.replace('"', "\"\""));
    let select: Vec<String> = cols
        .iter()
        .map(|c| {
            format!(
                "CAST({} AS {}) AS {}",
                quoted(&c.name),
                c.data_type,
                quoted(&c.name)
            )
        })
        .collect();
    let names: Vec<String> = cols.iter().map(|c| quoted(&c.name)).collect();
    parse_query(&format!(
        "SELECT {} FROM ({q}) AS __body({})",
        select.join(", "),
        names.join(", ")
    ))
    .map_err(|e| plan_datafusion_err!("RETURNS TABLE of function {name}: {}", e.strip_backtrace()))
}

struct Expander<'a> {
    macros: &'a Macros,
    changed: bool,
}

fn args_of(m: &Macro, args: &[FunctionArg]) -> Result<BTreeMap<String, Expr>> {
    let mut out = BTreeMap::new();
    let mut positional = 0;
    for a in args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                let Some((p, _)) = m.params.get(positional) else {
                    return plan_err!(
                        "{} takes {} arguments, got {}",
                        m.signature(),
                        m.params.len(),
                        args.len()
                    );
                };
                out.insert(p.value.to_lowercase(), e.clone());
                positional += 1;
            }
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => {
                out.insert(name.value.to_lowercase(), e.clone());
            }
            other => return plan_err!("{}: unsupported argument {other}", m.signature()),
        }
    }
    for (p, default) in &m.params {
        let k = p.value.to_lowercase();
        if !out.contains_key(&k) {
            match default {
                Some(d) => {
                    out.insert(k, d.clone());
                }
                None => {
                    return plan_err!(
                        "{} takes {} arguments, got {} (no value for {})",
                        m.signature(),
                        m.params.len(),
                        args.len(),
                        p.value
                    )
                }
            }
        }
    }
    Ok(out)
}

/// Puts the arguments in place of the parameters.
struct Substitute<'a>(&'a BTreeMap<String, Expr>);

impl VisitorMut for Substitute<'_> {
    type Break = ();
    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::Identifier(i) = expr {
            let k = if i.quote_style.is_none() {
                i.value.to_lowercase()
            } else {
                i.value.clone()
            };
            if let Some(arg) = self.0.get(&k) {
                *expr = Expr::Nested(Box::new(arg.clone()));
            }
        }
        ControlFlow::Continue(())
    }
}

impl VisitorMut for Expander<'_> {
    type Break = DataFusionError;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<DataFusionError> {
        let Expr::Function(f) = expr else {
            return ControlFlow::Continue(());
        };
        let Some(m) = self.macros.get(&f.name) else {
            return ControlFlow::Continue(());
        };
        let args: &[FunctionArg] = match &f.args {
            FunctionArguments::List(l) => &l.args,
            _ => &[],
        };
        match &m.body {
            Body::Scalar(body) => {
                let values = match args_of(&m, args) {
                    Ok(v) => v,
                    Err(e) => return ControlFlow::Break(e),
                };
                let mut body = body.clone();
                let _ = body.visit(&mut Substitute(&values));
                *expr = Expr::Nested(Box::new(body));
                self.changed = true;
                ControlFlow::Continue(())
            }
            Body::Table(_) => ControlFlow::Break(plan_datafusion_err!(
                "{} returns rows: read it with SELECT * FROM {}(...)",
                m.name,
                m.name
            )),
            Body::Refresh(_) => ControlFlow::Break(plan_datafusion_err!(
                "{} refreshes a materialized view: call it alone, as SELECT {}()",
                m.name,
                m.name
            )),
        }
    }

    fn post_visit_table_factor(
        &mut self,
        factor: &mut TableFactor,
    ) -> ControlFlow<DataFusionError> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(args),
            ..
        } = factor
        else {
            return ControlFlow::Continue(());
        };
        let Some(m) = self.macros.get(name) else {
            return ControlFlow::Continue(());
        };
        let Body::Table(query) = &m.body else {
            return ControlFlow::Break(plan_datafusion_err!(
                "{} does not return rows; call it as SELECT {}(...)",
                m.name,
                m.name
            ));
        };
        let values = match args_of(&m, &args.args) {
            Ok(v) => v,
            Err(e) => return ControlFlow::Break(e),
        };
        let mut query = query.as_ref().clone();
        let _ = query.visit(&mut Substitute(&values));
        let alias = alias.clone().unwrap_or(TableAlias {
            explicit: true,
            at: None,
            name: Ident::new(
                name.0
                    .last()
                    .and_then(|p| p.as_ident())
                    .map(|i| i.value.clone())
                    .unwrap_or_else(|| m.name.clone()),
            ),
            columns: vec![],
        });
        *factor = TableFactor::Derived {
            lateral: false,
            subquery: Box::new(query),
            alias: Some(alias),
            sample: None,
        };
        self.changed = true;
        ControlFlow::Continue(())
    }
}
