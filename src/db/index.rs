//! Search indexes of a collection: creating, describing and dropping them, and loading
//! their shared state (the PLAID codec) for the write and read paths.
//!
//! An index is catalog state (`indexes` table) plus sections in every segment written
//! while it exists. Creating one trains its codec on a sample of the stored token vectors,
//! commits it, and rewrites the segments so that every one carries the codes; later
//! flushes and compactions encode as they write. A segment without the sections (written
//! before the index, or by format v1) is still searched, exactly, until it is rewritten.

use std::sync::Arc;

use super::{Database, Inner};
use crate::catalog::{CollectionRow, Txn};
use crate::index::plaid::{Codec, CodecParams, MAX_CENTROIDS};
use crate::testing::Rng;
use crate::{Error, Result};

/// Catalog `kind` of the PLAID token index.
pub(crate) const PLAID: &str = "plaid";

/// Options of [`Database::create_plaid_index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[must_use]
pub struct PlaidOptions {
    /// Bits per residual dimension: 1, 2 or 4 (default 2).
    pub nbits: u8,
    /// Centroids; `None` = `2^⌊log2(16·√tokens)⌋` (ColBERT's rule), at most 65,536.
    pub centroids: Option<usize>,
    /// At most this many token vectors train the codec (default 262,144).
    pub sample: usize,
    /// k-means iterations (default 8).
    pub iterations: usize,
    /// Seed of the sampling and the k-means initialisation.
    pub seed: u64,
}

impl Default for PlaidOptions {
    fn default() -> Self {
        let d = CodecParams::default();
        Self { nbits: d.nbits, centroids: None, sample: d.sample, iterations: d.iterations, seed: d.seed }
    }
}

/// An index as described by [`Database::indexes`].
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Kind (`plaid`).
    pub kind: String,
    /// Catalog id (tags the segment sections built for it).
    pub id: i64,
    /// Options it was created with.
    pub options: PlaidOptions,
    /// Centroids of the codec.
    pub centroids: usize,
    /// Segments carrying its sections / all segments.
    pub segments_indexed: u64,
    /// All segments of the collection.
    pub segments: u64,
    /// Bytes of its sections in those segments plus the codec.
    pub bytes: u64,
}

/// The PLAID index of a collection, loaded.
#[derive(Clone)]
pub(crate) struct PlaidState {
    pub id: i64,
    pub codec: Arc<Codec>,
}

impl PlaidState {
    /// The id the segment sections are tagged with.
    pub fn tag(&self) -> u32 {
        self.id as u32
    }
}

/// The PLAID index of `c` in the snapshot `tx`, with its codec (cached by id: a codec never
/// changes once committed).
pub(crate) fn plaid_state(inner: &Inner, tx: &Txn<'_>, c: &CollectionRow) -> Result<Option<PlaidState>> {
    let Some(row) = tx.index(c.id, PLAID)? else { return Ok(None) };
    let mut cache = super::lock_or(&inner.codecs)?;
    if let Some(codec) = cache.get(&row.id) {
        return Ok(Some(PlaidState { id: row.id, codec: codec.clone() }));
    }
    let codec = Arc::new(Codec::from_bytes(&row.data).map_err(|e| {
        Error::corruption(&crate::catalog::catalog_path(&inner.root), format!("PLAID index {}: {e}", row.id))
    })?);
    cache.insert(row.id, codec.clone());
    Ok(Some(PlaidState { id: row.id, codec }))
}

