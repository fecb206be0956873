//! ColBERT-style token embeddings (ALGORITHMS.md §1.2–1.5, §5): query markers and `[MASK]`
//! expansion, document markers, the punctuation skiplist, projection heads (Stanford
//! `linear.weight`, PyLate `k_Dense` stacks with bias / activation / residual, GLU blocks,
//! identity for plain encoders) and L2 normalisation.
//!
//! A plain encoder (no ColBERT training, e.g. all-MiniLM-L6-v2) gets none of the markers or
//! expansion it was not trained with: its per-token last hidden states, L2-normalised, are
//! its token vectors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use super::bert::{cerr, cpu};
use super::model::{read_json, read_json_opt, Encoder};
use super::pooling::l2_normalize;
use crate::{Error, Result};

/// Activation of a projection block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// `x`
    Identity,
    /// exact erf GELU (torch default)
    Gelu,
    /// `max(x, 0)`
    Relu,
    /// `tanh(x)`
    Tanh,
    /// `x·σ(x)`
    Silu,
}

impl Act {
    /// From a torch class path (`torch.nn.modules.activation.GELU`) or a short name.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown activation.
    pub fn parse(s: &str) -> Result<Self> {
        let last = s.rsplit('.').next().unwrap_or(s).to_ascii_lowercase();
        Ok(match last.as_str() {
            "identity" | "" | "none" | "linear" => Act::Identity,
            "gelu" => Act::Gelu,
            "relu" => Act::Relu,
            "tanh" => Act::Tanh,
            "silu" | "swish" => Act::Silu,
            _ => return Err(Error::invalid(format!("unsupported activation '{s}'"))),
        })
    }

    fn apply(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
            Act::Relu => x.max(0.0),
            Act::Tanh => x.tanh(),
            Act::Silu => x / (1.0 + (-x).exp()),
        }
    }
}

/// erf with |error| < 1.2e-7 (Numerical Recipes `erfc` Chebyshev fit), in f64.
fn erf(x: f32) -> f32 {
    let z = f64::from(x).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    (if x >= 0.0 { 1.0 - r } else { r - 1.0 }) as f32
}

/// A dense matrix `rows × cols`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Rows (output features).
    pub rows: usize,
    /// Columns (input features).
    pub cols: usize,
    /// Values.
    pub data: Vec<f32>,
}

impl Matrix {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        self.data.chunks_exact(self.cols).map(|w| w.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }
}

/// One block of a projection head.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// `y = act(W x + b)` (+ `x` or `W_r x` when residual).
    Dense {
        /// `linear.weight` `[out, in]`.
        w: Matrix,
        /// `linear.bias` `[out]`.
        b: Option<Vec<f32>>,
        /// Activation.
        act: Act,
        /// Residual: `None` = off; `Some(None)` = identity (in == out); `Some(Some(W_r))`.
        residual: Option<Option<Matrix>>,
    },
    /// `y = W_down(act(W_gate x) ⊙ W_up x)` (+ residual as for `Dense`).
    Glu {
        /// `glu.gate.weight` `[hidden, in]`.
        gate: Matrix,
        /// `glu.up.weight` `[hidden, in]`.
        up: Matrix,
        /// `glu.down.weight` `[out, hidden]`.
        down: Matrix,
        /// Activation (SiLU or GELU).
        act: Act,
        /// Residual as for `Dense`.
        residual: Option<Option<Matrix>>,
    },
}

impl Block {
    fn out_dim(&self) -> usize {
        match self {
            Block::Dense { w, .. } => w.rows,
            Block::Glu { down, .. } => down.rows,
        }
    }

    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let (mut y, residual) = match self {
            Block::Dense { w, b, act, residual } => {
                let mut y = w.apply(x);
                if let Some(b) = b {
                    y.iter_mut().zip(b).for_each(|(v, bi)| *v += bi);
                }
                y.iter_mut().for_each(|v| *v = act.apply(*v));
                (y, residual)
            }
            Block::Glu { gate, up, down, act, residual } => {
                let h: Vec<f32> =
                    gate.apply(x).into_iter().zip(up.apply(x)).map(|(g, u)| act.apply(g) * u).collect();
                (down.apply(&h), residual)
            }
        };
        match residual {
            Some(None) => y.iter_mut().zip(x).for_each(|(v, xi)| *v += xi),
            Some(Some(wr)) => y.iter_mut().zip(wr.apply(x)).for_each(|(v, r)| *v += r),
            None => {}
        }
        y
    }
}

