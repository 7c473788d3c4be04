//! The PostgreSQL / TimescaleDB / CrateDB SQL that users paste, running as written.
//!
//! - [`types`]: `UUID`, `JSON`/`JSONB`, `TIMESTAMPTZ`, `SERIAL` planned onto Arrow types (with `FLOAT_VECTOR`);
//! - [`uuid`], [`json`], [`casts`], [`arrays`]: `gen_random_uuid()`, checked conversions between text and
//!   UUID/JSON, and PostgreSQL's array text `'{a,b}'`;
//! - [`serial`]: SERIAL columns' counters;
//! - [`macros`]: `CREATE FUNCTION` (SQL macros, table macros, and the PL/pgSQL Kestrel can run);
//! - [`timescale`]: `create_hypertable`, `WITH (timescaledb.continuous)`;
//! - [`names`]: result columns named as DuckDB names them;
//! - [`operators`]: UUID = text anywhere, and `n * INTERVAL '...'`, as PostgreSQL plans them.
//!
//! [`Dialect`] holds the session's state of all of these; [`Dialect::prepare`] is what the engine runs on each
//! parsed statement before planning it.

pub mod arrays;
pub mod casts;
pub mod inserts;
pub mod json;
pub mod macros;
pub mod names;
pub mod operators;
pub mod serial;
pub mod timescale;
pub mod types;
pub mod uuid;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::execution::context::SessionContext;
use datafusion::execution::FunctionRegistry;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectName};
use std::sync::Arc;

/// The dialect's per-session state.
#[derive(Debug, Default, Clone)]
pub struct Dialect {
    pub macros: Arc<macros::Macros>,
    pub hypertables: Arc<timescale::Hypertables>,
    pub serials: Arc<serial::Counters>,
}

/// A statement the dialect answers itself, instead of DataFusion.
pub enum Answer {
    /// A confirmation ("Created function f").
    Done(String),
    /// Rows (create_hypertable's record).
    Rows(RecordBatch),
    /// `SELECT f()` of a procedure: refresh this view.
    Refresh(ObjectName),
}

impl Dialect {
    /// Registers the dialect's functions and sys tables in a session.
    pub fn register(&self, ctx: &SessionContext, sys: &crate::sys::SysTables) {
        for f in uuid::all() {
            ctx.register_udf(f);
        }
        ctx.register_udf(json::check_json());
        ctx.register_udf(serial::udf(self.serials.clone()));
        sys.add(
            "hypertables",
            timescale::SysHypertables(self.hypertables.clone()),
        );
    }

    /// Answers the statements that are the dialect's own (CREATE/DROP FUNCTION, `SELECT create_hypertable(...)`,
    /// `SELECT procedure()`); rewrites the rest for planning (SERIAL columns, function calls, column names).
    pub async fn prepare(
        &self,
        ctx: &SessionContext,
        statement: &mut DfStatement,
    ) -> Result<Option<Answer>> {
        if let DfStatement::Statement(s) = statement {
            match s.as_mut() {
                ast::Statement::CreateFunction(c) => {
                    let name = c.name.to_string().to_lowercase();
                    let builtin = ctx.udf(&name).is_ok()
                        || ctx.udaf(&name).is_ok()
                        || ctx.udwf(&name).is_ok();
                    return Ok(Some(Answer::Done(self.macros.create(c, builtin)?)));
                }
                ast::Statement::DropFunction(d) => {
                    return Ok(Some(Answer::Done(self.macros.drop_functions(d)?)));
                }
                s => {
                    if let Some(view) = self.macros.procedure_call(s) {
                        return Ok(Some(Answer::Refresh(view)));
                    }
                    if let Some(call) = timescale::hypertable_call(s) {
                        let rows =
                            timescale::create_hypertable(ctx, &self.hypertables, call).await?;
                        return Ok(Some(Answer::Rows(rows)));
                    }
                    serial::rewrite_create_table(s, &self.serials);
                    inserts::cast_text_literals(ctx, s).await;
                }
            }
        }
        self.macros.expand(statement)?;
        names::name_columns(statement);
        Ok(None)
    }
}

/// The result-column name of a conversion: that of the value it converts (so `CAST(x AS UUID)` keeps x's name).
pub fn named_like_argument(args: &[datafusion::logical_expr::Expr]) -> String {
    args.first()
        .map(|a| a.schema_name().to_string())
        .unwrap_or_default()
}

/// Runs a function's kernel over its arguments as arrays (scalars expanded to the batch's rows) and answers a
/// scalar when every argument was one, as DataFusion expects of a function folded while planning.
pub fn over_arrays(
    args: &[datafusion::logical_expr::ColumnarValue],
    kernel: impl FnOnce(
        &[datafusion::arrow::array::ArrayRef],
    ) -> Result<datafusion::arrow::array::ArrayRef>,
) -> Result<datafusion::logical_expr::ColumnarValue> {
    use datafusion::logical_expr::ColumnarValue;
    let scalar = args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let out = kernel(&ColumnarValue::values_to_arrays(args)?)?;
    Ok(if scalar {
        ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
    } else {
        ColumnarValue::Array(out)
    })
}

/// The batch with its UUID columns as canonical text, for output that is text (tables, CSV, JSON lines).
pub fn uuids_as_text(batch: &RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| types::is_uuid(f)) {
        return batch.clone();
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match types::is_uuid(f).then(|| uuid::to_text(c.as_ref())) {
            Some(Ok(text)) => {
                fields.push(datafusion::arrow::datatypes::Field::new(
                    f.name(),
                    datafusion::arrow::datatypes::DataType::Utf8,
                    f.is_nullable(),
                ));
                columns.push(text);
            }
            _ => {
                fields.push(f.as_ref().clone());
                columns.push(c.clone());
            }
        }
    }
    let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
    RecordBatch::try_new(schema, columns).unwrap_or_else(|_| batch.clone())
}

/// A column's type as the result table shows it: `uuid` and `json` by name, others as Arrow writes them.
pub fn type_label(field: &datafusion::arrow::datatypes::Field) -> String {
    if types::is_uuid(field) && field.metadata().contains_key(types::EXTENSION_NAME) {
        "uuid".into()
    } else if types::is_json(field) {
        "json".into()
    } else {
        field.data_type().to_string()
    }
}
