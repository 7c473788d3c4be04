//! Inspection (Shift-Tab): what a name under the cursor is. A table shows its columns, types and nullability; a
//! column shows its type and table; a function shows its signature and DataFusion's documentation for it.

use crate::complete::{qualifier_before, word_around};
use crate::input::{lex, TokenKind};
use crate::names::{self, find_table, tables_in_statement, FunctionInfo, TableName};
use datafusion::execution::context::SessionContext;
use std::fmt::Write;

/// What is known of a name, as plain text and as Markdown.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub plain: String,
    pub markdown: String,
}

/// The name to inspect: the word at the cursor, else the function whose argument list the cursor is in
/// (`count(|` inspects `count`).
fn target(code: &str, cursor: usize) -> Option<(usize, usize)> {
    let (start, end) = word_around(code, cursor);
    if start < end {
        return Some((start, end));
    }
    // Inside a call: find the innermost unclosed '(' before the cursor and the word before it.
    let mut opens = Vec::new();
    for t in lex(&code[..start]) {
        match t.kind {
            TokenKind::Punct('(') => opens.push(t.start),
            TokenKind::Punct(')') => {
                opens.pop();
            }
            _ => {}
        }
    }
    let open = *opens.last()?;
    let before = code[..open].trim_end();
    let (s, e) = word_around(before, before.len());
    (s < e).then_some((s, e))
}

pub(crate) async fn inspect(ctx: &SessionContext, code: &str, cursor: usize) -> Option<Inspection> {
    let (start, end) = target(code, cursor)?;
    let word = &code[start..end];
    let tables = names::list_tables(ctx);
    let qualified = match qualifier_before(code, start) {
        Some(q) => format!("{q}.{word}"),
        None => word.to_string(),
    };

    if let Some(table) = find_table(&tables, &qualified) {
        return describe_table(ctx, &table).await;
    }
    // A column of a table the statement names (through its alias when qualified).
    let uses = tables_in_statement(code, cursor, &tables);
    let qualifier = qualifier_before(code, start);
    for u in &uses {
        if let Some(q) = &qualifier {
            let named = u
                .alias
                .as_deref()
                .is_some_and(|a| a.eq_ignore_ascii_case(q))
                || u.table.plain.eq_ignore_ascii_case(q);
            if !named {
                continue;
            }
        }
        if let Some(schema) = names::table_schema(ctx, &u.table).await {
            if let Some(field) = schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(word))
            {
                let null = if field.is_nullable() {
                    "nullable"
                } else {
                    "NOT NULL"
                };
                let plain = format!(
                    "column {}.{}: {} ({null})",
                    u.table.typed,
                    field.name(),
                    field.data_type()
                );
                let markdown = format!(
                    "**column** `{}.{}` — `{}` ({null})",
                    u.table.typed,
                    field.name(),
                    field.data_type()
                );
                return Some(Inspection { plain, markdown });
            }
        }
    }
    names::with_function(ctx, word, describe_function)
}

async fn describe_table(ctx: &SessionContext, table: &TableName) -> Option<Inspection> {
    let schema = names::table_schema(ctx, table).await?;
    let kind = names::table_kind(ctx, table)
        .await
        .unwrap_or_else(|| "table".into());
    let name_width = schema
        .fields()
        .iter()
        .map(|f| f.name().chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let types: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().to_string())
        .collect();
    let type_width = types
        .iter()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    let n = schema.fields().len();
    let mut plain = format!(
        "{kind} {} ({n} column{})\n\n",
        table.typed,
        if n == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        plain,
        "  {:name_width$}  {:type_width$}  null",
        "column", "type"
    );
    let mut markdown = format!(
        "**{kind}** `{}`\n\n| column | type | nullable |\n|---|---|---|\n",
        table.typed
    );
    for (field, ty) in schema.fields().iter().zip(&types) {
        let null = if field.is_nullable() { "YES" } else { "NO" };
        let _ = writeln!(
            plain,
            "  {:name_width$}  {ty:type_width$}  {null}",
            field.name()
        );
        let _ = writeln!(markdown, "| {} | `{ty}` | {null} |", field.name());
    }
    Some(Inspection { plain, markdown })
}

fn describe_function(f: FunctionInfo<'_>) -> Inspection {
    let mut plain = format!("{} {}\n", f.kind, f.name);
    let mut markdown = format!("**{}** `{}`\n\n", f.kind, f.name);
    match f.documentation {
        Some(doc) => {
            let _ = write!(
                plain,
                "\n{}\n\n{}\n",
                doc.syntax_example,
                doc.description.trim()
            );
            let _ = write!(
                markdown,
                "```sql\n{}\n```\n\n{}\n",
                doc.syntax_example,
                doc.description.trim()
            );
            if let Some(args) = &doc.arguments {
                plain.push_str("\nArguments:\n");
                markdown.push_str("\n**Arguments**\n\n");
                for (name, desc) in args {
                    let _ = writeln!(plain, "  {name}: {}", desc.trim());
                    let _ = writeln!(markdown, "- `{name}`: {}", desc.trim());
                }
            }
            if let Some(example) = &doc.sql_example {
                let _ = write!(plain, "\nExample:\n{}\n", example.trim_end());
                let _ = write!(
                    markdown,
                    "\n**Example**\n\n```\n{}\n```\n",
                    example.trim_end()
                );
            }
        }
        None => {
            let sigs = f.signature.type_signature.to_string_repr();
            for sig in sigs {
                let _ = writeln!(plain, "{}({sig})", f.name);
                let _ = writeln!(markdown, "- `{}({sig})`", f.name);
            }
        }
    }
    Inspection { plain, markdown }
}

#[cfg(test)]
mod tests {
    use crate::{Engine, RunOptions};

    async fn engine() -> Engine {
        let engine = Engine::new();
        engine
            .run_cell(
                "CREATE TABLE sessions (user_id BIGINT NOT NULL, page TEXT)",
                &RunOptions::all_rows(),
            )
            .await
            .expect("setup");
        engine
    }

    #[tokio::test]
    async fn a_table_shows_columns_types_and_nullability() {
        let e = engine().await;
        let i = e
            .inspect("SELECT * FROM sessions", 17)
            .await
            .expect("found");
        assert!(
            i.plain.starts_with("table sessions (2 columns)"),
            "{}",
            i.plain
        );
        assert!(i.plain.contains("user_id  Int64"), "{}", i.plain);
        assert!(i.plain.contains("NO"), "{}", i.plain);
        assert!(
            i.markdown.contains("| page | `Utf8View` | YES |"),
            "{}",
            i.markdown
        );
    }

    #[tokio::test]
    async fn a_function_shows_its_signature_and_description() {
        let e = engine().await;
        let i = e.inspect("SELECT abs(", 11).await.expect("found");
        assert!(i.plain.starts_with("scalar function abs"), "{}", i.plain);
        assert!(i.plain.contains("abs(numeric_expression)"), "{}", i.plain);
        assert!(
            i.plain.to_lowercase().contains("absolute value"),
            "{}",
            i.plain
        );
    }

    #[tokio::test]
    async fn a_column_shows_its_type() {
        let e = engine().await;
        let i = e
            .inspect("SELECT s.page FROM sessions s", 10)
            .await
            .expect("found");
        assert_eq!(i.plain, "column sessions.page: Utf8View (nullable)");
    }

    #[tokio::test]
    async fn unknown_names_are_not_found() {
        let e = engine().await;
        assert!(e.inspect("SELECT nosuchthing", 10).await.is_none());
    }
}
