//! The token codec of a codes-only collection (`WITH (tokens = 'plaid1' | 'plaid2' |
//! 'plaid4')`): a PLAID residual codec (`index/plaid.rs`, ALGORITHMS.md §2.2) that
//! segments use as their token storage instead of vectors.
//!
//! Life cycle, all decided here:
//! - **Training.** A flush (or a bulk batch, or VACUUM) of a codes-only collection that has
//!   no codec yet trains one once the collection holds at least
//!   [`DatabaseBuilder::codec_min_tokens`](super::DatabaseBuilder::codec_min_tokens)
//!   token vectors (default 262,144: one full training sample; the batch plus any vector
//!   segments written before, all original vectors): `K = 2^⌊log₂(16·√N)⌋` centroids for
//!   `N` tokens (PLAID's rule, capped at 65,536: codes are u16), or the collection's
//!   `codec_centroids`; k-means on `max(262,144, 16·K)` tokens drawn evenly from them
//!   (all when fewer), with the two-level assignment of `plaid::Assigner` once `K`
//!   exceeds 4,096. Before that, segments store f16 vectors; VACUUM re-encodes them.
//! - **Storage.** The codec is a state file `segments/<c>/codec<n>.tokens` (a checksummed
//!   container), named by `token_codecs` in the same catalog commit as the first segment
//!   that uses it; every codes-only segment records `(codec id, xxh3-64 of the codec
//!   bytes)` in its CODEC_REF section and is opened only with that codec.
//! - **Drift and re-training.** Each flush measures the quantisation error of what it
//!   encodes (mean `1 − cos(x, decode(encode(x)))` over a sample of its tokens) into
//!   `segments.quant_error`. VACUUM trains a new codec when the token-weighted error of the
//!   segments encoded since training exceeds [`RETRAIN_DRIFT`] × the codec's training
//!   error (the data moved away from what the centroids describe); it rewrites every
//!   segment with the new codec (document ids and row ids unchanged) and retires the old
//!   one. Re-training starts from decoded codes (the original vectors are not kept), so
//!   it costs a second quantisation of the older data: it is worth it only on drift. Codes
//!   copied between segments of the same codec are copied byte for byte, never decoded
//!   and re-encoded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Inner;
use crate::catalog::{CodecRow, CollectionRow, Txn};
use crate::index::plaid::{Codec, CodecParams};
use crate::storage::container::{self, Container, ContainerHeader};
use crate::storage::segment::{self, SegmentReader, SegmentSource};
use crate::{Error, Result};

/// VACUUM re-trains when new data's quantisation error exceeds this × the training error.
pub const RETRAIN_DRIFT: f64 = 1.25;
/// Every this-many-th token encoded is decoded again to measure the quantisation error.
const ERROR_SAMPLE_STRIDE: usize = 7;
/// Kind tag and section of a codec state file.
const KIND: &str = "tokens";
const SECTION: u32 = 1;

/// A loaded codec with its catalog row: what codes-only segments are written and read
/// with.
#[derive(Debug)]
pub(super) struct TokenCodec {
    pub row: CodecRow,
    pub codec: Arc<Codec>,
}

/// CODEC_REF bytes: codec id, content checksum (both little-endian u64).
pub(super) fn codec_ref(id: i64, sum: u64) -> [u8; 16] {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&(id as u64).to_le_bytes());
    r[8..].copy_from_slice(&sum.to_le_bytes());
    r
}

/// The codec id in CODEC_REF bytes.
fn ref_id(r: [u8; 16]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&r[..8]);
    u64::from_le_bytes(a) as i64
}

impl segment::TokenCodec for TokenCodec {
    fn codec_ref(&self) -> [u8; 16] {
        codec_ref(self.row.id, self.row.content_sum)
    }
    fn record_len(&self) -> usize {
        self.codec.residual_bytes()
    }
    fn encode(&self, rows: &[f32], codes: &mut Vec<u16>, records: &mut Vec<u8>) {
        let (assigned, bits) = self.codec.encode_many(rows);
        records.extend_from_slice(&bits);
        codes.extend(assigned.iter().map(|&c| c as u16));
    }
    fn decode(&self, codes: &[u16], records: &[u8], out: &mut [f32]) {
        self.codec.decode_many(codes, records, out);
    }
}

