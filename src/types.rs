//! The data model: collection specs, column types, values, documents and hits.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Largest token or pooled dimension accepted.
pub const MAX_DIM: usize = 8192;
/// Largest number of token vectors in one document.
pub const MAX_TOKENS_PER_DOC: usize = 65_536;

/// Type of a user scalar column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// 64-bit signed integer.
    Integer,
    /// 64-bit float.
    Real,
    /// A JSON document, validated on write.
    Json,
}

impl ColumnType {
    /// The SQLite declared type used for the column.
    pub(crate) fn sql_type(self) -> &'static str {
        match self {
            ColumnType::Text | ColumnType::Json => "TEXT",
            ColumnType::Integer => "INTEGER",
            ColumnType::Real => "REAL",
        }
    }

    /// Parse `TEXT`, `INTEGER`, `REAL` or `JSON` (case-insensitive).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for any other name.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "TEXT" => Ok(ColumnType::Text),
            "INTEGER" | "INT" => Ok(ColumnType::Integer),
            "REAL" | "FLOAT" | "DOUBLE" => Ok(ColumnType::Real),
            "JSON" => Ok(ColumnType::Json),
            other => {
                Err(Error::invalid(format!("unknown column type '{other}': use TEXT, INTEGER, REAL or JSON")))
            }
        }
    }
}

/// A user scalar column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// Column name: ASCII letter first, then letters, digits or `_`; at most 64 bytes.
    pub name: String,
    /// Column type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
}

impl ColumnDef {
    /// A column named `name` of type `ty`.
    #[must_use]
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        Self { name: name.into(), ty }
    }
}

/// Type of the user document id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum IdType {
    /// Text ids (the default).
    #[default]
    Text,
    /// Integer ids.
    Integer,
}

/// Storage type of vectors in segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float (half the bytes; scores accumulate in f32).
    #[default]
    F16,
}

impl Dtype {
    /// Bytes per component.
    #[must_use]
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 => 2,
        }
    }

    /// On-disk tag.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
        }
    }

    /// From the on-disk tag.
    pub(crate) fn from_tag(t: u8) -> Option<Self> {
        match t {
            0 => Some(Dtype::F32),
            1 => Some(Dtype::F16),
            _ => None,
        }
    }

    /// Parse `f32` or `f16`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Dtype::F32),
            "f16" | "float16" | "half" => Ok(Dtype::F16),
            other => Err(Error::invalid(format!("unknown storage type '{other}': use f32 or f16"))),
        }
    }
}

/// A named pooled (one-per-document) vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PooledSpec {
    /// Name, e.g. `mean`; same naming rules as columns.
    pub name: String,
    /// Dimension.
    pub dim: usize,
}

/// Which vectors a collection stores and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorSpec {
    /// Dimension of each token vector.
    pub token_dim: usize,
    /// Pooled vectors stored per document, in this order.
    #[serde(default)]
    pub pooled: Vec<PooledSpec>,
    /// Storage type of token and pooled vectors (and of token vectors that wait for the
    /// codec in a codes-only collection).
    #[serde(default)]
    pub dtype: Dtype,
    /// Codes-only token storage (`tokens = 'plaid1' | 'plaid2' | 'plaid4'`): the bits per
    /// residual dimension. Segments then keep a token as its centroid id and residual
    /// codes and nothing else; `None` = token vectors stored in `dtype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codes: Option<u8>,
    /// Codes-only storage: the codec's centroid count (`WITH (codec_centroids = K)`);
    /// `None` = PLAID's rule on the tokens the codec is trained from
    /// ([`crate::index::plaid::default_centroids`]). Set it when a collection will grow
    /// far past its first flush: the codec is trained once, from the first flush.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_centroids: Option<usize>,
}

impl VectorSpec {
    /// Token vectors of dimension `token_dim`, stored as f16, no pooled vectors.
    #[must_use]
    pub fn new(token_dim: usize) -> Self {
        Self { token_dim, pooled: Vec::new(), dtype: Dtype::F16, codes: None, codec_centroids: None }
    }

