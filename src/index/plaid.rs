//! PLAID-style token compression and search (ALGORITHMS.md §2.2, ColBERTv2 residual codec
//! + PLAID centroid interaction).
//!
//! Each token vector is stored as the id of its nearest centroid (spherical k-means over a
//! sample, centroids L2-normalised) plus its residual quantised to `nbits` per dimension
//! with bucket cut-offs and bucket values taken from quantiles of held-out residuals (all
//! dimensions jointly). Decoding is `norm(centroid + bucket_weights[bits])`. Search scores
//! candidates by centroid interaction (pruned, then full), then decompresses the
//! survivors and runs exact MaxSim on them. Our own bit layout: dimension `k`'s code
//! occupies bits `k·nbits .. (k+1)·nbits` of the packed little-endian bit string.

use rayon::prelude::*;

use crate::scoring::{scalar, DocRef, PreparedQuery};
use crate::testing::Rng;
use crate::{Error, Result};

/// Most centroids a codec may have (codes are stored as u16).
pub const MAX_CENTROIDS: usize = 1 << 16;

/// Codec training parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecParams {
    /// Bits per residual dimension: 1, 2 or 4.
    pub nbits: u8,
    /// Number of centroids; `None` = `2^floor(log2(16·√N))` for `N` training vectors.
    pub centroids: Option<usize>,
    /// k-means iterations (ColBERT uses 4).
    pub iterations: usize,
    /// At most this many vectors train the codec.
    pub sample: usize,
    /// Seed of the sampling and initialisation.
    pub seed: u64,
}

impl Default for CodecParams {
    fn default() -> Self {
        Self { nbits: 2, centroids: None, iterations: 8, sample: 262_144, seed: 1 }
    }
}

/// Centroids and residual quantiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Codec {
    dim: usize,
    nbits: u8,
    centroids: Vec<f32>,
    cutoffs: Vec<f32>,
    weights: Vec<f32>,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let w = (pos - lo as f64) as f32;
    sorted[lo] * (1.0 - w) + sorted[hi] * w
}

