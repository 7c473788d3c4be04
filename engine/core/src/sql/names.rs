//! Result column names as DuckDB gives them: a column without an alias is named by the expression as the user
//! wrote it (`avg(value)`, `(x + 1)`, `time_bucket('5 minutes', ts)`), never by DataFusion's internal form
//! (`avg(t.value)`, `t.x + Int64(1)`, `time_bucket(IntervalMonthDayNano("IntervalMonthDayNano { ... }"), ...)`).
//!
//! It is done on the parsed statement, before planning: each unaliased select item that is not a plain column
//! gets its name as an alias. So the renderer, COPY headers, `kestrel sql`, CREATE TABLE AS and views all see the
//! same names. Names longer than [`MAX_NAME`] characters are shortened with "…"; a name already taken in the
//! same SELECT gets a `_2`, `_3`, ... suffix (DataFusion, unlike DuckDB, needs distinct names).

use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArguments, Ident,
    ObjectNamePart, Select, SelectItem, UnaryOperator, Value, VisitMut, VisitorMut,
};
use std::collections::HashSet;
use std::ops::ControlFlow;

/// Longest generated column name, in characters.
pub const MAX_NAME: usize = 64;

/// Names the unaliased expressions of every SELECT in the statement.
pub fn name_columns(statement: &mut DfStatement) {
    let mut namer = Namer;
    match statement {
        DfStatement::Statement(s) => {
            let _ = s.visit(&mut namer);
        }
        DfStatement::CopyTo(copy) => {
            if let CopyToSource::Query(q) = &mut copy.source {
                let _ = q.visit(&mut namer);
            }
        }
        DfStatement::Explain(explain) => name_columns(&mut explain.statement),
        _ => {}
    }
}

struct Namer;

impl VisitorMut for Namer {
    type Break = ();
    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        name_select(select);
        ControlFlow::Continue(())
    }
}

fn is_plain_column(e: &Expr) -> bool {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => true,
        Expr::Nested(e) => is_plain_column(e),
        _ => false,
    }
}

fn name_select(select: &mut Select) {
    let mut taken: HashSet<String> = select
        .projection
        .iter()
        .filter_map(|item| match item {
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            SelectItem::UnnamedExpr(e) if is_plain_column(e) => Some(column_name(e)),
            _ => None,
        })
        .collect();
    for item in &mut select.projection {
        let SelectItem::UnnamedExpr(e) = item else {
            continue;
        };
        if is_plain_column(e) {
            continue;
        }
        let base = shorten(&duckdb_name(e));
        let mut name = base.clone();
        let mut n = 1;
        while taken.contains(&name) {
            n += 1;
            name = format!("{base}_{n}");
        }
        taken.insert(name.clone());
        let expr = std::mem::replace(e, Expr::value(Value::Null));
        *item = SelectItem::ExprWithAlias {
            expr,
            alias: Ident::with_quote('"', name),
        };
    }
}

fn column_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        Expr::Nested(e) => column_name(e),
        other => other.to_string(),
    }
}

fn shorten(name: &str) -> String {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    match name.char_indices().nth(MAX_NAME - 1) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name,
    }
}