/// Encodes with a codec and measures the quantisation error of a sample of what it
/// encoded (one per flush or compaction).
pub(super) struct Measuring<'a> {
    codec: &'a TokenCodec,
    /// Sum of 1 − cos, tokens measured, tokens encoded from vectors.
    err: Mutex<(f64, u64, u64)>,
}

impl std::fmt::Debug for Measuring<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measuring").field("codec", &self.codec.row.id).finish_non_exhaustive()
    }
}

impl<'a> Measuring<'a> {
    pub fn new(codec: &'a TokenCodec) -> Self {
        Self { codec, err: Mutex::new((0.0, 0, 0)) }
    }

    /// Mean 1 − cos of the sampled tokens encoded from vectors (`None`: nothing encoded,
    /// e.g. every document's codes were copied).
    pub fn mean_error(&self) -> Option<f64> {
        let (sum, n, _) = *self.err.lock().ok()?;
        (n > 0).then(|| sum / n as f64)
    }
}

impl segment::TokenCodec for Measuring<'_> {
    fn codec_ref(&self) -> [u8; 16] {
        self.codec.codec_ref()
    }
    fn record_len(&self) -> usize {
        self.codec.record_len()
    }
    fn encode(&self, rows: &[f32], codes: &mut Vec<u16>, records: &mut Vec<u8>) {
        let (c0, r0) = (codes.len(), records.len());
        self.codec.encode(rows, codes, records);
        let dim = self.codec.codec.dim();
        let rb = self.codec.record_len();
        let (mut sum, mut n) = (0f64, 0u64);
        let mut y = vec![0f32; dim];
        for (t, x) in rows.chunks_exact(dim).enumerate().step_by(ERROR_SAMPLE_STRIDE) {
            let (c, r) = (&codes[c0 + t..=c0 + t], &records[r0 + t * rb..r0 + (t + 1) * rb]);
            self.codec.decode(c, r, &mut y);
            let cos: f32 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            sum += f64::from(1.0 - cos);
            n += 1;
        }
        if let Ok(mut e) = self.err.lock() {
            e.0 += sum;
            e.1 += n;
            e.2 += (rows.len() / dim) as u64;
        }
    }
    fn decode(&self, codes: &[u16], records: &[u8], out: &mut [f32]) {
        self.codec.decode(codes, records, out);
    }
}

/// Per-process cache of loaded codecs by id (a codec never changes once committed).
pub(super) type CodecCache = Mutex<HashMap<i64, Arc<TokenCodec>>>;

/// Load codec `row` (cached): its file's checksums, then its bytes against the row.
pub(super) fn load(inner: &Inner, row: &CodecRow) -> Result<Arc<TokenCodec>> {
    if let Some(c) = super::lock_or(&inner.token_codecs)?.get(&row.id) {
        return Ok(c.clone());
    }
    let path = inner.root.join(&row.file);
    let file = Container::open(&path)?;
    let bytes = file
        .section::<u8>(SECTION, true)?
        .ok_or_else(|| Error::corruption(&path, "codec section missing"))?;
    if xxhash_rust::xxh3::xxh3_64(bytes) != row.content_sum {
        return Err(Error::corruption(&path, "the token codec differs from the one the catalog names"));
    }
    let codec = Codec::from_bytes(bytes).map_err(|e| Error::corruption(&path, e.to_string()))?;
    let tc = Arc::new(TokenCodec { row: row.clone(), codec: Arc::new(codec) });
    super::lock_or(&inner.token_codecs)?.insert(row.id, tc.clone());
    Ok(tc)
}