/// A projection head: blocks applied in order (empty = identity).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Head {
    /// The blocks.
    pub blocks: Vec<Block>,
}

impl Head {
    /// Project `n × in` rows to `n × out`.
    #[must_use]
    pub fn apply(&self, x: &[f32], dim_in: usize) -> Vec<f32> {
        if self.blocks.is_empty() {
            return x.to_vec();
        }
        x.chunks_exact(dim_in)
            .flat_map(|row| self.blocks.iter().fold(row.to_vec(), |v, b| b.apply(&v)))
            .collect()
    }

    /// Output dimension for input dimension `dim_in`.
    #[must_use]
    pub fn out_dim(&self, dim_in: usize) -> usize {
        self.blocks.last().map_or(dim_in, Block::out_dim)
    }
}

/// Query/document settings (ColBERT `artifact.metadata` or PyLate
/// `config_sentence_transformers.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ColbertSettings {
    /// Query length after expansion (default 32).
    pub query_maxlen: usize,
    /// Document length limit (CB 220, PyLate 180).
    pub doc_maxlen: usize,
    /// Query marker id inserted at position 1 (`None` for plain encoders).
    pub query_marker: Option<u32>,
    /// Document marker id inserted at position 1.
    pub doc_marker: Option<u32>,
    /// Expansion token (`[MASK]`); `None` disables query expansion.
    pub mask_id: Option<u32>,
    /// Whether expansion tokens are attended to.
    pub attend_to_mask: bool,
    /// Token ids dropped from documents (punctuation, minus the unknown token).
    pub skiplist: Vec<u32>,
}

/// One embedded document.
#[derive(Debug, Clone)]
pub struct DocEmbedding {
    /// Unit token vectors after the head, `n × dim`.
    pub tokens: Vec<f32>,
    /// The encoder output (token ids, last hidden states, the model's pooled vector).
    pub encoded: super::Encoded,
}

/// Token-level embeddings: an encoder, a head and ColBERT settings.
pub struct TokenEncoder {
    encoder: Encoder,
    head: Head,
    settings: ColbertSettings,
}

impl std::fmt::Debug for TokenEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEncoder").field("encoder", &self.encoder).field("dim", &self.dim()).finish()
    }
}

#[derive(Deserialize)]
struct DenseConfig {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    #[serde(default)]
    activation_function: String,
    #[serde(default)]
    use_residual: bool,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    hidden_features: Option<usize>,
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct StModule {
    path: String,
    #[serde(rename = "type")]
    ty: String,
}

fn matrix(t: &HashMap<String, Tensor>, key: &str, rows: usize, cols: usize, file: &Path) -> Result<Matrix> {
    let v =
        t.get(key).ok_or_else(|| Error::invalid(format!("{}: missing weight '{key}'", file.display())))?;
    let dims = v.dims().to_vec();
    if dims != [rows, cols] {
        return Err(Error::invalid(format!(
            "{}: '{key}' has shape {dims:?}, expected [{rows}, {cols}]",
            file.display()
        )));
    }
    let data = v
        .flatten_all()
        .and_then(|x| x.to_dtype(candle_core::DType::F32))
        .and_then(|x| x.to_vec1())
        .map_err(cerr)?;
    Ok(Matrix { rows, cols, data })
}

fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    candle_core::safetensors::load(path, &cpu())
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// Load one `k_Dense` folder (PyLate `Dense`, or our GLU block when `type` is `glu`).
///
/// # Errors
/// Missing or mis-shaped weights, bad config.
pub fn load_block(dir: &Path) -> Result<Block> {
    let cfg_path = dir.join("config.json");
    let cfg: DenseConfig = read_json(&cfg_path)?;
    let file = dir.join("model.safetensors");
    let t = load_tensors(&file)?;
    let act = Act::parse(&cfg.activation_function)?;
    let (i, o) = (cfg.in_features, cfg.out_features);
    let residual = match (cfg.use_residual, i == o) {
        (false, _) => None,
        (true, true) => Some(None),
        (true, false) => Some(Some(matrix(&t, "residual.weight", o, i, &file)?)),
    };
    if cfg.kind.as_deref() == Some("glu") {
        let h = cfg
            .hidden_features
            .ok_or_else(|| Error::invalid(format!("{}: GLU needs hidden_features", cfg_path.display())))?;
        return Ok(Block::Glu {
            gate: matrix(&t, "glu.gate.weight", h, i, &file)?,
            up: matrix(&t, "glu.up.weight", h, i, &file)?,
            down: matrix(&t, "glu.down.weight", o, h, &file)?,
            act,
            residual,
        });
    }
    let w = matrix(&t, "linear.weight", o, i, &file)?;
    let b = if cfg.bias {
        let m = matrix(&t, "linear.bias", 1, o, &file).or_else(|_| {
            let v = t
                .get("linear.bias")
                .ok_or_else(|| Error::invalid(format!("{}: missing weight 'linear.bias'", file.display())))?;
            let data: Vec<f32> = v.to_vec1().map_err(cerr)?;
            if data.len() != o {
                return Err(Error::invalid(format!(
                    "{}: 'linear.bias' has {} values, expected {o}",
                    file.display(),
                    data.len()
                )));
            }
            Ok(Matrix { rows: 1, cols: o, data })
        })?;
        Some(m.data)
    } else {
        None
    };
    Ok(Block::Dense { w, b, act, residual })
}

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

impl TokenEncoder {
    /// A plain encoder: identity head, no markers, no expansion, no skiplist.
    #[must_use]
    pub fn plain(encoder: Encoder) -> Self {
        let max = encoder.max_len();
        let settings = ColbertSettings {
            query_maxlen: max,
            doc_maxlen: max,
            query_marker: None,
            doc_marker: None,
            mask_id: None,
            attend_to_mask: false,
            skiplist: Vec::new(),
        };
        Self { encoder, head: Head::default(), settings }
    }