impl Database {
    /// Build a PLAID token index on `collection`: train centroids and residual quantiles on
    /// a sample of its token vectors, record them in the catalog, and rewrite its segments
    /// with codes and inverted lists (pending documents are flushed first). Searches use it
    /// from then on (see [`crate::Plan`]); later writes are encoded as they are flushed.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the collection has one (drop it first),
    /// [`Error::InvalidArgument`] for bad options or an empty collection, plus the errors of
    /// [`Database::compact`].
    pub fn create_plaid_index(&self, collection: &str, opts: PlaidOptions) -> Result<IndexInfo> {
        if ![1, 2, 4].contains(&opts.nbits) {
            return Err(Error::invalid("nbits must be 1, 2 or 4"));
        }
        if opts.centroids.is_some_and(|k| k == 0 || k > MAX_CENTROIDS) || opts.sample == 0 {
            return Err(Error::invalid(format!("centroids must be 1..={MAX_CENTROIDS} and sample > 0")));
        }
        self.flush(collection)?;
        let mut w = self.writer()?;
        let (c, segs) = {
            let tx = w.read()?;
            let c = tx.collection(collection)?;
            if tx.index(c.id, PLAID)?.is_some() {
                return Err(Error::AlreadyExists { kind: "index", name: format!("plaid on '{collection}'") });
            }
            let segs = tx.segments(c.id)?;
            (c, segs)
        };
        let readers = segs.iter().map(|s| self.segment(&c, s)).collect::<Result<Vec<_>>>()?;
        let total: u64 = readers.iter().map(|r| r.token_count()).sum();
        if total == 0 {
            return Err(Error::invalid(format!(
                "collection '{collection}' has no token vectors to train on"
            )));
        }
        // A uniform sample of token vectors (each kept with probability sample / total).
        let dim = c.spec.vectors.token_dim;
        let keep = (opts.sample as f64 / total as f64).min(1.0);
        let mut rng = Rng::new(opts.seed ^ 0x9e37_79b9);
        let mut sample = Vec::new();
        for r in &readers {
            r.verify_tokens()?;
            let all = r.all_tokens();
            for t in 0..r.token_count() as usize {
                if keep >= 1.0 || f64::from(rng.unit()) < keep {
                    sample.extend(all.slice(t * dim..(t + 1) * dim).to_f32());
                }
            }
        }
        let k = opts.centroids.unwrap_or_else(|| {
            (1usize << ((16.0 * (total as f64).sqrt()).log2().floor() as u32)).min(MAX_CENTROIDS)
        });
        let params = CodecParams {
            nbits: opts.nbits,
            centroids: Some(k),
            iterations: opts.iterations,
            sample: usize::MAX,
            seed: opts.seed,
        };
        let codec = Codec::train(&sample, dim, params)?;
        drop(sample);
        let opts_json = serde_json::to_string(&opts).map_err(|e| Error::invalid(e.to_string()))?;
        let tx = w.write()?;
        tx.add_index(c.id, PLAID, &opts_json, &codec.to_bytes())?;
        tx.bump_generation()?;
        tx.commit()?;
        drop(readers);
        self.compact_locked(&mut w, collection, true)?;
        drop(w);
        self.indexes(collection)?
            .into_iter()
            .find(|i| i.kind == PLAID)
            .ok_or_else(|| Error::NotFound { kind: "index", name: format!("plaid on '{collection}'") })
    }

    /// Drop the index of kind `kind` (`"plaid"`) on `collection`. Its sections stay in the
    /// segment files, unused, until compaction rewrites them. Returns false when there was
    /// none.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection, [`Error::ReadOnly`].
    pub fn drop_index(&self, collection: &str, kind: &str) -> Result<bool> {
        let mut w = self.writer()?;
        let tx = w.write()?;
        let c = tx.collection(collection)?;
        let gone = tx.remove_index(c.id, kind)?;
        tx.bump_generation()?;
        tx.commit()?;
        Ok(gone)
    }

    /// The indexes of `collection`, with how much of the collection each covers.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection, [`Error::Corruption`].
    pub fn indexes(&self, collection: &str) -> Result<Vec<IndexInfo>> {
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            let Some(state) = plaid_state(&self.inner, &tx, &c)? else { return Ok(Vec::new()) };
            let row = tx.index(c.id, PLAID)?.ok_or_else(|| Error::invalid("index vanished"))?;
            let options: PlaidOptions = serde_json::from_str(&row.params).unwrap_or_default();
            let segs = tx.segments(c.id)?;
            let (mut indexed, mut bytes) = (0u64, row.data.len() as u64);
            for s in &segs {
                let r = self.segment(&c, s)?;
                if r.plaid_index_id() == Some(state.tag()) {
                    indexed += 1;
                    bytes += r.plaid_bytes();
                }
            }
            Ok(vec![IndexInfo {
                kind: PLAID.into(),
                id: state.id,
                options,
                centroids: state.codec.num_centroids(),
                segments_indexed: indexed,
                segments: segs.len() as u64,
                bytes,
            }])
        })
    }
}
