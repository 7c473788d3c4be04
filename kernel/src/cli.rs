//! `kestrel sql`: the notebook's engine from a shell, for pipelines. Query results go to stdout as a table, CSV
//! or JSON lines; confirmations of DDL/DML go to stderr so that stdout stays data.

use crate::render;
use anyhow::Context;
use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::json::{writer::LineDelimited, WriterBuilder as JsonWriterBuilder};
use kestrel_engine::{Engine, Outcome, RunOptions};
use std::io::Write;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A boxed text table
    Table,
    /// CSV with a header row
    Csv,
    /// One JSON object per row (JSON lines), NULLs included
    Json,
}

/// Runs `sql` statement by statement; returns an error (after printing what ran) at the first failure.
pub async fn run(sql: &str, format: Format) -> anyhow::Result<()> {
    let engine = Engine::new();
    let statements = engine.parse(sql).map_err(|e| anyhow::anyhow!("{e}"))?;
    let count = statements.len();
    let stdout = std::io::stdout();
    for (i, statement) in statements.into_iter().enumerate() {
        let outcome = engine
            .execute(statement, &RunOptions::all_rows())
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.in_statement(i, count)))?;
        let mut out = stdout.lock();
        match outcome {
            Outcome::Done(done) => eprintln!("{}", done.message),
            Outcome::Rows(result) => match format {
                Format::Table => {
                    let rows = render::cells(&result.batches, render::Fit::All);
                    writeln!(out, "{}", render::text_table(&result.schema, &rows))?;
                    eprintln!(
                        "{} · {}",
                        kestrel_engine::count_rows(result.total_rows),
                        render::format_elapsed(result.elapsed)
                    );
                }
                Format::Csv => {
                    let mut writer = CsvWriterBuilder::new().with_header(true).build(&mut out);
                    for batch in &result.batches {
                        let batch = kestrel_engine::sql::uuids_as_text(batch);
                        writer.write(&batch).context("writing CSV")?;
                    }
                }
                Format::Json => {
                    // NULLs are written out (`"name": null`) so every row has every column.
                    let mut writer = JsonWriterBuilder::new()
                        .with_explicit_nulls(true)
                        .build::<_, LineDelimited>(&mut out);
                    for batch in &result.batches {
                        let batch = kestrel_engine::sql::uuids_as_text(batch);
                        writer.write(&batch).context("writing JSON")?;
                    }
                    writer.finish().context("writing JSON")?;
                }
            },
        }
        out.flush()?;
    }
    Ok(())
}