    /// Load a model folder: Stanford ColBERT (`architectures: ["HF_ColBERT"]` with
    /// `linear.weight`), PyLate (`modules.json` listing `Dense` modules), or a plain
    /// encoder.
    ///
    /// # Errors
    /// Missing or mis-shaped weights and files.
    pub fn load(dir: &Path) -> Result<Self> {
        let encoder = Encoder::load(dir)?;
        let modules: Vec<StModule> = read_json_opt(&dir.join("modules.json"))?.unwrap_or_default();
        let dense: Vec<StModule> = modules.into_iter().filter(|m| m.ty.ends_with("Dense")).collect();
        if !dense.is_empty() {
            let blocks = dense.iter().map(|m| load_block(&dir.join(&m.path))).collect::<Result<Vec<_>>>()?;
            let settings = pylate_settings(dir, &encoder)?;
            return Self::new(encoder, Head { blocks }, settings);
        }
        let stanford = encoder.config().architectures.iter().any(|a| a == "HF_ColBERT");
        if stanford {
            let file = dir.join("model.safetensors");
            let t = load_tensors(&file)?;
            let w = t
                .get("linear.weight")
                .ok_or_else(|| Error::invalid(format!("{}: missing 'linear.weight'", file.display())))?;
            let (o, i) = w.dims2().map_err(cerr)?;
            let w = matrix(&t, "linear.weight", o, i, &file)?;
            let settings = stanford_settings(dir, &encoder)?;
            return Self::new(
                encoder,
                Head { blocks: vec![Block::Dense { w, b: None, act: Act::Identity, residual: None }] },
                settings,
            );
        }
        Ok(Self::plain(encoder))
    }

    /// Assemble from parts (checks that the head fits the encoder).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] when the head's input is not the hidden size.
    pub fn new(encoder: Encoder, head: Head, settings: ColbertSettings) -> Result<Self> {
        if let Some(Block::Dense { w, .. } | Block::Glu { gate: w, .. }) = head.blocks.first() {
            if w.cols != encoder.dim() {
                return Err(Error::DimensionMismatch {
                    what: "projection head input".into(),
                    expected: encoder.dim(),
                    got: w.cols,
                });
            }
        }
        Ok(Self { encoder, head, settings })
    }

    /// Token vector dimension (after the head).
    #[must_use]
    pub fn dim(&self) -> usize {
        self.head.out_dim(self.encoder.dim())
    }

    /// The underlying encoder.
    #[must_use]
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The underlying encoder, mutably (e.g. its `batch_size`).
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.encoder
    }

