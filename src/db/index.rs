//! Search indexes of a collection: creating, describing and dropping them, and loading
//! their shared state (the PLAID codec) for the write and read paths.
//!
//! An index is catalog state (`indexes` table, its shared state in a per-index file) plus
//! one side file per segment (`sidefile.rs`). Creating one trains its codec on a sample of
//! the stored token vectors, publishes it, then builds the side file of every existing
//! segment without touching the segment — one catalog transaction per segment, so an
//! interrupted build resumes where it stopped; later flushes and compactions write the side
//! files of every index as they write the segment. A segment without a side file (or with a
//! damaged one) is searched exactly. Dropping an index retires its files.

use std::sync::Arc;

use std::collections::HashSet;

use super::sidefile::{self, IndexDef};
use super::{Database, Inner};
use crate::catalog::{Catalog, CollectionRow, Txn};
use crate::index::hnsw::HnswParams;
use crate::index::muvera::{Muvera, MuveraParams, Projection};
use crate::index::plaid::{Codec, CodecParams, MAX_CENTROIDS};
use crate::rng::Rng;
use crate::storage::segment::SegmentReader;
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

/// The state bytes of index `row`: its per-index file (schema 5+) or, for an index
/// created by an older build, its catalog blob.
fn state_bytes(inner: &Inner, tx: &Txn<'_>, row: &crate::catalog::IndexRow) -> Result<Vec<u8>> {
    match &row.file {
        Some(f) => sidefile::read_state_file(inner, f),
        None => tx.index_data(row.id),
    }
}

/// The MUVERA index of `c` in the snapshot `tx`, with its persisted matrices (cached by
/// id: they never change once committed).
pub(crate) fn muvera_state(inner: &Inner, tx: &Txn<'_>, c: &CollectionRow) -> Result<Option<MuveraState>> {
    let Some(row) = tx.index(c.id, MUVERA)? else { return Ok(None) };
    let opts: MuveraOptions = serde_json::from_str(&row.params).unwrap_or_default();
    if let Some(m) = super::lock_or(&inner.muveras)?.get(&row.id) {
        return Ok(Some(MuveraState { id: row.id, encoder: m.clone(), hnsw: opts.hnsw }));
    }
    let encoder = Arc::new(Muvera::from_bytes(&state_bytes(inner, tx, &row)?).map_err(|e| {
        Error::corruption(&crate::catalog::catalog_path(&inner.root), format!("MUVERA index {}: {e}", row.id))
    })?);
    super::lock_or(&inner.muveras)?.insert(row.id, encoder.clone());
    Ok(Some(MuveraState { id: row.id, encoder, hnsw: opts.hnsw }))
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
    /// Bytes of its side files (or embedded v2 sections) plus its state file.
    pub bytes: u64,
    /// False while a `CREATE INDEX` that was interrupted has segments left to cover (run
    /// it again to resume); searches use what exists and score the rest exactly.
    pub ready: bool,
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
    /// In a codes-only collection the index shares the token codec (this is its CODEC_REF):
    /// segments encoded with it get side files with inverted lists only.
    pub token_ref: Option<[u8; 16]>,
}

/// The PLAID index of `c` in the snapshot `tx`, with its codec (cached by id: a codec never
/// changes once committed).
pub(crate) fn plaid_state(inner: &Inner, tx: &Txn<'_>, c: &CollectionRow) -> Result<Option<PlaidState>> {
    let Some(row) = tx.index(c.id, PLAID)? else { return Ok(None) };
    if c.spec.vectors.codes.is_some() {
        let tc = super::codec::current(inner, tx, c)?.ok_or_else(|| {
            Error::corruption(
                &crate::catalog::catalog_path(&inner.root),
                format!("PLAID index {} of a codes-only collection without a token codec", row.id),
            )
        })?;
        let token_ref = Some(crate::storage::segment::TokenCodec::codec_ref(tc.as_ref()));
        return Ok(Some(PlaidState { id: row.id, codec: tc.codec.clone(), token_ref }));
    }
    if let Some(codec) = super::lock_or(&inner.codecs)?.get(&row.id) {
        return Ok(Some(PlaidState { id: row.id, codec: codec.clone(), token_ref: None }));
    }
    let codec = Arc::new(Codec::from_bytes(&state_bytes(inner, tx, &row)?).map_err(|e| {
        Error::corruption(&crate::catalog::catalog_path(&inner.root), format!("PLAID index {}: {e}", row.id))
    })?);
    super::lock_or(&inner.codecs)?.insert(row.id, codec.clone());
    Ok(Some(PlaidState { id: row.id, codec, token_ref: None }))
}