impl Codec {
    /// Train on `vectors` (`n × dim`, unit rows).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no vectors, a ragged matrix or `nbits ∉ {1, 2, 4}`.
    pub fn train(vectors: &[f32], dim: usize, p: CodecParams) -> Result<Self> {
        if dim == 0 || vectors.is_empty() || !vectors.len().is_multiple_of(dim) {
            return Err(Error::invalid("codec training needs a non-empty n × dim matrix"));
        }
        if ![1, 2, 4].contains(&p.nbits) {
            return Err(Error::invalid("nbits must be 1, 2 or 4"));
        }
        let n = vectors.len() / dim;
        let mut rng = Rng::new(p.seed);
        let mut idx: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            idx.swap(i, rng.below(i as u64 + 1) as usize);
        }
        idx.truncate(p.sample.min(n));
        let heldout = (idx.len() / 20).clamp(1.min(idx.len() - 1), 50_000);
        let (held, train) = idx.split_at(heldout);
        let train = if train.is_empty() { held } else { train };
        let k = p
            .centroids
            .unwrap_or_else(|| 1usize << ((16.0 * (n as f64).sqrt()).log2().floor() as u32))
            .clamp(1, train.len());
        let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
        let mut centroids: Vec<f32> = train.iter().take(k).flat_map(|&i| row(i).iter().copied()).collect();
        let train_rows: Vec<f32> = train.iter().flat_map(|&i| row(i).iter().copied()).collect();
        for _ in 0..p.iterations {
            let assign: Vec<u32> = assign(&centroids, dim, &train_rows);
            let mut sums = vec![0f32; k * dim];
            let mut counts = vec![0usize; k];
            for (&i, &c) in train.iter().zip(&assign) {
                let c = c as usize;
                sums[c * dim..(c + 1) * dim].iter_mut().zip(row(i)).for_each(|(s, x)| *s += x);
                counts[c] += 1;
            }
            for c in 0..k {
                let dst = &mut centroids[c * dim..(c + 1) * dim];
                if counts[c] == 0 {
                    dst.copy_from_slice(row(train[rng.below(train.len() as u64) as usize]));
                } else {
                    dst.copy_from_slice(&sums[c * dim..(c + 1) * dim]);
                }
                crate::testing::normalize(dst);
            }
        }
        // Centroids are kept at f16 precision, the precision they are persisted with.
        centroids.iter_mut().for_each(|c| *c = half::f16::from_f32(*c).to_f32());
        let held_rows: Vec<f32> = held.iter().flat_map(|&i| row(i).iter().copied()).collect();
        let held_codes = assign(&centroids, dim, &held_rows);
        let mut residuals: Vec<f32> = held
            .iter()
            .zip(&held_codes)
            .flat_map(|(&i, &c)| {
                let c = c as usize;
                row(i).iter().zip(&centroids[c * dim..(c + 1) * dim]).map(|(x, y)| x - y).collect::<Vec<_>>()
            })
            .collect();
        residuals.sort_by(f32::total_cmp);
        let b = 1usize << p.nbits;
        let cutoffs = (1..b).map(|i| quantile(&residuals, i as f64 / b as f64)).collect();
        let weights = (0..b).map(|i| quantile(&residuals, (i as f64 + 0.5) / b as f64)).collect();
        Ok(Self { dim, nbits: p.nbits, centroids, cutoffs, weights })
    }

    /// Vector dimension.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of centroids.
    #[must_use]
    pub fn num_centroids(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// The centroids (`K × dim`, unit rows).
    #[must_use]
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Bytes of packed residual per vector.
    #[must_use]
    pub fn residual_bytes(&self) -> usize {
        (self.dim * self.nbits as usize).div_ceil(8)
    }

    /// Encode `x`: (centroid id, packed residual bits).
    #[must_use]
    pub fn encode(&self, x: &[f32]) -> (u32, Vec<u8>) {
        let code = nearest(&self.centroids, self.dim, x);
        (code, self.quantize(code, x))
    }

    /// Quantise the residual of `x` against centroid `code`.
    #[must_use]
    pub fn quantize(&self, code: u32, x: &[f32]) -> Vec<u8> {
        let c = &self.centroids[code as usize * self.dim..(code as usize + 1) * self.dim];
        let nb = self.nbits as usize;
        let mut bits = vec![0u8; self.residual_bytes()];
        for (k, (xi, ci)) in x.iter().zip(c).enumerate() {
            let bucket = self.cutoffs.partition_point(|cut| *cut <= xi - ci) as u8;
            let pos = k * nb;
            bits[pos / 8] |= bucket << (pos % 8);
        }
        bits
    }

    /// Decode into `out` (`dim` values): `norm(centroid + bucket_weights[bits])`.
    pub fn decode(&self, code: u32, bits: &[u8], out: &mut [f32]) {
        self.decode_raw(code, bits, out);
        crate::testing::normalize(out);
    }

    /// `centroid + bucket_weights[bits]`, before normalisation.
    pub fn decode_raw(&self, code: u32, bits: &[u8], out: &mut [f32]) {
        let nb = self.nbits as usize;
        let mask = (1u8 << nb) - 1;
        let c = &self.centroids[code as usize * self.dim..(code as usize + 1) * self.dim];
        for (k, (o, ci)) in out.iter_mut().zip(c).enumerate() {
            let pos = k * nb;
            let bucket = (bits[pos / 8] >> (pos % 8)) & mask;
            *o = ci + self.weights[bucket as usize];
        }
    }
}

/// Nearest centroid (max dot product) of each row of `xs`: one batched matmul per 4,096
/// rows on candle when the `embed` feature is on, plain loops otherwise.
#[must_use]
pub fn assign(centroids: &[f32], dim: usize, xs: &[f32]) -> Vec<u32> {
    #[cfg(feature = "embed")]
    {
        use candle_core::{Device, Tensor};
        let k = centroids.len() / dim;
        let run = || -> candle_core::Result<Vec<u32>> {
            let ct = Tensor::from_slice(centroids, (k, dim), &Device::Cpu)?.t()?;
            let mut out = Vec::with_capacity(xs.len() / dim);
            for chunk in xs.chunks(4096 * dim) {
                let x = Tensor::from_slice(chunk, (chunk.len() / dim, dim), &Device::Cpu)?;
                out.extend(x.matmul(&ct)?.argmax(1)?.to_vec1::<u32>()?);
            }
            Ok(out)
        };
        if let Ok(v) = run() {
            return v;
        }
    }
    xs.par_chunks(dim).map(|x| nearest(centroids, dim, x)).collect()
}

fn nearest(centroids: &[f32], dim: usize, x: &[f32]) -> u32 {
    let mut best = (f32::NEG_INFINITY, 0u32);
    for (i, c) in centroids.chunks_exact(dim).enumerate() {
        let s = dot(c, x);
        if s > best.0 {
            best = (s, i as u32);
        }
    }
    best.1
}

