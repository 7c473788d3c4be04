//! `INSERT INTO t VALUES ('a0ee...', '{a,b}', ...)` into a UUID or a list (`TEXT[]`) column. DataFusion types a
//! VALUES list by the target table's columns and refuses, while planning, a text literal for a 16-byte binary column (Arrow has no such
//! cast, nor one from text to a list). So text literals bound for such columns are written as `CAST('...' AS UUID)`
//! (or `AS TEXT[]`) on the parsed statement, which [`super::casts::DialectCasts`] then turns into the checked parse.

use super::types::is_uuid;
use datafusion::arrow::datatypes::DataType;
use datafusion::execution::context::SessionContext;
use datafusion::sql::sqlparser::ast::{self, CastKind, Expr, SetExpr, TableObject, Value};

pub async fn cast_text_literals(ctx: &SessionContext, statement: &mut ast::Statement) {
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
    // the type each VALUES position's text literal is cast to, if its column needs one
    let field_type = |f: &datafusion::arrow::datatypes::Field| -> Option<ast::DataType> {
        if is_uuid(f) {
            return Some(ast::DataType::Uuid);
        }
        let DataType::List(element) = f.data_type() else {
            return None;
        };
        let element = match element.data_type() {
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => ast::DataType::Text,
            DataType::Int32 => ast::DataType::Int(None),
            DataType::Int64 => ast::DataType::BigInt(None),
            DataType::Float32 => ast::DataType::Real,
            DataType::Float64 => ast::DataType::Double(ast::ExactNumberInfo::None),
            DataType::Boolean => ast::DataType::Boolean,
            _ => return None,
        };
        Some(ast::DataType::Array(ast::ArrayElemTypeDef::SquareBracket(
            Box::new(element),
            None,
        )))
    };
    let targets: Vec<Option<ast::DataType>> = if insert.columns.is_empty() {
        schema.fields().iter().map(|f| field_type(f)).collect()
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
                    .and_then(|f| field_type(f))
            })
            .collect()
    };
    if targets.iter().all(Option::is_none) {
        return;
    }
    for row in &mut values.rows {
        for (value, target) in row.content.iter_mut().zip(&targets) {
            let text = matches!(value, Expr::Value(v) if matches!(
                v.value,
                Value::SingleQuotedString(_) | Value::DollarQuotedString(_)
            ));
            if let (Some(data_type), true) = (target, text) {
                let inner = std::mem::replace(value, Expr::value(Value::Null));
                *value = Expr::Cast {
                    kind: CastKind::Cast,
                    expr: Box::new(inner),
                    data_type: data_type.clone(),
                    array: false,
                    format: None,
                };
            }
        }
    }
}
