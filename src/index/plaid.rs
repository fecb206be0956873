//! PLAID-style token compression and search (ALGORITHMS.md §2.2, ColBERTv2 residual codec
//! + PLAID centroid interaction).
//!
//! Each token vector is stored as the id of its nearest centroid (spherical k-means over a
//! sample, centroids L2-normalised) plus its residual quantised to `nbits` per dimension
//! with bucket cut-offs and bucket values taken from quantiles of held-out residuals (all
//! dimensions jointly). Decoding is `norm(centroid + bucket_weights[bits])`. Search probes
//! each query token's best centroids, scores the documents of those inverted lists by an
//! approximate centroid interaction computed from the lists alone (WARP-style imputation,
//! [`PlaidView::probe_scores`]), keeps the best by full centroid interaction, then
//! decompresses the survivors and runs exact MaxSim on them. Our own bit layout: dimension `k`'s code
//! occupies bits `k·nbits .. (k+1)·nbits` of the packed little-endian bit string.

use rayon::prelude::*;

use crate::rng::Rng;
use crate::scoring::{scalar, DocRef, PreparedQuery};
use crate::{Error, Result};

/// Most centroids a codec may have (codes are stored as u16).
pub const MAX_CENTROIDS: usize = 1 << 16;

/// PLAID's centroid count for `n` token vectors: `2^⌊log₂(16·√n)⌋`, at most
/// [`MAX_CENTROIDS`].
#[must_use]
pub fn default_centroids(n: usize) -> usize {
    (1usize << ((16.0 * (n.max(1) as f64).sqrt()).log2().floor() as u32)).min(MAX_CENTROIDS)
}

/// Codec training parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
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
#[derive(Debug, Clone)]
pub struct Codec {
    dim: usize,
    nbits: u8,
    centroids: Vec<f32>,
    cutoffs: Vec<f32>,
    weights: Vec<f32>,
    /// Bucket values of every residual byte: 256 × (8 / nbits) floats (fast decoding).
    byte_lut: Vec<f32>,
    /// Two-level nearest-centroid search, built on first use for large codebooks.
    assigner: std::sync::Arc<std::sync::OnceLock<Assigner>>,
}

impl PartialEq for Codec {
    fn eq(&self, o: &Self) -> bool {
        (self.dim, self.nbits, &self.centroids, &self.cutoffs, &self.weights)
            == (o.dim, o.nbits, &o.centroids, &o.cutoffs, &o.weights)
    }
}

/// Codebooks up to this size are searched exhaustively (one GEMM); larger ones through
/// an [`Assigner`].
pub const EXHAUSTIVE_ASSIGN_MAX: usize = 4096;

/// Two-level nearest-centroid search for large codebooks (building codes for hundreds of
/// millions of tokens must not cost `tokens × K` dot products): the centroids are grouped
/// by k-means into `G = 2^⌈log₂ √K⌉` cells; a token is scored against the `G` cell centres
/// (one GEMM per batch), then against the members of its [`ASSIGN_PROBE`] best cells (one
/// GEMM per cell over the tokens that probe it). `G + probe · K / G` dot products per token
/// instead of `K` (16,384 centroids: 640 instead of 16,384), then a refinement pass over
/// context windows of consecutive rows ([`REFINE_WINDOW`]). Approximate: a token whose
/// nearest centroid is found neither in its probed cells nor by its window gets a near one
/// instead, which costs a slightly larger residual, never a wrong decoding.
#[derive(Debug)]
pub struct Assigner {
    dim: usize,
    /// Cells searched per token.
    probe: usize,
    /// Rows per context window of the refinement pass (0: none).
    window: usize,
    /// Where each centroid's vector lies in `members`: (cell, position in the cell).
    slot: Vec<(u32, u32)>,
    centres: Vec<f32>,
    /// Centroid ids of each cell, and their vectors (row-major).
    members: Vec<(Vec<u32>, Vec<f32>)>,
}

/// Rows assigned per pass by [`Assigner::assign`].
pub const ASSIGN_CHUNK: usize = 65_536;

/// Cells probed per token by [`Assigner`].
pub const ASSIGN_PROBE: usize = 4;

impl Assigner {
    /// Group `centroids` (`K × dim`) into cells.
    #[must_use]
    pub fn new(centroids: &[f32], dim: usize) -> Self {
        let k = centroids.len() / dim;
        let g = 1usize << ((k as f64).sqrt().log2().ceil() as u32);
        Self::with_shape(centroids, dim, g, ASSIGN_PROBE).refine_window(REFINE_WINDOW)
    }

    /// Refine in context windows of `rows` consecutive rows (0: off): see
    /// [`REFINE_WINDOW`].
    #[must_use]
    pub fn refine_window(mut self, rows: usize) -> Self {
        self.window = rows;
        self
    }

