//! ModernBERT encoder on candle (the backbone of GTE-ModernColBERT, LateOn and other
//! PyLate ModernColBERT models), returning every layer's hidden states.
//!
//! Semantics follow transformers' `modeling_modernbert.py` (4.x and 5.x agree), as written
//! down in `fixtures/modernbert-tiny/README.md`:
//!
//! - embeddings: `LayerNorm(tok_embeddings[ids])`, no position or token-type table;
//! - layer `i`: `x += Wo(Attn(attn_norm(x)))`, `x += mlp.Wo(GeGLU(mlp_norm(x)))`, where layer 0's
//!   `attn_norm` is the identity (no tensor is stored for it);
//! - layer `i` is global iff `i % global_attn_every_n_layers == 0` (5.x: `layer_types`);
//!   global layers use rotary base `global_rope_theta` and full attention, local layers
//!   `local_rope_theta` and a window of `local_attention / 2` keys each side (inclusive);
//! - fused `Wqkv` whose output splits as (3, heads, head_dim); RoPE in the `rotate_half`
//!   convention on q and k; GeGLU `gelu(u[:, :I]) · u[:, I:]` with the exact erf GELU;
//! - `final_norm` after the last layer; LayerNorms with eps `norm_eps` and no bias unless
//!   `norm_bias`; no linear biases unless `attention_bias` / `mlp_bias`.
//!
//! Tensors are read by name from the safetensors file, with or without a `model.` prefix
//! (bare `ModernBertModel` vs `ModernBertForMaskedLM` checkpoints); a missing or mis-shaped
//! tensor is an error naming the file and tensor. The attention runs in the fused CPU kernel
//! (`fused.rs`), which applies RoPE while it copies a head's q and k and scores only the keys
//! inside a local layer's window.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Module, Tensor};
use candle_nn::LayerNorm;
use serde_json::Value;

use super::bert::cerr;
use super::fused::{Dense, Rope};
use crate::{Error, Result};

/// The parts of a ModernBERT `config.json` the forward pass uses (legacy 4.x and 5.x
/// spellings both read).
#[derive(Debug, Clone, PartialEq)]
pub struct ModernConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// GeGLU inner size `I` (`Wi` has `2I` outputs).
    pub intermediate_size: usize,
    /// Longest sequence (rotary tables are built for it).
    pub max_position_embeddings: usize,
    /// LayerNorm epsilon (`norm_eps`, else `layer_norm_eps`, else 1e-5).
    pub norm_eps: f64,
    /// LayerNorms have a bias.
    pub norm_bias: bool,
    /// `Wqkv` / `Wo` have biases.
    pub attention_bias: bool,
    /// `Wi` / `mlp.Wo` have biases.
    pub mlp_bias: bool,
    /// Per layer: `true` = global (full attention).
    pub global: Vec<bool>,
    /// Rotary base of global layers.
    pub global_rope_theta: f64,
    /// Rotary base of local layers.
    pub local_rope_theta: f64,
    /// Keys each side of a query on local layers (`local_attention / 2`).
    pub half_window: usize,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{}: {what}", path.display()))
}

