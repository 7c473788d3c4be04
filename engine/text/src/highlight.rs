//! `highlight(text, query [, analyzer [, max_chars]])`: the part of a text where a query's terms are densest, with
//! each matched word marked `<em>...</em>` (Elasticsearch's default tags). Words match when the analyzer makes the
//! same term of them (with `english`, "plants" in the text matches "plant" in the query). Over a column of a table
//! with a full-text index, the index's analyzer is used (filled in when the statement is prepared); otherwise the
//! standard analyzer. NULL when nothing matches.

use super::analyzers::AnalyzerDef;
use super::Text;
use datafusion::arrow::array::{Array, ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use std::collections::HashSet;
use std::sync::Arc;

/// Snippet length when none is given.
const DEFAULT_CHARS: usize = 200;

#[derive(Debug)]
pub struct Highlight {
    signature: Signature,
    text: Arc<Text>,
}

impl PartialEq for Highlight {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.text, &other.text)
    }
}
impl Eq for Highlight {}
impl std::hash::Hash for Highlight {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "highlight".hash(state)
    }
}

impl Highlight {
    pub fn udf(text: Arc<Text>) -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::user_defined(Volatility::Immutable),
            text,
        })
    }
}

/// The snippet of `text` around the query's terms; `None` when no word matches.
pub fn snippet(
    analyzer: &AnalyzerDef,
    text: &str,
    terms: &HashSet<String>,
    max_chars: usize,
) -> Result<Option<String>> {
    let mut a = analyzer.build()?;
    let mut stream = a.token_stream(text);
    let mut hits: Vec<(usize, usize, String)> = Vec::new();
    while stream.advance() {
        let t = stream.token();
        if terms.contains(&t.text) {
            hits.push((t.offset_from, t.offset_to, t.text.clone()));
        }
    }
    if hits.is_empty() {
        return Ok(None);
    }
    // the window (in bytes, ~max_chars) holding the most distinct terms, earliest first
    let budget = text
        .char_indices()
        .nth(max_chars)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let (mut from, mut to) = (0, text.len());
    if text.len() > budget {
        let mut best = (0usize, 0usize);
        for (i, h) in hits.iter().enumerate() {
            let distinct: HashSet<&str> = hits[i..]
                .iter()
                .take_while(|o| o.1 <= h.0 + budget)
                .map(|o| o.2.as_str())
                .collect();
            if distinct.len() > best.0 {
                best = (distinct.len(), i);
            }
        }
        let first = hits[best.1].0;
        // some context before the first hit, from a word start
        let mut start = first.saturating_sub(budget / 5);
        while start > 0 && !text.is_char_boundary(start) {
            start -= 1;
        }
        if start > 0 {
            start = text[start..first]
                .find(char::is_whitespace)
                .map(|p| start + p + 1)
                .filter(|&s| s <= first)
                .unwrap_or(first);
        }
        let mut end = (start + budget).min(text.len());
        while end < text.len() && !text.is_char_boundary(end) {
            end += 1;
        }
        // end at a word end
        if end < text.len() {
            if let Some(p) = text[start..end].rfind(char::is_whitespace) {
                if start + p > first {
                    end = start + p;
                }
            }
        }
        from = start;
        to = end;
    }
    let mut out = String::with_capacity(to - from + 32);
    if from > 0 {
        out.push('…');
    }
    let mut at = from;
    for (s, e, _) in hits.iter().filter(|h| h.0 >= from && h.1 <= to) {
        out.push_str(&text[at..*s]);
        out.push_str("<em>");
        out.push_str(&text[*s..*e]);
        out.push_str("</em>");
        at = *e;
    }
    out.push_str(&text[at..to]);
    if to < text.len() {
        out.push('…');
    }
    Ok(Some(out))
}

impl ScalarUDFImpl for Highlight {
    fn name(&self) -> &str {
        "highlight"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types.len() {
            2 | 3 => Ok(vec![DataType::Utf8; arg_types.len()]),
            4 => Ok(vec![
                DataType::Utf8,
                DataType::Utf8,
                DataType::Utf8,
                DataType::Int64,
            ]),
            n => plan_err!(
                "highlight takes (text, query [, analyzer [, max_chars]]), got {n} arguments"
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar_text = |v: &ColumnarValue, what: &str| -> Result<Option<String>> {
            match v {
                ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Utf8)? {
                    ScalarValue::Utf8(s) => Ok(s),
                    _ => Ok(None),
                },
                ColumnarValue::Array(_) => exec_err!("highlight: the {what} must be a constant"),
            }
        };
        let query = scalar_text(&args.args[1], "query")?;
        let analyzer = match args.args.get(2) {
            Some(v) => scalar_text(v, "analyzer")?.unwrap_or_else(|| "standard".into()),
            None => "standard".into(),
        };
        let max_chars = match args.args.get(3) {
            Some(ColumnarValue::Scalar(s)) => match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(Some(n)) if n > 0 => n as usize,
                ScalarValue::Int64(None) => DEFAULT_CHARS,
                other => {
                    return exec_err!(
                        "highlight: max_chars must be a positive integer, got {other}"
                    )
                }
            },
            Some(_) => return exec_err!("highlight: max_chars must be a constant"),
            None => DEFAULT_CHARS,
        };
        let analyzer = self.text.analyzers.get(&analyzer)?;
        let terms: HashSet<String> = match &query {
            Some(q) => super::query::analyze(&analyzer, q)?
                .into_iter()
                .map(|(_, t)| t)
                .collect(),
            None => HashSet::new(),
        };
        let texts = args.args[0].to_array(rows)?;
        let texts = datafusion::arrow::compute::cast(&texts, &DataType::Utf8)?;
        let texts = texts
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .ok_or_else(|| {
                datafusion::common::DataFusionError::Internal("highlight: text is not text".into())
            })?;
        let mut out = StringBuilder::with_capacity(texts.len(), 64 * texts.len());
        for i in 0..texts.len() {
            if texts.is_null(i) || query.is_none() {
                out.append_null();
                continue;
            }
            match snippet(&analyzer, texts.value(i), &terms, max_chars)? {
                Some(s) => out.append_value(s),
                None => out.append_null(),
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(a: &AnalyzerDef, q: &str) -> HashSet<String> {
        super::super::query::analyze(a, q)
            .unwrap()
            .into_iter()
            .map(|(_, t)| t)
            .collect()
    }

    #[test]
    fn marks_stemmed_words_in_the_densest_window() {
        let a = AnalyzerDef::builtin("english").unwrap();
        let text = "Animals eat. ".repeat(20)
            + "Green plants make their food from light. "
            + &"Rocks. ".repeat(30);
        let s = snippet(&a, &text, &terms(&a, "plant food"), 60)
            .unwrap()
            .unwrap();
        assert!(
            s.contains("<em>plants</em> make their <em>food</em>"),
            "{s}"
        );
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(snippet(&a, "nothing here", &terms(&a, "plant"), 60)
            .unwrap()
            .is_none());
        let whole = snippet(&a, "Plants grow", &terms(&a, "plant"), 60)
            .unwrap()
            .unwrap();
        assert_eq!(whole, "<em>Plants</em> grow");
    }
}