/// Search knobs (PLAID defaults by `k`: see [`SearchParams::for_k`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Centroids probed per query token.
    pub ncells: usize,
    /// Centroid score threshold of the pruned interaction.
    pub centroid_threshold: f32,
    /// Candidates kept after the pruned interaction (a quarter survive the full one).
    pub ndocs: usize,
}

impl SearchParams {
    /// ColBERT's defaults for top-`k`.
    #[must_use]
    pub fn for_k(k: usize) -> Self {
        match k {
            0..=10 => Self { ncells: 1, centroid_threshold: 0.5, ndocs: 256 },
            11..=100 => Self { ncells: 2, centroid_threshold: 0.45, ndocs: 1024 },
            _ => Self { ncells: 4, centroid_threshold: 0.4, ndocs: (4 * k).max(4096) },
        }
    }

    /// Exhaustive: every centroid, no pruning, every candidate (equals exact MaxSim on the
    /// decompressed vectors).
    #[must_use]
    pub fn exhaustive() -> Self {
        Self { ncells: usize::MAX, centroid_threshold: f32::NEG_INFINITY, ndocs: usize::MAX }
    }
}

/// Compressed token vectors of a document collection, with inverted lists.
#[derive(Debug, Clone)]
pub struct PlaidIndex {
    codec: Codec,
    /// Centroid id per token (u16: at most 65,536 centroids).
    codes: Vec<u16>,
    residuals: Vec<u8>,
    offsets: Vec<usize>,
    ivf: Vec<Vec<u32>>,
}

impl PlaidIndex {
    /// Compress `docs` (each `n_i × dim`, unit rows) with `codec`.
    #[must_use]
    pub fn build(codec: Codec, docs: &[&[f32]]) -> Self {
        let dim = codec.dim;
        let flat: Vec<f32> = docs.iter().flat_map(|d| d.iter().copied()).collect();
        let all_codes = assign(&codec.centroids, dim, &flat);
        let mut at = 0;
        let per_doc: Vec<(usize, usize)> = docs
            .iter()
            .map(|d| {
                let n = d.len() / dim;
                at += n;
                (at - n, n)
            })
            .collect();
        let encoded: Vec<Vec<(u32, Vec<u8>)>> = docs
            .par_iter()
            .zip(&per_doc)
            .map(|(d, &(start, _))| {
                d.chunks_exact(dim)
                    .enumerate()
                    .map(|(j, x)| (all_codes[start + j], codec.quantize(all_codes[start + j], x)))
                    .collect()
            })
            .collect();
        let mut offsets = vec![0];
        let mut codes = Vec::new();
        let mut residuals = Vec::new();
        let mut ivf = vec![Vec::new(); codec.num_centroids()];
        for (doc, toks) in encoded.into_iter().enumerate() {
            for (c, bits) in toks {
                if ivf[c as usize].last() != Some(&(doc as u32)) {
                    ivf[c as usize].push(doc as u32);
                }
                codes.push(c as u16);
                residuals.extend(bits);
            }
            offsets.push(codes.len());
        }
        Self { codec, codes, residuals, offsets, ivf }
    }

    /// Documents indexed.
    #[must_use]
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The codec.
    #[must_use]
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Index bytes per token vector: code (2) + residual + inverted lists (4 per entry) +
    /// the f16 centroid table.
    #[must_use]
    pub fn bytes_per_token(&self) -> f64 {
        let ivf: usize = self.ivf.iter().map(|l| l.len() * 4).sum();
        let total = self.codes.len() * 2 + self.residuals.len() + ivf + self.codec.centroids.len() * 2;
        total as f64 / self.codes.len().max(1) as f64
    }

    /// Decompress document `doc` (`n × dim`).
    #[must_use]
    pub fn decompress(&self, doc: usize) -> Vec<f32> {
        let (dim, rb) = (self.codec.dim, self.codec.residual_bytes());
        let mut out = vec![0f32; (self.offsets[doc + 1] - self.offsets[doc]) * dim];
        for (j, t) in (self.offsets[doc]..self.offsets[doc + 1]).enumerate() {
            self.codec.decode(
                u32::from(self.codes[t]),
                &self.residuals[t * rb..(t + 1) * rb],
                &mut out[j * dim..(j + 1) * dim],
            );
        }
        out
    }

