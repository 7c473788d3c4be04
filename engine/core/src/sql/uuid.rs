//! UUID values: `gen_random_uuid()` (also `uuid()`, DuckDB's name), and the conversions between text and the
//! 16-byte `arrow.uuid` type that every CAST, INSERT and comparison with text goes through
//! ([`super::casts::DialectCasts`]). Text is read as PostgreSQL reads it (hyphenated, plain hex, braced, any case)
//! and always written in canonical lower-case hyphenated form.

use super::types::{uuid_field, UUID_TYPE};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeBinaryArray, FixedSizeBinaryBuilder, StringArray,
};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use std::sync::Arc;

pub const TO_UUID: &str = "__kestrel_to_uuid";
pub const TRY_UUID: &str = "__kestrel_try_uuid";
pub const UUID_TEXT: &str = "__kestrel_uuid_text";

/// Parses one UUID as PostgreSQL does.
pub fn parse(text: &str) -> Option<[u8; 16]> {
    uuid::Uuid::try_parse(text.trim())
        .ok()
        .map(|u| *u.as_bytes())
}

/// The canonical text of 16 bytes.
pub fn format(bytes: &[u8]) -> String {
    match uuid::Uuid::from_slice(bytes) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => format!("<{} bytes>", bytes.len()),
    }
}

/// A column of UUIDs as canonical text (for display and text export).
pub fn to_text(array: &dyn Array) -> Result<ArrayRef> {
    let Some(bytes) = array.as_fixed_size_binary_opt() else {
        return exec_err!("expected UUIDs, got {}", array.data_type());
    };
    Ok(Arc::new(
        bytes.iter().map(|v| v.map(format)).collect::<StringArray>(),
    ))
}

/// `gen_random_uuid()`: a new random (version 4) UUID per row.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GenRandomUuid {
    signature: Signature,
    aliases: Vec<String>,
}

impl ScalarUDFImpl for GenRandomUuid {
    fn name(&self) -> &str {
        "gen_random_uuid"
    }
    fn aliases(&self) -> &[String] {
        &self.aliases
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(UUID_TYPE)
    }
    fn return_field_from_args(&self, _: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(uuid_field(self.name()).with_nullable(false)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let mut b = FixedSizeBinaryBuilder::with_capacity(args.number_rows, 16);
        for _ in 0..args.number_rows {
            b.append_value(uuid::Uuid::new_v4().as_bytes())?;
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

/// Text to UUID; `strict` makes a malformed value an error (CAST), otherwise NULL (TRY_CAST).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToUuid {
    signature: Signature,
    strict: bool,
}

impl ScalarUDFImpl for ToUuid {
    fn name(&self) -> &str {
        if self.strict {
            TO_UUID
        } else {
            TRY_UUID
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    // named like the value it converts, so a result column keeps its name
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(super::named_like_argument(args))
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(UUID_TYPE)
    }
    fn return_field_from_args(&self, _: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(uuid_field(self.name())))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (array, scalar) = match &args.args[0] {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
        };
        let out: ArrayRef = match array.data_type() {
            DataType::FixedSizeBinary(16) => array,
            DataType::Null => Arc::new(FixedSizeBinaryArray::new_null(16, array.len())),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                let mut b = FixedSizeBinaryBuilder::with_capacity(text.len(), 16);
                for v in text.iter() {
                    match v.map(|s| (s, parse(s))) {
                        None => b.append_null(),
                        Some((_, Some(bytes))) => b.append_value(bytes)?,
                        Some((_, None)) if !self.strict => b.append_null(),
                        Some((s, None)) => {
                            return exec_err!(
                                "invalid input syntax for type uuid: \"{s}\" (expected 32 hex digits, as in \
                                 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11')"
                            )
                        }
                    }
                }
                Arc::new(b.finish())
            }
            other => return exec_err!("cannot cast {other} to UUID; cast text or a UUID"),
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// UUID to its canonical text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UuidText {
    signature: Signature,
}

impl ScalarUDFImpl for UuidText {
    fn name(&self) -> &str {
        UUID_TEXT
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        Ok(super::named_like_argument(args))
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        match &args.args[0] {
            ColumnarValue::Array(a) => Ok(ColumnarValue::Array(to_text(a.as_ref())?)),
            ColumnarValue::Scalar(s) => {
                let out = to_text(s.to_array_of_size(1)?.as_ref())?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
            }
        }
    }
}

pub fn gen_random_uuid() -> ScalarUDF {
    ScalarUDF::new_from_impl(GenRandomUuid {
        signature: Signature::nullary(Volatility::Volatile),
        aliases: vec!["uuid".into(), "uuidv4".into()],
    })
}

pub fn to_uuid(strict: bool) -> ScalarUDF {
    ScalarUDF::new_from_impl(ToUuid {
        signature: Signature::any(1, Volatility::Immutable),
        strict,
    })
}

pub fn uuid_text() -> ScalarUDF {
    ScalarUDF::new_from_impl(UuidText {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

pub fn all() -> Vec<ScalarUDF> {
    vec![
        gen_random_uuid(),
        to_uuid(true),
        to_uuid(false),
        uuid_text(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_postgres_forms_and_writes_canonical_text() {
        let canonical = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for text in [
            canonical,
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            let bytes = parse(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(format(&bytes), canonical);
        }
        assert!(parse("a0eebc99-9c0b").is_none());
        assert!(parse("not a uuid").is_none());
    }
}