    /// Group `centroids` into `cells` cells (at most one per centroid), each token
    /// searching its `probe` best cells.
    #[must_use]
    pub fn with_shape(centroids: &[f32], dim: usize, cells: usize, probe: usize) -> Self {
        let k = centroids.len() / dim;
        let g = cells.clamp(1, k.max(1));
        let mut centres: Vec<f32> =
            centroids.chunks_exact(dim).step_by(k / g).take(g).flatten().copied().collect();
        let mut cell = vec![0u32; k];
        for _ in 0..10 {
            cell = assign(&centres, dim, centroids);
            let mut sums = vec![0f32; g * dim];
            let mut counts = vec![0usize; g];
            for (c, &a) in centroids.chunks_exact(dim).zip(&cell) {
                sums[a as usize * dim..(a as usize + 1) * dim].iter_mut().zip(c).for_each(|(s, x)| *s += x);
                counts[a as usize] += 1;
            }
            for (j, n) in counts.iter().enumerate() {
                if *n > 0 {
                    let dst = &mut centres[j * dim..(j + 1) * dim];
                    dst.copy_from_slice(&sums[j * dim..(j + 1) * dim]);
                    crate::vector::normalize(dst);
                }
            }
        }
        let mut members: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); g];
        let mut slot = Vec::with_capacity(k);
        for (i, (c, &a)) in centroids.chunks_exact(dim).zip(&cell).enumerate() {
            let m = &mut members[a as usize];
            slot.push((a, m.0.len() as u32));
            m.0.push(i as u32);
            m.1.extend_from_slice(c);
        }
        Self { dim, probe: probe.max(1), window: 0, slot, centres, members }
    }

    /// The (approximately) nearest centroid of each row of `xs`, [`ASSIGN_CHUNK`] rows at
    /// a time (bounded memory: the coarse scores of a chunk are `chunk × G` floats).
    #[must_use]
    pub fn assign(&self, xs: &[f32]) -> Vec<u32> {
        xs.chunks(ASSIGN_CHUNK * self.dim).flat_map(|c| self.assign_chunk(c)).collect()
    }

    fn assign_chunk(&self, xs: &[f32]) -> Vec<u32> {
        let dim = self.dim;
        let n = xs.len() / dim;
        let g = self.centres.len() / dim;
        let probe = self.probe.min(g);
        let coarse = scores(&self.centres, dim, xs);
        // Which tokens probe each cell.
        let mut by_cell: Vec<Vec<u32>> = vec![Vec::new(); g];
        let mut order: Vec<u32> = (0..g as u32).collect();
        for t in 0..n {
            let row = &coarse[t * g..(t + 1) * g];
            order.select_nth_unstable_by(probe - 1, |a, b| row[*b as usize].total_cmp(&row[*a as usize]));
            for &c in &order[..probe] {
                by_cell[c as usize].push(t as u32);
            }
        }
        let found: Vec<Vec<(u32, f32, u32)>> = by_cell
            .par_iter()
            .zip(self.members.par_iter())
            .filter(|(toks, (ids, _))| !toks.is_empty() && !ids.is_empty())
            .map(|(toks, (ids, vecs))| {
                let x: Vec<f32> = toks
                    .iter()
                    .flat_map(|&t| xs[t as usize * dim..(t as usize + 1) * dim].iter().copied())
                    .collect();
                let s = scores(vecs, dim, &x);
                let m = ids.len();
                toks.iter()
                    .enumerate()
                    .map(|(j, &t)| {
                        let row = &s[j * m..(j + 1) * m];
                        let (best, score) =
                            row.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |acc, (i, &v)| {
                                if v > acc.1 {
                                    (i, v)
                                } else {
                                    acc
                                }
                            });
                        (t, score, ids[best])
                    })
                    .collect()
            })
            .collect();
        let mut best = vec![(f32::NEG_INFINITY, 0u32); n];
        for (t, score, id) in found.into_iter().flatten() {
            let b = &mut best[t as usize];
            if score > b.0 || (score == b.0 && id < b.1) {
                *b = (score, id);
            }
        }
        let first: Vec<u32> = best.into_iter().map(|b| b.1).collect();
        if self.window == 0 {
            return first;
        }
        // Refinement: each row against every centroid found for the rows of its window.
        let w = self.window;
        first
            .par_chunks(w)
            .zip(xs.par_chunks(w * dim))
            .flat_map_iter(|(found, rows)| {
                let mut ids = found.to_vec();
                ids.sort_unstable();
                ids.dedup();
                let cand: Vec<f32> = ids
                    .iter()
                    .flat_map(|&c| {
                        let (cell, pos) = self.slot[c as usize];
                        self.members[cell as usize].1[pos as usize * dim..(pos as usize + 1) * dim]
                            .iter()
                            .copied()
                    })
                    .collect();
                let s = scores(&cand, dim, rows);
                let m = ids.len();
                (0..found.len())
                    .map(|t| {
                        let row = &s[t * m..(t + 1) * m];
                        // Ascending ids: the first maximum is the lowest id among equals.
                        let j = (0..m).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                        ids[j]
                    })
                    .collect::<Vec<u32>>()
            })
            .collect()
    }
}

/// Rows per context window of [`Assigner`]'s refinement pass. Consecutive rows are mostly
/// tokens of one document, and a document's tokens share a few topics: once the two-level
/// search has assigned every row, each row is scored against every centroid found for the
/// rows of its window (one small GEMM per window, ~`window` distinct centroids at most)
/// and takes the best. A row whose own search missed its nearest centroid gets it back
/// when another row of its document found it; no row ever ends farther than before (its
/// own centroid is among those scored). On the `scale` generator at 1M documents (20,000
/// random topics, 65,536 centroids, 256 cells) it raises the share of tokens that get
/// their exact nearest centroid from 0.69 (8 cells probed, no refinement) to 0.996 (4
/// cells probed, then refined), at 174k tokens/s instead of 94k on 2 cores, and the
/// quantisation error `1 − cos` from 0.066 to 0.042 (exhaustive search: 0.042) — the
/// `codec` bench suite.
pub const REFINE_WINDOW: usize = 256;

/// `xs · centroidsᵀ` (`n × K`, row-major): candle's GEMM with the `embed` feature, loops
/// otherwise.
fn scores(centroids: &[f32], dim: usize, xs: &[f32]) -> Vec<f32> {
    let k = centroids.len() / dim;
    #[cfg(feature = "embed")]
    {
        use candle_core::{Device, Tensor};
        let run = || -> candle_core::Result<Vec<f32>> {
            let ct = Tensor::from_slice(centroids, (k, dim), &Device::Cpu)?.t()?;
            let x = Tensor::from_slice(xs, (xs.len() / dim, dim), &Device::Cpu)?;
            x.matmul(&ct)?.flatten_all()?.to_vec1::<f32>()
        };
        if let Ok(v) = run() {
            return v;
        }
    }
    let mut out = vec![0f32; xs.len() / dim * k];
    out.par_chunks_mut(k.max(1)).zip(xs.par_chunks(dim)).for_each(|(o, x)| {
        for (oi, c) in o.iter_mut().zip(centroids.chunks_exact(dim)) {
            *oi = dot(c, x);
        }
    });
    out
}

/// One token of [`Codec::decode_many`]: `out = norm(c + lut[bytes])`, 16 components at a
/// time (`16 / PER` residual bytes of `PER` components each) with the squared norm summed
/// in 16 lanes alongside, so that the compiler keeps it all in vector registers.
#[inline]
fn decode_row<const PER: usize>(lut: &[f32], c: &[f32], bits: &[u8], out: &mut [f32]) {
    let mut acc = [0f32; 16];
    for ((o, cc), bb) in out.chunks_exact_mut(16).zip(c.chunks_exact(16)).zip(bits.chunks_exact(16 / PER)) {
        let mut w = [0f32; 16];
        for (j, &byte) in bb.iter().enumerate() {
            w[j * PER..(j + 1) * PER].copy_from_slice(&lut[byte as usize * PER..(byte as usize + 1) * PER]);
        }
        for i in 0..16 {
            let x = cc[i] + w[i];
            o[i] = x;
            acc[i] += x * x;
        }
    }
    let inv = 1.0 / acc.iter().sum::<f32>().sqrt().max(1e-12);
    out.iter_mut().for_each(|x| *x *= inv);
}

/// The bucket values of each possible residual byte, low bits first.
fn byte_lut(nbits: u8, weights: &[f32]) -> Vec<f32> {
    let per = 8 / nbits as usize;
    let mask = (1u16 << nbits) - 1;
    (0..256u16)
        .flat_map(|b| (0..per).map(move |j| weights[((b >> (j * nbits as usize)) & mask) as usize]))
        .collect()
}