    /// Query/document settings.
    #[must_use]
    pub fn settings(&self) -> &ColbertSettings {
        &self.settings
    }

    /// The projection head.
    #[must_use]
    pub fn head(&self) -> &Head {
        &self.head
    }

    fn with_marker(mut ids: Vec<u32>, limit: usize, marker: Option<u32>) -> Vec<u32> {
        let limit = if marker.is_some() { limit.saturating_sub(1) } else { limit }.max(2);
        if ids.len() > limit {
            let last = ids[ids.len() - 1];
            ids.truncate(limit - 1);
            ids.push(last);
        }
        if let Some(m) = marker {
            ids.insert(1.min(ids.len()), m);
        }
        ids
    }

    /// Encode queries: `Lq × dim` unit vectors each (exactly `query_maxlen` rows when the
    /// model expands queries with `[MASK]`).
    ///
    /// # Errors
    /// Tokenizer and model errors.
    pub fn encode_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.encode_queries_with(texts, None)
    }

    /// As [`TokenEncoder::encode_queries`] with a query length limit (the collection's
    /// `query_maxlen`), never above the model's.
    ///
    /// # Errors
    /// Tokenizer and model errors.
    pub fn encode_queries_with(&self, texts: &[&str], maxlen: Option<usize>) -> Result<Vec<Vec<f32>>> {
        Ok(self.encode_queries_marked(texts, maxlen)?.into_iter().map(|(q, _)| q).collect())
    }

    /// As [`TokenEncoder::encode_queries_with`], also marking each query row that is a
    /// `[MASK]` expansion token (true) rather than a token of the text or a marker.
    ///
    /// # Errors
    /// Tokenizer and model errors.
    pub fn encode_queries_marked(
        &self,
        texts: &[&str],
        maxlen: Option<usize>,
    ) -> Result<Vec<(Vec<f32>, Vec<bool>)>> {
        let mut s = self.settings.clone();
        if let Some(m) = maxlen {
            s.query_maxlen = s.query_maxlen.min(m);
        }
        let s = &s;
        let mut ids = Vec::with_capacity(texts.len());
        let mut masks = Vec::with_capacity(texts.len());
        let mut real = Vec::with_capacity(texts.len());
        for t in self.encoder.tokenize(texts)? {
            let mut q = Self::with_marker(t, s.query_maxlen, s.query_marker);
            real.push(q.len());
            let mut m = vec![1u32; q.len()];
            if let Some(mask_id) = s.mask_id {
                while q.len() < s.query_maxlen {
                    q.push(mask_id);
                    m.push(u32::from(s.attend_to_mask));
                }
            }
            ids.push(q);
            masks.push(m);
        }
        let enc = self.encoder.encode_ids_masked(&ids, Some(&masks), false)?;
        Ok(enc
            .into_iter()
            .zip(real)
            .map(|(e, n)| {
                let v = self.project(&e.hidden, None, &e.token_ids);
                let rows = e.token_ids.len();
                (v, (0..rows).map(|i| i >= n).collect())
            })
            .collect())
    }

    /// Encode documents: unit token vectors (skiplist tokens dropped), plus the encoder
    /// output they came from (hidden states and the model's own pooled vector).
    ///
    /// # Errors
    /// Tokenizer and model errors.
    pub fn encode_documents(&self, texts: &[&str]) -> Result<Vec<DocEmbedding>> {
        self.encode_documents_with(texts, None)
    }

    /// As [`TokenEncoder::encode_documents`] with a document length limit (the
    /// collection's `doc_maxlen`), never above the model's.
    ///
    /// # Errors
    /// Tokenizer and model errors.
    pub fn encode_documents_with(&self, texts: &[&str], maxlen: Option<usize>) -> Result<Vec<DocEmbedding>> {
        self.encode_documents_full(texts, maxlen, false)
    }

    /// As [`TokenEncoder::encode_documents_with`], keeping every hidden layer in
    /// `encoded.layers` when `all_layers` (for multi-layer poolers).
    ///
    /// # Errors
    /// Tokenizer and model errors.
    pub fn encode_documents_full(
        &self,
        texts: &[&str],
        maxlen: Option<usize>,
        all_layers: bool,
    ) -> Result<Vec<DocEmbedding>> {
        let s = &self.settings;
        let limit = maxlen.map_or(s.doc_maxlen, |m| m.min(s.doc_maxlen));
        let ids: Vec<Vec<u32>> = self
            .encoder
            .tokenize(texts)?
            .into_iter()
            .map(|t| Self::with_marker(t, limit, s.doc_marker))
            .collect();
        let enc = self.encoder.encode_ids(&ids, all_layers)?;
        Ok(enc
            .into_iter()
            .map(|e| DocEmbedding {
                tokens: self.project(&e.hidden, Some(&s.skiplist), &e.token_ids),
                encoded: e,
            })
            .collect())
    }

    fn project(&self, hidden: &[f32], skip: Option<&[u32]>, ids: &[u32]) -> Vec<f32> {
        let d_in = self.encoder.dim();
        let kept: Vec<f32> = hidden
            .chunks_exact(d_in)
            .zip(ids)
            .filter(|(_, id)| skip.is_none_or(|s| !s.contains(id)))
            .flat_map(|(r, _)| r.iter().copied())
            .collect();
        let mut out = self.head.apply(&kept, d_in);
        for row in out.chunks_exact_mut(self.dim()) {
            l2_normalize(row);
        }
        out
    }
}

