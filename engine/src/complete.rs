//! Tab completion: keywords, functions, tables, and the columns of the tables the statement names.
//!
//! Offsets are bytes into the cell. The word being typed is replaced whole (`start..end` spans the identifier
//! around the cursor). After `alias.` or `table.` only that table's columns are offered; after FROM/JOIN/INTO the
//! tables come first. Keywords are offered only once a prefix is typed, in the case the user types them.

use crate::input::{is_word_char, lex, TokenKind};
use crate::names::{self, find_table, quote_ident, tables_in_statement, TableName};
use datafusion::execution::context::SessionContext;

/// What a completion candidate is, for clients that show it (JupyterLab's completer does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateKind {
    Column,
    Table,
    Function,
    Keyword,
}

impl CandidateKind {
    pub fn name(self) -> &'static str {
        match self {
            CandidateKind::Column => "column",
            CandidateKind::Table => "table",
            CandidateKind::Function => "function",
            CandidateKind::Keyword => "keyword",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub text: String,
    pub kind: CandidateKind,
    /// A short description: a column's type, a table's column count.
    pub detail: Option<String>,
}

/// Completion candidates replacing `code[start..end]`.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub candidates: Vec<Candidate>,
    pub start: usize,
    pub end: usize,
}

impl Completion {
    pub fn matches(&self) -> Vec<String> {
        self.candidates.iter().map(|c| c.text.clone()).collect()
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The identifier around `cursor`: (start, end).
pub(crate) fn word_around(code: &str, cursor: usize) -> (usize, usize) {
    let cursor = floor_char_boundary(code, cursor);
    let start = code[..cursor]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_word_char(c))
        .last()
        .map_or(cursor, |(i, _)| i);
    let end = code[cursor..]
        .char_indices()
        .find(|&(_, c)| !is_word_char(c))
        .map_or(code.len(), |(i, _)| cursor + i);
    (start, end)
}

/// The dotted qualifier before `start` (`t.` → "t", `s.t.` → "s.t"), if any.
pub(crate) fn qualifier_before(code: &str, start: usize) -> Option<String> {
    let before = &code[..start];
    let mut rest = before.strip_suffix('.')?;
    let mut parts = Vec::new();
    loop {
        let (s, _) = word_around(rest, rest.len());
        if s == rest.len() {
            break;
        }
        parts.push(rest[s..].trim_matches('"').to_string());
        rest = &rest[..s];
        match rest.strip_suffix('.') {
            Some(r) => rest = r,
            None => break,
        }
    }
    if parts.is_empty() {
        return None;
    }
    parts.reverse();
    Some(parts.join("."))
}

fn starts_with_ignore_case(candidate: &str, prefix: &str) -> bool {
    candidate.len() >= prefix.len()
        && candidate.is_char_boundary(prefix.len())
        && candidate[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The keyword just before the word being typed, uppercased (e.g. "FROM").
fn previous_word(code: &str, start: usize) -> Option<String> {
    lex(&code[..start])
        .iter()
        .rev()
        .find(|t| !matches!(t.kind, TokenKind::Comment { .. }))
        .filter(|t| t.kind == TokenKind::Word)
        .map(|t| t.text(code).to_ascii_uppercase())
}

/// Is the cursor inside a string literal or comment? Nothing to complete there.
fn in_literal(code: &str, cursor: usize) -> bool {
    lex(code).iter().any(|t| {
        // Whether the token still extends when the cursor sits right at its end.
        let open_at_end = match t.kind {
            TokenKind::Str { closed } => !closed,
            TokenKind::Comment { closed } => !closed || code[t.start..].starts_with("--"),
            _ => return false,
        };
        t.start < cursor && (cursor < t.end || (cursor == t.end && open_at_end))
    })
}

/// Gathers candidates that match the typed prefix, each once, in the order offered.
struct Candidates<'a> {
    prefix: &'a str,
    found: Vec<Candidate>,
}

impl Candidates<'_> {
    fn add(&mut self, text: String, kind: CandidateKind, detail: Option<String>) {
        // A quoted candidate (`"UserId"`) matches on its name.
        let bare = text.strip_prefix('"').unwrap_or(&text);
        if starts_with_ignore_case(bare, self.prefix) && !self.found.iter().any(|c| c.text == text)
        {
            self.found.push(Candidate { text, kind, detail });
        }
    }

    async fn add_columns(&mut self, ctx: &SessionContext, table: &TableName) {
        if let Some(schema) = names::table_schema(ctx, table).await {
            for field in schema.fields() {
                self.add(
                    quote_ident(field.name()),
                    CandidateKind::Column,
                    Some(field.data_type().to_string()),
                );
            }
        }
    }

    /// Tables; the information schema's only once a prefix is typed.
    fn add_tables(&mut self, tables: &[TableName]) {
        for t in tables {
            if !t.typed.starts_with("information_schema.") || !self.prefix.is_empty() {
                self.add(t.typed.clone(), CandidateKind::Table, None);
            }
        }
    }
}

pub(crate) async fn complete(ctx: &SessionContext, code: &str, cursor: usize) -> Completion {
    let cursor = floor_char_boundary(code, cursor);
    let (start, end) = word_around(code, cursor);
    let opened_quote = code[..start].ends_with('"').then(|| start - 1);
    if in_literal(code, cursor) {
        return Completion {
            candidates: Vec::new(),
            start: cursor,
            end: cursor,
        };
    }
    let mut c = Candidates {
        prefix: &code[start..cursor],
        found: Vec::new(),
    };
    let tables = names::list_tables(ctx);
    let uses = tables_in_statement(code, cursor, &tables);

    if let Some(qualifier) = qualifier_before(code, start) {
        // `alias.` / `table.` → that table's columns; `schema.` → its tables.
        let table = uses
            .iter()
            .find(|u| {
                u.alias
                    .as_deref()
                    .is_some_and(|a| a.eq_ignore_ascii_case(&qualifier))
            })
            .map(|u| u.table.clone())
            .or_else(|| find_table(&tables, &qualifier));
        if let Some(table) = table {
            c.add_columns(ctx, &table).await;
        } else {
            let dotted = format!("{qualifier}.");
            for t in &tables {
                if let Some(rest) = t.plain.strip_prefix(&dotted) {
                    c.add(quote_ident(rest), CandidateKind::Table, None);
                }
            }
        }
    } else if matches!(
        previous_word(code, opened_quote.unwrap_or(start)).as_deref(),
        Some("FROM" | "JOIN" | "INTO" | "TABLE" | "UPDATE" | "DESCRIBE" | "EXISTS")
    ) {
        // A relation goes here: a table, or a table function such as generate_series.
        c.add_tables(&tables);
        for f in names::table_function_names(ctx) {
            c.add(f, CandidateKind::Function, None);
        }
    } else {
        for u in &uses {
            c.add_columns(ctx, &u.table).await;
        }
        c.add_tables(&tables);
        if !c.prefix.is_empty() {
            for f in names::function_names(ctx) {
                c.add(f, CandidateKind::Function, None);
            }
            let lower = c
                .prefix
                .chars()
                .all(|ch| !ch.is_alphabetic() || ch.is_lowercase());
            for kw in names::sql_keywords() {
                c.add(
                    if lower {
                        kw.to_ascii_lowercase()
                    } else {
                        kw.to_string()
                    },
                    CandidateKind::Keyword,
                    None,
                );
            }
        }
    }
    // A quote the user opened is part of what the candidate replaces.
    let start = opened_quote.unwrap_or(start);
    Completion {
        candidates: c.found,
        start,
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Engine;

    async fn engine() -> Engine {
        let engine = Engine::new();
        engine
            .run_cell(
                "CREATE TABLE sessions (user_id BIGINT, page TEXT, duration DOUBLE); \
                 CREATE TABLE users (user_id BIGINT, name TEXT)",
                &crate::RunOptions::all_rows(),
            )
            .await
            .expect("setup");
        engine
    }

    fn texts(c: &Completion) -> Vec<&str> {
        c.candidates.iter().map(|c| c.text.as_str()).collect()
    }

    #[tokio::test]
    async fn columns_of_the_named_table_come_first() {
        let e = engine().await;
        let code = "SELECT du FROM sessions";
        let c = e.complete(code, 9).await;
        assert_eq!((c.start, c.end), (7, 9));
        assert_eq!(texts(&c)[0], "duration");
        assert_eq!(c.candidates[0].kind, CandidateKind::Column);
        assert_eq!(c.candidates[0].detail.as_deref(), Some("Float64"));
    }

    #[tokio::test]
    async fn tables_after_from() {
        let e = engine().await;
        let c = e.complete("SELECT * FROM se", 16).await;
        assert_eq!(texts(&c), ["sessions", "session"]);
        assert_eq!((c.start, c.end), (14, 16));
    }

    #[tokio::test]
    async fn alias_dot_gives_that_tables_columns_only() {
        let e = engine().await;
        let code = "SELECT u. FROM sessions s JOIN users AS u ON s.user_id = u.user_id";
        let c = e.complete(code, 9).await;
        assert_eq!(texts(&c), ["user_id", "name"]);
        assert_eq!((c.start, c.end), (9, 9));
    }

    #[tokio::test]
    async fn keywords_and_functions_follow_the_case_typed() {
        let e = engine().await;
        let c = e.complete("SEL", 3).await;
        assert!(texts(&c).contains(&"SELECT"));
        assert!(!texts(&c).contains(&"select"));
        let c = e.complete("select appro", 12).await;
        assert!(texts(&c).contains(&"approx_distinct"), "{:?}", texts(&c));
        let c = e.complete("select * fr", 11).await;
        assert!(texts(&c).contains(&"from"), "{:?}", texts(&c));
    }

    #[tokio::test]
    async fn the_word_around_the_cursor_is_replaced_whole() {
        let e = engine().await;
        let code = "SELECT * FROM sesXX";
        let c = e.complete(code, 17).await;
        assert_eq!((c.start, c.end), (14, 19));
    }

    #[tokio::test]
    async fn schema_dot_gives_its_tables() {
        let e = engine().await;
        let c = e.complete("SELECT * FROM information_schema.tab", 36).await;
        assert_eq!(texts(&c), ["tables"]);
        assert_eq!((c.start, c.end), (33, 36));
    }

    #[tokio::test]
    async fn mixed_case_names_are_offered_quoted() {
        let e = engine().await;
        e.run_cell(
            r#"CREATE TABLE "Sales" ("UserId" INT, amount DOUBLE)"#,
            &crate::RunOptions::all_rows(),
        )
        .await
        .expect("create");
        let code = r#"SELECT Us FROM "Sales""#;
        let c = e.complete(code, 9).await;
        assert_eq!(texts(&c)[0], r#""UserId""#, "{:?}", c);
        let c = e.complete("SELECT * FROM Sa", 16).await;
        assert_eq!(texts(&c), [r#""Sales""#]);
        let code = r#"SELECT * FROM "Sa"#;
        let c = e.complete(code, code.len()).await;
        assert_eq!(texts(&c), [r#""Sales""#]);
        assert_eq!(c.start, 14);
    }

    #[tokio::test]
    async fn nothing_inside_strings() {
        let e = engine().await;
        let c = e.complete("SELECT 'se", 10).await;
        assert!(c.candidates.is_empty());
    }

    #[tokio::test]
    async fn unicode_offsets_are_bytes() {
        let e = engine().await;
        let code = "SELECT 'ü', du FROM sessions";
        let cursor = code.find("du").expect("du") + 2;
        let c = e.complete(code, cursor).await;
        assert_eq!(&code[c.start..c.end], "du");
        assert_eq!(texts(&c)[0], "duration");
    }
}