/// Dot product through simsimd's SIMD kernels (a plain iterator sum does not vectorise:
/// float addition is not reassociated).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::scoring::dot(a, DocRef::F32(b))
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
        let (held, train) = idx.split_at_mut(heldout);
        // A random subset, in the input's order: consecutive rows stay neighbours, which
        // the assignment's context windows rely on ([`REFINE_WINDOW`]).
        held.sort_unstable();
        train.sort_unstable();
        let (held, train) = (&*held, &*train);
        let train = if train.is_empty() { held } else { train };
        let k = p.centroids.unwrap_or_else(|| default_centroids(n)).clamp(1, train.len());
        let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
        let mut centroids: Vec<f32> = train.iter().take(k).flat_map(|&i| row(i).iter().copied()).collect();
        let train_rows: Vec<f32> = train.iter().flat_map(|&i| row(i).iter().copied()).collect();
        for _ in 0..p.iterations {
            // Large codebooks: the two-level search (`Assigner`), rebuilt from this
            // iteration's centroids, instead of `n × K` dot products.
            let assign: Vec<u32> = if k > EXHAUSTIVE_ASSIGN_MAX {
                Assigner::new(&centroids, dim).assign(&train_rows)
            } else {
                assign(&centroids, dim, &train_rows)
            };
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
                crate::vector::normalize(dst);
            }
        }
        // Centroids are kept at f16 precision, the precision they are persisted with.
        centroids.iter_mut().for_each(|c| *c = half::f16::from_f32(*c).to_f32());
        let held_rows: Vec<f32> = held.iter().flat_map(|&i| row(i).iter().copied()).collect();
        let held_codes = if k > EXHAUSTIVE_ASSIGN_MAX {
            Assigner::new(&centroids, dim).assign(&held_rows)
        } else {
            assign(&centroids, dim, &held_rows)
        };
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
        let weights: Vec<f32> = (0..b).map(|i| quantile(&residuals, (i as f64 + 0.5) / b as f64)).collect();
        let byte_lut = byte_lut(p.nbits, &weights);
        Ok(Self { dim, nbits: p.nbits, centroids, cutoffs, weights, byte_lut, assigner: Default::default() })
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

    /// The nearest centroid of each row of `xs` (`n × dim`): one GEMM for codebooks up to
    /// [`EXHAUSTIVE_ASSIGN_MAX`], the two-level [`Assigner`] above.
    #[must_use]
    pub fn assign_many(&self, xs: &[f32]) -> Vec<u32> {
        if self.num_centroids() <= EXHAUSTIVE_ASSIGN_MAX {
            return assign(&self.centroids, self.dim, xs);
        }
        self.assigner.get_or_init(|| Assigner::new(&self.centroids, self.dim)).assign(xs)
    }

    /// Encode the rows of `xs`: every row's centroid id, and their packed residuals
    /// ([`Codec::residual_bytes`] per row, in row order).
    #[must_use]
    pub fn encode_many(&self, xs: &[f32]) -> (Vec<u32>, Vec<u8>) {
        let assigned = self.assign_many(xs);
        let bits = xs
            .par_chunks(self.dim)
            .zip(assigned.par_iter())
            .flat_map_iter(|(x, &c)| self.quantize(c, x))
            .collect();
        (assigned, bits)
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
        crate::vector::normalize(out);
    }

    /// Decode tokens `codes` with their packed residuals `bits` (`residual_bytes` each)
    /// into `out` (`codes.len() × dim`), normalised: [`Codec::decode`] for many tokens,
    /// a byte at a time through a 256-entry table when `dim · nbits` is a multiple of 8.
    pub fn decode_many(&self, codes: &[u16], bits: &[u8], out: &mut [f32]) {
        let (dim, rb) = (self.dim, self.residual_bytes());
        let per = 8 / self.nbits as usize;
        let mut w16 = [0f32; 16];
        w16[..self.weights.len()].copy_from_slice(&self.weights);
        for (t, o) in out.chunks_exact_mut(dim).enumerate().take(codes.len()) {
            let code = codes[t] as usize;
            let b = &bits[t * rb..(t + 1) * rb];
            let c = &self.centroids[code * dim..(code + 1) * dim];
            if crate::scoring::decode_residual(&w16, u32::from(self.nbits), c, b, o) {
                continue;
            }
            if dim.is_multiple_of(16) {
                match per {
                    4 => decode_row::<4>(&self.byte_lut, c, b, o),
                    2 => decode_row::<2>(&self.byte_lut, c, b, o),
                    _ => decode_row::<8>(&self.byte_lut, c, b, o),
                }
            } else {
                self.decode(code as u32, b, o);
            }
        }
    }

    /// Bits per residual dimension.
    #[must_use]
    pub fn nbits(&self) -> u8 {
        self.nbits
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
    /// Centroid score under which a query token's second and later cells are not probed
    /// (PLAID's `t_cs`; the token's first cell always is).
    pub centroid_threshold: f32,
    /// Candidates kept after the probe's approximate interaction (a quarter survive the
    /// full one).
    pub ndocs: usize,
}

impl SearchParams {
    /// ColBERT's defaults for top-`k`, except that `k ≤ 10` keeps 512 candidates after the
    /// probe's interaction (ColBERT: 256): our final stage is exact MaxSim on stored vectors,
    /// cheap enough to take twice the candidates, which lifts recall@10 against exact
    /// from 0.93 to 0.998 on the `scale` bench at 10k documents for ~3 ms.
    #[must_use]
    pub fn for_k(k: usize) -> Self {
        match k {
            0..=10 => Self { ncells: 1, centroid_threshold: 0.5, ndocs: 512 },
            11..=100 => Self { ncells: 2, centroid_threshold: 0.45, ndocs: 1024 },
            _ => Self { ncells: 4, centroid_threshold: 0.4, ndocs: (4 * k).max(4096) },
        }
    }

    /// Candidates the full centroid interaction keeps for a top-`k` search.
    #[must_use]
    pub fn full_keep(&self, k: usize) -> usize {
        (self.ndocs / 4).max(k)
    }

    /// Exhaustive: every centroid, no pruning, every candidate (equals exact MaxSim on the
    /// decompressed vectors).
    #[must_use]
    pub fn exhaustive() -> Self {
        Self { ncells: usize::MAX, centroid_threshold: f32::NEG_INFINITY, ndocs: usize::MAX }
    }
}

