//! Results as notebook output: an HTML table (column names with types, NULL distinct from empty text, numbers
//! right-aligned, a footer with the row count and time) and a plain-text table of the same rows.
//!
//! Only the preview rows the engine kept are rendered, and every cell is cut to a maximum width, so output size is
//! bounded by rows × columns × width whatever the result's size.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, DurationFormat, FormatOptions};
use kestrel_engine::{count_rows, group_thousands, Confirmation, EngineError, QueryResult};
use serde_json::{json, Map, Value};
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// Longest cell text shown in HTML; longer values end in "…".
const HTML_CELL_CHARS: usize = 1000;
/// Plain text cuts each line of a cell, and the number of lines (EXPLAIN plans span many).
const PLAIN_LINE_CHARS: usize = 100;
const PLAIN_CELL_LINES: usize = 40;
/// Results wider than this show their first columns only, and say so: output size stays bounded.
const MAX_COLUMNS: usize = 100;

/// A cell's text, or None for NULL.
type Cell = Option<String>;

/// How much of a cell's text to keep.
#[derive(Clone, Copy)]
pub enum Fit {
    All,
    /// At most this many characters.
    Chars(usize),
    /// At most this many characters per line and this many lines.
    Lines(usize, usize),
}

impl Fit {
    fn apply(self, text: String) -> String {
        match self {
            Fit::All => text,
            Fit::Chars(n) => truncate(&text, n),
            Fit::Lines(chars, lines) => {
                let mut kept: Vec<String> = text
                    .lines()
                    .take(lines)
                    .map(|l| truncate(l, chars))
                    .collect();
                if text.lines().nth(lines).is_some() {
                    kept.push("…".into());
                }
                kept.join("\n")
            }
        }
    }
}

/// Formats every kept row, each cell fitted by `fit`.
pub fn cells(batches: &[RecordBatch], fit: Fit) -> Vec<Vec<Cell>> {
    // Durations (window_end - window_start, ts - lag(ts)) read as "1 hours 5 mins 0 secs", not ISO's "PT3900S".
    let options = FormatOptions::default().with_duration_format(DurationFormat::Pretty);
    let mut rows = Vec::new();
    for batch in batches {
        let batch = &kestrel_engine::sql::uuids_as_text(batch);
        let formatters: Vec<Option<ArrayFormatter<'_>>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        // Logical nulls: a NullArray (the type of a bare NULL literal) has no null buffer but is all NULL.
        let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            let cells = nulls
                .iter()
                .zip(&formatters)
                .enumerate()
                .map(|(col, (nulls, f))| {
                    if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                        return None;
                    }
                    let preview = match fit {
                        Fit::All => None,
                        _ => long_list(batch.column(col), row, &options),
                    };
                    let text = preview.unwrap_or_else(|| {
                        f.as_ref().map_or_else(
                            || "<unprintable>".to_string(),
                            |f| f.value(row).to_string(),
                        )
                    });
                    // One line break, "\n": a lone or paired "\r" would break the table's alignment.
                    Some(fit.apply(text.replace("\r\n", "\n").replace('\r', "␍")))
                })
                .collect();
            rows.push(cells);
        }
    }
    rows
}

/// Lists longer than this (embeddings: hundreds of numbers) show their first values and their length.
const LIST_PREVIEW: usize = 6;

