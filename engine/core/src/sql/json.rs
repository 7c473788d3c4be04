//! JSON/JSONB columns hold JSON text (so `->`, `->>` and the json_* functions read them as they are). A value is
//! checked when it enters such a column (INSERT, UPDATE) or is cast to JSON: a malformed one is an error naming
//! the column, the row and what the parser expected, and nothing of the statement is kept.

use super::types::json_field;
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use std::sync::Arc;

pub const CHECK_JSON: &str = "__kestrel_json";

/// Where a checked value goes, for the error: `column metadata` or `JSON`.
pub fn check_call(udf: Arc<ScalarUDF>, value: Expr, what: &str) -> Expr {
    Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
        udf,
        vec![
            value,
            Expr::Literal(ScalarValue::Utf8(Some(what.to_string())), None),
        ],
    ))
}

/// The first malformed value of a text column: (row, text, parser message).
pub fn first_invalid(text: &ArrayRef) -> Result<Option<(usize, String, String)>> {
    let text = datafusion::arrow::compute::cast(text, &DataType::Utf8)?;
    for (row, v) in text.as_string::<i32>().iter().enumerate() {
        let Some(v) = v else { continue };
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(v) {
            return Ok(Some((row, v.to_string(), e.to_string())));
        }
    }
    Ok(None)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckJson {
    signature: Signature,
}

impl ScalarUDFImpl for CheckJson {
    fn name(&self) -> &str {
        CHECK_JSON
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
    fn return_field_from_args(&self, _: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(json_field(self.name())))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let what = match args.args.get(1) {
            Some(ColumnarValue::Scalar(ScalarValue::Utf8(Some(w)))) => w.clone(),
            _ => "JSON".to_string(),
        };
        let (array, scalar): (ArrayRef, bool) = match &args.args[0] {
            ColumnarValue::Array(a) => (a.clone(), false),
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
        };
        let array = match array.data_type() {
            DataType::Utf8 => array,
            DataType::Null | DataType::LargeUtf8 | DataType::Utf8View => {
                datafusion::arrow::compute::cast(&array, &DataType::Utf8)?
            }
            other => {
                return exec_err!(
                    "{what}: expected JSON text, got {other}; write the value as text, e.g. '{{\"a\": 1}}'"
                )
            }
        };
        if let Some((row, text, error)) = first_invalid(&array)? {
            let at = if array.len() > 1 {
                format!(" (row {})", row + 1)
            } else {
                String::new()
            };
            let shown: String = text.chars().take(80).collect();
            return exec_err!("invalid JSON for {what}{at}: {error}: {shown}");
        }
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

pub fn check_json() -> ScalarUDF {
    ScalarUDF::new_from_impl(CheckJson {
        signature: Signature::any(2, Volatility::Immutable),
    })
}