/// `S_c = C·Qᵀ` for one query: the score of every centroid against every query token
/// (`K × lq`, row-major). Computed once per query and shared by every segment.
#[derive(Debug, Clone)]
pub struct CentroidScores {
    sc: Vec<f32>,
    lq: usize,
}

impl Codec {
    /// Centroid scores of query `q` (`lq × dim`).
    #[must_use]
    pub fn query_scores(&self, q: &[f32]) -> CentroidScores {
        let dim = self.dim;
        let lq = q.len() / dim;
        // One (K × dim)·(dim × lq) matrix product on candle's GEMM when available.
        #[cfg(feature = "embed")]
        {
            use candle_core::{Device, Tensor};
            let k = self.num_centroids();
            let run = || -> candle_core::Result<Vec<f32>> {
                let c = Tensor::from_slice(&self.centroids, (k, dim), &Device::Cpu)?;
                let qt = Tensor::from_slice(q, (lq, dim), &Device::Cpu)?.t()?;
                c.matmul(&qt)?.flatten_all()?.to_vec1::<f32>()
            };
            if let Ok(sc) = run() {
                return CentroidScores { sc, lq };
            }
        }
        let mut sc = vec![0f32; self.num_centroids() * lq];
        sc.par_chunks_mut(lq * 256).zip(self.centroids.par_chunks(dim * 256)).for_each(|(out, cs)| {
            for (row, c) in out.chunks_exact_mut(lq).zip(cs.chunks_exact(dim)) {
                for (o, qi) in row.iter_mut().zip(q.chunks_exact(dim)) {
                    *o = dot(c, qi);
                }
            }
        });
        CentroidScores { sc, lq }
    }