/// A long list value as "[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, … 384 values]", formatting only what is shown.
fn long_list(column: &ArrayRef, row: usize, options: &FormatOptions<'_>) -> Option<String> {
    let values = match column.data_type() {
        DataType::FixedSizeList(_, _) => column.as_fixed_size_list().value(row),
        DataType::List(_) => column.as_list::<i32>().value(row),
        DataType::LargeList(_) => column.as_list::<i64>().value(row),
        _ => return None,
    };
    if values.len() <= LIST_PREVIEW + 2 {
        return None;
    }
    let head = values.slice(0, LIST_PREVIEW);
    let formatter = ArrayFormatter::try_new(head.as_ref(), options).ok()?;
    let shown: Vec<String> = (0..LIST_PREVIEW)
        .map(|i| formatter.value(i).to_string())
        .collect();
    Some(format!(
        "[{}, … {} values]",
        shown.join(", "),
        group_thousands(values.len() as u64)
    ))
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "0.4 ms", "12.3 ms", "1.23 s".
pub fn format_elapsed(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// "3 rows", "showing 50 of 2,000,000 rows", and ", first 100 of 250 columns" when `total_columns` exceeds the
/// columns of `result` (the part of a wide result that is displayed).
fn row_summary(result: &QueryResult, total_columns: usize) -> String {
    let mut summary = if result.is_truncated() {
        format!(
            "showing {} of {}",
            group_thousands(result.kept_rows() as u64),
            count_rows(result.total_rows)
        )
    } else {
        count_rows(result.total_rows)
    };
    let shown = result.schema.fields().len();
    if total_columns > shown {
        summary.push_str(&format!(", first {shown} of {total_columns} columns"));
    }
    summary
}

/// The first `MAX_COLUMNS` columns of a wide result, sharing its buffers.
fn first_columns(result: &QueryResult) -> Option<QueryResult> {
    let total = result.schema.fields().len();
    if total <= MAX_COLUMNS {
        return None;
    }
    let indices: Vec<usize> = (0..MAX_COLUMNS).collect();
    let schema = Arc::new(result.schema.project(&indices).ok()?);
    let batches = result
        .batches
        .iter()
        .map(|b| b.project(&indices))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    Some(QueryResult {
        schema,
        batches,
        total_rows: result.total_rows,
        elapsed: result.elapsed,
    })
}

pub fn table_html(result: &QueryResult, total_columns: usize) -> String {
    let schema = &result.schema;
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    let mut html = String::from(
        "<div class=\"kestrel-result\"><table class=\"kestrel-table\" style=\"border-collapse:collapse\"><thead><tr>",
    );
    for (field, &num) in schema.fields().iter().zip(&numeric) {
        let align = if num { "right" } else { "left" };
        let _ = write!(
            html,
            "<th style=\"text-align:{align}\">{}<br><span class=\"kestrel-type\" style=\"font-weight:normal;color:#888;font-size:0.85em\">{}</span></th>",
            escape_html(field.name()),
            escape_html(&kestrel_engine::sql::type_label(field))
        );
    }
    html.push_str("</tr></thead><tbody>");
    for row in cells(&result.batches, Fit::Chars(HTML_CELL_CHARS)) {
        html.push_str("<tr>");
        for (cell, &num) in row.iter().zip(&numeric) {
            let align = if num { "right" } else { "left" };
            match cell {
                None => {
                    let _ = write!(html, "<td style=\"text-align:{align}\"><span class=\"kestrel-null\" style=\"color:#999;font-style:italic\">NULL</span></td>");
                }
                Some(text) if text.contains('\n') => {
                    let _ = write!(
                        html,
                        "<td style=\"text-align:left\"><pre style=\"margin:0\">{}</pre></td>",
                        escape_html(text)
                    );
                }
                Some(text) => {
                    let _ = write!(
                        html,
                        "<td style=\"text-align:{align}\">{}</td>",
                        escape_html(text)
                    );
                }
            }
        }
        html.push_str("</tr>");
    }
    let _ = write!(
        html,
        "</tbody></table><div class=\"kestrel-footer\" style=\"color:#888;font-size:0.85em;margin-top:4px\">{} · {}</div></div>",
        row_summary(result, total_columns),
        format_elapsed(result.elapsed)
    );
    html
}

/// A boxed text table of `rows`; numbers right-aligned, NULL as `NULL`, multi-line values on several lines.
pub fn text_table(schema: &Schema, rows: &[Vec<Cell>]) -> String {
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = schema.fields().iter().map(|f| width(f.name())).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            let cell_width = cell
                .as_deref()
                .map_or(4, |c| c.lines().map(width).max().unwrap_or(0));
            *w = (*w).max(cell_width);
        }
    }
    let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
        s.push_str(&"-".repeat(w + 2));
        s.push('+');
        s
    });
    // One table row: each cell's lines side by side, padded to the tallest cell.
    let row_lines = |cells: Vec<(&str, bool)>| -> String {
        let split: Vec<Vec<&str>> = cells
            .iter()
            .map(|(text, _)| text.split('\n').collect())
            .collect();
        let height = split.iter().map(Vec::len).max().unwrap_or(1);
        let mut out = String::new();
        for i in 0..height {
            out.push('|');
            for ((lines, &(_, right)), w) in split.iter().zip(&cells).zip(&widths) {
                let text = lines.get(i).copied().unwrap_or("");
                let pad = " ".repeat(w.saturating_sub(width(text)));
                let _ = if right {
                    write!(out, " {pad}{text} |")
                } else {
                    write!(out, " {text}{pad} |")
                };
            }
            out.push('\n');
        }
        out
    };
    let header = row_lines(
        schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), false))
            .collect(),
    );
    let mut out = format!("{rule}\n{header}{rule}\n");
    for row in rows {
        let multi_line = row
            .iter()
            .any(|c| c.as_deref().is_some_and(|t| t.contains('\n')));
        let cells = row
            .iter()
            .zip(&numeric)
            .map(|(c, &num)| (c.as_deref().unwrap_or("NULL"), num && !multi_line))
            .collect();
        out.push_str(&row_lines(cells));
    }
    out.push_str(&rule);
    out
}

