//! CrateDB's full-text syntax, which sqlparser does not parse, rewritten on the token stream (tokens keep their
//! spans, so errors still point into the user's text):
//!
//! - `MATCH(target, query) [USING type [WITH (k = v, ...)]]`, where target is an index or column, optionally
//!   boosted (`body_ft 2.0`), or a parenthesised list of them, becomes
//!   `__kestrel_match(query, 'type', n, target, boost, ..., 'k', 'v', ...)`; [`super::resolve`] then names the
//!   index each target means, on the AST.
//! - `INDEX name USING FULLTEXT (columns) [WITH (...)]` among CREATE TABLE's elements, and a column's own
//!   `INDEX USING FULLTEXT [WITH (...)]` (or `INDEX OFF`), are cut out of the CREATE TABLE and become
//!   `CREATE INDEX ... USING fulltext` statements right after it.
//! - `CREATE [OR REPLACE] ANALYZER` and `DROP ANALYZER` are parsed by [`parse_create_analyzer`] and
//!   [`parse_drop_analyzer`].

use super::analyzers::{self, AnalyzerDef, OptionValue, Tokenizer};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace, Word};
use std::collections::BTreeMap;

/// The function MATCH becomes between parsing and planning.
pub const MATCH_FN: &str = "__kestrel_match";

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(Word { keyword: k, quote_style: None, .. }) if *k == keyword)
}

fn is_named(token: &Token, name: &str) -> bool {
    matches!(token, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(name))
}

fn solid(tokens: &[TokenWithSpan], mut i: usize) -> usize {
    while i < tokens.len() && matches!(tokens[i].token, Token::Whitespace(_)) {
        i += 1;
    }
    i
}

fn at(tokens: &[TokenWithSpan], i: usize) -> &Token {
    tokens.get(i).map(|t| &t.token).unwrap_or(&Token::EOF)
}

fn error(tokens: &[TokenWithSpan], i: usize, what: &str) -> ParserError {
    let where_ = tokens
        .get(i)
        .map(|t| format!(", found: {}{}", t.token, t.span.start))
        .unwrap_or_default();
    ParserError::ParserError(format!("{what}{where_}"))
}

fn like(token: Token, t: &TokenWithSpan) -> TokenWithSpan {
    TokenWithSpan {
        token,
        span: t.span,
    }
}

/// The index after the parenthesis closing the one at `open`.
fn close_of(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            Token::EOF => return None,
            _ => {}
        }
    }
    None
}

/// A dotted name (`t.body_ft`) from `i`: its tokens and the index after it.
fn dotted(tokens: &[TokenWithSpan], i: usize) -> Option<(Vec<TokenWithSpan>, usize)> {
    let mut out = Vec::new();
    let mut j = solid(tokens, i);
    loop {
        match at(tokens, j) {
            Token::Word(_) => out.push(tokens[j].clone()),
            _ => return None,
        }
        let k = solid(tokens, j + 1);
        if matches!(at(tokens, k), Token::Period) {
            out.push(tokens[k].clone());
            j = solid(tokens, k + 1);
        } else {
            return Some((out, k));
        }
    }
}