    /// Serialise (centroids as f16, the precision they are trained to; a trailing xxh3-64).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(24 + self.centroids.len() * 2 + 8 * self.weights.len());
        b.extend_from_slice(CODEC_MAGIC);
        b.extend_from_slice(&(self.dim as u32).to_le_bytes());
        b.extend_from_slice(&(self.num_centroids() as u32).to_le_bytes());
        b.push(self.nbits);
        b.extend(self.centroids.iter().flat_map(|c| half::f16::from_f32(*c).to_le_bytes()));
        b.extend(self.cutoffs.iter().chain(&self.weights).flat_map(|c| c.to_le_bytes()));
        let sum = xxhash_rust::xxh3::xxh3_64(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    /// Inverse of [`Codec::to_bytes`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for bytes that are not a codec or fail their checksum.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = || Error::invalid("damaged PLAID codec (bad length, magic or checksum)");
        let (body, sum) = b.split_at_checked(b.len().checked_sub(8).ok_or_else(bad)?).ok_or_else(bad)?;
        if body.len() < 17
            || &body[..8] != CODEC_MAGIC
            || xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum
        {
            return Err(bad());
        }
        let u32_at =
            |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize;
        let (dim, k, nbits) = (u32_at(8), u32_at(12), body[16]);
        let nb = 1usize << nbits.min(8);
        if ![1, 2, 4].contains(&nbits)
            || dim == 0
            || k == 0
            || body.len() != 17 + k * dim * 2 + (2 * nb - 1) * 4
        {
            return Err(bad());
        }
        let cent = &body[17..17 + k * dim * 2];
        let centroids =
            cent.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
        let rest: Vec<f32> = body[17 + k * dim * 2..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let (cutoffs, weights) = rest.split_at(nb - 1);
        let byte_lut = byte_lut(nbits, weights);
        Ok(Self {
            dim,
            nbits,
            centroids,
            cutoffs: cutoffs.to_vec(),
            weights: weights.to_vec(),
            byte_lut,
            assigner: Default::default(),
        })
    }

    /// Encode documents streamed by `doc(i)` (`n` of them, each `n_i × dim` unit rows):
    /// residual bytes are handed to `put_residuals` a chunk at a time (so a large segment is
    /// never held in memory twice); returns the centroid id of every token.
    ///
    /// # Errors
    /// Whatever `put_residuals` returns.
    pub fn encode_stream(
        &self,
        n: usize,
        doc: impl Fn(usize) -> Vec<f32>,
        mut put_residuals: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<Vec<u16>> {
        let dim = self.dim;
        let mut codes = Vec::new();
        let mut i = 0;
        while i < n {
            let mut flat = Vec::new();
            while i < n && flat.len() < 8192 * dim {
                flat.extend(doc(i));
                i += 1;
            }
            let (assigned, bits) = self.encode_many(&flat);
            put_residuals(&bits)?;
            codes.extend(assigned.iter().map(|&c| c as u16));
        }
        Ok(codes)
    }
}

const CODEC_MAGIC: &[u8; 8] = b"MSDBPLC1";

/// Inverted lists in CSR form: documents (ascending, each once) having a token in centroid
/// `c` are `docs[offsets[c]..offsets[c + 1]]`.
#[must_use]
pub fn build_ivf(codes: &[u16], doc_offsets: &[u64], num_centroids: usize) -> (Vec<u64>, Vec<u32>) {
    let mut counts = vec![0u64; num_centroids + 1];
    let mut seen = vec![u32::MAX; num_centroids];
    let docs = doc_offsets.len().saturating_sub(1);
    for d in 0..docs {
        for &c in &codes[doc_offsets[d] as usize..doc_offsets[d + 1] as usize] {
            if seen[c as usize] != d as u32 {
                seen[c as usize] = d as u32;
                counts[c as usize + 1] += 1;
            }
        }
    }
    for c in 0..num_centroids {
        counts[c + 1] += counts[c];
    }
    let mut fill = counts.clone();
    let mut out = vec![0u32; counts[num_centroids] as usize];
    seen.fill(u32::MAX);
    for d in 0..docs {
        for &c in &codes[doc_offsets[d] as usize..doc_offsets[d + 1] as usize] {
            if seen[c as usize] != d as u32 {
                seen[c as usize] = d as u32;
                out[fill[c as usize] as usize] = d as u32;
                fill[c as usize] += 1;
            }
        }
    }
    (counts, out)
}

/// Compressed token vectors of a set of documents with their inverted lists, borrowed from
/// memory ([`PlaidIndex::view`]) or from a memory-mapped segment.
#[derive(Debug, Clone, Copy)]
pub struct PlaidView<'a> {
    /// The codec the codes refer to.
    pub codec: &'a Codec,
    /// Centroid id per token.
    pub codes: &'a [u16],
    /// Packed residuals, [`Codec::residual_bytes`] per token.
    pub residuals: &'a [u8],
    /// Token offsets per document (`docs + 1` entries).
    pub offsets: &'a [u64],
    /// Inverted-list offsets (`K + 1` entries).
    pub ivf_offsets: &'a [u64],
    /// Inverted-list documents.
    pub ivf_docs: &'a [u32],
}

impl PlaidView<'_> {
    /// Documents.
    #[must_use]
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// True when there are no documents.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Check the arrays against each other and the codec (lengths, bounds, ordering).
    ///
    /// # Errors
    /// A description of the first inconsistency.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let k = self.codec.num_centroids();
        let tokens = self.offsets.last().copied().unwrap_or(0) as usize;
        if self.codes.len() != tokens || self.residuals.len() != tokens * self.codec.residual_bytes() {
            return Err("code or residual count differs from the token count".into());
        }
        if self.ivf_offsets.len() != k + 1
            || self.ivf_offsets.first() != Some(&0)
            || self.ivf_offsets.last().copied() != Some(self.ivf_docs.len() as u64)
            || self.ivf_offsets.windows(2).any(|w| w[0] > w[1])
        {
            return Err("inverted-list offsets are inconsistent".into());
        }
        if self.codes.iter().any(|&c| c as usize >= k)
            || self.ivf_docs.iter().any(|&d| d as usize >= self.len())
        {
            return Err("a code or list entry is out of range".into());
        }
        Ok(())
    }

    /// Decompress document `doc` (`n × dim`).
    #[must_use]
    pub fn decompress(&self, doc: usize) -> Vec<f32> {
        let (dim, rb) = (self.codec.dim, self.codec.residual_bytes());
        let (a, b) = (self.offsets[doc] as usize, self.offsets[doc + 1] as usize);
        let mut out = vec![0f32; (b - a) * dim];
        self.codec.decode_many(&self.codes[a..b], &self.residuals[a * rb..b * rb], &mut out);
        out
    }

    /// Centroid interaction score of `doc`: `Σ_i max_j S_c[code_j, i]` (−9999 for a query
    /// token of an empty document). Walks the codes
    /// once, taking a running maximum over each code's contiguous row of `S_c` (the inner
    /// loop over query tokens vectorises).
    fn centroid_score(&self, doc: usize, sc: &CentroidScores) -> f32 {
        let codes = &self.codes[self.offsets[doc] as usize..self.offsets[doc + 1] as usize];
        let lq = sc.lq;
        let mut best = vec![-9999.0f32; lq];
        for &c in codes {
            let row = &sc.sc[c as usize * lq..(c as usize + 1) * lq];
            for (b, &v) in best.iter_mut().zip(row) {
                *b = b.max(v);
            }
        }
        best.iter().sum()
    }

    /// Stage 1 of the candidate search (probe and pruned interaction in one pass over the
    /// inverted lists): every document in a list `probe` visits (restricted to `allowed`
    /// documents) with its approximate centroid interaction `Σ_i ŝ_i`, where `ŝ_i` is the
    /// best probed centroid of query token `i` whose list holds the document, or the
    /// token's imputed score when none does ([`CentroidScores::probe`]). Returns the best
    /// `keep` of them, `(score, doc)` in no particular order, and how many were visited.
    ///
    /// This is where we leave PLAID (ALGORITHMS.md §2.2), whose stage 2 scores every probed
    /// document over all its codes — `O(candidates × tokens × lq)`, 0.3 s per query at 1M
    /// documents — for WARP's idea: the lists already say which centroid each visited
    /// document has, so the score costs one add per list entry, and a query token's
    /// missing similarity is imputed by an upper bound of what it could be.
    #[must_use]
    pub fn probe_scores(
        &self,
        probe: &Probe,
        keep: usize,
        allowed: Option<&[bool]>,
    ) -> (Vec<(f32, u32)>, usize) {
        let n = self.len();
        let mut acc = vec![0f32; n];
        let mut seen = vec![0u32; n];
        let mut touched = Vec::new();
        for &(i, c, gain) in &probe.cells {
            let stamp = i + 1;
            let list = &self.ivf_docs
                [self.ivf_offsets[c as usize] as usize..self.ivf_offsets[c as usize + 1] as usize];
            for &d in list {
                let s = &mut seen[d as usize];
                // A token's cells come best first: its first list holding `d` is its best.
                if *s == stamp {
                    continue;
                }
                if *s == 0 {
                    touched.push(d);
                }
                *s = stamp;
                acc[d as usize] += gain;
            }
        }
        let visited = touched.len();
        let mut scored: Vec<(f32, u32)> = touched
            .into_iter()
            .filter(|&d| allowed.is_none_or(|a| a[d as usize]))
            .map(|d| (probe.base + acc[d as usize], d))
            .collect();
        top_scored(&mut scored, keep);
        (scored, visited)
    }

    /// [`impute_rank`] for this view's codebook and mean document length.
    #[must_use]
    pub fn impute_rank(&self) -> usize {
        impute_rank(self.codec.num_centroids(), self.codes.len() as f64 / self.len().max(1) as f64)
    }

    /// Stage 2: the full centroid interaction (every code of the document, no pruning).
    #[must_use]
    pub fn full_score(&self, doc: u32, sc: &CentroidScores) -> f32 {
        self.centroid_score(doc as usize, sc)
    }

    /// Candidate documents for a query with centroid scores `sc` in one segment: the
    /// documents of the inverted lists each query token probes (restricted to `allowed`
    /// documents), the best `ndocs` by their approximate interaction
    /// ([`PlaidView::probe_scores`]), then the best `max(ndocs / 4, k)` by full centroid
    /// interaction. Returns them best first, plus the count after each stage and each
    /// stage's time. (The database runs the same stages across all segments at once.)
    #[must_use]
    pub fn candidates(
        &self,
        sc: &CentroidScores,
        k: usize,
        p: SearchParams,
        allowed: Option<&[bool]>,
    ) -> (Vec<u32>, StageCounts) {
        let t0 = std::time::Instant::now();
        let probe = sc.probe(p.ncells, p.centroid_threshold, self.impute_rank());
        let (pruned, visited) = self.probe_scores(&probe, p.ndocs, allowed);
        let t1 = std::time::Instant::now();
        let mut full: Vec<(f32, u32)> =
            pruned.par_iter().map(|&(_, d)| (self.full_score(d, sc), d)).collect();
        top_scored(&mut full, p.full_keep(k));
        sort_scored(&mut full);
        let t2 = std::time::Instant::now();
        let micros = |a: std::time::Instant, b: std::time::Instant| (b - a).as_micros() as u64;
        let stages = StageCounts {
            docs: [visited, pruned.len(), full.len()],
            micros: [micros(t0, t1), 0, micros(t1, t2)],
        };
        (full.into_iter().map(|x| x.1).collect(), stages)
    }
}