/// Every index of `c` that has side files, loaded.
pub(crate) fn index_defs(inner: &Inner, tx: &Txn<'_>, c: &CollectionRow) -> Result<Vec<IndexDef>> {
    let mut out: Vec<IndexDef> = Vec::new();
    out.extend(plaid_state(inner, tx, c)?.map(IndexDef::Plaid));
    out.extend(hnsw_states(tx, c)?.into_iter().map(IndexDef::Hnsw));
    out.extend(muvera_state(inner, tx, c)?.map(IndexDef::Muvera));
    Ok(out)
}

/// [`index_defs`] for the write path: an index whose state file is damaged is left out
/// (new segments get no side file of it and are searched exactly; CHECK reports the
/// damage) instead of failing every flush.
pub(crate) fn index_defs_for_writes(inner: &Inner, tx: &Txn<'_>, c: &CollectionRow) -> Result<Vec<IndexDef>> {
    let usable = |r: Result<Option<IndexDef>>| match r {
        Err(Error::Corruption { .. }) => Ok(None),
        other => other,
    };
    let mut out: Vec<IndexDef> = Vec::new();
    out.extend(usable(plaid_state(inner, tx, c).map(|p| p.map(IndexDef::Plaid)))?);
    out.extend(hnsw_states(tx, c)?.into_iter().map(IndexDef::Hnsw));
    out.extend(usable(muvera_state(inner, tx, c).map(|m| m.map(IndexDef::Muvera)))?);
    Ok(out)
}

/// Progress of an index build: segments done and all, tokens done and all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexProgress {
    /// Segments that have the index (built now, earlier, or embedded by format v2).
    pub segments_done: u64,
    /// Segments of the collection.
    pub segments: u64,
    /// Token vectors in the segments done.
    pub tokens_done: u64,
    /// Token vectors in all segments.
    pub tokens: u64,
}

/// An index to build with [`Database::create_index`].
#[derive(Debug, Clone, PartialEq)]
pub enum IndexSpec {
    /// PLAID token codes ([`Database::create_plaid_index`]).
    Plaid(PlaidOptions),
    /// An HNSW graph over a pooled vector ([`Database::create_hnsw_index`]).
    Hnsw {
        /// Name of the pooled vector.
        field: String,
        /// Graph parameters.
        params: HnswParams,
    },
    /// MUVERA encodings and their graph ([`Database::create_muvera_index`]).
    Muvera(MuveraOptions),
}

fn check_hnsw(h: &HnswParams) -> Result<()> {
    if !(2..=255).contains(&h.m) || h.ef_construction == 0 || h.ef_search == 0 {
        return Err(Error::invalid("HNSW needs 2 <= m <= 255 and positive ef_construction / ef_search"));
    }
    Ok(())
}

impl IndexSpec {
    fn kind(&self) -> String {
        match self {
            IndexSpec::Plaid(_) => PLAID.into(),
            IndexSpec::Hnsw { field, .. } => hnsw_kind(field),
            IndexSpec::Muvera(_) => MUVERA.into(),
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            IndexSpec::Plaid(o) => {
                if ![1, 2, 4].contains(&o.nbits) {
                    return Err(Error::invalid("nbits must be 1, 2 or 4"));
                }
                if o.centroids.is_some_and(|k| k == 0 || k > MAX_CENTROIDS) || o.sample == 0 {
                    return Err(Error::invalid(format!(
                        "centroids must be 1..={MAX_CENTROIDS} and sample > 0"
                    )));
                }
                Ok(())
            }
            IndexSpec::Hnsw { params, .. } => check_hnsw(params),
            IndexSpec::Muvera(o) => check_hnsw(&o.hnsw),
        }
    }

    fn params_json(&self) -> Result<String> {
        let j = match self {
            IndexSpec::Plaid(o) => serde_json::to_string(o),
            IndexSpec::Hnsw { params, .. } => serde_json::to_string(params),
            IndexSpec::Muvera(o) => serde_json::to_string(o),
        };
        j.map_err(|e| Error::invalid(e.to_string()))
    }
}

