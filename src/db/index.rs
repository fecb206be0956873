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
use crate::index::hnsw::HnswParams;
use crate::index::muvera::{Muvera, MuveraParams, Projection};
use crate::index::plaid::{Codec, CodecParams, MAX_CENTROIDS};
use crate::testing::Rng;
use crate::{Error, Result};

/// Catalog `kind` of the PLAID token index.
pub(crate) const PLAID: &str = "plaid";

/// Options of [`Database::create_plaid_index`]: the codec training parameters (bits per
/// residual dimension, centroids — `None` = ColBERT's `2^⌊log2(16·√tokens)⌋`, capped at
/// 65,536 —, sample size, k-means iterations, seed).
pub type PlaidOptions = CodecParams;

/// Catalog `kind` of the MUVERA index.
pub(crate) const MUVERA: &str = "muvera";

/// Options of [`Database::create_muvera_index`]: the fixed-dimensional encoding
/// (ALGORITHMS.md §2.3; its dimension is `repetitions · 2^simhash_bits · d_p`) and the HNSW
/// graph over the encodings.
///
/// The defaults (R = 10, k_sim = 4, AMS 16: 2,560 dimensions, 5 KiB of f16 per document)
/// are half fastembed's repetitions and half its partitions, so that the stored encodings
/// stay near PLAID's per-token cost for documents of ~150 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MuveraOptions {
    /// Repetitions `R`.
    pub repetitions: usize,
    /// SimHash bits `k_sim` (`2^k_sim` partitions per repetition).
    pub simhash_bits: usize,
    /// Inner projection (an AMS sketch at least as wide as the token dimension is the
    /// identity).
    pub projection: Projection,
    /// Fill empty document partitions with the Hamming-nearest token.
    pub fill_empty: bool,
    /// Seed of the random matrices (they are persisted with the index).
    pub seed: u64,
    /// The graph over the encodings.
    pub hnsw: HnswParams,
}

impl Default for MuveraOptions {
    fn default() -> Self {
        Self {
            repetitions: 10,
            simhash_bits: 4,
            projection: Projection::Ams(16),
            fill_empty: true,
            seed: 42,
            hnsw: HnswParams::default(),
        }
    }
}

/// The MUVERA index of a collection, loaded.
#[derive(Debug, Clone)]
pub(crate) struct MuveraState {
    pub id: i64,
    pub encoder: Arc<Muvera>,
    pub hnsw: HnswParams,
}

impl MuveraState {
    /// The id the segment sections are tagged with.
    pub fn tag(&self) -> u32 {
        self.id as u32
    }
}

/// The MUVERA index of `c` in the snapshot `tx`, with its persisted matrices.
pub(crate) fn muvera_state(inner: &Inner, tx: &Txn<'_>, c: &CollectionRow) -> Result<Option<MuveraState>> {
    let Some(row) = tx.index(c.id, MUVERA)? else { return Ok(None) };
    let encoder = Muvera::from_bytes(&row.data).map_err(|e| {
        Error::corruption(&crate::catalog::catalog_path(&inner.root), format!("MUVERA index {}: {e}", row.id))
    })?;
    let opts: MuveraOptions = serde_json::from_str(&row.params).unwrap_or_default();
    Ok(Some(MuveraState { id: row.id, encoder: Arc::new(encoder), hnsw: opts.hnsw }))
}

/// An index as described by [`Database::indexes`].
#[derive(Debug, Clone, PartialEq)]
pub struct IndexInfo {
    /// Kind: `plaid`, `muvera`, `hnsw:<pooled vector>`, or `fulltext`.
    pub kind: String,
    /// Catalog id (tags the segment sections built for it).
    pub id: i64,
    /// Options it was created with, as JSON ([`PlaidOptions`], [`MuveraOptions`] or
    /// [`HnswParams`]).
    pub params: String,
    /// Centroids of the codec (PLAID; 0 otherwise).
    pub centroids: usize,
    /// Segments carrying its sections.
    pub segments_indexed: u64,
    /// All segments of the collection.
    pub segments: u64,
    /// Bytes of its sections in those segments (plus the codec for PLAID).
    pub bytes: u64,
}