    /// Store token vectors as PLAID codes with `nbits` (1, 2 or 4) per residual dimension
    /// instead of vectors (pooled vectors keep `dtype`).
    #[must_use]
    pub fn codes(mut self, nbits: u8) -> Self {
        self.codes = Some(nbits);
        self
    }

    /// Codes-only storage: train the codec with `k` centroids (at most 65,536) instead
    /// of PLAID's rule on the tokens of the first flush.
    #[must_use]
    pub fn codec_centroids(mut self, k: usize) -> Self {
        self.codec_centroids = Some(k);
        self
    }

    /// Set how token vectors are stored from its spelling in `WITH (tokens = …)`: `f32`,
    /// `f16` (vectors in that dtype), `plaid4`, `plaid2`, `plaid1` (codes only).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the accepted spellings.
    pub fn with_token_storage(self, name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "plaid1" => Ok(self.codes(1)),
            "plaid2" => Ok(self.codes(2)),
            "plaid4" => Ok(self.codes(4)),
            other => Ok(self.dtype(Dtype::parse(other).map_err(|_| {
                Error::invalid(format!(
                    "unknown token storage '{name}': use tokens = 'f32', 'f16', 'plaid4', 'plaid2' or 'plaid1'"
                ))
            })?)),
        }
    }

    /// How token vectors are stored, as spelt in `WITH (tokens = …)`: `f32`, `f16`,
    /// `plaid1`, `plaid2` or `plaid4`.
    #[must_use]
    pub fn token_storage(&self) -> String {
        match self.codes {
            Some(b) => format!("plaid{b}"),
            None => format!("{:?}", self.dtype).to_ascii_lowercase(),
        }
    }

    /// Add a pooled vector `name` of dimension `dim`.
    #[must_use]
    pub fn pooled(mut self, name: impl Into<String>, dim: usize) -> Self {
        self.pooled.push(PooledSpec { name: name.into(), dim });
        self
    }

    /// Set the storage type.
    #[must_use]
    pub fn dtype(mut self, dtype: Dtype) -> Self {
        self.dtype = dtype;
        self
    }

    /// Index of the pooled vector `name`.
    pub(crate) fn pooled_index(&self, name: &str) -> Result<usize> {
        self.pooled
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::NotFound { kind: "pooled vector", name: name.to_string() })
    }
}

/// How a collection computes its own embeddings from text (feature `embed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingSpec {
    /// Model name (resolved in the model cache) or folder path.
    pub model: String,
    /// xxh3-128 of the model weights, recorded at creation; a different model is refused.
    #[serde(default)]
    pub model_hash: String,
    /// Columns whose text, joined with a space, is embedded.
    pub text_columns: Vec<String>,
    /// Token-pooling factor (1 = keep every token vector).
    #[serde(default = "one")]
    pub token_pool_factor: usize,
    /// Query length limit in tokens (None = the model's).
    #[serde(default)]
    pub query_maxlen: Option<usize>,
    /// Document length limit in tokens (None = the model's).
    #[serde(default)]
    pub doc_maxlen: Option<usize>,
}

fn one() -> usize {
    1
}

impl EmbeddingSpec {
    /// Embed `text_columns` with `model`, keeping every token vector.
    #[must_use]
    pub fn new(model: impl Into<String>, text_columns: &[&str]) -> Self {
        Self {
            model: model.into(),
            model_hash: String::new(),
            text_columns: text_columns.iter().map(|s| (*s).to_string()).collect(),
            token_pool_factor: 1,
            query_maxlen: None,
            doc_maxlen: None,
        }
    }
}

/// Everything needed to create a collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionSpec {
    /// Collection name (same rules as column names).
    pub name: String,
    /// Type of document ids.
    #[serde(default)]
    pub id_type: IdType,
    /// User scalar columns.
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
    /// Vector layout.
    pub vectors: VectorSpec,
    /// In-process embedding from text columns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingSpec>,
    /// Recall@10 against exact search that an approximate plan must reach on the
    /// calibration queries before `Plan::Auto` uses it (`None` =
    /// [`DEFAULT_RECALL_TARGET`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_target: Option<f32>,
}

