//! Collections that embed their own text (feature `embed`): model loading and identity,
//! text inserts and imports, text queries.

use std::sync::Arc;

use super::{lock_or, Database};
use crate::catalog::CollectionRow;
use crate::embed::colbert::TokenEncoder;
use crate::embed::pooling::{l2_normalize, Pooling};
use crate::embed::resolve_model;
use crate::embed::token_pool::pool_tokens;
use crate::embed::trainable::TrainedPooler;
use crate::types::{CollectionSpec, Document, EmbeddingSpec, Value};
use crate::{Error, Result};

/// Documents embedded per model batch during imports.
pub const IMPORT_BATCH: usize = 256;

impl Database {
    /// The token encoder of `model` (loaded once per database handle).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the model is not in the cache or at the path.
    pub fn encoder(&self, model: &str) -> Result<Arc<TokenEncoder>> {
        let dir = resolve_model(model)?;
        let key = dir.display().to_string();
        if let Some(e) = lock_or(&self.inner.encoders)?.get(&key) {
            return Ok(e.clone());
        }
        let enc = Arc::new(TokenEncoder::load(&dir)?);
        lock_or(&self.inner.encoders)?.insert(key, enc.clone());
        Ok(enc)
    }

    /// Load the collection's model and check it is the one the collection was made with.
    pub(super) fn collection_encoder(&self, e: &EmbeddingSpec) -> Result<Arc<TokenEncoder>> {
        let enc = self.encoder(&e.model)?;
        let have = enc.encoder().weights_hash();
        if !e.model_hash.is_empty() && e.model_hash != have {
            return Err(Error::invalid(format!(
                "model '{}' has weights {have}, but the collection was created with {}: refusing to mix models",
                e.model, e.model_hash
            )));
        }
        Ok(enc)
    }

    /// Fill in the dimensions and model hash of a collection that embeds text.
    pub(super) fn complete_embedding_spec(&self, spec: &mut CollectionSpec) -> Result<()> {
        let Some(e) = spec.embedding.as_mut() else { return Ok(()) };
        let enc = self.encoder(&e.model)?;
        e.model_hash = enc.encoder().weights_hash().to_string();
        let (dim, hidden) = (enc.dim(), enc.encoder().dim());
        let fix = |what: &str, have: &mut usize, want: usize| {
            if *have == 0 {
                *have = want;
                Ok(())
            } else if *have == want {
                Ok(())
            } else {
                Err(Error::DimensionMismatch {
                    what: format!("{what} of model '{}'", e.model),
                    expected: want,
                    got: *have,
                })
            }
        };
        fix("token dimension", &mut spec.vectors.token_dim, dim)?;
        for p in &mut spec.vectors.pooled {
            let want = PoolOp::resolve(&enc, &p.name)?.dim(hidden);
            fix(&format!("pooled vector '{}'", p.name), &mut p.dim, want)?;
        }
        Ok(())
    }

