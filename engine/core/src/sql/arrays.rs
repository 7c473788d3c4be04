//! PostgreSQL's text form of an array, `'{a,b,"c d",NULL}'`, read into a list (`'{a,b}'::TEXT[]`, and a text
//! literal inserted into a `TEXT[]`/`INT[]` column). Arrow has no cast from text to a list, so
//! [`super::casts::DialectCasts`] routes such casts here. Elements are read as PostgreSQL reads them: separated by
//! commas, surrounding blanks dropped, double quotes around an element (with `\` escaping the next character), and
//! an unquoted `NULL` (any case) as a missing value. A nested `{{...}}` array is refused: Kestrel's lists are one
//! level deep here.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::sync::Arc;

/// Reads one array literal into its elements (None: NULL), or says what is wrong with it.
pub fn parse(text: &str) -> std::result::Result<Vec<Option<String>>, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or("an array literal starts with \"{\" and ends with \"}\"")?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let mut quoted = false;
        match chars.peek() {
            Some('"') => {
                quoted = true;
                chars.next();
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(c) => item.push(c),
                            None => return Err("unfinished escape (\\) at the end".into()),
                        },
                        Some('"') => break,
                        Some(c) => item.push(c),
                        None => return Err("a quoted element is not closed (\")".into()),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('{') => {
                return Err(
                    "multidimensional arrays are not supported; write one level, {a,b}".into(),
                )
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    match c {
                        ',' => break,
                        '{' | '}' | '"' => {
                            return Err(format!(
                                "unexpected \"{c}\"; quote elements that contain it"
                            ))
                        }
                        '\\' => {
                            chars.next();
                            match chars.next() {
                                Some(e) => item.push(e),
                                None => return Err("unfinished escape (\\) at the end".into()),
                            }
                        }
                        c => {
                            item.push(c);
                            chars.next();
                        }
                    }
                }
                item = item.trim_end().to_string();
                if item.is_empty() {
                    return Err("an empty element; write \"\" for an empty string".into());
                }
            }
        }
        out.push(if !quoted && item.eq_ignore_ascii_case("null") {
            None
        } else {
            Some(item)
        });
        match chars.next() {
            None => return Ok(out),
            Some(',') => continue,
            Some(c) => {
                return Err(format!(
                    "expected \",\" or the end after an element, found \"{c}\""
                ))
            }
        }
    }
}

/// Text in PostgreSQL's array form to a list of `element` values; `strict` makes bad text an error (CAST),
/// otherwise NULL (TRY_CAST).
pub fn text_to_array(element: FieldRef, strict: bool) -> ScalarUDF {
    ScalarUDF::new_from_impl(TextToArray {
        element,
        strict,
        signature: Signature::any(1, Volatility::Immutable),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextToArray {
    element: FieldRef,
    strict: bool,
    signature: Signature,
}

impl ScalarUDFImpl for TextToArray {
    fn name(&self) -> &str {
        "__kestrel_text_to_array"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(self.element.clone()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        super::over_arrays(&args.args, |arrays| match arrays.first() {
            Some(input) => self.parse_column(input),
            None => exec_err!("an array literal cast takes one value"),
        })
    }
}

impl TextToArray {
    /// A column of array texts to lists.
    fn parse_column(&self, input: &ArrayRef) -> Result<ArrayRef> {
        let input = cast(input, &DataType::Utf8)?;
        let texts = input.as_string::<i32>();
        let mut values: Vec<Option<String>> = Vec::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(texts.len());
        for text in texts.iter() {
            let parsed = match text.map(parse) {
                None => None,
                Some(Ok(items)) => Some(items),
                Some(Err(why)) if self.strict => {
                    return exec_err!(
                        "malformed array literal: \"{}\" ({why})",
                        text.unwrap_or_default()
                    )
                }
                Some(Err(_)) => None,
            };
            valid.push(parsed.is_some());
            values.extend(parsed.into_iter().flatten());
            offsets.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
        }
        let strings: ArrayRef = Arc::new(StringArray::from(values));
        let elements = cast(&strings, self.element.data_type()).map_err(|e| {
            datafusion::common::DataFusionError::Execution(format!(
                "array literal elements are not {}: {e}",
                self.element.data_type()
            ))
        })?;
        // a cast that turned text into NULLs (e.g. 'x' as INT) is an error, as in PostgreSQL
        if elements.null_count() != strings.null_count() {
            return exec_err!(
                "array literal elements are not all {} values",
                self.element.data_type()
            );
        }
        let list = ListArray::try_new(
            Arc::new(Field::new(
                self.element.name(),
                self.element.data_type().clone(),
                true,
            )),
            OffsetBuffer::new(offsets.into()),
            elements,
            Some(valid.into()),
        )?;
        Ok(Arc::new(list))
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn s(items: &[Option<&str>]) -> Vec<Option<String>> {
        items.iter().map(|i| i.map(String::from)).collect()
    }

    #[test]
    fn reads_postgres_array_text() {
        assert_eq!(parse("{a,b}"), Ok(s(&[Some("a"), Some("b")])));
        assert_eq!(parse(" { a , b c } "), Ok(s(&[Some("a"), Some("b c")])));
        assert_eq!(parse("{}"), Ok(vec![]));
        assert_eq!(
            parse(r#"{"x, y","say \"hi\"",NULL,"NULL",""}"#),
            Ok(s(&[
                Some("x, y"),
                Some("say \"hi\""),
                None,
                Some("NULL"),
                Some("")
            ]))
        );
        assert_eq!(parse("{1,2,3}"), Ok(s(&[Some("1"), Some("2"), Some("3")])));
    }

    #[test]
    fn names_what_is_wrong() {
        assert!(parse("a,b").unwrap_err().contains("starts with"));
        assert!(parse("{{1,2},{3,4}}")
            .unwrap_err()
            .contains("multidimensional"));
        assert!(parse("{a,,b}").unwrap_err().contains("empty element"));
        assert!(parse(r#"{"a}"#).unwrap_err().contains("not closed"));
        assert!(parse(r#"{"a" b}"#).unwrap_err().contains("expected \",\""));
    }
}