/// The recall target of a collection that sets none: approximate plans are used by
/// `Plan::Auto` only with parameters measured to reach recall@10 ≥ 0.95 against exact.
pub const DEFAULT_RECALL_TARGET: f32 = 0.95;

impl CollectionSpec {
    /// A collection `name` with the given vector layout, text ids and no columns.
    #[must_use]
    pub fn new(name: impl Into<String>, vectors: VectorSpec) -> Self {
        Self {
            name: name.into(),
            id_type: IdType::Text,
            columns: Vec::new(),
            vectors,
            embedding: None,
            recall_target: None,
        }
    }

    /// Compute embeddings from text columns with a model (feature `embed`). Pooled vectors
    /// of the vector spec are computed by the pooling operator of the same name (`mean`,
    /// `cls`, `max`, `mean_sqrt_len`, `last`, `gem`, `hopfield`) or, for `model`, the
    /// model's own sentence embedding.
    #[must_use]
    pub fn embedding(mut self, e: EmbeddingSpec) -> Self {
        self.embedding = Some(e);
        self
    }

    /// Add a scalar column.
    #[must_use]
    pub fn column(mut self, name: impl Into<String>, ty: ColumnType) -> Self {
        self.columns.push(ColumnDef::new(name, ty));
        self
    }

    /// Set the id type.
    #[must_use]
    pub fn id_type(mut self, id_type: IdType) -> Self {
        self.id_type = id_type;
        self
    }

    /// The column `name` (case-insensitive).
    pub(crate) fn column_def(&self, name: &str) -> Result<&ColumnDef> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::NotFound { kind: "column", name: name.to_string() })
    }

    /// Set the recall target of approximate plans (see [`CollectionSpec::recall_target`]).
    #[must_use]
    pub fn recall_target(mut self, target: f32) -> Self {
        self.recall_target = Some(target);
        self
    }

    /// The recall target in force.
    #[must_use]
    pub fn target_recall(&self) -> f32 {
        self.recall_target.unwrap_or(DEFAULT_RECALL_TARGET)
    }

    /// Check names, dimensions and uniqueness.
    pub(crate) fn validate(&self) -> Result<()> {
        check_name("collection", &self.name)?;
        if self.recall_target.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
            return Err(Error::invalid("recall must be in (0, 1], e.g. WITH (recall = 0.95)"));
        }
        let v = &self.vectors;
        check_dim("token_dim", v.token_dim)?;
        if v.codes.is_some_and(|b| ![1, 2, 4].contains(&b)) {
            return Err(Error::invalid(
                "codes-only token storage has 1, 2 or 4 bits per dimension: tokens = 'plaid1', 'plaid2' or 'plaid4'",
            ));
        }
        if let Some(k) = v.codec_centroids {
            if v.codes.is_none() {
                return Err(Error::invalid(
                    "codec_centroids applies to codes-only storage: add tokens = 'plaid2' (or 'plaid1', 'plaid4')",
                ));
            }
            if !(1..=crate::index::plaid::MAX_CENTROIDS).contains(&k) {
                return Err(Error::invalid(format!(
                    "codec_centroids must be between 1 and {} (got {k})",
                    crate::index::plaid::MAX_CENTROIDS
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            check_name("column", &c.name)?;
            if RESERVED_COLUMNS.iter().any(|r| r.eq_ignore_ascii_case(&c.name)) {
                return Err(Error::invalid(format!(
                    "column name '{}' is reserved (it names the document id or the search score)",
                    c.name
                )));
            }
            if !seen.insert(c.name.to_ascii_lowercase()) {
                return Err(Error::AlreadyExists { kind: "column", name: c.name.clone() });
            }
        }
        if let Some(e) = &self.embedding {
            if e.text_columns.is_empty() {
                return Err(Error::invalid("an embedding spec needs at least one text column"));
            }
            for c in &e.text_columns {
                if self.column_def(c)?.ty != ColumnType::Text {
                    return Err(Error::invalid(format!("embedding text column '{c}' must be TEXT")));
                }
            }
            if e.token_pool_factor == 0 {
                return Err(Error::invalid("token_pool_factor must be at least 1"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for p in &v.pooled {
            check_name("pooled vector", &p.name)?;
            check_dim(&p.name, p.dim)?;
            if !seen.insert(p.name.to_ascii_lowercase()) {
                return Err(Error::AlreadyExists { kind: "pooled vector", name: p.name.clone() });
            }
        }
        Ok(())
    }
}

/// Column names that are reserved for the document id and the search score.
pub const RESERVED_COLUMNS: &[&str] = &["id", "score"];

fn check_dim(what: &str, dim: usize) -> Result<()> {
    if dim == 0 || dim > MAX_DIM {
        return Err(Error::invalid(format!("{what} must be between 1 and {MAX_DIM}, got {dim}")));
    }
    Ok(())
}

/// Check an identifier: ASCII letter first, then letters, digits or `_`, at most 64 bytes.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || name.len() > 64 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::invalid(format!(
            "bad {kind} name '{name}': start with a letter, then letters, digits or '_' (at most 64)"
        )));
    }
    Ok(())
}

/// A user document id: text or integer, never renumbered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocId {
    /// Integer id.
    Int(i64),
    /// Text id.
    Text(String),
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocId::Int(i) => write!(f, "{i}"),
            DocId::Text(s) => f.write_str(s),
        }
    }
}

