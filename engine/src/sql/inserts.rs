//! `INSERT INTO t VALUES ('a0ee...', ...)` into a UUID column. DataFusion types a VALUES list by the target
//! table's columns and refuses, while planning, a text literal for a 16-byte binary column (Arrow has no such
//! cast). So text literals bound for UUID columns are written as `CAST('...' AS UUID)` on the parsed statement,
//! which [`super::casts::DialectCasts`] then turns into the checked UUID parse.

use super::types::is_uuid;
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{self, CastKind, Expr, SetExpr, TableObject, Value};

pub async fn cast_uuid_literals(ctx: &SessionContext, statement: &mut ast::Statement) {
    let ast::Statement::Insert(insert) = statement else {
        return;
    };
    let TableObject::TableName(name) = &insert.table else {
        return;
    };
    let Some(source) = insert.source.as_mut() else {
        return;
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return;
    };
    let Ok(reference) = crate::names::resolve(ctx, name) else {
        return;
    };
    let Ok(table) = ctx.table_provider(reference).await else {
        return;
    };
    let schema = table.schema();
    // the column each VALUES position goes to
    let targets: Vec<bool> = if insert.columns.is_empty() {
        schema.fields().iter().map(|f| is_uuid(f)).collect()
    } else {
        insert
            .columns
            .iter()
            .map(|c| {
                schema
                    .fields()
                    .iter()
                    .find(|f| {
                        f.name() == &c.to_string() || f.name().eq_ignore_ascii_case(&c.to_string())
                    })
                    .is_some_and(|f| is_uuid(f))
            })
            .collect()
    };
    if !targets.iter().any(|&t| t) {
        return;
    }
    for row in &mut values.rows {
        for (value, &uuid) in row.content.iter_mut().zip(&targets) {
            let text = matches!(value, Expr::Value(v) if matches!(
                v.value,
                Value::SingleQuotedString(_) | Value::DollarQuotedString(_)
            ));
            if uuid && text {
                let inner = std::mem::replace(value, Expr::value(Value::Null));
                *value = Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(inner),
                    data_type: ast::DataType::Uuid,
                    array: false,
                    format: None,
                };
            }
        }
    }
}