/// The plain-text table. Its footer has the row count but not the time, so that text output is reproducible
/// (saved notebooks diff cleanly); the HTML footer shows the time.
pub fn table_plain(result: &QueryResult, total_columns: usize) -> String {
    let rows = cells(
        &result.batches,
        Fit::Lines(PLAIN_LINE_CHARS, PLAIN_CELL_LINES),
    );
    format!(
        "{}\n({})",
        text_table(&result.schema, &rows),
        row_summary(result, total_columns)
    )
}

pub fn query_bundle(result: &QueryResult) -> Map<String, Value> {
    let total_columns = result.schema.fields().len();
    let narrowed = first_columns(result);
    let shown = narrowed.as_ref().unwrap_or(result);
    let mut bundle = Map::new();
    bundle.insert(
        "text/plain".into(),
        json!(table_plain(shown, total_columns)),
    );
    bundle.insert("text/html".into(), json!(table_html(shown, total_columns)));
    bundle
}

pub fn confirmation_bundle(done: &Confirmation) -> Map<String, Value> {
    let mut bundle = Map::new();
    bundle.insert("text/plain".into(), json!(done.message));
    bundle.insert(
        "text/html".into(),
        json!(format!(
            "<div class=\"kestrel-ok\">{} <span style=\"color:#888;font-size:0.85em\">· {}</span></div>",
            escape_html(&done.message),
            format_elapsed(done.elapsed)
        )),
    );
    bundle
}

