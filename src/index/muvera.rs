//! MUVERA fixed-dimensional encodings (ALGORITHMS.md §2.3): a multi-vector set becomes one
//! vector whose inner product approximates Chamfer / MaxSim similarity, so a single-vector
//! index can generate MaxSim candidates.
//!
//! Per repetition `r`: SimHash with `k_sim` Gaussian projections partitions the space into
//! `B = 2^k_sim` buckets (plain binary code of the sign bits); each bucket holds the sum
//! (queries) or the centroid (documents) of its points after an inner projection (identity
//! or an AMS count-sketch to `d_p` dimensions). Empty document buckets may be filled with
//! the point whose sign bits are nearest in Hamming distance (lowest index on ties).
//!
//! The random matrices come from our documented generator ([`crate::rng::Rng`],
//! SplitMix64 seeded with `(seed, repetition, purpose)`), not from a C++ `mt19937` stream,
//! and [`Muvera::to_bytes`] persists them, so encodings stay reproducible across versions.

use half::f16;

use crate::rng::Rng;
use crate::{Error, Result};

/// Inner projection of each repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Projection {
    /// `d_p = d`.
    Identity,
    /// AMS count-sketch to `d_p` dimensions (each input dimension → one column, sign ±1).
    Ams(usize),
}

/// FDE parameters (defaults follow qdrant/fastembed: R = 20, k_sim = 5, AMS 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MuveraParams {
    /// Input dimension `d`.
    pub dim: usize,
    /// Repetitions `R`.
    pub repetitions: usize,
    /// SimHash projections `k_sim` (0 ≤ k_sim < 31).
    pub simhash_bits: usize,
    /// Inner projection.
    pub projection: Projection,
    /// Fill empty document buckets with the Hamming-nearest point.
    pub fill_empty: bool,
    /// Seed shared by queries and documents.
    pub seed: u64,
}

impl MuveraParams {
    /// fastembed's defaults for dimension `dim`.
    #[must_use]
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            repetitions: 20,
            simhash_bits: 5,
            projection: Projection::Ams(16.min(dim)),
            fill_empty: true,
            seed: 42,
        }
    }
}

/// An FDE encoder with its random matrices.
#[derive(Debug, Clone, PartialEq)]
pub struct Muvera {
    params: MuveraParams,
    /// Per repetition: `d × k_sim` Gaussian matrix, row-major.
    gaussians: Vec<Vec<f32>>,
    /// Per repetition, for AMS: (target column, sign) of each input dimension.
    sketches: Vec<Vec<(u32, f32)>>,
}

const MAGIC: &[u8; 8] = b"MSDBFDE1";

impl Muvera {
    /// Draw the matrices for `params`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero dimension or repetition count, `k_sim ≥ 31`,
    /// or an AMS dimension of 0 or above `d`.
    pub fn new(params: MuveraParams) -> Result<Self> {
        let p = params;
        if p.dim == 0 || p.repetitions == 0 || p.simhash_bits >= 31 {
            return Err(Error::invalid("MUVERA needs dim ≥ 1, repetitions ≥ 1 and simhash_bits < 31"));
        }
        if let Projection::Ams(dp) = p.projection {
            if dp == 0 || dp > p.dim {
                return Err(Error::invalid(format!("AMS projection dimension must be in 1..={}", p.dim)));
            }
        }
        let mut gaussians = Vec::with_capacity(p.repetitions);
        let mut sketches = Vec::with_capacity(p.repetitions);
        for r in 0..p.repetitions as u64 {
            let mut g = Rng::new(p.seed ^ (r << 32) ^ 0x5149_4d48);
            gaussians.push((0..p.dim * p.simhash_bits).map(|_| g.normal()).collect());
            let mut s = Rng::new(p.seed ^ (r << 32) ^ 0x414d_5350);
            sketches.push(match p.projection {
                Projection::Identity => Vec::new(),
                Projection::Ams(dp) => (0..p.dim)
                    .map(|_| (s.below(dp as u64) as u32, if s.below(2) == 0 { 1.0 } else { -1.0 }))
                    .collect(),
            });
        }
        Ok(Self { params, gaussians, sketches })
    }

    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &MuveraParams {
        &self.params
    }

    fn dp(&self) -> usize {
        match self.params.projection {
            Projection::Identity => self.params.dim,
            Projection::Ams(dp) => dp,
        }
    }

    /// Output dimension `R · 2^k_sim · d_p`.
    #[must_use]
    pub fn out_dim(&self) -> usize {
        self.params.repetitions * (1 << self.params.simhash_bits) * self.dp()
    }