/// Best first, ties by ascending id (deterministic across runs and segment orders).
fn by_score<T: Ord>(a: &(f32, T), b: &(f32, T)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Keep the best `n` of `v` (order unspecified).
pub fn top_scored<T: Ord + Copy>(v: &mut Vec<(f32, T)>, n: usize) {
    if v.len() > n {
        if n == 0 {
            v.clear();
            return;
        }
        v.select_nth_unstable_by(n - 1, by_score);
        v.truncate(n);
    }
}

/// Sort best first, ties by ascending id.
pub fn sort_scored<T: Ord + Copy>(v: &mut [(f32, T)]) {
    v.sort_unstable_by(by_score);
}

/// Rank (0-based, best first) of the centroid whose score imputes a query token's
/// similarity to a document that none of the token's probed lists holds: a document of `L`
/// codes over `K` centroids has its best code for a token around rank `K / L` (WARP
/// imputes from the centroid where the probed lists' cumulative size reaches a bound; this
/// is the same idea with the mean document length). The best unprobed centroid instead —
/// an upper bound — rates nearly every document alike: at 1M documents (43,669 visited,
/// 512 kept) it kept 0.17 of the exact top 10.
#[must_use]
pub fn impute_rank(num_centroids: usize, codes_per_doc: f64) -> usize {
    if codes_per_doc <= 1.0 {
        return num_centroids.saturating_sub(1);
    }
    ((num_centroids as f64 / codes_per_doc).round() as usize).min(num_centroids.saturating_sub(1))
}

/// The inverted lists one query visits: per query token, its `ncells` best centroids (best
/// first), each with its gain over the token's imputed score, and the sum of the imputed
/// scores. Computed once per query and shared by every segment.
#[derive(Debug, Clone)]
pub struct Probe {
    /// `(token, centroid, gain)`, grouped by ascending token, each token's cells best first.
    cells: Vec<(u32, u32, f32)>,
    /// `Σ_i m_i`: a document no probed list holds scores this.
    base: f32,
}

impl Probe {
    /// Lists visited (query token × centroid).
    #[must_use]
    pub fn cells(&self) -> usize {
        self.cells.len()
    }
}

impl CentroidScores {
    /// The probe of this query: for each query token `i`, its `ncells` best centroids;
    /// beyond the first, a centroid scoring under `threshold` is not visited (PLAID's
    /// centroid pruning, `t_cs`). The imputed score `m_i` of a token is the score of its
    /// centroid at rank `max(impute_rank, ncells)` ([`impute_rank`]) — below every cell
    /// it visits — or, when it visits every centroid, its lowest visited score.
    #[must_use]
    pub fn probe(&self, ncells: usize, threshold: f32, impute_rank: usize) -> Probe {
        let lq = self.lq;
        let kc = self.sc.len().checked_div(lq).unwrap_or(0);
        let ncells = ncells.clamp(1, kc.max(1));
        let mut cells = Vec::with_capacity(lq * ncells);
        let mut base = 0f32;
        for i in 0..lq {
            if kc == 0 {
                break;
            }
            let mut col: Vec<(f32, u32)> = (0..kc).map(|c| (self.sc[c * lq + i], c as u32)).collect();
            let mut m = f32::NEG_INFINITY;
            if ncells < kc {
                let r = impute_rank.clamp(ncells, kc - 1);
                col.select_nth_unstable_by(r, by_score);
                m = col[r].0;
                col.truncate(r);
                if ncells < r {
                    col.select_nth_unstable_by(ncells, by_score);
                    col.truncate(ncells);
                }
            }
            sort_scored(&mut col);
            let kept: Vec<(f32, u32)> = col
                .iter()
                .enumerate()
                .filter(|&(j, x)| j == 0 || x.0 >= threshold)
                .map(|(_, &x)| x)
                .collect();
            if m == f32::NEG_INFINITY {
                m = kept.last().map_or(0.0, |x| x.0);
            }
            base += m;
            cells.extend(kept.into_iter().map(|(s, c)| (i as u32, c, s - m)));
        }
        Probe { cells, base }
    }
}

/// Documents after each candidate stage (visited by the probe, kept by its approximate
/// interaction, kept by the full interaction)
/// and the time each took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounts {
    /// Documents after each stage.
    pub docs: [usize; 3],
    /// Microseconds spent in each stage.
    pub micros: [u64; 3],
}

/// Compressed token vectors of a document collection, with inverted lists, in memory.
#[derive(Debug, Clone)]
pub struct PlaidIndex {
    codec: Codec,
    /// Centroid id per token (u16: at most 65,536 centroids).
    codes: Vec<u16>,
    residuals: Vec<u8>,
    offsets: Vec<u64>,
    ivf_offsets: Vec<u64>,
    ivf_docs: Vec<u32>,
}

impl PlaidIndex {
    /// Compress `docs` (each `n_i × dim`, unit rows) with `codec`.
    #[must_use]
    pub fn build(codec: Codec, docs: &[&[f32]]) -> Self {
        let dim = codec.dim;
        let mut residuals = Vec::new();
        let codes = codec
            .encode_stream(
                docs.len(),
                |i| docs[i].to_vec(),
                |b| {
                    residuals.extend_from_slice(b);
                    Ok(())
                },
            )
            .unwrap_or_default();
        let mut offsets = vec![0u64];
        for d in docs {
            offsets.push(offsets.last().copied().unwrap_or(0) + (d.len() / dim) as u64);
        }
        let (ivf_offsets, ivf_docs) = build_ivf(&codes, &offsets, codec.num_centroids());
        Self { codec, codes, residuals, offsets, ivf_offsets, ivf_docs }
    }