impl ModernConfig {
    /// Read a ModernBERT `config.json` value (`path` names the file in errors).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a missing size, an unsupported activation or an
    /// inconsistent layer layout.
    pub fn from_json(v: &Value, path: &Path) -> Result<Self> {
        let num = |k: &str| -> Result<usize> {
            v[k].as_u64()
                .map(|x| x as usize)
                .ok_or_else(|| bad(path, format!("missing or non-integer '{k}'")))
        };
        let layers = num("num_hidden_layers")?;
        let flag = |k: &str| v[k].as_bool().unwrap_or(false);
        let act = v["hidden_activation"].as_str().unwrap_or("gelu");
        if act != "gelu" {
            return Err(bad(
                path,
                format!("hidden_activation '{act}' is not supported (only the erf 'gelu')"),
            ));
        }
        // Layer kinds: 5.x `layer_types`, else every n-th layer global (4.x).
        let global: Vec<bool> = match v["layer_types"].as_array() {
            Some(kinds) => kinds
                .iter()
                .map(|k| match k.as_str() {
                    Some("full_attention") => Ok(true),
                    Some("sliding_attention") => Ok(false),
                    other => Err(bad(path, format!("unknown layer type {other:?} in 'layer_types'"))),
                })
                .collect::<Result<_>>()?,
            None => {
                let every = v["global_attn_every_n_layers"].as_u64().unwrap_or(1).max(1) as usize;
                (0..layers).map(|i| i % every == 0).collect()
            }
        };
        if global.len() != layers {
            return Err(bad(path, format!("{} layer types for {layers} layers", global.len())));
        }
        let theta = |legacy: &str, kind: &str, default: f64| {
            v[legacy]
                .as_f64()
                .or_else(|| v["rope_parameters"][kind]["rope_theta"].as_f64())
                .or_else(|| v["rope_theta"].as_f64())
                .unwrap_or(default)
        };
        let half_window = match (v["local_attention"].as_u64(), v["sliding_window"].as_u64()) {
            (Some(w), _) => (w / 2) as usize,
            (None, Some(s)) => s as usize,
            (None, None) if global.iter().all(|&g| g) => 0,
            (None, None) => {
                return Err(bad(path, "local layers need 'local_attention' (or 'sliding_window')"))
            }
        };
        let cfg = Self {
            vocab_size: num("vocab_size")?,
            hidden_size: num("hidden_size")?,
            num_hidden_layers: layers,
            num_attention_heads: num("num_attention_heads")?,
            intermediate_size: num("intermediate_size")?,
            max_position_embeddings: num("max_position_embeddings")?,
            norm_eps: v["norm_eps"].as_f64().or_else(|| v["layer_norm_eps"].as_f64()).unwrap_or(1e-5),
            norm_bias: flag("norm_bias"),
            attention_bias: flag("attention_bias"),
            mlp_bias: flag("mlp_bias"),
            global,
            global_rope_theta: theta("global_rope_theta", "full_attention", 160_000.0),
            local_rope_theta: theta("local_rope_theta", "sliding_attention", 10_000.0),
            half_window,
        };
        let heads = cfg.num_attention_heads;
        if heads == 0
            || !cfg.hidden_size.is_multiple_of(heads)
            || !(cfg.hidden_size / heads).is_multiple_of(2)
        {
            return Err(bad(
                path,
                format!("hidden_size {} does not split into {heads} heads of even size", cfg.hidden_size),
            ));
        }
        Ok(cfg)
    }
}

struct Layer {
    /// `None` on layer 0 (identity).
    attn_norm: Option<LayerNorm>,
    /// Fused q/k/v projection, q rows pre-scaled by 1/√head_dim (RoPE is a rotation, so
    /// the scale commutes with it).
    wqkv: Dense,
    wo: Dense,
    mlp_norm: LayerNorm,
    wi: Dense,
    mlp_wo: Dense,
    global: bool,
}

/// A loaded ModernBERT encoder.
pub struct ModernBert {
    tok_embeddings: candle_nn::Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    global_rope: Rope,
    local_rope: Rope,
    /// The configuration it was loaded with.
    pub config: ModernConfig,
}

/// Tensors of one safetensors file, looked up with or without a `model.` prefix.
struct Weights {
    file: PathBuf,
    tensors: HashMap<String, Tensor>,
    prefix: &'static str,
}

impl Weights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let key = format!("{}{name}", self.prefix);
        let t = self.tensors.get(&key).ok_or_else(|| bad(&self.file, format!("missing tensor '{key}'")))?;
        if t.dims() != shape {
            return Err(bad(
                &self.file,
                format!("tensor '{key}' has shape {:?}, expected {shape:?}", t.dims()),
            ));
        }
        t.to_dtype(candle_core::DType::F32).map_err(cerr)
    }

    fn norm(&self, name: &str, h: usize, cfg: &ModernConfig) -> Result<LayerNorm> {
        let w = self.get(&format!("{name}.weight"), &[h])?;
        Ok(if cfg.norm_bias {
            LayerNorm::new(w, self.get(&format!("{name}.bias"), &[h])?, cfg.norm_eps)
        } else {
            LayerNorm::new_no_bias(w, cfg.norm_eps)
        })
    }

    fn dense(
        &self,
        name: &str,
        out: usize,
        inp: usize,
        bias: bool,
        scale_rows: Option<(usize, f64)>,
    ) -> Result<Dense> {
        let mut w = self.get(&format!("{name}.weight"), &[out, inp])?;
        let mut b = if bias { Some(self.get(&format!("{name}.bias"), &[out])?) } else { None };
        if let Some((rows, s)) = scale_rows {
            let scale = |t: &Tensor| -> candle_core::Result<Tensor> {
                let head = (t.narrow(0, 0, rows)? * s)?;
                Tensor::cat(&[head, t.narrow(0, rows, t.dim(0)? - rows)?], 0)
            };
            w = scale(&w).map_err(cerr)?;
            b = b.map(|b| scale(&b)).transpose().map_err(cerr)?;
        }
        Dense::new(&w, b.as_ref()).map_err(cerr)
    }
}