/// Train a PLAID codec on a uniform sample of the token vectors of `readers`.
fn train_codec(c: &CollectionRow, readers: &[Arc<SegmentReader>], opts: PlaidOptions) -> Result<Codec> {
    let total: u64 = readers.iter().map(|r| r.token_count()).sum();
    if total == 0 {
        return Err(Error::invalid(format!("collection '{}' has no token vectors to train on", c.spec.name)));
    }
    // Each token is kept with probability sample / total.
    let dim = c.spec.vectors.token_dim;
    let keep = (opts.sample as f64 / total as f64).min(1.0);
    let mut rng = Rng::new(opts.seed ^ 0x9e37_79b9);
    let mut sample = Vec::new();
    for r in readers {
        r.verify_tokens()?;
        let all = r.all_tokens();
        for t in 0..r.token_count() as usize {
            if keep >= 1.0 || f64::from(rng.unit()) < keep {
                sample.extend(all.slice(t * dim..(t + 1) * dim).to_f32());
            }
        }
    }
    let k = opts.centroids.unwrap_or_else(|| crate::index::plaid::default_centroids(total as usize));
    // The sample above is already the training set.
    Codec::train(&sample, dim, CodecParams { centroids: Some(k), sample: usize::MAX, ..opts })
}

/// MUVERA's encoder for collection `c` with `opts`.
fn muvera_encoder(c: &CollectionRow, opts: &MuveraOptions) -> Result<Muvera> {
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
    Ok(encoder)
}

impl Database {
    /// Build a PLAID token index on `collection`: train centroids and residual quantiles on
    /// a sample of its token vectors, publish them, and write a PLAID side file (codes,
    /// residuals, inverted lists) for every segment; pending documents are flushed first
    /// and no segment is rewritten. Searches use it from then on (see [`crate::Plan`]);
    /// later flushes and compactions write their side files as they go.
    ///
    /// # Errors
    /// As [`Database::create_index`].
    pub fn create_plaid_index(&self, collection: &str, opts: PlaidOptions) -> Result<IndexInfo> {
        self.create_index(collection, &IndexSpec::Plaid(opts), &mut |_| {})
    }

    /// Build an HNSW graph over the pooled vector `field` of `collection`, for dense search
    /// (and as a candidate generator for MaxSim with [`crate::Plan::Hnsw`]): one side file
    /// per segment, searched from the memory map (opening costs nothing and RAM holds only
    /// what a search touches).
    ///
    /// # Errors
    /// As [`Database::create_index`]; [`Error::NotFound`] for an unknown pooled vector.
    pub fn create_hnsw_index(&self, collection: &str, field: &str, params: HnswParams) -> Result<IndexInfo> {
        self.create_index(collection, &IndexSpec::Hnsw { field: field.into(), params }, &mut |_| {})
    }

    /// Build a MUVERA index on `collection`: draw the encoding's random matrices (published
    /// in a per-index file) and write, per segment, a side file with every document's
    /// fixed-dimensional encoding and an HNSW graph over them. [`crate::Plan::Muvera`] then
    /// finds MaxSim candidates by one graph search per segment and reranks them exactly.
    ///
    /// # Errors
    /// As [`Database::create_index`] (see [`Muvera::new`] for the option limits).
    pub fn create_muvera_index(&self, collection: &str, opts: MuveraOptions) -> Result<IndexInfo> {
        self.create_index(collection, &IndexSpec::Muvera(opts), &mut |_| {})
    }