/// `name = value, ...` inside the parentheses opening at `open`; returns the pairs (values as text) and the index
/// after the closing parenthesis.
fn options(
    tokens: &[TokenWithSpan],
    open: usize,
) -> Result<(Vec<(String, TokenWithSpan)>, usize), ParserError> {
    let end = close_of(tokens, open).ok_or_else(|| error(tokens, open, "unclosed WITH ("))?;
    let mut out = Vec::new();
    let mut i = solid(tokens, open + 1);
    while i < end - 1 {
        let Token::Word(key) = at(tokens, i) else {
            return Err(error(
                tokens,
                i,
                "Expected: option name in WITH (name = value, ...)",
            ));
        };
        let key = key.value.to_lowercase();
        let eq = solid(tokens, i + 1);
        if !matches!(at(tokens, eq), Token::Eq) {
            return Err(error(
                tokens,
                eq,
                &format!("Expected: = after option {key}"),
            ));
        }
        let mut v = solid(tokens, eq + 1);
        // a negative number
        let negative = matches!(at(tokens, v), Token::Minus);
        if negative {
            v = solid(tokens, v + 1);
        }
        let value = match at(tokens, v) {
            Token::Number(n, l) => like(
                Token::Number(if negative { format!("-{n}") } else { n.clone() }, *l),
                &tokens[v],
            ),
            Token::SingleQuotedString(_) | Token::Word(_) if !negative => tokens[v].clone(),
            _ => {
                return Err(error(
                    tokens,
                    v,
                    &format!("Expected: a number or a quoted string as the value of {key}"),
                ))
            }
        };
        out.push((key, value));
        i = solid(tokens, v + 1);
        match at(tokens, i) {
            Token::Comma => i = solid(tokens, i + 1),
            Token::RParen => break,
            _ => return Err(error(tokens, i, "Expected: , or ) in WITH (...)")),
        }
    }
    Ok((out, end))
}

fn option_text(t: &Token) -> String {
    match t {
        Token::Number(n, _) => n.clone(),
        Token::SingleQuotedString(s) => s.clone(),
        Token::Word(w) => w.value.clone(),
        other => other.to_string(),
    }
}

/// Rewrites every `MATCH(...)` of CrateDB's form (MySQL's `MATCH (...) AGAINST (...)` is left alone).
pub fn rewrite_match(tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>, ParserError> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let open = solid(&tokens, i + 1);
        if !is_keyword(&tokens[i].token, Keyword::MATCH)
            || !matches!(at(&tokens, open), Token::LParen)
        {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let Some(close) = close_of(&tokens, open) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        if is_keyword(at(&tokens, solid(&tokens, close)), Keyword::AGAINST) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let m = &tokens[i];
        // targets
        let mut targets: Vec<(Vec<TokenWithSpan>, TokenWithSpan)> = Vec::new();
        let mut j = solid(&tokens, open + 1);
        let one = |j: usize| -> Result<((Vec<TokenWithSpan>, TokenWithSpan), usize), ParserError> {
            let (name, k) = dotted(&tokens, j).ok_or_else(|| {
                error(
                    &tokens,
                    j,
                    "Expected: a full-text index or column in MATCH(index_or_column, 'query')",
                )
            })?;
            match at(&tokens, k) {
                Token::Number(..) => Ok(((name, tokens[k].clone()), solid(&tokens, k + 1))),
                _ => Ok(((name, like(Token::Number("1.0".into(), false), m)), k)),
            }
        };
        if matches!(at(&tokens, j), Token::LParen) {
            let list_end = close_of(&tokens, j)
                .ok_or_else(|| error(&tokens, j, "unclosed MATCH target list"))?;
            j = solid(&tokens, j + 1);
            loop {
                let (t, k) = one(j)?;
                targets.push(t);
                match at(&tokens, k) {
                    Token::Comma => j = solid(&tokens, k + 1),
                    Token::RParen if k + 1 == list_end => {
                        j = solid(&tokens, list_end);
                        break;
                    }
                    _ => {
                        return Err(error(
                            &tokens,
                            k,
                            "Expected: , or ) in the MATCH target list",
                        ))
                    }
                }
            }
        } else {
            let (t, k) = one(j)?;
            targets.push(t);
            j = k;
        }
        if !matches!(at(&tokens, j), Token::Comma) {
            return Err(error(
                &tokens,
                j,
                "Expected: , and the query text after MATCH's index: MATCH(body_ft, 'query')",
            ));
        }
        let query: Vec<TokenWithSpan> = tokens[j + 1..close - 1].to_vec();
        if query
            .iter()
            .all(|t| matches!(t.token, Token::Whitespace(_)))
        {
            return Err(error(
                &tokens,
                close - 1,
                "Expected: the query text of MATCH",
            ));
        }
        // USING type [WITH (...)]
        let mut next = close;
        let mut kind = String::new();
        let mut opts = Vec::new();
        let u = solid(&tokens, close);
        if is_keyword(at(&tokens, u), Keyword::USING) {
            let w = solid(&tokens, u + 1);
            let Token::Word(word) = at(&tokens, w) else {
                return Err(error(
                    &tokens,
                    w,
                    "Expected: a match type after USING (best_fields, most_fields, phrase, phrase_prefix)",
                ));
            };
            kind = word.value.to_lowercase();
            next = w + 1;
            let with = solid(&tokens, next);
            if is_keyword(at(&tokens, with), Keyword::WITH) {
                let p = solid(&tokens, with + 1);
                if !matches!(at(&tokens, p), Token::LParen) {
                    return Err(error(&tokens, p, "Expected: ( after MATCH ... WITH"));
                }
                let (pairs, end) = options(&tokens, p)?;
                opts = pairs;
                next = end;
            }
        }
        // emit
        let comma = || like(Token::Comma, m);
        out.push(like(Token::make_word(MATCH_FN, None), m));
        out.push(like(Token::LParen, m));
        out.push(like(Token::LParen, m));
        out.extend(query);
        out.push(like(Token::RParen, m));
        out.push(comma());
        out.push(like(Token::SingleQuotedString(kind), m));
        out.push(comma());
        out.push(like(Token::Number(targets.len().to_string(), false), m));
        for (name, boost) in targets {
            out.push(comma());
            out.extend(name);
            out.push(comma());
            out.push(boost);
        }
        for (key, value) in opts {
            out.push(comma());
            out.push(like(Token::SingleQuotedString(key), m));
            out.push(comma());
            out.push(like(
                Token::SingleQuotedString(option_text(&value.token)),
                &value,
            ));
        }
        out.push(like(Token::RParen, m));
        i = next;
    }
    Ok(out)
}

