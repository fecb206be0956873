//! Loading a model folder (Hugging Face / sentence-transformers layout) and encoding text:
//! tokenisation, batch-longest padding, the encoder forward pass, pooling, normalisation.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use super::bert::{cerr, cpu, Bert, Config};
use super::modernbert::{ModernBert, ModernConfig};
use super::pooling::{l2_normalize, Pooling};
use crate::error::IoContext;
use crate::{Error, Result};

/// One encoded text.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids fed to the encoder (with special tokens, after truncation).
    pub token_ids: Vec<u32>,
    /// Last-layer hidden states, `n × dim` row-major.
    pub hidden: Vec<f32>,
    /// Every layer (embedding output first), when requested; each `n × dim`.
    pub layers: Vec<Vec<f32>>,
    /// The model's own sentence embedding (its pooling, normalised if the model says so).
    pub pooled: Vec<f32>,
}

#[derive(Deserialize)]
struct StConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize, Default)]
struct StPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct StModule {
    #[serde(rename = "type")]
    ty: String,
}

/// The transformer under an [`Encoder`], chosen by `config.json`'s `model_type`.
enum Backbone {
    Bert(Bert),
    ModernBert(ModernBert),
}

impl Backbone {
    /// Hidden states per layer (embedding output first) and the last hidden state.
    fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<(Vec<Tensor>, Tensor)> {
        match self {
            Backbone::Bert(b) => {
                let types = ids.zeros_like().map_err(cerr)?;
                let layers = b.forward(ids, &types, mask)?;
                let last = layers.last().cloned().ok_or_else(|| Error::invalid("model has no layers"))?;
                Ok((layers, last))
            }
            Backbone::ModernBert(m) => m.forward(ids, mask),
        }
    }
}

/// A BERT-family or ModernBERT encoder with its tokenizer and sentence-transformers
/// settings.
pub struct Encoder {
    backbone: Backbone,
    config: Config,
    tokenizer: Tokenizer,
    max_len: usize,
    pooling: Pooling,
    normalize: bool,
    pad_id: u32,
    name: String,
    weights_hash: String,
    dir: PathBuf,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("name", &self.name)
            .field("dim", &self.dim())
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// Parse a JSON file; errors name the file.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
}

/// Parse a JSON file when it exists.
pub(crate) fn read_json_opt<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Find a model by path, or by name in the model cache (`$MAXSIMDB_MODELS`, else
/// `~/.cache/maxsimdb/models`).
///
/// # Errors
/// [`Error::NotFound`] with the places searched and how to fetch the model.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf> {
    let p = PathBuf::from(name_or_path);
    if p.join("config.json").is_file() {
        return Ok(p);
    }
    let cache = model_cache_dir();
    let short = name_or_path.rsplit('/').next().unwrap_or(name_or_path);
    for c in [cache.join(name_or_path), cache.join(short)] {
        if c.join("config.json").is_file() {
            return Ok(c);
        }
    }
    Err(Error::NotFound {
        kind: "model",
        name: format!(
            "{name_or_path} (looked for config.json in {} and {}; fetch all-MiniLM-L6-v2 with scripts/get-model.sh)",
            p.display(),
            cache.join(short).display()
        ),
    })
}

/// The model cache directory.
#[must_use]
pub fn model_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MAXSIMDB_MODELS") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache/maxsimdb/models")
}

/// xxh3-128 of the weight file, as hex: the model identity recorded in the catalog.
fn hash_file(path: &Path) -> Result<String> {
    use std::io::Read;
    // Streamed, not mapped: a user's model file is no published segment, so the mmap
    // write-once argument does not hold for it.
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:032x}", h.digest128()))
}