    /// Centroid interaction score of `doc`: `Σ_i max_{j, keep[code_j]} S_c[code_j, i]`
    /// (−9999 for a query token when no code of the document survives).
    fn centroid_score(&self, doc: usize, sc: &[f32], lq: usize, keep: Option<&[bool]>) -> f32 {
        let codes = &self.codes[self.offsets[doc]..self.offsets[doc + 1]];
        (0..lq)
            .map(|i| {
                codes
                    .iter()
                    .filter(|c| keep.is_none_or(|k| k[**c as usize]))
                    .map(|c| sc[*c as usize * lq + i])
                    .fold(-9999.0, f32::max)
            })
            .sum()
    }

    /// Top-`k` documents for query `q` (`lq × dim`): centroid probe, pruned and full
    /// centroid interaction, then exact MaxSim on decompressed vectors. Returns
    /// `(score, doc)` best first, plus the number of candidates after each stage.
    #[must_use]
    pub fn search(&self, q: &[f32], k: usize, p: SearchParams) -> (Vec<(f32, u32)>, [usize; 3]) {
        let dim = self.codec.dim;
        let (full, stages) = self.candidates(q, k, p);
        let pq = PreparedQuery::new(q, dim, None);
        let mut exact: Vec<(f32, u32)> = full
            .par_iter()
            .map(|&d| {
                let v = self.decompress(d);
                let s =
                    pq.as_ref().map_or_else(|_| scalar::maxsim(q, &v, dim), |pq| pq.maxsim(DocRef::F32(&v)));
                (s, d as u32)
            })
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        exact.truncate(k);
        (exact, stages)
    }

    /// The candidate generation part of [`PlaidIndex::search`]: the documents that survive
    /// the full centroid interaction, best first, for an exact rerank on stored vectors.
    #[must_use]
    pub fn candidates(&self, q: &[f32], k: usize, p: SearchParams) -> (Vec<usize>, [usize; 3]) {
        let dim = self.codec.dim;
        let lq = q.len() / dim;
        let kc = self.codec.num_centroids();
        let sc = self.centroid_query_scores(q);
        let mut cand = vec![false; self.len()];
        let ncells = p.ncells.min(kc);
        for i in 0..lq {
            let mut col: Vec<(f32, usize)> = (0..kc).map(|c| (sc[c * lq + i], c)).collect();
            col.select_nth_unstable_by(ncells.saturating_sub(1).min(kc - 1), |a, b| b.0.total_cmp(&a.0));
            for &(_, c) in col.iter().take(ncells) {
                self.ivf[c].iter().for_each(|&d| cand[d as usize] = true);
            }
        }
        let cands: Vec<usize> = (0..self.len()).filter(|&d| cand[d]).collect();
        let keep: Vec<bool> =
            (0..kc).map(|c| (0..lq).any(|i| sc[c * lq + i] >= p.centroid_threshold)).collect();
        let top = |docs: &[usize], n: usize, keep: Option<&[bool]>| -> Vec<usize> {
            let mut s: Vec<(f32, usize)> =
                docs.par_iter().map(|&d| (self.centroid_score(d, &sc, lq, keep), d)).collect();
            s.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            s.into_iter().take(n).map(|x| x.1).collect()
        };
        let pruned = top(&cands, p.ndocs, Some(&keep));
        let full = top(&pruned, (p.ndocs / 4).max(k), None);
        let stages = [cands.len(), pruned.len(), full.len()];
        (full, stages)
    }

    /// Upper bound of any centroid interaction score: `Σ_i max_c S_c[c, i]` (tests).
    #[must_use]
    pub fn centroid_bound(&self, q: &[f32]) -> f32 {
        let dim = self.codec.dim;
        q.chunks_exact(dim)
            .map(|qi| {
                self.codec.centroids.chunks_exact(dim).map(|c| dot(c, qi)).fold(f32::NEG_INFINITY, f32::max)
            })
            .sum()
    }

    /// Centroid interaction score of every document, unpruned (tests).
    #[must_use]
    pub fn centroid_scores(&self, q: &[f32]) -> Vec<f32> {
        let lq = q.len() / self.codec.dim;
        let sc = self.centroid_query_scores(q);
        (0..self.len()).map(|d| self.centroid_score(d, &sc, lq, None)).collect()
    }

