//! BERT encoder on candle, returning every layer's hidden states.
//!
//! Follows candle-transformers' `models/bert.rs` (itself a port of Hugging Face
//! `modeling_bert.py`): same weight names, post-LayerNorm blocks, exact erf-GELU. It is our
//! own copy because pooling operators need *all* hidden layers, which the upstream model
//! does not expose, and because it keeps candle-transformers out of the build.

use super::fused::Dense;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, LayerNormConfig, Linear, VarBuilder};
use serde::Deserialize;

use crate::{Error, Result};

/// `config.json` of a BERT-family model.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size (token vector dimension).
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Feed-forward inner size.
    pub intermediate_size: usize,
    /// Activation (`gelu` = exact erf GELU, `gelu_new`/`gelu_pytorch_tanh` = tanh form, `relu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Position embeddings (the model's hard sequence limit).
    pub max_position_embeddings: usize,
    /// Token type vocabulary.
    #[serde(default = "default_types")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: u32,
    /// `architectures` (e.g. `["HF_ColBERT"]` for Stanford ColBERT checkpoints).
    #[serde(default)]
    pub architectures: Vec<String>,
    /// `model_type` (`bert`, `modernbert`, …): `modernbert` selects the ModernBERT encoder.
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_types() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

pub(crate) fn cerr(e: candle_core::Error) -> Error {
    Error::invalid(format!("model error: {e}"))
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

struct Layer {
    /// Query, key and value projections fused into one matmul, with 1/√head_dim folded
    /// into the query rows.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    out_norm: LayerNorm,
}

/// A loaded BERT encoder.
pub struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    heads: usize,
    act: String,
    /// The configuration it was loaded with.
    pub config: Config,
}

fn ln(size: usize, eps: f64, vb: VarBuilder<'_>) -> candle_core::Result<LayerNorm> {
    layer_norm(size, LayerNormConfig { eps, ..Default::default() }, vb)
}

impl Bert {
    /// Load from a VarBuilder whose root holds `embeddings.*` and `encoder.*` (a `bert.`
    /// prefix, as in Stanford ColBERT checkpoints, is detected).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a weight is missing or mis-shaped.
    pub fn load(vb: VarBuilder<'_>, config: &Config) -> Result<Self> {
        let vb =
            if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let h = config.hidden_size;
        let e = vb.pp("embeddings");
        let embeddings = Embeddings {
            word: embedding(config.vocab_size, h, e.pp("word_embeddings")).map_err(cerr)?,
            position: embedding(config.max_position_embeddings, h, e.pp("position_embeddings"))
                .map_err(cerr)?,
            token_type: embedding(config.type_vocab_size, h, e.pp("token_type_embeddings")).map_err(cerr)?,
            norm: ln(h, config.layer_norm_eps, e.pp("LayerNorm")).map_err(cerr)?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let scale = 1.0 / ((h / config.num_attention_heads.max(1)) as f64).sqrt();
            let layer = (|| -> candle_core::Result<Layer> {
                let (q, k, v) = (
                    linear(h, h, a.pp("self.query"))?,
                    linear(h, h, a.pp("self.key"))?,
                    linear(h, h, a.pp("self.value"))?,
                );
                let bias = |l: &Linear| {
                    l.bias().cloned().map_or_else(|| Tensor::zeros(h, DType::F32, vb.device()), Ok)
                };
                let w = Tensor::cat(&[(q.weight() * scale)?, k.weight().clone(), v.weight().clone()], 0)?;
                let b = Tensor::cat(&[(bias(&q)? * scale)?, bias(&k)?, bias(&v)?], 0)?;
                let dense = |l: Linear| Dense::new(l.weight(), l.bias());
                Ok(Layer {
                    qkv: Dense::new(&w, Some(&b))?,
                    attn_out: dense(linear(h, h, a.pp("output.dense"))?)?,
                    attn_norm: ln(h, config.layer_norm_eps, a.pp("output.LayerNorm"))?,
                    intermediate: dense(linear(h, config.intermediate_size, l.pp("intermediate.dense"))?)?,
                    output: dense(linear(config.intermediate_size, h, l.pp("output.dense"))?)?,
                    out_norm: ln(h, config.layer_norm_eps, l.pp("output.LayerNorm"))?,
                })
            })()
            .map_err(cerr)?;
            layers.push(layer);
        }
        if config.num_attention_heads == 0 || !h.is_multiple_of(config.num_attention_heads) {
            return Err(Error::invalid("hidden_size must be a multiple of num_attention_heads"));
        }
        Ok(Self {
            embeddings,
            layers,
            heads: config.num_attention_heads,
            act: config.hidden_act.clone(),
            config: config.clone(),
        })
    }

    fn activation(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self.act.as_str() {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => x.gelu(),
            "relu" => x.relu(),
            _ => super::fastmath::gelu(x),
        }
    }

    /// Run the encoder. `ids`, `type_ids`, `mask` are `(batch, seq)` u32 tensors (mask 1 =
    /// attend). Returns the embedding output followed by each layer's output, each
    /// `(batch, seq, hidden)` f32.
    ///
    /// # Errors
    /// Model errors (shape mismatches, sequence longer than the position table).
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        self.forward_inner(ids, type_ids, mask).map_err(cerr)
    }

    fn forward_inner(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Vec<Tensor>> {
        let (_, seq) = ids.dims2()?;
        let e = &self.embeddings;
        let pos = Tensor::arange(0u32, seq as u32, ids.device())?.unsqueeze(0)?;
        let x = e
            .word
            .forward(ids)?
            .add(&e.token_type.forward(type_ids)?)?
            .broadcast_add(&e.position.forward(&pos)?)?;
        let mut x = e.norm.forward(&x)?;
        // Key flags (batch × seq) for the masked softmax; none at all when nothing is masked
        // (length-sorted batches often have no padding).
        let keep: Vec<bool> = mask.flatten_all()?.to_vec1::<u32>()?.into_iter().map(|m| m != 0).collect();
        let keep = if keep.iter().all(|&k| k) { None } else { Some(keep) };
        let mut out = vec![x.clone()];
        for l in &self.layers {
            x = self.layer(l, &x, keep.as_ref())?;
            out.push(x.clone());
        }
        Ok(out)
    }

    fn layer(&self, l: &Layer, x: &Tensor, keep: Option<&Vec<bool>>) -> candle_core::Result<Tensor> {
        // q is pre-scaled by 1/√head_dim in the fused projection.
        let ctx = super::fused::attention(&l.qkv.forward(x)?, self.heads, keep.cloned())?;
        let a = l.attn_norm.forward(&l.attn_out.forward_add(&ctx, x)?)?;
        let i = self.activation(&l.intermediate.forward(&a)?)?;
        l.out_norm.forward(&l.output.forward_add(&i, &a)?)
    }
}

/// The CPU device.
pub(crate) fn cpu() -> Device {
    Device::Cpu
}
