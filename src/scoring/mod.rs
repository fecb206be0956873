//! MaxSim and dense scoring: a prepared query, runtime SIMD dispatch and top-k selection.
//!
//! [`PreparedQuery::maxsim`] computes `Σ_i max_j q_i·d_j` (ALGORITHMS.md §1.1) with the
//! widest kernel the CPU supports (AVX-512, then AVX2+FMA, then the scalar oracle in
//! [`scalar`]). Scores always accumulate in f32, whether documents are stored as f32 or f16.

pub mod scalar;
#[cfg(feature = "embed")]
pub mod tensor;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::OnceLock;

use half::slice::HalfFloatSliceExt;

use crate::{Error, Result};

pub use crate::vector::VecRef as DocRef;

/// One residual-coded token decoded with AVX-512 (see `x86_64::decode_residual_avx512`);
/// false, with `out` untouched, when this CPU (or [`Isa::detect`]) has no AVX-512 or
/// `out.len()` is not a multiple of 16.
pub(crate) fn decode_residual(
    weights: &[f32; 16],
    nbits: u32,
    c: &[f32],
    bits: &[u8],
    out: &mut [f32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx512 && out.len().is_multiple_of(16) && matches!(nbits, 1 | 2 | 4) {
        // SAFETY: AVX-512F was detected at run time.
        #[expect(unsafe_code, reason = "calls an AVX-512 kernel after run-time detection")]
        unsafe {
            x86_64::decode_residual_avx512(weights, nbits, c, bits, out);
        }
        return true;
    }
    let _ = (weights, nbits, c, bits, out);
    false
}

/// Instruction sets the kernels can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable scalar loop.
    Scalar,
    /// AVX2 + FMA (x86-64).
    Avx2,
    /// AVX-512F (x86-64).
    Avx512,
}

impl Isa {
    /// The best ISA of this CPU (detected once).
    #[must_use]
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            if std::env::var_os("MAXSIMDB_FORCE_SCALAR").is_some() {
                return Isa::Scalar;
            }
            Self::available().last().copied().unwrap_or(Isa::Scalar)
        })
    }

    /// Every ISA this CPU can run, narrowest first.
    #[must_use]
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2 {
                v.push(Isa::Avx2);
            }
            if avx2 && is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// Short name (`scalar`, `avx2`, `avx512`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// A query's token vectors laid out for the kernels (`Qᵀ`, zero-padded).
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    dim: usize,
    lq: usize,
    stride: usize,
    qt: Vec<f32>,
    rows: Vec<f32>,
    isa: Isa,
}