/// One index cut out of a CREATE TABLE.
struct TableIndex {
    name: Vec<TokenWithSpan>,
    columns: Vec<TokenWithSpan>,
    with: Vec<TokenWithSpan>,
}

/// Moves CrateDB's `INDEX ... USING FULLTEXT` elements of every CREATE TABLE into CREATE INDEX statements after it.
pub fn rewrite_table_indexes(
    tokens: Vec<TokenWithSpan>,
) -> Result<Vec<TokenWithSpan>, ParserError> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    // only at a statement's start
    let mut statement_start = true;
    while i < tokens.len() {
        let t = &tokens[i].token;
        if matches!(t, Token::Whitespace(_)) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        if matches!(t, Token::SemiColon) {
            statement_start = true;
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        if !(statement_start && is_keyword(t, Keyword::CREATE)) {
            statement_start = false;
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        statement_start = false;
        // CREATE [OR REPLACE] [TEMP|TEMPORARY] TABLE [IF NOT EXISTS] name (
        let mut j = solid(&tokens, i + 1);
        if is_keyword(at(&tokens, j), Keyword::OR) {
            j = solid(&tokens, solid(&tokens, j + 1) + 1);
        }
        if is_keyword(at(&tokens, j), Keyword::TEMP)
            || is_keyword(at(&tokens, j), Keyword::TEMPORARY)
        {
            j = solid(&tokens, j + 1);
        }
        if !is_keyword(at(&tokens, j), Keyword::TABLE) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        j = solid(&tokens, j + 1);
        if is_keyword(at(&tokens, j), Keyword::IF) {
            // IF NOT EXISTS
            for _ in 0..3 {
                j = solid(&tokens, j + 1);
            }
        }
        let Some((table, after_name)) = dotted(&tokens, j) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        if !matches!(at(&tokens, after_name), Token::LParen) {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let open = after_name;
        let Some(close) = close_of(&tokens, open) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        // split the elements at depth-1 commas
        let mut elements: Vec<(usize, usize)> = Vec::new();
        let mut depth = 0usize;
        let mut start = open + 1;
        for (k, tok) in tokens.iter().enumerate().take(close - 1).skip(open + 1) {
            match tok.token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::Comma if depth == 0 => {
                    elements.push((start, k));
                    start = k + 1;
                }
                _ => {}
            }
        }
        elements.push((start, close - 1));
        let mut kept: Vec<Vec<TokenWithSpan>> = Vec::new();
        let mut indexes: Vec<TableIndex> = Vec::new();
        for (s, e) in elements {
            let el = &tokens[s..e];
            let first = solid(el, 0);
            if is_keyword(at(el, first), Keyword::INDEX) {
                // INDEX name USING FULLTEXT (cols) [WITH (...)]
                let name_at = solid(el, first + 1);
                let Some((name, k)) = dotted(el, name_at) else {
                    return Err(error(el, name_at, "Expected: the index name after INDEX"));
                };
                if !is_keyword(at(el, k), Keyword::USING) {
                    return Err(error(
                        el,
                        k,
                        "Expected: USING FULLTEXT (columns) after INDEX name",
                    ));
                }
                let f = solid(el, k + 1);
                if !is_keyword(at(el, f), Keyword::FULLTEXT) {
                    return Err(error(
                        el,
                        f,
                        "Expected: FULLTEXT (the index kind a CREATE TABLE can declare; vector indexes are \
                         CREATE INDEX ... USING hnsw)",
                    ));
                }
                let p = solid(el, f + 1);
                let Some(pe) = (matches!(at(el, p), Token::LParen))
                    .then(|| close_of(el, p))
                    .flatten()
                else {
                    return Err(error(el, p, "Expected: (columns) after USING FULLTEXT"));
                };
                let columns = el[p..pe].to_vec();
                let w = solid(el, pe);
                let with = if is_keyword(at(el, w), Keyword::WITH) {
                    el[w..].to_vec()
                } else if w < el.len() {
                    return Err(error(
                        el,
                        w,
                        "Expected: WITH (analyzer = '...') or the end of the index",
                    ));
                } else {
                    Vec::new()
                };
                indexes.push(TableIndex {
                    name,
                    columns,
                    with,
                });
                continue;
            }
            // a column's own INDEX USING FULLTEXT [WITH (...)] / INDEX OFF
            let mut cut: Option<(usize, usize, Option<Vec<TokenWithSpan>>)> = None;
            for k in first..el.len() {
                if !is_keyword(&el[k].token, Keyword::INDEX) {
                    continue;
                }
                let n = solid(el, k + 1);
                if is_keyword(at(el, n), Keyword::OFF) || is_named(at(el, n), "off") {
                    cut = Some((k, n + 1, None));
                } else if is_keyword(at(el, n), Keyword::USING)
                    && is_keyword(at(el, solid(el, n + 1)), Keyword::FULLTEXT)
                {
                    let f = solid(el, n + 1);
                    let w = solid(el, f + 1);
                    let (end, with) = if is_keyword(at(el, w), Keyword::WITH) {
                        let p = solid(el, w + 1);
                        let pe = (matches!(at(el, p), Token::LParen))
                            .then(|| close_of(el, p))
                            .flatten()
                            .ok_or_else(|| {
                                error(el, p, "Expected: ( after INDEX USING FULLTEXT WITH")
                            })?;
                        (pe, el[w..pe].to_vec())
                    } else {
                        (f + 1, Vec::new())
                    };
                    cut = Some((k, end, Some(with)));
                }
                break;
            }
            match cut {
                None => kept.push(el.to_vec()),
                Some((from, to, with)) => {
                    let mut rest = el[..from].to_vec();
                    rest.extend_from_slice(&el[to..]);
                    if let Some(with) = with {
                        let column = el[first].clone();
                        let table_name = table
                            .iter()
                            .filter_map(|t| match &t.token {
                                Token::Word(w) => Some(w.value.to_lowercase()),
                                _ => None,
                            })
                            .next_back()
                            .unwrap_or_default();
                        let col = match &column.token {
                            Token::Word(w) => w.value.to_lowercase(),
                            _ => String::new(),
                        };
                        indexes.push(TableIndex {
                            name: vec![like(
                                Token::make_word(&format!("{table_name}_{col}_ft"), None),
                                &column,
                            )],
                            columns: vec![
                                like(Token::LParen, &column),
                                column.clone(),
                                like(Token::RParen, &column),
                            ],
                            with,
                        });
                    }
                    kept.push(rest);
                }
            }
        }
        if indexes.is_empty() {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        // the CREATE TABLE without them
        out.extend_from_slice(&tokens[i..=open]);
        for (n, el) in kept.iter().enumerate() {
            if n > 0 {
                out.push(like(Token::Comma, &tokens[open]));
            }
            out.extend_from_slice(el);
        }
        // the rest of the statement (AS SELECT ..., WITH (...)) up to its end
        let mut k = close - 1;
        let mut depth = 0usize;
        while k < tokens.len() {
            match tokens[k].token {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::SemiColon | Token::EOF if depth == 0 => break,
                _ => {}
            }
            out.push(tokens[k].clone());
            k += 1;
        }
        let c = &tokens[i];
        for index in indexes {
            out.push(like(Token::SemiColon, c));
            out.push(like(Token::make_keyword("CREATE"), c));
            out.push(like(Token::Whitespace(Whitespace::Space), c));
            out.push(like(Token::make_keyword("INDEX"), c));
            out.push(like(Token::Whitespace(Whitespace::Space), c));
            out.extend(index.name);
            out.push(like(Token::Whitespace(Whitespace::Space), c));
            out.push(like(Token::make_keyword("ON"), c));
            out.push(like(Token::Whitespace(Whitespace::Space), c));
            out.extend(table.iter().cloned());
            out.push(like(Token::Whitespace(Whitespace::Space), c));
            out.push(like(Token::make_keyword("USING"), c));
            out.push(like(Token::Whitespace(Whitespace::Space), c));
            out.push(like(Token::make_word("fulltext", None), c));
            out.push(like(Token::Whitespace(Whitespace::Space), c));
            out.extend(index.columns);
            if !index.with.is_empty() {
                out.push(like(Token::Whitespace(Whitespace::Space), c));
                out.extend(index.with);
            }
        }
        i = k;
    }
    Ok(out)
}

/// What `CREATE [OR REPLACE] ANALYZER` says.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateAnalyzer {
    pub def: AnalyzerDef,
    pub or_replace: bool,
}

/// Whether the parser is at `CREATE [OR REPLACE] ANALYZER`.
pub fn at_create_analyzer(parser: &Parser) -> bool {
    let words: Vec<Token> = (0..4).map(|n| parser.peek_nth_token(n).token).collect();
    is_keyword(&words[0], Keyword::CREATE)
        && (is_named(&words[1], "analyzer")
            || (is_keyword(&words[1], Keyword::OR)
                && is_keyword(&words[2], Keyword::REPLACE)
                && is_named(&words[3], "analyzer")))
}

/// Whether the parser is at `DROP ANALYZER`.
pub fn at_drop_analyzer(parser: &Parser) -> bool {
    is_keyword(&parser.peek_nth_token(0).token, Keyword::DROP)
        && is_named(&parser.peek_nth_token(1).token, "analyzer")
}

/// `WITH (k = v, ...)` with values as analyzer options (lists of strings allowed: `stopwords = ['a', 'b']`).
fn analyzer_options(parser: &mut Parser) -> Result<BTreeMap<String, OptionValue>, ParserError> {
    let mut out = BTreeMap::new();
    if !parser.parse_keyword(Keyword::WITH) {
        return Ok(out);
    }
    parser.expect_token(&Token::LParen)?;
    loop {
        let key = parser.parse_identifier()?.value.to_lowercase();
        parser.expect_token(&Token::Eq)?;
        let t = parser.next_token();
        let value = match t.token {
            Token::SingleQuotedString(s) => OptionValue::Text(s),
            Token::Number(n, _) => OptionValue::Number(n.parse::<f64>().map_err(|_| {
                ParserError::ParserError(format!("option {key}: {n} is not a number"))
            })?),
            Token::Word(w) => OptionValue::Text(w.value),
            Token::LBracket => {
                let mut words = Vec::new();
                if !parser.consume_token(&Token::RBracket) {
                    loop {
                        match parser.next_token().token {
                            Token::SingleQuotedString(s) => words.push(s),
                            other => {
                                return Err(ParserError::ParserError(format!(
                                    "option {key}: a list holds quoted words, found {other}"
                                )))
                            }
                        }
                        if parser.consume_token(&Token::RBracket) {
                            break;
                        }
                        parser.expect_token(&Token::Comma)?;
                    }
                }
                OptionValue::List(words)
            }
            other => {
                return Err(ParserError::ParserError(format!(
                    "option {key}: expected a number, a quoted string or a list, found {other}"
                )))
            }
        };
        out.insert(key, value);
        if parser.consume_token(&Token::RParen) {
            break;
        }
        parser.expect_token(&Token::Comma)?;
    }
    Ok(out)
}

/// `CREATE [OR REPLACE] ANALYZER name [EXTENDS parent] ( [TOKENIZER t [WITH (...)]] [, TOKEN_FILTERS (f [WITH
/// (...)], ...)] [, CHAR_FILTERS (...)] )` (CrateDB's statement). Char filters are refused by name.
pub fn parse_create_analyzer(parser: &mut Parser) -> Result<CreateAnalyzer, ParserError> {
    let plan =
        |e: datafusion::common::DataFusionError| ParserError::ParserError(e.message().to_string());
    parser.expect_keyword(Keyword::CREATE)?;
    let or_replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    parser.next_token(); // ANALYZER
    let name = parser.parse_identifier()?.value.to_lowercase();
    let mut tokenizer = Tokenizer::Standard;
    let mut filters = Vec::new();
    if is_named(&parser.peek_token().token, "extends") {
        parser.next_token();
        let parent = parser.parse_identifier()?.value;
        let base = AnalyzerDef::builtin(&parent).ok_or_else(|| {
            ParserError::ParserError(format!(
                "CREATE ANALYZER {name} EXTENDS {parent}: only built-in analyzers can be extended"
            ))
        })?;
        tokenizer = base.tokenizer;
        filters = base.filters;
    }
    parser.expect_token(&Token::LParen)?;
    let mut own_filters = None;
    loop {
        let part = parser.parse_identifier()?.value.to_lowercase();
        match part.as_str() {
            "tokenizer" => {
                let t = parser.parse_identifier()?.value;
                let opts = analyzer_options(parser)?;
                tokenizer = analyzers::tokenizer(&t, &opts).map_err(plan)?;
            }
            "token_filters" => {
                parser.expect_token(&Token::LParen)?;
                let mut list = Vec::new();
                loop {
                    let f = parser.parse_identifier()?.value;
                    let opts = analyzer_options(parser)?;
                    list.push(analyzers::filter(&f, &opts).map_err(plan)?);
                    if parser.consume_token(&Token::RParen) {
                        break;
                    }
                    parser.expect_token(&Token::Comma)?;
                }
                own_filters = Some(list);
            }
            "char_filters" => {
                return Err(ParserError::ParserError(format!(
                    "CREATE ANALYZER {name}: CHAR_FILTERS are not supported (tokenizer and token filters are)"
                )))
            }
            other => {
                return Err(ParserError::ParserError(format!(
                    "CREATE ANALYZER {name}: expected TOKENIZER or TOKEN_FILTERS, found {other}"
                )))
            }
        }
        if parser.consume_token(&Token::RParen) {
            break;
        }
        parser.expect_token(&Token::Comma)?;
    }
    if let Some(f) = own_filters {
        filters = f;
    }
    Ok(CreateAnalyzer {
        def: AnalyzerDef {
            name,
            tokenizer,
            filters,
            builtin: false,
        },
        or_replace,
    })
}

/// `DROP ANALYZER [IF EXISTS] name`.
pub fn parse_drop_analyzer(parser: &mut Parser) -> Result<(String, bool), ParserError> {
    parser.expect_keyword(Keyword::DROP)?;
    parser.next_token(); // ANALYZER
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = parser.parse_identifier()?.value.to_lowercase();
    Ok((name, if_exists))
}