/// The Jupyter error triple for an engine error: (ename, evalue, traceback).
pub fn error_parts(err: &EngineError) -> (String, String, Vec<String>) {
    let ename = err.kind.name().to_string();
    let mut evalue = err.message.clone();
    if let Some((i, n)) = err.statement {
        let _ = write!(evalue, " (in statement {i} of {n})");
    }
    let traceback = vec![format!("\u{1b}[0;31m{ename}\u{1b}[0m: {evalue}")];
    (ename, evalue, traceback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field};
    use std::sync::Arc;

    fn result(total: u64) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 22])),
                Arc::new(StringArray::from(vec![Some("<b>x</b>"), None])),
                Arc::new(Float64Array::from(vec![None, Some(2.5)])),
            ],
        )
        .expect("batch");
        QueryResult {
            schema,
            batches: vec![batch],
            total_rows: total,
            elapsed: Duration::from_micros(1500),
        }
    }

    #[test]
    fn html_has_types_nulls_alignment_escaping_and_footer() {
        let html = table_html(&result(2), 3);
        assert!(html.contains("id<br><span class=\"kestrel-type\""));
        assert!(html.contains(">Int64</span>"));
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
        assert!(!html.contains("<b>x</b>"));
        assert_eq!(html.matches("class=\"kestrel-null\"").count(), 2);
        assert!(html.contains("<td style=\"text-align:right\">22</td>"));
        assert!(html.contains("2 rows · 1.5 ms"));
    }

    #[test]
    fn empty_string_is_not_null() {
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![Some(""), None]))],
        )
        .expect("batch");
        let r = QueryResult {
            schema,
            batches: vec![batch],
            total_rows: 2,
            elapsed: Duration::ZERO,
        };
        let html = table_html(&r, 1);
        assert!(html.contains("<td style=\"text-align:left\"></td>"));
        assert_eq!(html.matches("kestrel-null").count(), 1);
        let plain = table_plain(&r, 1);
        assert!(plain.contains("|      |"), "{plain}");
        assert!(plain.contains("| NULL |"), "{plain}");
    }

    #[test]
    fn plain_table_aligns_numbers_and_says_truncation() {
        let plain = table_plain(&result(2_000_000), 3);
        assert!(plain.contains("|  1 |"), "{plain}");
        assert!(plain.contains("| 22 |"), "{plain}");
        assert!(plain.contains("| NULL     |"), "{plain}");
        assert!(plain.ends_with("(showing 2 of 2,000,000 rows)"), "{plain}");
    }

    #[test]
    fn multi_line_values_span_lines() {
        let schema = Schema::new(vec![
            Field::new("plan_type", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ]);
        let rows = vec![vec![
            Some("logical_plan".to_string()),
            Some("Projection: a\n  TableScan: t".to_string()),
        ]];
        let text = text_table(&schema, &rows);
        assert_eq!(
            text,
            "+--------------+----------------+\n\
             | plan_type    | plan           |\n\
             +--------------+----------------+\n\
             | logical_plan | Projection: a  |\n\
             |              |   TableScan: t |\n\
             +--------------+----------------+"
        );
        assert_eq!(Fit::Lines(3, 1).apply("abcdef\nx".into()), "abc…\n…");
    }

    #[test]
    fn wide_results_show_their_first_columns() {
        let fields: Vec<Field> = (0..250)
            .map(|i| Field::new(format!("f{i}"), DataType::Int64, false))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let columns = (0..250)
            .map(|i| Arc::new(Int64Array::from(vec![i as i64])) as _)
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        let r = QueryResult {
            schema,
            batches: vec![batch],
            total_rows: 1,
            elapsed: Duration::ZERO,
        };
        let bundle = query_bundle(&r);
        let plain = bundle["text/plain"].as_str().unwrap_or_default();
        assert!(
            plain.ends_with("(1 row, first 100 of 250 columns)"),
            "{plain}"
        );
        assert!(plain.contains("f99") && !plain.contains("f100"));
        let html = bundle["text/html"].as_str().unwrap_or_default();
        assert_eq!(html.matches("<th style").count(), 100);
    }

    #[test]
    fn carriage_returns_do_not_break_the_table() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["a\r\nb", "c\rd"]))],
        )
        .expect("batch");
        let rows = cells(&[batch], Fit::All);
        assert_eq!(
            text_table(&schema, &rows),
            "+-----+\n| x   |\n+-----+\n| a   |\n| b   |\n| c␍d |\n+-----+"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("ab", 3), "ab");
        assert_eq!(truncate("üüüü", 2), "üü…");
    }

    #[test]
    fn elapsed_formats() {
        assert_eq!(format_elapsed(Duration::from_micros(400)), "0.4 ms");
        assert_eq!(format_elapsed(Duration::from_millis(1234)), "1.23 s");
    }
}