/// The codec new segments of `c` are encoded with, if it has one.
pub(super) fn current(inner: &Inner, tx: &Txn<'_>, c: &CollectionRow) -> Result<Option<Arc<TokenCodec>>> {
    if c.spec.vectors.codes.is_none() {
        return Ok(None);
    }
    tx.token_codecs(c.id)?.last().map(|r| load(inner, r)).transpose()
}

/// Attach the codec a codes-only segment names (looked up in `rows`, the collection's
/// codecs).
pub(super) fn attach(inner: &Inner, r: &SegmentReader, rows: &[CodecRow]) -> Result<()> {
    let Some(want) = r.codec_ref() else { return Ok(()) };
    let id = ref_id(want);
    let row = rows.iter().find(|x| x.id == id).ok_or_else(|| {
        Error::corruption(
            r.path(),
            format!("the segment needs token codec {id}, which the catalog does not name"),
        )
    })?;
    r.attach_codec(load(inner, row)?)
}

/// Train a codec for `c` from `src` (and `more`, other token sources: vector segments
/// written before the codec existed), publish its file as codec `id` and return it (its
/// row is committed by the caller with the first segment that uses it).
pub(super) fn train(
    inner: &Inner,
    c: &CollectionRow,
    id: i64,
    sources: &[&dyn SegmentSource],
) -> Result<Arc<TokenCodec>> {
    let nbits = c.spec.vectors.codes.ok_or_else(|| Error::invalid("the collection stores token vectors"))?;
    let dim = c.spec.vectors.token_dim;
    let total: usize =
        sources.iter().map(|s| (0..s.doc_count()).map(|i| s.token_count(i)).sum::<usize>()).sum();
    let centroids =
        c.spec.vectors.codec_centroids.unwrap_or_else(|| crate::index::plaid::default_centroids(total));
    // At least 16 training tokens per centroid (k-means with fewer fits noise).
    let defaults = CodecParams::default();
    let params = CodecParams { nbits, sample: defaults.sample.max(16 * centroids), ..defaults };
    // Every `stride`-th token trains the codec (at most `params.sample` of them); up to
    // 4,096 of the others, evenly spread, measure its error out of sample.
    let stride = total.div_ceil(params.sample).max(1);
    let held_every = (total / 4096).max(1);
    let train_at = |t: usize| t.is_multiple_of(stride);
    let held_at = |t: usize| stride > 1 && !t.is_multiple_of(stride) && (t + 1).is_multiple_of(held_every);
    let mut sample: Vec<f32> = Vec::with_capacity(total.div_ceil(stride) * dim);
    let mut held: Vec<f32> = Vec::new();
    let mut at = 0usize;
    for s in sources {
        for i in 0..s.doc_count() {
            let n = s.token_count(i);
            if (at..at + n).any(|t| train_at(t) || held_at(t)) {
                let rows = s.tokens(i).into_f32();
                for (t, x) in rows.chunks_exact(dim).enumerate() {
                    if train_at(at + t) {
                        sample.extend_from_slice(x);
                    } else if held_at(at + t) {
                        held.extend_from_slice(x);
                    }
                }
            }
            at += n;
        }
    }
    let codec = Codec::train(&sample, dim, CodecParams { centroids: Some(centroids), ..params })?;
    // Out of sample when some tokens did not train it (else in sample).
    let train_error = mean_error(&codec, if held.is_empty() { &sample } else { &held }, dim);
    let bytes = codec.to_bytes();
    let file = format!("segments/{}/codec{id}.{KIND}", c.id);
    let dir = crate::storage::collection_dir(&inner.root, c.id);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let header =
        ContainerHeader { kind: container::kind_tag(KIND), owner_id: 0, owner_sum: 0, index_id: id as u64 };
    container::write_container(&inner.root.join(&file), &header, |w| {
        w.begin(SECTION)?;
        w.put(&bytes)
    })?;
    let row = CodecRow {
        id,
        collection_id: c.id,
        file,
        content_sum: xxhash_rust::xxh3::xxh3_64(&bytes),
        nbits,
        centroids: codec.num_centroids() as i64,
        trained_tokens: total as i64,
        train_error,
    };
    let tc = Arc::new(TokenCodec { row, codec: Arc::new(codec) });
    super::lock_or(&inner.token_codecs)?.insert(id, tc.clone());
    Ok(tc)
}