    /// `S_c = C Qᵀ` (`K × lq`, row-major).
    fn centroid_query_scores(&self, q: &[f32]) -> Vec<f32> {
        let dim = self.codec.dim;
        self.codec
            .centroids
            .par_chunks(dim)
            .flat_map_iter(|c| q.chunks_exact(dim).map(move |qi| dot(c, qi)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(rng: &mut Rng, n: usize, dim: usize) -> Vec<Vec<f32>> {
        let topics = rng.unit_vectors(16, dim);
        (0..n)
            .map(|i| {
                let len = 8 + rng.below(24) as usize;
                let mut d = Vec::with_capacity(len * dim);
                for _ in 0..len {
                    let t = (i + rng.below(3) as usize) % 16;
                    let mut r: Vec<f32> = topics[t * dim..(t + 1) * dim]
                        .iter()
                        .map(|x| x + 0.3 * rng.normal() / (dim as f32).sqrt())
                        .collect();
                    crate::testing::normalize(&mut r);
                    d.extend(r);
                }
                d
            })
            .collect()
    }

    fn index(nbits: u8) -> (PlaidIndex, Vec<Vec<f32>>, Rng) {
        let mut rng = Rng::new(11);
        let dim = 32;
        let docs = corpus(&mut rng, 300, dim);
        let all: Vec<f32> = docs.iter().flatten().copied().collect();
        let codec =
            Codec::train(&all, dim, CodecParams { nbits, centroids: Some(64), ..CodecParams::default() })
                .unwrap();
        let refs: Vec<&[f32]> = docs.iter().map(Vec::as_slice).collect();
        (PlaidIndex::build(codec, &refs), docs, rng)
    }

    #[test]
    fn decode_then_encode_keeps_the_codes() {
        for (nbits, min_pct) in [(2, 95), (4, 97)] {
            let (ix, docs, _) = index(nbits);
            let dim = 32;
            let (mut same, mut total) = (0, 0);
            for x in docs.iter().flat_map(|d| d.chunks_exact(dim)).take(2000) {
                let (code, bits) = ix.codec.encode(x);
                // The residual quantiser is exactly idempotent: bucket values lie inside
                // their buckets.
                let mut raw = vec![0f32; dim];
                ix.codec.decode_raw(code, &bits, &mut raw);
                assert_eq!(ix.codec.quantize(code, &raw), bits, "nbits {nbits}");
                // After re-normalisation the nearest centroid can move for vectors near a
                // Voronoi boundary; almost all keep their code.
                let mut y = vec![0f32; dim];
                ix.codec.decode(code, &bits, &mut y);
                same += usize::from(ix.codec.encode(&y).0 == code);
                total += 1;
            }
            assert!(
                same * 100 >= total * min_pct,
                "nbits {nbits}: {same}/{total} codes survive a round trip"
            );
            let err: f32 = docs[0]
                .chunks_exact(dim)
                .zip(ix.decompress(0).chunks_exact(dim))
                .map(|(a, b)| 1.0 - dot(a, b))
                .fold(0.0, f32::max);
            assert!(err < 0.2, "decompressed vectors stay close (1 - cos = {err})");
        }
    }

    #[test]
    fn exhaustive_search_equals_exact_maxsim_on_decompressed_vectors() {
        let (ix, _, mut rng) = index(2);
        let q = rng.unit_vectors(8, 32);
        let (got, stages) = ix.search(&q, 20, SearchParams::exhaustive());
        assert_eq!(stages[0], ix.len());
        let mut want: Vec<(f32, u32)> =
            (0..ix.len()).map(|d| (scalar::maxsim(&q, &ix.decompress(d), 32), d as u32)).collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.1, w.1);
            assert!((g.0 - w.0).abs() < 1e-4);
        }
    }

    #[test]
    fn centroid_scores_are_bounded_and_default_search_finds_the_best() {
        let (ix, docs, mut rng) = index(4);
        let q = rng.unit_vectors(6, 32);
        let bound = ix.centroid_bound(&q);
        assert!(ix.centroid_scores(&q).iter().all(|s| *s <= bound + 1e-5));
        // A query made of a document's own tokens finds it first with the default knobs.
        let target = 123;
        let q = docs[target][..6 * 32].to_vec();
        let (hits, _) = ix.search(&q, 10, SearchParams::for_k(10));
        assert_eq!(hits[0].1, target as u32);
        // Code (2 B) + residual (4 bits × 32 = 16 B) + at most one list entry (4 B) per token
        // + the f16 centroid table amortised over the tokens.
        let tokens: usize = docs.iter().map(|d| d.len() / 32).sum();
        let base = 2.0 + ix.codec().residual_bytes() as f64;
        let cap = base + 4.0 + (ix.codec().centroids().len() * 2) as f64 / tokens as f64;
        assert!(ix.bytes_per_token() >= base && ix.bytes_per_token() <= cap, "{}", ix.bytes_per_token());
    }
}
