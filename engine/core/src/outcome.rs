//! What a statement produced: rows to show, or a one-line confirmation for DDL/DML.
//!
//! The kind of confirmation is decided from the logical plan before it runs (the plan says "this creates table t");
//! the row count of INSERT/COPY comes from the single `count` row those plans return.

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::TableReference;
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
pub enum StatementKind {
    Query,
    /// A statement answered by a confirmation.
    Command(String),
    /// A write answered by "<verb> N rows <target>", N from the single `count` row it returns.
    Counted {
        verb: &'static str,
        target: String,
    },
}

impl StatementKind {
    /// `exists` tells whether a table or view exists before the statement runs, so that `IF [NOT] EXISTS`
    /// statements that change nothing say so.
    pub fn of(plan: &LogicalPlan, exists: &dyn Fn(&TableReference) -> bool) -> Self {
        use StatementKind::{Command, Counted};
        let create = |what: &str, name: &TableReference, if_not_exists: bool| {
            if if_not_exists && exists(name) {
                Command(format!(
                    "{} {name} already exists; nothing changed",
                    capitalized(what)
                ))
            } else {
                Command(format!("Created {what} {name}"))
            }
        };
        let drop = |what: &str, name: &TableReference, if_exists: bool| {
            if if_exists && !exists(name) {
                Command(format!(
                    "{} {name} does not exist; nothing dropped",
                    capitalized(what)
                ))
            } else {
                Command(format!("Dropped {what} {name}"))
            }
        };
        match plan {
            LogicalPlan::Ddl(ddl) => match ddl {
                DdlStatement::CreateExternalTable(t) => {
                    create("external table", &t.name, t.if_not_exists)
                }
                DdlStatement::CreateMemoryTable(t) => create("table", &t.name, t.if_not_exists),
                DdlStatement::CreateView(v) => create("view", &v.name, false),
                DdlStatement::CreateCatalogSchema(s) => {
                    Command(format!("Created schema {}", s.schema_name))
                }
                DdlStatement::CreateCatalog(c) => {
                    Command(format!("Created catalog {}", c.catalog_name))
                }
                DdlStatement::DropTable(t) => drop("table", &t.name, t.if_exists),
                DdlStatement::DropView(v) => drop("view", &v.name, v.if_exists),
                DdlStatement::DropCatalogSchema(s) => Command(format!("Dropped schema {}", s.name)),
                DdlStatement::CreateFunction(f) => Command(format!("Created function {}", f.name)),
                DdlStatement::DropFunction(f) => Command(format!("Dropped function {}", f.name)),
                other => Command(format!("{} done", other.name())),
            },
            LogicalPlan::Dml(dml) => {
                let table = &dml.table_name;
                let (verb, target) = match &dml.op {
                    WriteOp::Insert(_) | WriteOp::Ctas => ("Inserted", format!("into {table}")),
                    WriteOp::Delete | WriteOp::Truncate => ("Deleted", format!("from {table}")),
                    WriteOp::Update => ("Updated", format!("in {table}")),
                    // MERGE and operations added after DataFusion 55
                    _ => ("Wrote", format!("to {table}")),
                };
                Counted { verb, target }
            }
            LogicalPlan::Copy(copy) => Counted {
                verb: "Copied",
                target: format!("to '{}'", copy.output_url),
            },
            LogicalPlan::Statement(statement) => match statement {
                PlanStatement::SetVariable(set) => {
                    Command(format!("SET {} = {}", set.variable, set.value))
                }
                PlanStatement::ResetVariable(reset) => Command(format!("RESET {}", reset.variable)),
                PlanStatement::Prepare(p) => Command(format!("Prepared statement {}", p.name)),
                PlanStatement::Deallocate(d) => {
                    Command(format!("Deallocated statement {}", d.name))
                }
                // EXECUTE answers with the prepared query's rows.
                PlanStatement::Execute(_) => StatementKind::Query,
                other => Command(format!("{} done", other.name())),
            },
            _ => StatementKind::Query,
        }
    }

    /// True for statements that change the session (DDL, SET): their failures are planning errors to a user
    /// even where DataFusion raises them while executing ("table already exists").
    pub fn is_command(&self) -> bool {
        matches!(self, StatementKind::Command(_))
    }

    pub fn into_outcome(
        self,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        total_rows: u64,
        elapsed: Duration,
    ) -> Outcome {
        let (message, rows_affected) = match self {
            StatementKind::Query => {
                return Outcome::Rows(QueryResult {
                    schema,
                    batches,
                    total_rows,
                    elapsed,
                })
            }
            StatementKind::Command(message) => (message, None),
            StatementKind::Counted { verb, target } => {
                let n = count_of(&batches);
                (format!("{verb} {} {target}", rows(n)), Some(n))
            }
        };
        Outcome::Done(Confirmation {
            message,
            rows_affected,
            elapsed,
        })
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
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
