//! Kestrel's SQL parser: DataFusion's DFParser, extended where sqlparser 0.62 stops short.
//!
//! - `REFRESH MATERIALIZED VIEW name` is parsed as a statement of its own (a statement-level extension of DFParser:
//!   the same parser, asked for our statement when the next word is REFRESH).
//! - DuckDB's `l ASOF [LEFT] JOIN r ON <cond>` is rewritten on the token stream into `l [LEFT] JOIN r ON
//!   __kestrel_asof(<cond>)`, and Snowflake's `l ASOF JOIN r MATCH_CONDITION (<m>) ON <cond>` (which sqlparser
//!   parses) on the AST into `l LEFT JOIN r ON __kestrel_asof(<m> AND <cond>)`. Both reach the planner as an ordinary
//!   join carrying the marker, which [`crate::time::asof`] turns into an ASOF join node. Tokens keep their spans, so
//!   an error still points into the user's text.

use datafusion::common::DataFusionError;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, JoinConstraint, JoinOperator, ObjectName, Select, TableFactor,
    TableWithJoins, VisitMut, VisitorMut,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Word};
use std::ops::ControlFlow;

pub use crate::time::asof::ASOF_MARKER;

/// One statement of a cell.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything DataFusion's parser understands (ASOF joins already rewritten).
    Sql(DfStatement),
    /// `REFRESH MATERIALIZED VIEW [CONCURRENTLY] name [WITH DATA]`. Every refresh is concurrent in PostgreSQL's
    /// sense: readers keep the old rows until the new ones are complete.
    RefreshMaterializedView {
        name: ObjectName,
        concurrently: bool,
    },
    /// CrateDB's `CREATE [OR REPLACE] ANALYZER name (TOKENIZER ..., TOKEN_FILTERS (...))`.
    CreateAnalyzer(crate::text::syntax::CreateAnalyzer),
    /// `DROP ANALYZER [IF EXISTS] name`.
    DropAnalyzer { name: String, if_exists: bool },
}

impl std::fmt::Display for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Statement::Sql(s) => write!(f, "{s}"),
            Statement::RefreshMaterializedView { name, concurrently } => write!(
                f,
                "REFRESH MATERIALIZED VIEW {}{name}",
                if *concurrently { "CONCURRENTLY " } else { "" }
            ),
            Statement::CreateAnalyzer(c) => write!(f, "CREATE ANALYZER {}", c.def.name),
            Statement::DropAnalyzer { name, .. } => write!(f, "DROP ANALYZER {name}"),
        }
    }
}

/// Parses a cell into statements; a syntax error anywhere fails the whole cell.
pub fn parse(sql: &str, dialect: &dyn Dialect) -> Result<Vec<Statement>, DataFusionError> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(ParserError::from)?;
    let tokens = rewrite_duckdb_asof(tokens);
    let tokens = crate::sql::timescale::rewrite_view_options(tokens);
    let tokens = crate::text::syntax::rewrite_table_indexes(tokens)?;
    let tokens = crate::text::syntax::rewrite_match(tokens)?;
    let mut parser = DFParserBuilder::new(tokens).with_dialect(dialect).build()?;
    let mut out = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        let next = parser.parser.peek_token();
        if next.token == Token::EOF {
            break;
        }
        if expecting_delimiter {
            return Err(ParserError::ParserError(format!(
                "Expected: end of statement, found: {}{}",
                next.token, next.span.start
            ))
            .into());
        }
        if crate::text::syntax::at_create_analyzer(&parser.parser) {
            out.push(Statement::CreateAnalyzer(
                crate::text::syntax::parse_create_analyzer(&mut parser.parser)?,
            ));
        } else if crate::text::syntax::at_drop_analyzer(&parser.parser) {
            let (name, if_exists) = crate::text::syntax::parse_drop_analyzer(&mut parser.parser)?;
            out.push(Statement::DropAnalyzer { name, if_exists });
        } else if is_word(&next.token, Keyword::REFRESH) {
            let (name, concurrently) = crate::views::parse_refresh(&mut parser.parser)?;
            out.push(Statement::RefreshMaterializedView { name, concurrently });
        } else {
            let mut statement = parser.parse_statement()?;
            rewrite_snowflake_asof(&mut statement)?;
            out.push(Statement::Sql(statement));
        }
        expecting_delimiter = true;
    }
    Ok(out)
}

fn is_word(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(Word { keyword: k, quote_style: None, .. }) if *k == keyword)
}

fn is_whitespace(t: &TokenWithSpan) -> bool {
    matches!(t.token, Token::Whitespace(_))
}

/// Index of the next token at or after `i` that is not whitespace.
fn next_solid(tokens: &[TokenWithSpan], mut i: usize) -> usize {
    while i < tokens.len() && is_whitespace(&tokens[i]) {
        i += 1;
    }
    i
}