/// Punctuation token ids of this tokenizer, minus the unknown token (ALGORITHMS.md §1.3.5).
#[must_use]
pub fn punctuation_skiplist(enc: &Encoder) -> Vec<u32> {
    let tok = enc.tokenizer();
    let unk = tok.token_to_id("[UNK]").or_else(|| tok.token_to_id("<unk>"));
    let mut ids: Vec<u32> = PUNCTUATION
        .chars()
        .filter_map(|c| tok.encode(c.to_string(), false).ok().and_then(|e| e.get_ids().first().copied()))
        .filter(|id| Some(*id) != unk)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn token(enc: &Encoder, s: &str) -> Option<u32> {
    enc.tokenizer().token_to_id(s)
}

fn stanford_settings(dir: &Path, enc: &Encoder) -> Result<ColbertSettings> {
    let meta: serde_json::Value = read_json_opt(&dir.join("artifact.metadata"))?.unwrap_or_default();
    let name = |k: &str, d: &str| meta[k].as_str().unwrap_or(d).to_string();
    let num = |k: &str, d: usize| meta[k].as_u64().map_or(d, |v| v as usize);
    Ok(ColbertSettings {
        query_maxlen: num("query_maxlen", 32),
        doc_maxlen: num("doc_maxlen", 220).min(enc.max_len()),
        query_marker: token(enc, &name("query_token_id", "[unused0]")),
        doc_marker: token(enc, &name("doc_token_id", "[unused1]")),
        mask_id: token(enc, "[MASK]"),
        attend_to_mask: meta["attend_to_mask_tokens"].as_bool().unwrap_or(false),
        skiplist: punctuation_skiplist(enc),
    })
}

fn pylate_settings(dir: &Path, enc: &Encoder) -> Result<ColbertSettings> {
    let c: serde_json::Value =
        read_json_opt(&dir.join("config_sentence_transformers.json"))?.unwrap_or_default();
    // PyLate looks the prefix up as written (`"[Q] "`, with its trailing space, in
    // ModernColBERT models); older BERT-based folders hold `[Q]`.
    let prefix = |k: &str, d: &str| {
        let p = c[k].as_str().unwrap_or(d);
        token(enc, p).or_else(|| token(enc, p.trim()))
    };
    let expand = c["do_query_expansion"].as_bool().unwrap_or(true);
    let skiplist = match c["skiplist_words"].as_array() {
        Some(words) => words.iter().filter_map(|w| w.as_str().and_then(|w| token(enc, w))).collect(),
        None => punctuation_skiplist(enc),
    };
    let unk = token(enc, "[UNK]");
    Ok(ColbertSettings {
        query_maxlen: c["query_length"].as_u64().map_or(32, |v| v as usize),
        doc_maxlen: c["document_length"].as_u64().map_or(180, |v| v as usize).min(enc.max_len()),
        query_marker: prefix("query_prefix", "[Q]"),
        doc_marker: prefix("document_prefix", "[D]"),
        mask_id: if expand { token(enc, "[MASK]") } else { None },
        attend_to_mask: c["attend_to_expansion_tokens"].as_bool().unwrap_or(false),
        skiplist: skiplist.into_iter().filter(|id| Some(*id) != unk).collect(),
    })
}