    fn bucket(&self, r: usize, x: &[f32]) -> usize {
        let (d, k) = (self.params.dim, self.params.simhash_bits);
        let g = &self.gaussians[r];
        (0..k).fold(0, |acc, t| {
            let dot: f32 = (0..d).map(|i| x[i] * g[i * k + t]).sum();
            acc | (usize::from(dot > 0.0) << t)
        })
    }

    fn project(&self, r: usize, x: &[f32], out: &mut [f32]) {
        match self.params.projection {
            Projection::Identity => out.iter_mut().zip(x).for_each(|(o, v)| *o += v),
            Projection::Ams(_) => {
                for (v, (col, sign)) in x.iter().zip(&self.sketches[r]) {
                    out[*col as usize] += sign * v;
                }
            }
        }
    }

    /// Encode a query (`n × d` row-major): per bucket, the sum of its projected points.
    #[must_use]
    pub fn encode_query(&self, q: &[f32]) -> Vec<f32> {
        self.encode(q, false)
    }

    /// Encode a document: per bucket, the centroid of its projected points (empty buckets
    /// filled when `fill_empty`).
    #[must_use]
    pub fn encode_doc(&self, d: &[f32]) -> Vec<f32> {
        self.encode(d, true)
    }

    fn encode(&self, pts: &[f32], doc: bool) -> Vec<f32> {
        let (d, dp, b) = (self.params.dim, self.dp(), 1usize << self.params.simhash_bits);
        let mut out = vec![0f32; self.out_dim()];
        let rows: Vec<&[f32]> = pts.chunks_exact(d).collect();
        for r in 0..self.params.repetitions {
            let buckets: Vec<usize> = rows.iter().map(|x| self.bucket(r, x)).collect();
            let mut counts = vec![0usize; b];
            let base = r * b * dp;
            for (x, &k) in rows.iter().zip(&buckets) {
                self.project(r, x, &mut out[base + k * dp..base + (k + 1) * dp]);
                counts[k] += 1;
            }
            if !doc {
                continue;
            }
            for k in 0..b {
                let block = &mut out[base + k * dp..base + (k + 1) * dp];
                if counts[k] > 0 {
                    block.iter_mut().for_each(|v| *v /= counts[k] as f32);
                } else if self.params.fill_empty && !rows.is_empty() {
                    let nearest =
                        (0..rows.len()).min_by_key(|&i| ((buckets[i] ^ k).count_ones(), i)).unwrap_or(0);
                    self.project(r, rows[nearest], block);
                }
            }
        }
        out
    }

    /// Serialise parameters and matrices (little-endian) for persistence.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = &self.params;
        let mut b = MAGIC.to_vec();
        let (ptype, pdim) = match p.projection {
            Projection::Identity => (0u64, 0u64),
            Projection::Ams(dp) => (1, dp as u64),
        };
        for v in [
            p.dim as u64,
            p.repetitions as u64,
            p.simhash_bits as u64,
            ptype,
            pdim,
            u64::from(p.fill_empty),
            p.seed,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for g in &self.gaussians {
            g.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
        }
        for s in &self.sketches {
            for (c, sign) in s {
                b.extend_from_slice(&c.to_le_bytes());
                b.extend_from_slice(&sign.to_le_bytes());
            }
        }
        b
    }

    /// Read back what [`Muvera::to_bytes`] wrote.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the bytes are not a complete, valid encoding.
    pub fn from_bytes(b: &[u8]) -> Result<Self> {
        let bad = || Error::invalid("not a MUVERA matrix file (bad magic or length)");
        if b.len() < 64 || &b[..8] != MAGIC {
            return Err(bad());
        }
        let u = |i: usize| u64::from_le_bytes(b[8 + i * 8..16 + i * 8].try_into().unwrap_or([0; 8]));
        let projection = if u(3) == 1 { Projection::Ams(u(4) as usize) } else { Projection::Identity };
        let params = MuveraParams {
            dim: u(0) as usize,
            repetitions: u(1) as usize,
            simhash_bits: u(2) as usize,
            projection,
            fill_empty: u(5) == 1,
            seed: u(6),
        };
        let shell = Self::new(params)?;
        let (d, k, r) = (params.dim, params.simhash_bits, params.repetitions);
        let ams = matches!(projection, Projection::Ams(_));
        let need = 64 + r * d * k * 4 + if ams { r * d * 8 } else { 0 };
        if b.len() != need {
            return Err(bad());
        }
        let mut at = 64;
        let f32_at = |at: &mut usize| {
            let v = f32::from_le_bytes(b[*at..*at + 4].try_into().unwrap_or([0; 4]));
            *at += 4;
            v
        };
        let gaussians = (0..r).map(|_| (0..d * k).map(|_| f32_at(&mut at)).collect()).collect();
        let sketches = (0..r)
            .map(|_| {
                if !ams {
                    return Vec::new();
                }
                (0..d)
                    .map(|_| {
                        let c = u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]));
                        at += 4;
                        (c, f32_at(&mut at))
                    })
                    .collect()
            })
            .collect();
        let m = Self { params, gaussians, sketches };
        if m.sketches.iter().flatten().any(|(c, _)| *c as usize >= shell.dp()) {
            return Err(bad());
        }
        Ok(m)
    }
}