impl From<i64> for DocId {
    fn from(v: i64) -> Self {
        DocId::Int(v)
    }
}
impl From<&str> for DocId {
    fn from(v: &str) -> Self {
        DocId::Text(v.to_string())
    }
}
impl From<String> for DocId {
    fn from(v: String) -> Self {
        DocId::Text(v)
    }
}

/// A scalar value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Integer.
    Integer(i64),
    /// Float.
    Real(f64),
    /// Text.
    Text(String),
    /// JSON (stored as text in a JSON column).
    Json(serde_json::Value),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        Value::Json(v)
    }
}

impl Value {
    /// The value as a SQL literal, for messages: `NULL`, `42`, `3.7`, `'it''s'`.
    #[must_use]
    pub fn sql_literal(&self) -> String {
        match self {
            Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Json(j) => format!("'{}'", j.to_string().replace('\'', "''")),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r}"),
            Value::Text(s) => f.write_str(s),
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

/// A document to insert: id, scalar values, token vectors and pooled vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// User id.
    pub id: DocId,
    /// Scalar values by column name; missing columns are NULL.
    pub values: Vec<(String, Value)>,
    /// Token vectors, row-major, `n_tokens × token_dim`.
    pub tokens: Vec<f32>,
    /// Pooled vectors by name.
    pub pooled: Vec<(String, Vec<f32>)>,
}

impl Document {
    /// A document with id `id` and no vectors yet.
    #[must_use]
    pub fn new(id: impl Into<DocId>) -> Self {
        Self { id: id.into(), values: Vec::new(), tokens: Vec::new(), pooled: Vec::new() }
    }

    /// Set the token matrix (row-major, `n × token_dim`).
    #[must_use]
    pub fn tokens(mut self, tokens: Vec<f32>) -> Self {
        self.tokens = tokens;
        self
    }

    /// Set the pooled vector `name`.
    #[must_use]
    pub fn pooled(mut self, name: impl Into<String>, v: Vec<f32>) -> Self {
        self.pooled.push((name.into(), v));
        self
    }

    /// Set the scalar column `name`.
    #[must_use]
    pub fn set(mut self, name: impl Into<String>, v: impl Into<Value>) -> Self {
        self.values.push((name.into(), v.into()));
        self
    }
}

/// A stored document as read back by [`crate::Database::get`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    /// User id.
    pub id: DocId,
    /// Scalar values in column order.
    pub values: Vec<(String, Value)>,
    /// Token vectors (row-major, converted to f32).
    pub tokens: Vec<f32>,
    /// Pooled vectors in spec order.
    pub pooled: Vec<(String, Vec<f32>)>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// User id.
    pub id: DocId,
    /// Score (MaxSim sum, or dot product for dense search).
    pub score: f32,
    /// Scalar values in column order.
    pub values: Vec<(String, Value)>,
}

impl Hit {
    /// The value of column `name`, if selected.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }
}