impl Encoder {
    /// Load the model folder `dir`: `config.json`, `tokenizer.json`, `model.safetensors`
    /// (or `pytorch_model.bin`), and when present `modules.json`, `1_Pooling/config.json`,
    /// `sentence_bert_config.json`.
    ///
    /// # Errors
    /// [`Error::Io`] for missing files, [`Error::InvalidArgument`] for malformed ones.
    pub fn load(dir: &Path) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let raw: serde_json::Value = read_json(&cfg_path)?;
        let config: Config = serde_json::from_value(raw.clone())
            .map_err(|e| Error::invalid(format!("{}: {e}", cfg_path.display())))?;
        let st = dir.join("model.safetensors");
        let (backbone, weights) = if config.model_type.as_deref() == Some("modernbert") {
            let mc = ModernConfig::from_json(&raw, &cfg_path)?;
            (Backbone::ModernBert(ModernBert::load(&st, &mc)?), st)
        } else if st.is_file() {
            (Backbone::Bert(Bert::load(load_safetensors(&st)?, &config)?), st)
        } else {
            let pth = dir.join("pytorch_model.bin");
            let vb = VarBuilder::from_pth(&pth, DType::F32, &cpu()).map_err(cerr)?;
            (Backbone::Bert(Bert::load(vb, &config)?), pth)
        };
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::invalid(format!("{}: {e}", tok_path.display())))?;
        let st_max =
            read_json_opt::<StConfig>(&dir.join("sentence_bert_config.json"))?.and_then(|c| c.max_seq_length);
        // PyLate ignores `max_seq_length` (it saves `document_length - 1` there) and
        // truncates at its query / document lengths: the tokenizer must allow the longer.
        let pylate: Option<serde_json::Value> =
            read_json_opt(&dir.join("config_sentence_transformers.json"))?;
        let pylate_len = pylate
            .as_ref()
            .map(|c| {
                c["document_length"].as_u64().unwrap_or(0).max(c["query_length"].as_u64().unwrap_or(0))
                    as usize
            })
            .filter(|&n| n > 0);
        let max_len = match (st_max, pylate_len) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(config.max_position_embeddings),
        }
        .min(config.max_position_embeddings);
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::invalid(format!("tokenizer truncation: {e}")))?;
        let (pooling, normalize) = st_head(dir)?;
        let name = dir.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        Ok(Self {
            pad_id: config.pad_token_id,
            backbone,
            config,
            tokenizer,
            max_len,
            pooling,
            normalize,
            name,
            weights_hash: hash_file(&weights)?,
            dir: dir.to_path_buf(),
            batch_size: 8,
        })
    }

    /// Model name (its folder name).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder it was loaded from.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// xxh3-128 hex digest of the weight file.
    #[must_use]
    pub fn weights_hash(&self) -> &str {
        &self.weights_hash
    }

    /// The model's `config.json`.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Hidden size.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// Longest input in tokens (special tokens included).
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The model's own pooling (from `1_Pooling/config.json`; mean when absent).
    #[must_use]
    pub fn pooling(&self) -> &Pooling {
        &self.pooling
    }

    /// The tokenizer (for ColBERT marker handling).
    #[must_use]
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenise `texts` (special tokens added, truncated to [`Encoder::max_len`]).
    ///
    /// # Errors
    /// Tokenizer errors.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::invalid(format!("tokenizer: {e}")))?;
        Ok(enc.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Encode texts: hidden states and the model's sentence embedding.
    ///
    /// # Errors
    /// Tokenizer or model errors.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        let ids = self.tokenize(texts)?;
        self.encode_ids(&ids, false)
    }

    /// Encode pre-tokenised sequences (each at most [`Encoder::max_len`] ids) in batches
    /// of similar length, padding each batch to its longest sequence. `all_layers` keeps
    /// every layer's hidden states.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or over-long sequence; model errors.
    pub fn encode_ids(&self, ids: &[Vec<u32>], all_layers: bool) -> Result<Vec<Encoded>> {
        self.encode_ids_masked(ids, None, all_layers)
    }

    /// As [`Encoder::encode_ids`] with explicit attention masks (1 = attend), e.g. ColBERT
    /// queries whose `[MASK]` expansion tokens get outputs but are not attended to.
    ///
    /// # Errors
    /// As [`Encoder::encode_ids`], plus a mask whose length differs from its sequence.
    pub fn encode_ids_masked(
        &self,
        ids: &[Vec<u32>],
        masks: Option<&[Vec<u32>]>,
        all_layers: bool,
    ) -> Result<Vec<Encoded>> {
        if let Some(m) = masks {
            if m.len() != ids.len() || m.iter().zip(ids).any(|(a, b)| a.len() != b.len()) {
                return Err(Error::invalid("attention masks must match the sequences"));
            }
        }
        if let Some(bad) = ids.iter().find(|s| s.is_empty() || s.len() > self.max_len) {
            return Err(Error::invalid(format!(
                "sequence of {} tokens (allowed 1..={})",
                bad.len(),
                self.max_len
            )));
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        // Batches run concurrently: candle parallelises large matmuls but runs the many
        // small per-head attention products one at a time, leaving cores idle.
        use rayon::prelude::*;
        let chunks: Vec<&[usize]> = order.chunks(self.batch_size.max(1)).collect();
        let results: Vec<Result<Vec<Encoded>>> = chunks
            .par_iter()
            .map(|chunk| {
                let batch: Vec<&Vec<u32>> = chunk.iter().map(|&i| &ids[i]).collect();
                let bm: Option<Vec<&Vec<u32>>> = masks.map(|m| chunk.iter().map(|&i| &m[i]).collect());
                self.forward_batch(&batch, bm.as_deref(), all_layers)
            })
            .collect();
        let mut out: Vec<Option<Encoded>> = vec![None; ids.len()];
        for (chunk, res) in chunks.iter().zip(results) {
            for (&i, e) in chunk.iter().zip(res?) {
                out[i] = Some(e);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn forward_batch(
        &self,
        batch: &[&Vec<u32>],
        masks: Option<&[&Vec<u32>]>,
        all_layers: bool,
    ) -> Result<Vec<Encoded>> {
        let longest = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut flat = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for (i, s) in batch.iter().enumerate() {
            flat.extend(s.iter().copied().chain(std::iter::repeat_n(self.pad_id, longest - s.len())));
            match masks {
                Some(m) => mask.extend(m[i].iter().copied().chain(std::iter::repeat_n(0, longest - s.len()))),
                None => mask.extend((0..longest).map(|j| u32::from(j < s.len()))),
            }
        }
        let shape = (batch.len(), longest);
        let dev = cpu();
        let ids = Tensor::from_vec(flat, shape, &dev).map_err(cerr)?;
        let mask_t = Tensor::from_vec(mask, shape, &dev).map_err(cerr)?;
        let (layers, last) = self.backbone.forward(&ids, &mask_t)?;
        let d = self.dim();
        let take = |t: &Tensor| -> Result<Vec<Vec<f32>>> {
            let v: Vec<Vec<Vec<f32>>> = t.to_vec3().map_err(cerr)?;
            Ok(v.into_iter()
                .zip(batch)
                .map(|(rows, s)| rows.into_iter().take(s.len()).flatten().collect())
                .collect())
        };
        let last = take(&last)?;
        let mut every: Vec<Vec<Vec<f32>>> = vec![Vec::new(); batch.len()];
        if all_layers {
            for l in &layers {
                for (i, v) in take(l)?.into_iter().enumerate() {
                    every[i].push(v);
                }
            }
        }
        batch
            .iter()
            .zip(last)
            .zip(every)
            .map(|((s, hidden), layers)| {
                let mut pooled = self.pooling.pool(&hidden, &vec![true; s.len()], d)?;
                if self.normalize {
                    l2_normalize(&mut pooled);
                }
                Ok(Encoded { token_ids: s.to_vec(), hidden, layers, pooled })
            })
            .collect()
    }
}

fn load_safetensors(path: &Path) -> Result<VarBuilder<'static>> {
    let bytes = std::fs::read(path).at(path)?;
    VarBuilder::from_buffered_safetensors(bytes, DType::F32, &cpu()).map_err(cerr)
}

/// The sentence-transformers head: pooling from `1_Pooling/config.json` and whether a
/// `Normalize` module follows (`modules.json`).
fn st_head(dir: &Path) -> Result<(Pooling, bool)> {
    let pcfg = dir.join("1_Pooling/config.json");
    // Mean pooling unless the config selects another mode (sentence-transformers' default).
    let p: StPooling = if pcfg.is_file() { read_json(&pcfg)? } else { StPooling::default() };
    let pooling = if p.pooling_mode_cls_token {
        Pooling::Cls
    } else if p.pooling_mode_max_tokens {
        Pooling::Max
    } else if p.pooling_mode_mean_sqrt_len_tokens {
        Pooling::MeanSqrtLen
    } else if p.pooling_mode_lasttoken {
        Pooling::Last
    } else {
        Pooling::Mean
    };
    let modules = dir.join("modules.json");
    let normalize = if modules.is_file() {
        read_json::<Vec<StModule>>(&modules)?.iter().any(|m| m.ty.ends_with("Normalize"))
    } else {
        false
    };
    Ok((pooling, normalize))
}