/// An HNSW index over one pooled vector, loaded.
#[derive(Debug, Clone)]
pub(crate) struct HnswState {
    pub id: i64,
    /// Pooled vector number.
    pub pooled: usize,
    pub params: HnswParams,
}

/// Catalog `kind` of the HNSW index over pooled vector `field`.
pub(crate) fn hnsw_kind(field: &str) -> String {
    format!("hnsw:{field}")
}

/// The HNSW indexes of `c` in the snapshot `tx`.
pub(crate) fn hnsw_states(tx: &Txn<'_>, c: &CollectionRow) -> Result<Vec<HnswState>> {
    let mut out = Vec::new();
    for row in tx.indexes(c.id)? {
        let Some(field) = row.kind.strip_prefix("hnsw:") else { continue };
        let pooled = c.spec.vectors.pooled_index(field)?;
        let params = serde_json::from_str(&row.params).unwrap_or_default();
        out.push(HnswState { id: row.id, pooled, params });
    }
    Ok(out)
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
        // The sample above is already the training set.
        let params = CodecParams { centroids: Some(k), sample: usize::MAX, ..opts };
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
        self.index_info(collection, PLAID)
    }

    pub(super) fn index_info(&self, collection: &str, kind: &str) -> Result<IndexInfo> {
        self.indexes(collection)?
            .into_iter()
            .find(|i| i.kind == kind)
            .ok_or_else(|| Error::NotFound { kind: "index", name: format!("{kind} on '{collection}'") })
    }

    /// Build an HNSW graph over the pooled vector `field` of `collection`, for dense search
    /// (and as a candidate generator for MaxSim with [`crate::Plan::Hnsw`]). Every segment
    /// is rewritten with a graph; later flushes and compactions build theirs as they write.
    /// Graphs live in the segment files and are searched from the memory map: opening costs
    /// nothing and RAM holds only what a search touches.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection or pooled vector,
    /// [`Error::AlreadyExists`], [`Error::InvalidArgument`] for `m ∉ 2..=255` or zero `ef`s,
    /// plus the errors of [`Database::compact`].
    pub fn create_hnsw_index(&self, collection: &str, field: &str, params: HnswParams) -> Result<IndexInfo> {
        if !(2..=255).contains(&params.m) || params.ef_construction == 0 || params.ef_search == 0 {
            return Err(Error::invalid("HNSW needs 2 <= m <= 255 and positive ef_construction / ef_search"));
        }
        self.flush(collection)?;
        let mut w = self.writer()?;
        let kind = hnsw_kind(field);
        {
            let tx = w.write()?;
            let c = tx.collection(collection)?;
            c.spec.vectors.pooled_index(field)?;
            let json = serde_json::to_string(&params).map_err(|e| Error::invalid(e.to_string()))?;
            tx.add_index(c.id, &kind, &json, &[])?;
            tx.bump_generation()?;
            tx.commit()?;
        }
        self.compact_locked(&mut w, collection, true)?;
        drop(w);
        self.index_info(collection, &kind)
    }

    /// Build a MUVERA index on `collection`: draw the encoding's random matrices (persisted
    /// in the catalog), and rewrite the segments with every document's fixed-dimensional
    /// encoding and an HNSW graph over them. [`crate::Plan::Muvera`] then finds MaxSim
    /// candidates by one graph search per segment with the query's encoding, and reranks
    /// them exactly. Later flushes and compactions encode as they write.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidArgument`] for bad options (see
    /// [`Muvera::new`], and the HNSW limits of [`Database::create_hnsw_index`]), plus the
    /// errors of [`Database::compact`].
    pub fn create_muvera_index(&self, collection: &str, opts: MuveraOptions) -> Result<IndexInfo> {
        let h = opts.hnsw;
        if !(2..=255).contains(&h.m) || h.ef_construction == 0 || h.ef_search == 0 {
            return Err(Error::invalid("HNSW needs 2 <= m <= 255 and positive ef_construction / ef_search"));
        }
        self.flush(collection)?;
        let mut w = self.writer()?;
        {
            let tx = w.write()?;
            let c = tx.collection(collection)?;
            if tx.index(c.id, MUVERA)?.is_some() {
                return Err(Error::AlreadyExists {
                    kind: "index",
                    name: format!("muvera on '{collection}'"),
                });
            }
            let dim = c.spec.vectors.token_dim;
            // A sketch at least as wide as the input is the identity (ALGORITHMS.md §2.3).
            let projection = match opts.projection {
                Projection::Ams(dp) if dp >= dim => Projection::Identity,
                p => p,
            };
            let encoder = Muvera::new(MuveraParams {
                dim,
                repetitions: opts.repetitions,
                simhash_bits: opts.simhash_bits,
                projection,
                fill_empty: opts.fill_empty,
                seed: opts.seed,
            })?;
            if encoder.out_dim() > 1 << 16 {
                return Err(Error::invalid(format!(
                    "MUVERA encoding of {} dimensions is too large (at most 65,536): lower \
                     repetitions, simhash_bits or the projection dimension",
                    encoder.out_dim()
                )));
            }
            let json = serde_json::to_string(&opts).map_err(|e| Error::invalid(e.to_string()))?;
            tx.add_index(c.id, MUVERA, &json, &encoder.to_bytes())?;
            tx.bump_generation()?;
            tx.commit()?;
        }
        self.compact_locked(&mut w, collection, true)?;
        drop(w);
        self.index_info(collection, MUVERA)
    }

    /// Drop the index of kind `kind` (`"plaid"`, `"muvera"`, `"hnsw:<field>"`, `"fulltext"`)
    /// on `collection`. Its sections stay in the
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
        #[cfg(feature = "fulltext")]
        if kind == super::fulltext::FULLTEXT {
            tx.fulltext_detach(c.id)?;
        }
        tx.bump_generation()?;
        tx.commit()?;
        #[cfg(feature = "fulltext")]
        if kind == super::fulltext::FULLTEXT {
            self.fulltext_forget(c.id)?;
        }
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
            let segs = tx.segments(c.id)?;
            let readers = segs.iter().map(|s| self.segment(&c, s)).collect::<Result<Vec<_>>>()?;
            let plaid = plaid_state(&self.inner, &tx, &c)?;
            let hnsw = hnsw_states(&tx, &c)?;
            let muvera = muvera_state(&self.inner, &tx, &c)?;
            let mut out = Vec::new();
            for row in tx.indexes(c.id)? {
                let (mut indexed, mut bytes, mut centroids) = (0u64, row.data.len() as u64, 0);
                // The full-text index is one tantivy directory, not segment sections.
                #[cfg(feature = "fulltext")]
                if row.kind == super::fulltext::FULLTEXT {
                    (indexed, bytes) = (segs.len() as u64, self.fulltext_bytes(c.id));
                }
                for r in &readers {
                    let b = if let Some(p) = plaid.as_ref().filter(|p| p.id == row.id) {
                        centroids = p.codec.num_centroids();
                        (r.plaid_index_id() == Some(p.tag())).then(|| r.plaid_bytes())
                    } else if let Some(m) = muvera.as_ref().filter(|m| m.id == row.id) {
                        (r.muvera_index_id() == Some(m.tag())).then(|| r.muvera_bytes())
                    } else if let Some(h) = hnsw.iter().find(|h| h.id == row.id) {
                        (r.hnsw_index_id(h.pooled) == Some(h.id as u32)).then(|| r.hnsw_bytes(h.pooled))
                    } else {
                        None
                    };
                    if let Some(b) = b {
                        indexed += 1;
                        bytes += b;
                    }
                }
                out.push(IndexInfo {
                    kind: row.kind,
                    id: row.id,
                    params: row.params,
                    centroids,
                    segments_indexed: indexed,
                    segments: segs.len() as u64,
                    bytes,
                });
            }
            Ok(out)
        })
    }
}