impl ModernBert {
    /// Load from a safetensors file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the file and tensor when one is missing or
    /// mis-shaped; I/O errors.
    pub fn load(file: &Path, config: &ModernConfig) -> Result<Self> {
        if !file.is_file() {
            return Err(bad(file, "ModernBERT weights must be in model.safetensors (file not found)"));
        }
        let tensors = candle_core::safetensors::load(file, &super::bert::cpu()).map_err(|e| bad(file, e))?;
        // A `ModernBertForMaskedLM` save prefixes the backbone with `model.`.
        let prefix = if !tensors.contains_key("embeddings.tok_embeddings.weight")
            && tensors.contains_key("model.embeddings.tok_embeddings.weight")
        {
            "model."
        } else {
            ""
        };
        let w = Weights { file: file.to_path_buf(), tensors, prefix };
        let c = config;
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let hd = h / c.num_attention_heads;
        let tok_embeddings =
            candle_nn::Embedding::new(w.get("embeddings.tok_embeddings.weight", &[c.vocab_size, h])?, h);
        let emb_norm = w.norm("embeddings.norm", h, c)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for (l, &global) in c.global.iter().enumerate() {
            let p = format!("layers.{l}");
            // Layer 0's attention norm is the identity: no tensor (transformers ignores one).
            let attn_norm = if l == 0 { None } else { Some(w.norm(&format!("{p}.attn_norm"), h, c)?) };
            layers.push(Layer {
                attn_norm,
                wqkv: w.dense(&format!("{p}.attn.Wqkv"), 3 * h, h, c.attention_bias, Some((h, scale)))?,
                wo: w.dense(&format!("{p}.attn.Wo"), h, h, c.attention_bias, None)?,
                mlp_norm: w.norm(&format!("{p}.mlp_norm"), h, c)?,
                wi: w.dense(&format!("{p}.mlp.Wi"), 2 * i, h, c.mlp_bias, None)?,
                mlp_wo: w.dense(&format!("{p}.mlp.Wo"), h, i, c.mlp_bias, None)?,
                global,
            });
        }
        let final_norm = w.norm("final_norm", h, c)?;
        Ok(Self {
            tok_embeddings,
            emb_norm,
            layers,
            final_norm,
            global_rope: Rope::new(hd, c.max_position_embeddings, c.global_rope_theta),
            local_rope: Rope::new(hd, c.max_position_embeddings, c.local_rope_theta),
            config: config.clone(),
        })
    }

    /// Run the encoder on `(batch, seq)` u32 `ids` with a `(batch, seq)` mask (1 = attend).
    /// Returns the hidden states as transformers reports them (the embedding output, then
    /// each layer's residual stream, before `final_norm`) and the last hidden state (after
    /// `final_norm`), each `(batch, seq, hidden)` f32.
    ///
    /// # Errors
    /// Model errors (a sequence longer than `max_position_embeddings`).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<(Vec<Tensor>, Tensor)> {
        self.forward_inner(ids, mask).map_err(cerr)
    }

    fn forward_inner(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<(Vec<Tensor>, Tensor)> {
        let (_, seq) = ids.dims2()?;
        if seq > self.config.max_position_embeddings {
            candle_core::bail!(
                "{seq} tokens, but max_position_embeddings is {}",
                self.config.max_position_embeddings
            );
        }
        let mut x = self.emb_norm.forward(&self.tok_embeddings.forward(ids)?)?;
        let keep: Vec<bool> = mask.flatten_all()?.to_vec1::<u32>()?.into_iter().map(|m| m != 0).collect();
        let keep = if keep.iter().all(|&k| k) { None } else { Some(keep) };
        let heads = self.config.num_attention_heads;
        let mut states = vec![x.clone()];
        for l in &self.layers {
            let normed = match &l.attn_norm {
                Some(n) => n.forward(&x)?,
                None => x.clone(),
            };
            let qkv = l.wqkv.forward(&normed)?;
            let (rope, window) = if l.global {
                (&self.global_rope, None)
            } else {
                (&self.local_rope, Some(self.config.half_window))
            };
            let ctx = super::fused::attention_rope(&qkv, heads, keep.clone(), rope, window)?;
            x = l.wo.forward_add(&ctx, &x)?;
            let u = l.wi.forward(&l.mlp_norm.forward(&x)?)?;
            x = l.mlp_wo.forward_add(&super::fastmath::geglu(&u)?, &x)?;
            states.push(x.clone());
        }
        let last = self.final_norm.forward(&x)?;
        Ok((states, last))
    }
}