    /// Embed the text columns of `docs` (which carry only ids and values) into token and
    /// pooled vectors.
    fn embed_docs(&self, c: &CollectionRow, docs: &[Document]) -> Result<Vec<Document>> {
        let e = c.spec.embedding.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "collection '{}' has no embedding model: insert vectors instead",
                c.spec.name
            ))
        })?;
        let enc = self.collection_encoder(e)?;
        let texts: Vec<String> = docs.iter().map(|d| text_of(e, d)).collect::<Result<_>>()?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ops: Vec<PoolOp> =
            c.spec.vectors.pooled.iter().map(|p| PoolOp::resolve(&enc, &p.name)).collect::<Result<_>>()?;
        let all_layers = ops.iter().any(PoolOp::needs_layers);
        let out = enc.encode_documents_full(&refs, e.doc_maxlen, all_layers)?;
        let hidden_dim = enc.encoder().dim();
        docs.iter()
            .zip(out)
            .map(|(d, emb)| {
                let mut doc = Document { tokens: emb.tokens, pooled: Vec::new(), ..d.clone() };
                if e.token_pool_factor > 1 {
                    doc.tokens = pool_tokens(&doc.tokens, enc.dim(), e.token_pool_factor, 1);
                }
                for (p, op) in c.spec.vectors.pooled.iter().zip(&ops) {
                    doc.pooled.push((p.name.clone(), op.apply(&emb.encoded, hidden_dim)?));
                }
                Ok(doc)
            })
            .collect()
    }

    /// Insert documents given as ids + scalar values: the collection's model embeds their
    /// text columns. Atomic like [`Database::insert`].
    ///
    /// # Errors
    /// As [`Database::insert`]; [`Error::InvalidArgument`] when the collection has no
    /// embedding model or a text column holds a non-text value.
    pub fn insert_text(&self, collection: &str, docs: &[Document]) -> Result<()> {
        let c = self.with_reader(|cat| cat.read()?.collection(collection))?;
        let embedded = self.embed_docs(&c, docs)?;
        self.insert(collection, &embedded)
    }

    /// As [`Database::insert_text`], replacing existing ids.
    ///
    /// # Errors
    /// As [`Database::insert_text`].
    pub fn upsert_text(&self, collection: &str, docs: &[Document]) -> Result<()> {
        let c = self.with_reader(|cat| cat.read()?.collection(collection))?;
        let embedded = self.embed_docs(&c, docs)?;
        self.upsert(collection, &embedded)
    }

    /// Stream documents (ids + values) into a text collection in batches of
    /// [`IMPORT_BATCH`], committing each batch, with bounded memory. `progress` is called
    /// with the running count after each batch. Returns the number imported.
    ///
    /// # Errors
    /// The first failing batch's error; earlier batches stay committed.
    pub fn import_text(
        &self,
        collection: &str,
        docs: impl IntoIterator<Item = Document>,
        mut progress: impl FnMut(usize),
    ) -> Result<usize> {
        self.interrupted();
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        let mut n = 0;
        let mut docs = docs.into_iter().peekable();
        while let Some(d) = docs.next() {
            batch.push(d);
            if batch.len() == IMPORT_BATCH {
                self.insert_text(collection, &batch)?;
                n += batch.len();
                batch.clear();
                progress(n);
                if docs.peek().is_some() && self.interrupted() {
                    return Err(Error::Interrupted(format!(
                        "{n} documents are committed, the rest is not imported: run the IMPORT again \
                         with ON CONFLICT SKIP to finish"
                    )));
                }
            }
        }
        if !batch.is_empty() {
            self.insert_text(collection, &batch)?;
            n += batch.len();
            progress(n);
        }
        Ok(n)
    }

    /// A MaxSim text query as token vectors, with the `[MASK]` expansion rows marked.
    pub(super) fn embed_query_marked(&self, c: &CollectionRow, text: &str) -> Result<(Vec<f32>, Vec<bool>)> {
        let e = c.spec.embedding.as_ref().ok_or_else(|| {
            Error::invalid(format!("collection '{}' has no embedding model: query with vectors", c.spec.name))
        })?;
        let enc = self.collection_encoder(e)?;
        Ok(enc.encode_queries_marked(&[text], e.query_maxlen)?.remove(0))
    }

    /// Turn a text query into vectors with the collection's model.
    pub(super) fn embed_query(&self, c: &CollectionRow, text: &str, field: Option<&str>) -> Result<Vec<f32>> {
        let e = c.spec.embedding.as_ref().ok_or_else(|| {
            Error::invalid(format!("collection '{}' has no embedding model: query with vectors", c.spec.name))
        })?;
        let enc = self.collection_encoder(e)?;
        match field {
            None => Ok(enc.encode_queries_with(&[text], e.query_maxlen)?.remove(0)),
            Some(f) => {
                let op = PoolOp::resolve(&enc, f)?;
                let ids = enc.encoder().tokenize(&[text])?;
                let out = enc.encoder().encode_ids(&ids, op.needs_layers())?.remove(0);
                op.apply(&out, enc.encoder().dim())
            }
        }
    }
}

/// How a pooled vector is computed: the model's own embedding, a trained pooler stored in
/// the model folder (`<model>/<name>/pooler.json`), or a named operator.
enum PoolOp {
    Model,
    Trained(TrainedPooler),
    Op(Pooling),
}

impl PoolOp {
    fn resolve(enc: &TokenEncoder, name: &str) -> Result<Self> {
        if name == "model" {
            return Ok(PoolOp::Model);
        }
        let dir = enc.encoder().dir().join(name);
        if dir.join("pooler.json").is_file() {
            return Ok(PoolOp::Trained(TrainedPooler::load(&dir)?));
        }
        Ok(PoolOp::Op(Pooling::parse(name)?))
    }

    fn dim(&self, hidden: usize) -> usize {
        match self {
            PoolOp::Trained(t) => t.out_dim(),
            _ => hidden,
        }
    }

    fn needs_layers(&self) -> bool {
        matches!(self, PoolOp::Trained(t) if t.needs_all_layers())
    }

    fn apply(&self, e: &crate::embed::Encoded, hidden: usize) -> Result<Vec<f32>> {
        let mask = vec![true; e.token_ids.len()];
        let mut v = match self {
            PoolOp::Model => e.pooled.clone(),
            PoolOp::Trained(t) if t.needs_all_layers() => t.pool(&e.layers, &mask)?,
            PoolOp::Trained(t) => t.pool(std::slice::from_ref(&e.hidden), &mask)?,
            PoolOp::Op(p) => p.pool(&e.hidden, &mask, hidden)?,
        };
        l2_normalize(&mut v);
        Ok(v)
    }
}

fn text_of(e: &EmbeddingSpec, d: &Document) -> Result<String> {
    let mut parts = Vec::new();
    for col in &e.text_columns {
        match d.values.iter().find(|(n, _)| n.eq_ignore_ascii_case(col)).map(|(_, v)| v) {
            None | Some(Value::Null) => {}
            Some(Value::Text(t)) => parts.push(t.as_str()),
            Some(other) => {
                return Err(Error::invalid(format!("text column '{col}' holds {other:?}, not text")))
            }
        }
    }
    Ok(parts.join(" "))
}