/// Mean 1 − cos over (at most 4,096 evenly spaced) rows of `xs`, encoded as flushes
/// encode ([`Codec::encode_many`]: for large codebooks the two-level assignment), so
/// that the training error and the errors flushes measure are comparable (measuring one
/// with exhaustive assignment and the other with the approximate one made VACUUM see
/// drift in stationary data).
fn mean_error(codec: &Codec, xs: &[f32], dim: usize) -> f64 {
    let n = xs.len() / dim;
    let step = n.div_ceil(4096).max(1);
    let rows: Vec<f32> = xs.chunks_exact(dim).step_by(step).flatten().copied().collect();
    if rows.is_empty() {
        return 0.0;
    }
    let (codes, bits) = codec.encode_many(&rows);
    let codes: Vec<u16> = codes.iter().map(|&c| c as u16).collect();
    let mut y = vec![0f32; rows.len()];
    codec.decode_many(&codes, &bits, &mut y);
    let m = rows.len() / dim;
    let sum: f64 = rows
        .chunks_exact(dim)
        .zip(y.chunks_exact(dim))
        .map(|(x, y)| f64::from(1.0 - x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>()))
        .sum();
    sum / m as f64
}

/// Whether VACUUM should train a new codec for `c` (see the module docs): the segments
/// `segs` with their measured errors, `codec` the current one.
pub(super) fn needs_retraining(codec: &TokenCodec, segs: &[crate::catalog::SegmentRow]) -> bool {
    new_data_error(segs).is_some_and(|e| e > RETRAIN_DRIFT * codec.row.train_error.max(1e-6))
}

/// Token-weighted mean quantisation error of the segments that measured one.
fn new_data_error(segs: &[crate::catalog::SegmentRow]) -> Option<f64> {
    let (mut e, mut n) = (0f64, 0f64);
    for s in segs {
        if let Some(q) = s.quant_error {
            e += q * s.token_count as f64;
            n += s.token_count as f64;
        }
    }
    (n > 0.0).then(|| e / n)
}

/// The token codec of a codes-only collection, as [`super::Database::token_codec`]
/// reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecInfo {
    /// Codec id (a new one after each re-training).
    pub id: i64,
    /// Bits per residual dimension.
    pub nbits: u8,
    /// Number of centroids.
    pub centroids: usize,
    /// Token vectors the collection held when the codec was trained.
    pub trained_tokens: u64,
    /// Mean 1 − cos(x, decode(encode(x))) on the training tokens.
    pub train_error: f64,
    /// Token-weighted mean of the same error over segments encoded from vectors since
    /// (`None` when none were measured).
    pub new_data_error: Option<f64>,
    /// Bytes of the codec file.
    pub bytes: u64,
}

impl super::Database {
    /// The codec a codes-only collection encodes new segments with (`None`: the collection
    /// stores vectors, or has not had enough token vectors yet:
    /// [`super::DatabaseBuilder::codec_min_tokens`]).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection; [`Error::Corruption`] for a damaged
    /// codec file.
    pub fn token_codec(&self, collection: &str) -> Result<Option<CodecInfo>> {
        let (c, rows, segs) = self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            let rows = tx.token_codecs(c.id)?;
            let segs = tx.segments(c.id)?;
            Ok((c, rows, segs))
        })?;
        let Some(row) = rows.last().filter(|_| c.spec.vectors.codes.is_some()) else { return Ok(None) };
        load(&self.inner, row)?;
        let bytes = std::fs::metadata(self.inner.root.join(&row.file)).map_or(0, |m| m.len());
        Ok(Some(CodecInfo {
            id: row.id,
            nbits: row.nbits,
            centroids: row.centroids as usize,
            trained_tokens: row.trained_tokens as u64,
            train_error: row.train_error,
            new_data_error: new_data_error(&segs),
            bytes,
        }))
    }
}