/// Section tags of a MUVERA side file (as in v2 segments, where `index` held the index id).
pub mod tags {
    /// Unit-length encodings, f16, one row of [`super::Muvera::out_dim`] per document.
    pub const FDE: u32 = 11;
    /// HNSW graph over the encodings (`index/hnsw.rs` layout).
    pub const GRAPH: u32 = 12;
    /// The encoder ([`super::Muvera::to_bytes`]) in the per-index file.
    pub const ENCODER: u32 = 1;
}

/// Documents encoded per parallel batch (bounds the f32 copy of their token vectors).
const FDE_BATCH: usize = 1024;

/// Write the MUVERA sections of `n` documents (`doc(i)`: token rows): every document's
/// unit-length encoding (f16) and an HNSW graph over them tagged `index_id`.
///
/// # Errors
/// The sink's errors.
pub fn write_sections(
    m: &Muvera,
    n: usize,
    doc: impl Fn(usize) -> Vec<f32> + Sync,
    graph: super::hnsw::HnswParams,
    index_id: u32,
    sink: &mut dyn super::SectionSink,
) -> Result<()> {
    use rayon::prelude::*;
    let dim = m.out_dim();
    let mut fde: Vec<f16> = Vec::with_capacity(n * dim);
    for start in (0..n).step_by(FDE_BATCH) {
        let rows: Vec<Vec<f32>> = (start..(start + FDE_BATCH).min(n))
            .into_par_iter()
            .map(|i| {
                let mut f = m.encode_doc(&doc(i));
                crate::vector::normalize(&mut f);
                f
            })
            .collect();
        rows.iter().for_each(|f| fde.extend(f.iter().map(|&x| f16::from_f32(x))));
    }
    sink.begin(tags::FDE)?;
    super::put_le(sink, &fde, f16::to_le_bytes)?;
    let words = super::hnsw::build(
        n,
        |i| fde[i * dim..(i + 1) * dim].iter().map(|x| x.to_f32()).collect(),
        graph,
        index_id,
    );
    sink.begin(tags::GRAPH)?;
    super::put_le(sink, &words, u32::to_le_bytes)
}

/// The MUVERA sections of one segment: unit-length encodings and the graph over them.
#[derive(Debug, Clone)]
pub struct MuveraView<'a> {
    /// The graph (node `i` = local document `i`).
    pub graph: super::hnsw::GraphView<'a>,
    fde: &'a [f16],
    dim: usize,
}

impl MuveraView<'_> {
    /// `q · FDE(doc)` (the stored encoding is unit length).
    #[must_use]
    pub fn dot(&self, q: &[f32], doc: u32) -> f32 {
        let at = doc as usize * self.dim;
        crate::scoring::dot(q, crate::vector::VecRef::F16(&self.fde[at..at + self.dim]))
    }
}