/// Query tokens are zero-padded to a multiple of this in `Qᵀ`.
#[cfg(target_arch = "x86_64")]
const STRIDE: usize = x86_64::STRIDE_MULTIPLE;
#[cfg(not(target_arch = "x86_64"))]
const STRIDE: usize = 1;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl PreparedQuery {
    /// Prepare `tokens` (`lq × dim`, row-major). Rows whose `mask` entry is false are
    /// dropped (masked query tokens do not contribute to the sum).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `tokens` is not a whole number of rows, values are not
    /// finite, or the mask length differs from the row count.
    pub fn new(tokens: &[f32], dim: usize, mask: Option<&[bool]>) -> Result<Self> {
        Self::with_isa(tokens, dim, mask, Isa::detect())
    }

    /// As [`PreparedQuery::new`] with an explicit kernel (for tests and benchmarks).
    ///
    /// # Errors
    /// As [`PreparedQuery::new`], plus [`Error::NotAvailable`] if the CPU lacks `isa`.
    pub fn with_isa(tokens: &[f32], dim: usize, mask: Option<&[bool]>, isa: Isa) -> Result<Self> {
        if dim == 0 || !tokens.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                what: "query token vectors".into(),
                expected: dim,
                got: if dim == 0 { 0 } else { tokens.len() % dim },
            });
        }
        if !Isa::available().contains(&isa) {
            return Err(Error::NotAvailable(format!("this CPU cannot run the {} kernel", isa.name())));
        }
        crate::validate::finite("query", tokens)?;
        let n = tokens.len() / dim;
        if let Some(m) = mask {
            if m.len() != n {
                return Err(Error::invalid(format!("query mask has {} entries for {n} tokens", m.len())));
            }
        }
        let rows: Vec<f32> = tokens
            .chunks_exact(dim)
            .enumerate()
            .filter(|(i, _)| mask.is_none_or(|m| m[*i]))
            .flat_map(|(_, r)| r.iter().copied())
            .collect();
        let lq = rows.len() / dim;
        let stride = lq.div_ceil(STRIDE) * STRIDE;
        let mut qt = vec![0f32; dim * stride];
        for (i, row) in rows.chunks_exact(dim).enumerate() {
            for (k, &x) in row.iter().enumerate() {
                qt[k * stride + i] = x;
            }
        }
        Ok(Self { dim, lq, stride, qt, rows, isa })
    }

    /// Number of (valid) query tokens.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lq
    }

    /// True when no query token is valid (every score is then 0).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lq == 0
    }

    /// Token dimension.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The kernel in use.
    #[must_use]
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// MaxSim of this query against one document (`doc` holds `ld × dim` values, `ld ≥ 1`).
    #[must_use]
    pub fn maxsim(&self, doc: DocRef<'_>) -> f32 {
        let ld = doc.len() / self.dim;
        if self.lq == 0 || ld == 0 {
            return 0.0;
        }
        match self.isa {
            Isa::Scalar => {
                let d = match doc {
                    DocRef::F32(d) => std::borrow::Cow::Borrowed(d),
                    DocRef::F16(d) => std::borrow::Cow::Owned(d.to_f32_vec()),
                };
                scalar::maxsim(&self.rows, &d, self.dim)
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::Avx512 => self.simd(doc, ld),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("SIMD ISAs are only listed on x86_64"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[expect(unsafe_code, reason = "calls target_feature kernels; see SAFETY")]
    fn simd(&self, doc: DocRef<'_>, ld: usize) -> f32 {
        SCRATCH.with_borrow_mut(|buf| {
            let need = x86_64::MAX_NB * self.dim;
            if buf.len() < need {
                buf.resize(need, 0.0);
            }
            let (qt, s, lq, dim) = (&self.qt, self.stride, self.lq, self.dim);
            // SAFETY: `self.isa` is only Avx2/Avx512 when `Isa::available` detected their
            // features (checked in `with_isa`); `qt` is `dim × stride` with `stride` a
            // multiple of STRIDE_MULTIPLE ≥ lq; `doc` holds `ld ≥ 1` rows; `buf` holds
            // MAX_NB rows.
            unsafe {
                if self.isa == Isa::Avx512 {
                    x86_64::maxsim_avx512(qt, s, lq, dim, doc, ld, buf)
                } else {
                    x86_64::maxsim_avx2(qt, s, lq, dim, doc, ld, buf)
                }
            }
        })
    }
}

/// Dot product of a query vector with a stored vector (simsimd for f32; f16 is widened to
/// f32 first so the query keeps full precision).
#[must_use]
pub fn dot(query: &[f32], v: DocRef<'_>) -> f32 {
    use simsimd::SpatialSimilarity;
    match v {
        DocRef::F32(d) => f32::dot(query, d).map_or_else(|| scalar::dot(query, d), |x| x as f32),
        DocRef::F16(d) => SCRATCH.with_borrow_mut(|buf| {
            buf.resize(d.len(), 0.0);
            d.convert_to_f32_slice(buf);
            f32::dot(query, buf).map_or_else(|| scalar::dot(query, buf), |x| x as f32)
        }),
    }
}

/// A scored internal row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Score.
    pub score: f32,
    /// Internal row id.
    pub row: u64,
}

impl Eq for Scored {}

impl Ord for Scored {
    /// Higher score first; ties broken by smaller row id (older document) first.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.row.cmp(&self.row))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bounded top-k collector (a min-heap of the k best).
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<Scored>>,
}

impl TopK {
    /// Keep the best `k`.
    #[must_use]
    pub fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// Offer a candidate.
    pub fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(s));
        } else if self.heap.peek().is_some_and(|w| s > w.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(s));
        }
    }

    /// Merge another collector into this one.
    #[must_use]
    pub fn merge(mut self, other: TopK) -> Self {
        for s in other.heap {
            self.push(s.0);
        }
        self
    }

    /// The kept candidates, best first.
    #[must_use]
    pub fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

#[cfg(test)]
mod tests;