/// The name DuckDB gives an expression: function names in lower case, binary operations in parentheses,
/// `INTERVAL '5 minutes'` as `CAST('5 minutes' AS INTERVAL)`, `x::t` as `CAST(x AS T)`, `count(*)` as
/// `count_star()`.
pub fn duckdb_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => parts
            .iter()
            .map(|p| p.value.clone())
            .collect::<Vec<_>>()
            .join("."),
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => b.to_string(),
            Value::Null => "NULL".into(),
            other => other.to_string(),
        },
        Expr::Nested(e) => duckdb_name(e),
        Expr::BinaryOp { left, op, right } => {
            format!("({} {op} {})", duckdb_name(left), duckdb_name(right))
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => format!("(-({}))", duckdb_name(expr)),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => format!("(NOT {})", duckdb_name(expr)),
        Expr::IsNull(e) => format!("({} IS NULL)", duckdb_name(e)),
        Expr::IsNotNull(e) => format!("({} IS NOT NULL)", duckdb_name(e)),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => format!(
            "({} {}BETWEEN {} AND {})",
            duckdb_name(expr),
            if *negated { "NOT " } else { "" },
            duckdb_name(low),
            duckdb_name(high)
        ),
        Expr::InList {
            expr,
            list,
            negated,
        } => format!(
            "({} {}IN ({}))",
            duckdb_name(expr),
            if *negated { "NOT " } else { "" },
            list.iter().map(duckdb_name).collect::<Vec<_>>().join(", ")
        ),
        Expr::Cast {
            expr,
            data_type,
            kind,
            format: None,
            ..
        } => {
            let how = match kind {
                datafusion::sql::sqlparser::ast::CastKind::TryCast
                | datafusion::sql::sqlparser::ast::CastKind::SafeCast => "TRY_CAST",
                _ => "CAST",
            };
            format!("{how}({} AS {data_type})", duckdb_name(expr))
        }
        Expr::Interval(i) if i.leading_field.is_none() && i.last_field.is_none() => {
            format!("CAST({} AS INTERVAL)", duckdb_name(&i.value))
        }
        Expr::Function(f) => {
            let name = f
                .name
                .0
                .iter()
                .map(|p| match p {
                    ObjectNamePart::Identifier(i) if i.quote_style.is_none() => {
                        i.value.to_lowercase()
                    }
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(".");
            let mut out = match &f.args {
                FunctionArguments::List(list) => {
                    let star = list.args.len() == 1
                        && matches!(
                            list.args[0],
                            FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
                        );
                    if name == "count" && star && list.duplicate_treatment.is_none() {
                        "count_star()".to_string()
                    } else {
                        let name = if name == "coalesce" {
                            "COALESCE".to_string()
                        } else {
                            name
                        };
                        let args: Vec<String> = list
                            .args
                            .iter()
                            .map(|a| match a {
                                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => duckdb_name(e),
                                other => other.to_string(),
                            })
                            .collect();
                        let distinct = match &list.duplicate_treatment {
                            Some(d) => format!("{d} "),
                            None => String::new(),
                        };
                        let clauses: String = list
                            .clauses
                            .iter()
                            .map(|c: &FunctionArgumentClause| format!(" {c}"))
                            .collect();
                        format!("{name}({distinct}{}{clauses})", args.join(", "))
                    }
                }
                FunctionArguments::None => name,
                FunctionArguments::Subquery(q) => format!("{name}({q})"),
            };
            if let Some(filter) = &f.filter {
                out.push_str(&format!(" FILTER (WHERE {filter})"));
            }
            if let Some(over) = &f.over {
                out.push_str(&format!(" OVER {over}"));
            }
            out
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn named(sql: &str) -> String {
        let mut s =
            datafusion::sql::parser::DFParser::parse_sql_with_dialect(sql, &GenericDialect {})
                .unwrap()
                .pop_front()
                .unwrap();
        name_columns(&mut s);
        s.to_string()
    }

    #[test]
    fn unaliased_expressions_are_named_as_written() {
        assert_eq!(
            named("SELECT id, t.x, AVG(x), x+1, count(*), time_bucket('5 minutes', ts) AS b FROM t"),
            "SELECT id, t.x, AVG(x) AS \"avg(x)\", x + 1 AS \"(x + 1)\", count(*) AS \"count_star()\", \
             time_bucket('5 minutes', ts) AS b FROM t"
        );
        assert_eq!(
            named("SELECT now() - INTERVAL '1 hour', x::bigint FROM t"),
            "SELECT now() - INTERVAL '1 hour' AS \"(now() - CAST('1 hour' AS INTERVAL))\", \
             x::BIGINT AS \"CAST(x AS BIGINT)\" FROM t"
        );
    }

    #[test]
    fn long_and_repeated_names() {
        let long = format!("SELECT {} FROM t", vec!["x"; 40].join(" + "));
        let out = named(&long);
        assert!(out.contains('…'), "{out}");
        assert_eq!(
            named("SELECT avg(x), avg(x) FROM t"),
            "SELECT avg(x) AS \"avg(x)\", avg(x) AS \"avg(x)_2\" FROM t"
        );
    }
}
