//! The PostgreSQL types users paste, planned onto Arrow types:
//!
//! | SQL | Arrow |
//! |---|---|
//! | `UUID` | `FixedSizeBinary(16)` tagged `arrow.uuid` (the canonical extension type; Parquet's UUID) |
//! | `JSON`, `JSONB` | `Utf8` tagged `arrow.json`; values are checked on INSERT and CAST |
//! | `TIMESTAMPTZ`, `TIMESTAMP WITH TIME ZONE` | `Timestamp(ns, "+00:00")`: an instant, shown with its offset |
//! | `SERIAL`, `BIGSERIAL`, `SMALLSERIAL` | `Int32`, `Int64`, `Int16` with a per-table counter as DEFAULT ([`super::serial`]) |
//!
//! `NUMERIC`/`DECIMAL`, `INTERVAL` and `TEXT[]` are DataFusion's own (Decimal128(38, 10), Interval(MonthDayNano),
//! List(Utf8View)); `FLOAT_VECTOR(n)` is [`crate::vector::VectorTypes`], asked first.

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::{self, TimezoneInfo};
use std::collections::HashMap;
use std::sync::Arc;

/// Arrow's key for an extension type's name in a field's metadata.
pub const EXTENSION_NAME: &str = "ARROW:extension:name";
pub const UUID_EXTENSION: &str = "arrow.uuid";
pub const JSON_EXTENSION: &str = "arrow.json";

/// The Arrow type of a UUID value.
pub const UUID_TYPE: DataType = DataType::FixedSizeBinary(16);

/// The time zone TIMESTAMPTZ values carry: instants in UTC, shown with their offset.
pub const TIMESTAMPTZ_ZONE: &str = "+00:00";

fn tagged(name: &str, data_type: DataType, extension: &str) -> Field {
    Field::new(name, data_type, true).with_metadata(HashMap::from([(
        EXTENSION_NAME.to_string(),
        extension.to_string(),
    )]))
}

/// A nullable UUID field.
pub fn uuid_field(name: &str) -> Field {
    tagged(name, UUID_TYPE, UUID_EXTENSION)
}

/// A nullable JSON (text) field.
pub fn json_field(name: &str) -> Field {
    tagged(name, DataType::Utf8, JSON_EXTENSION)
}

fn extension(field: &Field) -> Option<&str> {
    field.metadata().get(EXTENSION_NAME).map(|s| s.as_str())
}

/// Whether a field holds UUIDs: tagged so, or any 16-byte binary column where the tag was lost on the way.
pub fn is_uuid(field: &Field) -> bool {
    field.data_type() == &UUID_TYPE && extension(field).is_none_or(|e| e == UUID_EXTENSION)
}

/// Whether a field is a JSON/JSONB column.
pub fn is_json(field: &Field) -> bool {
    matches!(
        field.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) && extension(field) == Some(JSON_EXTENSION)
}

/// Which SERIAL flavour a type is, as the integer type it stands for.
pub fn serial_type(sql_type: &ast::DataType) -> Option<DataType> {
    let ast::DataType::Custom(name, modifiers) = sql_type else {
        return None;
    };
    if !modifiers.is_empty() {
        return None;
    }
    let name = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    match name.as_str() {
        "serial" | "serial4" => Some(DataType::Int32),
        "bigserial" | "serial8" => Some(DataType::Int64),
        "smallserial" | "serial2" => Some(DataType::Int16),
        _ => None,
    }
}

/// Plans UUID, JSON/JSONB, TIMESTAMPTZ and SERIAL; FLOAT_VECTOR is asked first.
#[derive(Debug, Default)]
pub struct Types {
    vectors: crate::vector::VectorTypes,
}

impl TypePlanner for Types {
    fn plan_type_field(&self, sql_type: &ast::DataType) -> Result<Option<FieldRef>> {
        if let Some(field) = self.vectors.plan_type_field(sql_type)? {
            return Ok(Some(field));
        }
        let field = match sql_type {
            ast::DataType::Uuid => uuid_field(""),
            ast::DataType::JSON | ast::DataType::JSONB => json_field(""),
            ast::DataType::Timestamp(precision, TimezoneInfo::Tz | TimezoneInfo::WithTimeZone) => {
                let unit = match precision {
                    Some(0) => TimeUnit::Second,
                    Some(1..=3) => TimeUnit::Millisecond,
                    Some(4..=6) => TimeUnit::Microsecond,
                    None | Some(7..=9) => TimeUnit::Nanosecond,
                    Some(p) => return plan_err!("TIMESTAMPTZ precision must be 0 to 9, got {p}"),
                };
                Field::new(
                    "",
                    DataType::Timestamp(unit, Some(TIMESTAMPTZ_ZONE.into())),
                    true,
                )
            }
            other => match serial_type(other) {
                Some(t) => Field::new("", t, true),
                None => return Ok(None),
            },
        };
        Ok(Some(Arc::new(field)))
    }
}
