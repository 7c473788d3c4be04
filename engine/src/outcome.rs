//! What a statement produced: rows to show, or a one-line confirmation for DDL/DML.
//!
//! The kind of confirmation is decided from the logical plan before it runs (the plan says "this creates table t");
//! the row count of INSERT/COPY comes from the single `count` row those plans return.

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement as PlanStatement, WriteOp};
use std::time::Duration;

/// The result of one statement.
#[derive(Debug)]
pub enum Outcome {
    /// A query's rows (possibly a preview of them).
    Rows(QueryResult),
    /// A statement that changes the session or data: CREATE, DROP, INSERT, COPY, SET, ...
    Done(Confirmation),
}

/// A query result: the first rows kept, the total counted.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    /// The kept rows, at most `RunOptions::preview_rows` of them.
    pub batches: Vec<RecordBatch>,
    /// How many rows the query produced in all.
    pub total_rows: u64,
    pub elapsed: Duration,
}

impl QueryResult {
    /// Rows kept in `batches`.
    pub fn kept_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// True when `batches` holds fewer rows than the query produced.
    pub fn is_truncated(&self) -> bool {
        (self.kept_rows() as u64) < self.total_rows
    }
}

/// The confirmation for DDL/DML: "Created table sessions", "Inserted 3 rows into sessions".
#[derive(Debug, Clone)]
pub struct Confirmation {
    pub message: String,
    /// Rows written, for INSERT, COPY, CTAS.
    pub rows_affected: Option<u64>,
    pub elapsed: Duration,
}

/// What a planned statement is, as far as its answer is concerned.
pub(crate) enum StatementKind {
    Query,
    /// A statement whose output is a confirmation; `counts` when its single output row is a row count.
    Command {
        message: String,
        counts: bool,
    },
}

impl StatementKind {
    pub(crate) fn of(plan: &LogicalPlan) -> Self {
        let command = |message: String| StatementKind::Command {
            message,
            counts: false,
        };
        let counting = |message: String| StatementKind::Command {
            message,
            counts: true,
        };
        match plan {
            LogicalPlan::Ddl(ddl) => match ddl {
                DdlStatement::CreateExternalTable(t) => {
                    command(format!("Created external table {}", t.name))
                }
                DdlStatement::CreateMemoryTable(t) => command(format!("Created table {}", t.name)),
                DdlStatement::CreateView(v) => command(format!("Created view {}", v.name)),
                DdlStatement::CreateCatalogSchema(s) => {
                    command(format!("Created schema {}", s.schema_name))
                }
                DdlStatement::CreateCatalog(c) => {
                    command(format!("Created catalog {}", c.catalog_name))
                }
                DdlStatement::DropTable(t) => command(format!("Dropped table {}", t.name)),
                DdlStatement::DropView(v) => command(format!("Dropped view {}", v.name)),
                DdlStatement::DropCatalogSchema(s) => command(format!("Dropped schema {}", s.name)),
                DdlStatement::CreateFunction(f) => command(format!("Created function {}", f.name)),
                DdlStatement::DropFunction(f) => command(format!("Dropped function {}", f.name)),
                other => command(format!("{} done", other.name())),
            },
            LogicalPlan::Dml(dml) => {
                let table = &dml.table_name;
                counting(match &dml.op {
                    WriteOp::Insert(_) => format!("into {table}"),
                    WriteOp::Delete => format!("from {table}"),
                    WriteOp::Update => format!("in {table}"),
                    WriteOp::Ctas => format!("into {table}"),
                    WriteOp::Truncate => format!("from {table}"),
                    // MERGE and operations added after DataFusion 55
                    _ => format!("into {table}"),
                })
            }
            LogicalPlan::Copy(copy) => counting(format!("to '{}'", copy.output_url)),
            LogicalPlan::Statement(PlanStatement::SetVariable(set)) => {
                command(format!("SET {} = {}", set.variable, set.value))
            }
            LogicalPlan::Statement(PlanStatement::ResetVariable(reset)) => {
                command(format!("RESET {}", reset.variable))
            }
            LogicalPlan::Statement(other) => command(format!("{} done", other.name())),
            _ => StatementKind::Query,
        }
    }

    pub(crate) fn into_outcome(
        self,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        total_rows: u64,
        elapsed: Duration,
    ) -> Outcome {
        match self {
            StatementKind::Query => Outcome::Rows(QueryResult {
                schema,
                batches,
                total_rows,
                elapsed,
            }),
            StatementKind::Command { message, counts } => {
                let rows_affected = counts.then(|| count_of(&batches));
                let message = match rows_affected {
                    Some(n) => format!("{} {} {message}", verb_for(&message), rows(n)),
                    None => message,
                };
                Outcome::Done(Confirmation {
                    message,
                    rows_affected,
                    elapsed,
                })
            }
        }
    }
}

/// The verb for a counted write, from the preposition its plan gave it.
fn verb_for(target: &str) -> &'static str {
    if target.starts_with("to ") {
        "Copied"
    } else if target.starts_with("from ") {
        "Deleted"
    } else if target.starts_with("in ") {
        "Updated"
    } else {
        "Inserted"
    }
}

/// Sum of the `count` column that DML and COPY plans return.
fn count_of(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter(|b| b.num_columns() > 0)
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| a.iter().flatten().sum::<u64>())
        })
        .sum()
}

/// "1 row", "2,000 rows".
pub fn rows(n: u64) -> String {
    format!(
        "{} {}",
        group_thousands(n),
        if n == 1 { "row" } else { "rows" }
    )
}

/// 2000000 → "2,000,000".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(2_000_000), "2,000,000");
        assert_eq!(rows(1), "1 row");
        assert_eq!(rows(12345), "12,345 rows");
    }
}