    /// A borrowed view.
    #[must_use]
    pub fn view(&self) -> PlaidView<'_> {
        PlaidView {
            codec: &self.codec,
            codes: &self.codes,
            residuals: &self.residuals,
            offsets: &self.offsets,
            ivf_offsets: &self.ivf_offsets,
            ivf_docs: &self.ivf_docs,
        }
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
        let total = self.codes.len() * 2
            + self.residuals.len()
            + self.ivf_docs.len() * 4
            + self.ivf_offsets.len() * 8
            + self.codec.centroids.len() * 2;
        total as f64 / self.codes.len().max(1) as f64
    }

    /// Decompress document `doc` (`n × dim`).
    #[must_use]
    pub fn decompress(&self, doc: usize) -> Vec<f32> {
        self.view().decompress(doc)
    }

    /// Top-`k` documents for query `q` (`lq × dim`): centroid probe with its approximate
    /// interaction, full centroid interaction, then exact MaxSim on decompressed vectors. Returns
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
        let sc = self.codec.query_scores(q);
        let (c, stages) = self.view().candidates(&sc, k, p, None);
        (c.into_iter().map(|d| d as usize).collect(), stages.docs)
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
        let sc = self.codec.query_scores(q);
        let v = self.view();
        (0..self.len()).map(|d| v.centroid_score(d, &sc)).collect()
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
                    crate::vector::normalize(&mut r);
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
    fn batched_decoding_equals_decoding_one_token_at_a_time() {
        // dim 32 takes the 16-lane path; dim 20 the per-token fallback.
        for dim in [32, 20] {
            let mut rng = Rng::new(5);
            let docs = corpus(&mut rng, 40, dim);
            let all: Vec<f32> = docs.iter().flatten().copied().collect();
            for nbits in [1, 2, 4] {
                let p = CodecParams { nbits, centroids: Some(16), ..CodecParams::default() };
                let codec = Codec::train(&all, dim, p).unwrap();
                let (codes, bits) = codec.encode_many(&all);
                let codes: Vec<u16> = codes.iter().map(|&c| c as u16).collect();
                let mut many = vec![0f32; all.len()];
                codec.decode_many(&codes, &bits, &mut many);
                let rb = codec.residual_bytes();
                let mut one = vec![0f32; dim];
                for (t, got) in many.chunks_exact(dim).enumerate() {
                    codec.decode(u32::from(codes[t]), &bits[t * rb..(t + 1) * rb], &mut one);
                    for (a, b) in got.iter().zip(&one) {
                        assert!((a - b).abs() < 1e-5, "dim {dim} nbits {nbits} token {t}: {a} vs {b}");
                    }
                }
            }
        }
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
    fn two_level_assignment_finds_the_nearest_centroid_almost_always() {
        let mut rng = Rng::new(4);
        let dim = 32;
        let docs = corpus(&mut rng, 600, dim);
        let all: Vec<f32> = docs.iter().flatten().copied().collect();
        // Centroids as the codec trains them (k-means on the data).
        let codec =
            Codec::train(&all, dim, CodecParams { centroids: Some(2048), ..CodecParams::default() }).unwrap();
        let centroids = codec.centroids().to_vec();
        let a = Assigner::new(&centroids, dim);
        assert_eq!(a.members.iter().map(|m| m.0.len()).sum::<usize>(), 2048, "every centroid in one cell");
        let got = a.assign(&all);
        let want = assign(&centroids, dim, &all);
        let n = got.len();
        let same = got.iter().zip(&want).filter(|(g, w)| g == w).count();
        assert!(same * 100 >= n * 90, "{same}/{n} exact");
        // Where it differs, the centroid found is nearly as close.
        let score = |c: u32, x: &[f32]| dot(&centroids[c as usize * dim..(c as usize + 1) * dim], x);
        for ((g, w), x) in got.iter().zip(&want).zip(all.chunks_exact(dim)) {
            assert!(score(*g, x) >= score(*w, x) - 0.15, "{} vs {}", score(*g, x), score(*w, x));
        }
    }

    #[test]
    fn context_windows_recover_the_nearest_centroid_where_cells_carry_no_structure() {
        // Random centroids (no coarse structure for the cells to find, as with the `scale`
        // generator's random topics at 1M documents); documents of 64 tokens around 2 of them.
        let mut rng = Rng::new(9);
        let dim = 32;
        let centroids = rng.unit_vectors(2048, dim);
        let mut xs = Vec::new();
        for _ in 0..64 {
            let topics = [rng.below(2048) as usize, rng.below(2048) as usize];
            for _ in 0..64 {
                let c = topics[usize::from(rng.unit() < 0.3)];
                let mut r: Vec<f32> = centroids[c * dim..(c + 1) * dim]
                    .iter()
                    .map(|x| x + rng.normal() / (dim as f32).sqrt())
                    .collect();
                crate::vector::normalize(&mut r);
                xs.extend(r);
            }
        }
        let want = assign(&centroids, dim, &xs);
        let n = want.len();
        let plain = Assigner::with_shape(&centroids, dim, 64, ASSIGN_PROBE).assign(&xs);
        let refined = Assigner::new(&centroids, dim).assign(&xs);
        let hits = |got: &[u32]| got.iter().zip(&want).filter(|(g, w)| g == w).count();
        let (p, r) = (hits(&plain), hits(&refined));
        assert!(r * 100 >= n * 97, "refined: {r}/{n} nearest");
        assert!(p * 100 <= n * 90, "without refinement {p}/{n}: the case must be hard");
        let score = |c: u32, x: &[f32]| dot(&centroids[c as usize * dim..(c as usize + 1) * dim], x);
        for ((a, b), x) in plain.iter().zip(&refined).zip(xs.chunks_exact(dim)) {
            assert!(score(*b, x) >= score(*a, x), "refinement never moves a row farther");
        }
    }

    #[test]
    fn codec_bytes_roundtrip_and_damage_is_detected() {
        let (ix, _, _) = index(2);
        let b = ix.codec().to_bytes();
        assert_eq!(&Codec::from_bytes(&b).unwrap(), ix.codec());
        for i in [0, 9, 16, b.len() / 2, b.len() - 1] {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(Codec::from_bytes(&bad).is_err(), "byte {i}");
        }
        assert!(Codec::from_bytes(&b[..b.len() - 3]).is_err());
        assert!(Codec::from_bytes(&[]).is_err());
    }

    #[test]
    fn inverted_lists_hold_each_document_once_per_centroid() {
        let (ix, _, _) = index(2);
        let v = ix.view();
        v.validate().unwrap();
        for c in 0..ix.codec().num_centroids() {
            let list = &v.ivf_docs[v.ivf_offsets[c] as usize..v.ivf_offsets[c + 1] as usize];
            assert!(list.windows(2).all(|w| w[0] < w[1]), "ascending, no repeats");
            for d in 0..ix.len() {
                let has = v.codes[v.offsets[d] as usize..v.offsets[d + 1] as usize].contains(&(c as u16));
                assert_eq!(list.binary_search(&(d as u32)).is_ok(), has, "centroid {c} doc {d}");
            }
        }
        let (o, d) = build_ivf(&[], &[0], 3);
        assert_eq!((o, d), (vec![0, 0, 0, 0], vec![]));
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
    fn probe_scores_equal_the_full_interaction_when_every_list_is_probed_and_rank_own_documents_first() {
        let (ix, docs, mut rng) = index(2);
        let v = ix.view();
        let q = rng.unit_vectors(8, 32);
        let sc = ix.codec().query_scores(&q);
        let kc = ix.codec().num_centroids();
        // Every centroid probed: the approximate score is the full centroid interaction.
        let (all, visited) = v.probe_scores(&sc.probe(kc, f32::NEG_INFINITY, 0), ix.len(), None);
        assert_eq!((all.len(), visited), (ix.len(), ix.len()));
        for &(s, d) in &all {
            assert!((s - v.full_score(d, &sc)).abs() < 1e-4, "doc {d}: {s}");
        }
        let rank = v.impute_rank();
        assert!(rank > 1 && rank < kc, "{rank} of {kc}");
        for (ncells, threshold) in [(1, 0.0), (2, 0.4), (4, 0.0)] {
            // Imputing the best unprobed centroid bounds the full score from above.
            let probe = sc.probe(ncells, threshold, 0);
            assert!(probe.cells() <= 8 * ncells && probe.cells() >= 8);
            let (some, visited) = v.probe_scores(&probe, ix.len(), None);
            assert!(visited < ix.len() && some.len() == visited);
            for &(s, d) in &some {
                assert!(s >= v.full_score(d, &sc) - 1e-4, "doc {d}: {s} < full");
            }
            // The default imputation sits below every visited cell: a visited document
            // never scores under one no list holds.
            let probe = sc.probe(ncells, threshold, rank);
            let (some, _) = v.probe_scores(&probe, ix.len(), None);
            assert!(some.iter().all(|x| x.0 >= probe.base - 1e-5));
        }
        // A query made of a document's own tokens ranks it first (ties allowed: documents
        // holding the same codes score alike), one cell per token.
        for target in [3usize, 77, 150, 222, 299] {
            let q = docs[target][..8 * 32].to_vec();
            let sc = ix.codec().query_scores(&q);
            let (all, _) = v.probe_scores(&sc.probe(1, 0.5, rank), ix.len(), None);
            let best = all.iter().map(|x| x.0).fold(f32::NEG_INFINITY, f32::max);
            let own = all.iter().find(|x| x.1 == target as u32).map(|x| x.0);
            assert_eq!(own, Some(best), "doc {target}");
        }
        // `allowed` restricts and `keep` cuts to the best.
        let allowed: Vec<bool> = (0..ix.len()).map(|d| d % 2 == 0).collect();
        let (best, _) = v.probe_scores(&sc.probe(kc, f32::NEG_INFINITY, 0), 7, Some(&allowed));
        let mut want: Vec<(f32, u32)> = all.iter().copied().filter(|x| x.1 % 2 == 0).collect();
        sort_scored(&mut want);
        let mut best = best;
        sort_scored(&mut best);
        assert_eq!(
            best.iter().map(|x| x.1).collect::<Vec<_>>(),
            want[..7].iter().map(|x| x.1).collect::<Vec<_>>()
        );
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

/// Section tags of a PLAID side file (the same numbers the v2 format used for the sections
/// it embedded in segments, where their `index` field held the PLAID index id).
pub mod tags {
    /// Packed residuals, [`super::Codec::residual_bytes`] per token.
    pub const RESIDUALS: u32 = 5;
    /// Nearest centroid per token, u16.
    pub const CODES: u32 = 6;
    /// Inverted-list CSR offsets, u64 × (centroids + 1).
    pub const IVF_OFFSETS: u32 = 7;
    /// Inverted-list documents (local numbers, ascending per centroid), u32.
    pub const IVF_DOCS: u32 = 8;
    /// The codec (centroids, cut-offs, weights: [`super::Codec::to_bytes`]) in the
    /// per-index codec file.
    pub const CODEC: u32 = 1;
}

/// Encode `n` documents (`doc(i)`: `n_i × dim` rows; `offsets`: their token offsets, `n + 1`
/// entries) into the PLAID sections: residuals, codes, inverted lists.
///
/// # Errors
/// The sink's errors.
pub fn write_sections(
    codec: &Codec,
    n: usize,
    doc: impl Fn(usize) -> Vec<f32>,
    offsets: &[u64],
    sink: &mut dyn super::SectionSink,
) -> Result<()> {
    sink.begin(tags::RESIDUALS)?;
    let codes = codec.encode_stream(n, doc, |b| sink.put(b))?;
    sink.begin(tags::CODES)?;
    super::put_le(sink, &codes, u16::to_le_bytes)?;
    let (ivf_offsets, ivf_docs) = build_ivf(&codes, offsets, codec.num_centroids());
    sink.begin(tags::IVF_OFFSETS)?;
    super::put_le(sink, &ivf_offsets, u64::to_le_bytes)?;
    sink.begin(tags::IVF_DOCS)?;
    super::put_le(sink, &ivf_docs, u32::to_le_bytes)
}

/// The inverted lists only, for a segment that stores its tokens as codes of `codec`
/// already (`codes`: every token's centroid id; `offsets`: token offsets per document).
///
/// # Errors
/// The sink's errors.
pub fn write_ivf_sections(
    codec: &Codec,
    codes: &[u16],
    offsets: &[u64],
    sink: &mut dyn super::SectionSink,
) -> Result<()> {
    let (ivf_offsets, ivf_docs) = build_ivf(codes, offsets, codec.num_centroids());
    sink.begin(tags::IVF_OFFSETS)?;
    super::put_le(sink, &ivf_offsets, u64::to_le_bytes)?;
    sink.begin(tags::IVF_DOCS)?;
    super::put_le(sink, &ivf_docs, u32::to_le_bytes)
}

/// The PLAID view of one segment's sections `s` (documents with token `offsets`). With
/// `validate`, the checksums of codes and lists and the structure are checked (the caller
/// caches that this was done); residuals are not read by searches and are verified by
/// CHECK only.
///
/// # Errors
/// A description of the damage.
pub fn open_view<'a>(
    codec: &'a Codec,
    s: &'a dyn super::Sections,
    offsets: &'a [u64],
    segment_codes: Option<(&'a [u16], &'a [u8])>,
    validate: bool,
) -> std::result::Result<PlaidView<'a>, String> {
    use super::required;
    // A side file with inverted lists only belongs to a codes-only segment, whose codes
    // and residuals are the segment's own (`segment_codes`, checked by the segment).
    let (codes, residuals) = match (s.u16s(tags::CODES, validate)?, segment_codes) {
        (Some(c), _) => (c, required(tags::RESIDUALS, s.u8s(tags::RESIDUALS, false)?)?),
        (None, Some((c, r))) => (c, r),
        (None, None) => return Err(format!("section {} missing", tags::CODES)),
    };
    let view = PlaidView {
        codec,
        codes,
        residuals,
        offsets,
        ivf_offsets: required(tags::IVF_OFFSETS, s.u64s(tags::IVF_OFFSETS, validate)?)?,
        ivf_docs: required(tags::IVF_DOCS, s.u32s(tags::IVF_DOCS, validate)?)?,
    };
    if validate {
        view.validate()?;
    }
    Ok(view)
}