/// The view of sections `s` for index `index_id` over `n` documents with encodings of
/// dimension `dim`: `Ok(None)` when they belong to another index. With `validate`,
/// checksums and structure are checked (cache that it was done).
///
/// # Errors
/// A description of the damage.
pub fn open_view<'a>(
    s: &'a dyn super::Sections,
    index_id: u32,
    n: usize,
    dim: usize,
    validate: bool,
) -> std::result::Result<Option<MuveraView<'a>>, String> {
    let fde = super::required(tags::FDE, s.f16s(tags::FDE, validate)?)?;
    let words = super::required(tags::GRAPH, s.u32s(tags::GRAPH, validate)?)?;
    if words.get(1) != Some(&index_id) {
        return Ok(None);
    }
    if fde.len() != n * dim {
        return Err(format!("MUVERA_FDE holds {} values, expected {n} × {dim}", fde.len()));
    }
    let graph = super::hnsw::GraphView::parse(words, validate)?;
    if graph.len() != n {
        return Err("MUVERA graph does not cover the segment's documents".into());
    }
    Ok(Some(MuveraView { graph, fde, dim }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn params(dim: usize, r: usize, k: usize, fill: bool) -> MuveraParams {
        MuveraParams {
            dim,
            repetitions: r,
            simhash_bits: k,
            projection: Projection::Identity,
            fill_empty: fill,
            seed: 7,
        }
    }

    #[test]
    fn one_partition_is_sum_against_mean() {
        let mut rng = Rng::new(1);
        let (q, d) = (rng.unit_vectors(5, 16), rng.unit_vectors(9, 16));
        let m = Muvera::new(params(16, 1, 0, false)).unwrap();
        let sum_q: Vec<f32> = (0..16).map(|c| q.chunks_exact(16).map(|r| r[c]).sum()).collect();
        let mean_d: Vec<f32> = (0..16).map(|c| d.chunks_exact(16).map(|r| r[c]).sum::<f32>() / 9.0).collect();
        let got = dot(&m.encode_query(&q), &m.encode_doc(&d));
        assert!((got - dot(&sum_q, &mean_d)).abs() < 1e-5);
    }

    #[test]
    fn single_point_document_with_fill_puts_it_in_every_block() {
        let mut rng = Rng::new(2);
        let (q, p) = (rng.unit_vectors(6, 16), rng.unit_vectors(1, 16));
        let m = Muvera::new(params(16, 3, 4, true)).unwrap();
        let want: f32 = 3.0 * q.chunks_exact(16).map(|qi| dot(qi, &p)).sum::<f32>();
        assert!((dot(&m.encode_query(&q), &m.encode_doc(&p)) - want).abs() < 1e-4);
    }

    #[test]
    fn dimension_determinism_and_persistence() {
        let p = MuveraParams::new(128);
        let m = Muvera::new(p).unwrap();
        assert_eq!(m.out_dim(), 20 * 32 * 16);
        let mut rng = Rng::new(3);
        let d = rng.unit_vectors(30, 128);
        assert_eq!(m.encode_doc(&d), Muvera::new(p).unwrap().encode_doc(&d), "same seed, same encoding");
        let back = Muvera::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode_query(&d), m.encode_query(&d));
        assert!(Muvera::from_bytes(&m.to_bytes()[..100]).is_err());
        let empty = m.encode_doc(&[]);
        assert!(empty.iter().all(|v| *v == 0.0), "an empty set encodes to zero");
    }

    #[test]
    fn fde_candidates_contain_the_exact_top10() {
        // Clustered synthetic data: 40 topics, documents of 20-60 tokens around a topic.
        let (dim, n_docs) = (64, 600);
        let mut rng = Rng::new(4);
        let topics = rng.unit_vectors(40, dim);
        let noisy = |rng: &mut Rng, t: usize, n: usize| -> Vec<f32> {
            let mut v = Vec::with_capacity(n * dim);
            for _ in 0..n {
                let mut row: Vec<f32> =
                    topics[t * dim..(t + 1) * dim].iter().map(|x| x + 0.35 * rng.normal() / 8.0).collect();
                crate::vector::normalize(&mut row);
                v.extend(row);
            }
            v
        };
        let docs: Vec<Vec<f32>> = (0..n_docs)
            .map(|i| {
                let n = 20 + rng.below(40) as usize;
                noisy(&mut rng, i % 40, n)
            })
            .collect();
        let m = Muvera::new(MuveraParams::new(dim)).unwrap();
        let fdes: Vec<Vec<f32>> = docs.iter().map(|d| m.encode_doc(d)).collect();
        let mut ok = 0;
        let queries = 40;
        for qi in 0..queries {
            let q = noisy(&mut rng, (qi * 7) % 40, 16);
            let mut exact: Vec<(f32, usize)> = docs
                .iter()
                .enumerate()
                .map(|(i, d)| (crate::scoring::scalar::maxsim(&q, d, dim), i))
                .collect();
            exact.sort_by(|a, b| b.0.total_cmp(&a.0));
            let fq = m.encode_query(&q);
            let mut approx: Vec<(f32, usize)> =
                fdes.iter().enumerate().map(|(i, f)| (dot(&fq, f), i)).collect();
            approx.sort_by(|a, b| b.0.total_cmp(&a.0));
            let cand: std::collections::HashSet<usize> = approx.iter().take(200).map(|x| x.1).collect();
            if exact.iter().take(10).all(|(_, i)| cand.contains(i)) {
                ok += 1;
            }
        }
        assert!(ok * 100 >= 95 * queries, "FDE top-200 ⊇ exact top-10 for {ok}/{queries} queries");
    }
}