    /// Build the index `spec` on `collection`, reporting progress after each segment.
    /// Segment files are never rewritten: each segment gets a side file, committed one
    /// segment at a time. If a build was interrupted (crash, kill, error), calling this
    /// again resumes it — with the options of the first call — skipping segments that have
    /// their side file.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when a finished index of that kind exists (drop it first),
    /// [`Error::InvalidArgument`] for bad options or (PLAID) a collection without token
    /// vectors, [`Error::NotFound`], [`Error::ReadOnly`], [`Error::Corruption`] when a
    /// segment is damaged (nothing is built for it), I/O errors (the database keeps every
    /// side file committed before).
    pub fn create_index(
        &self,
        collection: &str,
        spec: &IndexSpec,
        progress: &mut dyn FnMut(IndexProgress),
    ) -> Result<IndexInfo> {
        spec.validate()?;
        self.interrupted();
        self.flush(collection)?;
        let kind = spec.kind();
        let mut w = self.writer()?;
        let (c, existing) = {
            let tx = w.read()?;
            let c = tx.collection(collection)?;
            if let IndexSpec::Hnsw { field, .. } = spec {
                c.spec.vectors.pooled_index(field)?;
            }
            let existing = tx.index(c.id, &kind)?;
            (c, existing)
        };
        let id = match existing {
            Some(row) if row.state == "ready" => {
                return Err(Error::AlreadyExists { kind: "index", name: kind.to_string() })
            }
            Some(row) => row.id,
            None => self.start_index(&mut w, &c, spec, &kind)?,
        };
        self.build_side_files(&mut w, &c, id, progress)?;
        let tx = w.write()?;
        tx.set_index_state(id, "ready")?;
        tx.bump_generation()?;
        tx.commit()?;
        // Measure what the index is worth before the planner may choose it.
        self.calibrate_locked(&mut w, collection, &kind)?;
        drop(w);
        self.index_info(collection, &kind)
    }

    /// Record the index (state `building`) with its shared state file; returns its id.
    fn start_index(&self, w: &mut Catalog, c: &CollectionRow, spec: &IndexSpec, kind: &str) -> Result<i64> {
        let state: Option<(&str, Vec<u8>)> = match spec {
            IndexSpec::Plaid(_) if c.spec.vectors.codes.is_some() => {
                self.ensure_token_codec(w, c)?;
                None
            }
            IndexSpec::Plaid(opts) => {
                let segs = w.read()?.segments(c.id)?;
                let readers = segs.iter().map(|s| self.segment(c, s)).collect::<Result<Vec<_>>>()?;
                Some((PLAID, train_codec(c, &readers, *opts)?.to_bytes()))
            }
            IndexSpec::Muvera(opts) => Some((MUVERA, muvera_encoder(c, opts)?.to_bytes())),
            IndexSpec::Hnsw { .. } => None,
        };
        let file = match state {
            Some((ext, bytes)) => {
                let n = super::write::reserve_segment_id(w)?;
                Some(sidefile::write_state_file(&self.inner, c.id, n, ext, &bytes)?)
            }
            None => None,
        };
        let res = (|| {
            let tx = w.write()?;
            let id = tx.add_index(c.id, kind, &spec.params_json()?)?;
            if let Some(f) = &file {
                tx.set_index_file(id, f)?;
            }
            tx.bump_generation()?;
            tx.commit()?;
            Ok(id)
        })();
        if res.is_err() {
            if let Some(f) = &file {
                let _ = std::fs::remove_file(self.inner.root.join(f));
            }
        }
        res
    }

    /// A PLAID index of a codes-only collection uses the collection's token codec: train
    /// it now from the collection's vector segments when it has none yet.
    fn ensure_token_codec(&self, w: &mut Catalog, c: &CollectionRow) -> Result<()> {
        let segs = {
            let tx = w.read()?;
            if super::codec::current(&self.inner, &tx, c)?.is_some() {
                return Ok(());
            }
            tx.segments(c.id)?
        };
        let readers = segs.iter().map(|s| self.segment(c, s)).collect::<Result<Vec<_>>>()?;
        let tokens: u64 = readers.iter().map(|r| r.token_count()).sum();
        if (tokens as usize) < self.inner.opts.codec_min_tokens {
            return Err(Error::invalid(format!(
                "collection '{}' stores {} tokens as codes, and its codec is trained once it has {} \
                 token vectors ({tokens} so far): insert more before CREATE INDEX … USING plaid \
                 (exact search works meanwhile)",
                c.spec.name,
                c.spec.vectors.token_storage(),
                self.inner.opts.codec_min_tokens
            )));
        }
        let sources = super::write::reader_sources(&readers);
        let refs: Vec<&dyn crate::storage::segment::SegmentSource> =
            sources.iter().map(|s| s as &dyn crate::storage::segment::SegmentSource).collect();
        let id = super::write::reserve_segment_id(w)?;
        let tc = super::codec::train(&self.inner, c, id, &refs)?;
        let res = (|| {
            let tx = w.write()?;
            tx.add_token_codec(&tc.row)?;
            tx.bump_generation()?;
            tx.commit()
        })();
        if res.is_err() {
            let _ = std::fs::remove_file(self.inner.root.join(&tc.row.file));
        }
        res
    }

