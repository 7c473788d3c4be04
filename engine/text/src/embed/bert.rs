//! A BERT encoder (the architecture of all-MiniLM-L6-v2) on candle's CPU tensors: token, position and type
//! embeddings, then `layers` blocks of self-attention and a GELU feed-forward, each closed by a residual
//! LayerNorm. Only inference; weights are read from a `model.safetensors` with Hugging Face's tensor names.

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};

/// The hyper-parameters read from `config.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

fn linear(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Linear> {
    let weight = vb.get((outputs, inputs), "weight")?;
    let bias = vb.get(outputs, "bias")?;
    Ok(Linear::new(weight, Some(bias)))
}

fn layer_norm(vb: VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(size, "weight")?,
        vb.get(size, "bias")?,
        eps,
    ))
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

pub struct Bert {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    max_positions: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Self> {
        if c.hidden_act != "gelu" {
            candle_core::bail!("unsupported activation {} (only gelu)", c.hidden_act);
        }
        if c.num_attention_heads == 0 || c.hidden_size % c.num_attention_heads != 0 {
            candle_core::bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let emb = |name: &str, rows: usize| -> Result<Embedding> {
            Ok(Embedding::new(e.pp(name).get((rows, h), "weight")?, h))
        };
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            layers.push(Layer {
                query: linear(a.pp("self.query"), h, h)?,
                key: linear(a.pp("self.key"), h, h)?,
                value: linear(a.pp("self.value"), h, h)?,
                attention_out: linear(a.pp("output.dense"), h, h)?,
                attention_norm: layer_norm(a.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
                intermediate: linear(l.pp("intermediate.dense"), h, c.intermediate_size)?,
                output: linear(l.pp("output.dense"), c.intermediate_size, h)?,
                output_norm: layer_norm(l.pp("output.LayerNorm"), h, c.layer_norm_eps)?,
            });
        }
        Ok(Bert {
            words: emb("word_embeddings", c.vocab_size)?,
            positions: emb("position_embeddings", c.max_position_embeddings)?,
            types: emb("token_type_embeddings", c.type_vocab_size)?,
            norm: layer_norm(e.pp("LayerNorm"), h, c.layer_norm_eps)?,
            layers,
            heads: c.num_attention_heads,
            head_size: h / c.num_attention_heads,
            max_positions: c.max_position_embeddings,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// The last hidden states (batch, tokens, hidden) of `ids` (batch, tokens; u32) with `mask` (1 = token,
    /// 0 = padding; f32, same shape).
    pub fn forward(&self, ids: &Tensor, types: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, tokens) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, tokens as u32, device)?.unsqueeze(0)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&positions)?)?
            .add(&self.types.forward(types)?)?;
        let mut x = self.norm.forward(&x)?;
        // padding gets a large negative score, so softmax gives it no weight: (batch, 1, 1, tokens)
        let bias = mask
            .affine(1.0, -1.0)?
            .affine(f32::MAX as f64 * 0.5, 0.0)?
            .reshape((batch, 1, 1, tokens))?;
        let scale = 1.0 / (self.head_size as f64).sqrt();
        for l in &self.layers {
            let split = |t: Tensor| -> Result<Tensor> {
                t.reshape((batch, tokens, self.heads, self.head_size))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = split(l.query.forward(&x)?)?;
            let k = split(l.key.forward(&x)?)?;
            let v = split(l.value.forward(&x)?)?;
            let scores = q
                .matmul(&k.t()?.contiguous()?)?
                .affine(scale, 0.0)?
                .broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((
                batch,
                tokens,
                self.heads * self.head_size,
            ))?;
            let attended = l
                .attention_norm
                .forward(&l.attention_out.forward(&context)?.add(&x)?)?;
            let inner = l.intermediate.forward(&attended)?.gelu_erf()?;
            x = l
                .output_norm
                .forward(&l.output.forward(&inner)?.add(&attended)?)?;
        }
        Ok(x)
    }
}

/// Mean of the hidden states over the real tokens, then L2-normalised (sentence-transformers' Pooling +
/// Normalize): (batch, hidden).
pub fn mean_pool_normalized(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask3 = mask.unsqueeze(D::Minus1)?.to_dtype(DType::F32)?;
    let summed = hidden.broadcast_mul(&mask3)?.sum(1)?;
    let counts = mask3.sum(1)?.clamp(1e-9f32, f32::MAX)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?;
    mean.broadcast_div(&norm)
}

/// The CPU device candle computes on.
pub fn cpu() -> Device {
    Device::Cpu
}