/// Words that end a join's ON condition when met outside parentheses.
fn ends_condition(token: &Token) -> bool {
    match token {
        Token::SemiColon | Token::EOF | Token::Comma | Token::RParen => true,
        Token::Word(Word {
            keyword,
            quote_style: None,
            ..
        }) => matches!(
            keyword,
            Keyword::WHERE
                | Keyword::GROUP
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::FETCH
                | Keyword::HAVING
                | Keyword::WINDOW
                | Keyword::QUALIFY
                | Keyword::UNION
                | Keyword::EXCEPT
                | Keyword::INTERSECT
                | Keyword::JOIN
                | Keyword::INNER
                | Keyword::LEFT
                | Keyword::RIGHT
                | Keyword::FULL
                | Keyword::CROSS
                | Keyword::NATURAL
                | Keyword::ASOF
                | Keyword::SEMI
                | Keyword::ANTI
        ),
        _ => false,
    }
}

fn synthetic(token: Token, like: &TokenWithSpan) -> TokenWithSpan {
    TokenWithSpan {
        token,
        span: like.span,
    }
}

/// `ASOF [LEFT [OUTER] | INNER] JOIN r ON cond` → `[LEFT [OUTER] | INNER] JOIN r ON __kestrel_asof(cond)`.
/// Snowflake's form (`ASOF JOIN r MATCH_CONDITION (...)`) and anything unexpected is left for the parser.
fn rewrite_duckdb_asof(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut i = 0;
    while i < tokens.len() {
        if !is_word(&tokens[i].token, Keyword::ASOF) {
            i += 1;
            continue;
        }
        let asof = i;
        // The join words after ASOF.
        let mut j = next_solid(&tokens, asof + 1);
        while j < tokens.len()
            && (is_word(&tokens[j].token, Keyword::LEFT)
                || is_word(&tokens[j].token, Keyword::OUTER)
                || is_word(&tokens[j].token, Keyword::INNER))
        {
            j = next_solid(&tokens, j + 1);
        }
        if j >= tokens.len() || !is_word(&tokens[j].token, Keyword::JOIN) {
            i += 1;
            continue;
        }
        // Find ON (DuckDB) or MATCH_CONDITION (Snowflake) at depth 0 after the relation.
        let mut depth = 0i32;
        let mut k = j + 1;
        let mut on = None;
        while k < tokens.len() {
            match &tokens[k].token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::SemiColon | Token::EOF if depth == 0 => break,
                t if depth == 0 && is_word(t, Keyword::MATCH_CONDITION) => break,
                t if depth == 0 && is_word(t, Keyword::ON) => {
                    on = Some(k);
                    break;
                }
                // another clause before any ON: not an ASOF join we understand
                t if depth == 0 && ends_condition(t) => break,
                _ => {}
            }
            k += 1;
        }
        let Some(on) = on else {
            i += 1;
            continue;
        };
        // The end of the ON condition.
        let mut depth = 0i32;
        let mut end = on + 1;
        while end < tokens.len() {
            match &tokens[end].token {
                Token::LParen => depth += 1,
                Token::RParen if depth > 0 => depth -= 1,
                t if depth == 0 && ends_condition(t) => break,
                _ => {}
            }
            end += 1;
        }
        let on_token = tokens[on].clone();
        let marker = Token::make_word(ASOF_MARKER, None);
        // The closing parenthesis sits where the condition ends, so an error there points at the user's text.
        let closing = match tokens.get(end) {
            Some(t) => t.clone(),
            None => {
                let last = tokens[..end]
                    .iter()
                    .rev()
                    .find(|t| !is_whitespace(t))
                    .unwrap_or(&on_token);
                TokenWithSpan {
                    token: Token::EOF,
                    span: datafusion::sql::sqlparser::tokenizer::Span::new(
                        last.span.end,
                        last.span.end,
                    ),
                }
            }
        };
        tokens.insert(end, synthetic(Token::RParen, &closing));
        tokens.insert(on + 1, synthetic(Token::LParen, &on_token));
        tokens.insert(on + 1, synthetic(marker, &on_token));
        // Drop ASOF itself; the join words stay.
        tokens[asof] = synthetic(
            Token::Whitespace(datafusion::sql::sqlparser::tokenizer::Whitespace::Space),
            &tokens[asof],
        );
        i = end + 3;
    }
    tokens
}