    /// Write the side file of index `id` for every segment of `c` that lacks one.
    fn build_side_files(
        &self,
        w: &mut Catalog,
        c: &CollectionRow,
        id: i64,
        progress: &mut dyn FnMut(IndexProgress),
    ) -> Result<()> {
        let (segs, have, ix) = {
            let tx = w.read()?;
            let have: HashSet<i64> =
                tx.side_files(c.id)?.into_iter().filter(|f| f.index_id == id).map(|f| f.segment_id).collect();
            let ix = index_defs(&self.inner, &tx, c)?
                .into_iter()
                .find(|d| d.id() == id)
                .ok_or_else(|| Error::Internal(format!("index {id} vanished while building")))?;
            (tx.segments(c.id)?, have, ix)
        };
        let mut p = IndexProgress {
            segments_done: 0,
            segments: segs.len() as u64,
            tokens_done: 0,
            tokens: segs.iter().map(|s| s.token_count as u64).sum(),
        };
        progress(p);
        for s in &segs {
            let r = self.segment(c, s)?;
            if !have.contains(&s.id) && !ix.legacy_in(&r) {
                r.verify_all()?;
                let row = sidefile::write_side_file(&self.inner, c, s.id, &r, &ix)?;
                let commit = (|| {
                    let tx = w.write()?;
                    tx.add_side_file(&row)?;
                    tx.bump_generation()?;
                    tx.commit()
                })();
                if let Err(e) = commit {
                    let _ = std::fs::remove_file(self.inner.root.join(&row.file));
                    return Err(e);
                }
            }
            p.segments_done += 1;
            p.tokens_done += s.token_count as u64;
            progress(p);
            if p.segments_done < p.segments && self.interrupted() {
                return Err(Error::Interrupted(format!(
                    "CREATE INDEX on {} stopped after {} of {} segments; what was built is kept (SHOW \
                     INDEXES says building): run the same CREATE INDEX again to finish",
                    c.spec.name, p.segments_done, p.segments
                )));
            }
        }
        Ok(())
    }

    pub(super) fn index_info(&self, collection: &str, kind: &str) -> Result<IndexInfo> {
        self.indexes(collection)?
            .into_iter()
            .find(|i| i.kind == kind)
            .ok_or_else(|| Error::NotFound { kind: "index", name: kind.to_string() })
    }

    /// Drop the index of kind `kind` (`"plaid"`, `"muvera"`, `"hnsw:<field>"`, `"fulltext"`)
    /// on `collection`. Its side files and state file are retired and deleted after the
    /// retire grace; no segment is rewritten. Returns false when there was none.
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
        if let Some(row) = &gone {
            super::lock_or(&self.inner.parts)?.retain(|(_, ix), _| *ix != row.id);
        }
        self.collect_garbage(&mut w, false)?;
        Ok(gone.is_some())
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
            let sides = tx.side_files(c.id)?;
            let readers = segs.iter().map(|s| self.segment(&c, s)).collect::<Result<Vec<_>>>()?;
            let defs = index_defs(&self.inner, &tx, &c)?;
            let mut out = Vec::new();
            for row in tx.indexes(c.id)? {
                let (mut indexed, mut bytes, mut centroids) = (0u64, 0u64, 0);
                if let Some(f) = &row.file {
                    bytes += std::fs::metadata(self.inner.root.join(f)).map_or(0, |m| m.len());
                }
                // The full-text index is one tantivy directory, not side files.
                #[cfg(feature = "fulltext")]
                if row.kind == super::fulltext::FULLTEXT {
                    (indexed, bytes) = (segs.len() as u64, self.fulltext_bytes(c.id));
                }
                if let Some(d) = defs.iter().find(|d| d.id() == row.id) {
                    if let IndexDef::Plaid(p) = d {
                        centroids = p.codec.num_centroids();
                    }
                    for (s, r) in segs.iter().zip(&readers) {
                        if let Some(f) = sides.iter().find(|f| f.segment_id == s.id && f.index_id == row.id) {
                            indexed += 1;
                            bytes += f.bytes as u64;
                        } else if d.legacy_in(r) {
                            indexed += 1;
                            bytes += d.legacy_bytes(r);
                        }
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
                    ready: row.state == "ready",
                });
            }
            Ok(out)
        })
    }
}