/// The marker call around an ASOF condition.
pub fn marker_call(condition: Expr) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(ASOF_MARKER)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(condition))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Snowflake's `ASOF JOIN r MATCH_CONDITION (m) [ON c]` → `LEFT JOIN r ON __kestrel_asof(m [AND c])`: Snowflake (and
/// DataFusion after 55) keep every left row, NULL-padding the right side when nothing matches.
fn rewrite_snowflake_asof(statement: &mut DfStatement) -> Result<(), DataFusionError> {
    struct Rewriter(Option<DataFusionError>);
    impl Rewriter {
        fn joins(&mut self, twj: &mut TableWithJoins) {
            for join in &mut twj.joins {
                let JoinOperator::AsOf {
                    match_condition,
                    constraint,
                } = &mut join.join_operator
                else {
                    continue;
                };
                let mut condition = match_condition.clone();
                match std::mem::replace(constraint, JoinConstraint::None) {
                    JoinConstraint::On(on) => {
                        condition = Expr::BinaryOp {
                            left: Box::new(condition),
                            op: BinaryOperator::And,
                            right: Box::new(on),
                        }
                    }
                    JoinConstraint::None => {}
                    _ => {
                        self.0 = Some(DataFusionError::Plan(
                            "ASOF JOIN ... MATCH_CONDITION (...) accepts ON l.key = r.key conditions; USING and \
                             NATURAL are not supported"
                                .into(),
                        ));
                        return;
                    }
                }
                join.join_operator =
                    JoinOperator::LeftOuter(JoinConstraint::On(marker_call(condition)));
            }
        }
    }
    impl VisitorMut for Rewriter {
        type Break = ();
        fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
            for twj in &mut select.from {
                self.joins(twj);
            }
            ControlFlow::Continue(())
        }
        fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = factor
            {
                self.joins(table_with_joins);
            }
            ControlFlow::Continue(())
        }
    }
    let mut rewriter = Rewriter(None);
    match statement {
        DfStatement::Statement(s) => {
            let _ = s.visit(&mut rewriter);
        }
        DfStatement::CopyTo(copy) => {
            if let datafusion::sql::parser::CopyToSource::Query(q) = &mut copy.source {
                let _ = q.visit(&mut rewriter);
            }
        }
        DfStatement::Explain(explain) => {
            rewrite_snowflake_asof(&mut explain.statement)?;
        }
        _ => {}
    }
    match rewriter.0 {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn one(sql: &str) -> String {
        let mut s = parse(sql, &GenericDialect {}).unwrap();
        assert_eq!(s.len(), 1);
        s.remove(0).to_string()
    }

    #[test]
    fn duckdb_asof_becomes_a_marked_join() {
        assert_eq!(
            one("SELECT * FROM a ASOF JOIN b ON a.k = b.k AND a.t >= b.t WHERE a.x > 1"),
            "SELECT * FROM a JOIN b ON __kestrel_asof(a.k = b.k AND a.t >= b.t) WHERE a.x > 1"
        );
        assert_eq!(
            one("SELECT * FROM a ASOF LEFT JOIN (SELECT * FROM b) AS b ON (a.t >= b.t) ORDER BY 1"),
            "SELECT * FROM a LEFT JOIN (SELECT * FROM b) AS b ON __kestrel_asof((a.t >= b.t)) ORDER BY 1"
        );
        assert_eq!(
            one("SELECT * FROM (SELECT * FROM a ASOF JOIN b ON a.t >= b.t) AS x"),
            "SELECT * FROM (SELECT * FROM a JOIN b ON __kestrel_asof(a.t >= b.t)) AS x"
        );
    }

    #[test]
    fn snowflake_asof_becomes_a_marked_left_join() {
        assert_eq!(
            one("SELECT * FROM a ASOF JOIN b MATCH_CONDITION (a.t >= b.t) ON a.k = b.k"),
            "SELECT * FROM a LEFT OUTER JOIN b ON __kestrel_asof(a.t >= b.t AND a.k = b.k)"
        );
    }

    #[test]
    fn refresh_is_a_statement() {
        let s = parse(
            "REFRESH MATERIALIZED VIEW s.v; SELECT 1",
            &GenericDialect {},
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].to_string(), "REFRESH MATERIALIZED VIEW s.v");
        let s = parse(
            "REFRESH MATERIALIZED VIEW CONCURRENTLY feature_aggregates WITH DATA",
            &GenericDialect {},
        )
        .unwrap();
        assert_eq!(
            s[0].to_string(),
            "REFRESH MATERIALIZED VIEW CONCURRENTLY feature_aggregates"
        );
        let err = parse("REFRESH VIEW v", &GenericDialect {}).unwrap_err();
        assert!(err.to_string().contains("MATERIALIZED"), "{err}");
    }

    #[test]
    fn errors_point_into_the_users_text() {
        let err = parse(
            "SELECT * FROM a ASOF JOIN b ON a.t >= \n  b.t +",
            &GenericDialect {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Line: 2"), "{err}");
    }
}
