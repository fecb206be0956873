//! AVX-512 and AVX2 MaxSim kernels.
//!
//! The query is prepared once as `Qᵀ` (`dim × lq_pad`, zero-padded to a multiple of 16
//! query tokens). A block of `NB` document tokens is scored against a tile of query
//! tokens held in `QV` SIMD registers: for every dimension `k`, one load of `Qᵀ[k]` per
//! register and one broadcast of `d_j[k]` per document token feed `QV × NB` independent
//! FMA accumulators, so the loop is FMA-bound rather than load-bound. At the end of a
//! block the accumulators are folded into the running per-query-token max. A short last
//! block is filled by repeating the document's last token, which cannot change a max.
//! This is the CPU kernel sketched in ALGORITHMS.md §1.1 (Q kept in L1, documents
//! streamed), with a GEMM-style register tile.
#![expect(unsafe_code, reason = "SIMD intrinsics; see SAFETY comments")]

use std::arch::x86_64::*;

use super::DocRef;

/// Tokens per block for 2-register (32 query) AVX-512 tiles: 12 accumulators.
const NB512_2: usize = 6;
/// Tokens per block for 1-register (16 query) AVX-512 tiles.
const NB512_1: usize = 12;
/// Tokens per block for AVX2 tiles of 16 query tokens (2 registers).
const NB256: usize = 6;

/// Per-thread scratch for converted document blocks.
pub(super) const MAX_NB: usize = 12;

#[target_feature(enable = "avx512f")]
unsafe fn block512<const QV: usize, const NB: usize>(
    qt: *const f32,
    stride: usize,
    dim: usize,
    d: *const f32,
    m: &mut [__m512; QV],
) {
    let mut acc = [[_mm512_setzero_ps(); QV]; NB];
    for k in 0..dim {
        // SAFETY: the caller guarantees `qt` points to `dim` rows of `stride` floats and
        // that `QV * 16 <= stride` lanes from the tile start are in bounds, and that `d`
        // points to `NB` rows of `dim` floats.
        unsafe {
            let row = qt.add(k * stride);
            let q: [__m512; QV] = std::array::from_fn(|v| _mm512_loadu_ps(row.add(16 * v)));
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*d.add(j * dim + k));
                for v in 0..QV {
                    acc_j[v] = _mm512_fmadd_ps(q[v], b, acc_j[v]);
                }
            }
        }
    }
    for acc_j in &acc {
        for v in 0..QV {
            m[v] = _mm512_max_ps(m[v], acc_j[v]);
        }
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn block256<const QV: usize, const NB: usize>(
    qt: *const f32,
    stride: usize,
    dim: usize,
    d: *const f32,
    m: &mut [__m256; QV],
) {
    let mut acc = [[_mm256_setzero_ps(); QV]; NB];
    for k in 0..dim {
        // SAFETY: as in `block512`, with 8-lane registers.
        unsafe {
            let row = qt.add(k * stride);
            let q: [__m256; QV] = std::array::from_fn(|v| _mm256_loadu_ps(row.add(8 * v)));
            for (j, acc_j) in acc.iter_mut().enumerate() {
                let b = _mm256_set1_ps(*d.add(j * dim + k));
                for v in 0..QV {
                    acc_j[v] = _mm256_fmadd_ps(q[v], b, acc_j[v]);
                }
            }
        }
    }
    for acc_j in &acc {
        for v in 0..QV {
            m[v] = _mm256_max_ps(m[v], acc_j[v]);
        }
    }
}

/// Pointer to `nb` f32 rows of the document starting at token `j`, converting f16 or
/// padding a short last block into `buf`.
fn block_rows(doc: DocRef<'_>, dim: usize, ld: usize, j: usize, nb: usize, buf: &mut [f32]) -> *const f32 {
    let take = nb.min(ld - j);
    match doc {
        DocRef::F32(d) if take == nb => d[j * dim..].as_ptr(),
        _ => {
            doc.convert_rows(j, take, dim, &mut buf[..take * dim]);
            let last = (take - 1) * dim;
            for r in take..nb {
                buf.copy_within(last..last + dim, r * dim);
            }
            buf.as_ptr()
        }
    }
}

macro_rules! tile_fn {
    ($name:ident, $feat:literal, $reg:ty, $lanes:expr, $block:ident, $neg:expr, $store:ident) => {
        /// Score one query tile of `QV` registers against the whole document; returns the
        /// sum of the maxima of the first `valid` lanes.
        #[target_feature(enable = $feat)]
        unsafe fn $name<const QV: usize, const NB: usize>(
            qt: &[f32],
            stride: usize,
            dim: usize,
            doc: DocRef<'_>,
            ld: usize,
            valid: usize,
            buf: &mut [f32],
        ) -> f32 {
            let mut m: [$reg; QV] = [$neg; QV];
            let mut j = 0;
            while j < ld {
                let rows = block_rows(doc, dim, ld, j, NB, buf);
                // SAFETY: `qt` holds `dim * stride` floats and the tile spans `QV * lanes`
                // lanes inside the stride (checked by the caller); `rows` points to `NB`
                // rows of `dim` floats (document data or `buf`, sized by the caller).
                unsafe { $block::<QV, NB>(qt.as_ptr(), stride, dim, rows, &mut m) };
                j += NB;
            }
            let mut lanes = [0f32; 64];
            for (v, reg) in m.iter().enumerate() {
                // SAFETY: `lanes` has room for 64 floats and `v * lanes + lanes <= 64`.
                unsafe { $store(lanes.as_mut_ptr().add(v * $lanes), *reg) };
            }
            lanes[..valid].iter().sum()
        }
    };
}

tile_fn!(tile512, "avx512f", __m512, 16, block512, _mm512_set1_ps(f32::NEG_INFINITY), _mm512_storeu_ps);
tile_fn!(tile256, "avx2,fma", __m256, 8, block256, _mm256_set1_ps(f32::NEG_INFINITY), _mm256_storeu_ps);

/// AVX-512 MaxSim. `qt` is `dim × stride` with `stride` a multiple of 16 ≥ `lq`.
///
/// # Safety
/// The CPU must support AVX-512F; `qt.len() >= dim * stride`; `doc` holds `ld ≥ 1` rows
/// of `dim`; `buf.len() >= MAX_NB * dim`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn maxsim_avx512(
    qt: &[f32],
    stride: usize,
    lq: usize,
    dim: usize,
    doc: DocRef<'_>,
    ld: usize,
    buf: &mut [f32],
) -> f32 {
    let mut total = 0.0;
    let mut t = 0;
    while t < lq {
        let left = lq - t;
        let tile = &qt[t..];
        // SAFETY: the tile starts at lane `t < lq <= stride`; a 2-register tile needs
        // `t + 32 <= stride`, which holds when more than 16 query tokens remain because
        // `stride` is `lq` rounded up to 16.
        total += unsafe {
            if left > 16 {
                tile512::<2, NB512_2>(tile, stride, dim, doc, ld, left.min(32), buf)
            } else {
                tile512::<1, NB512_1>(tile, stride, dim, doc, ld, left, buf)
            }
        };
        t += 32;
    }
    total
}

/// AVX2 + FMA MaxSim, same contract as [`maxsim_avx512`] but for AVX2 + FMA CPUs.
///
/// # Safety
/// The CPU must support AVX2 and FMA; otherwise as [`maxsim_avx512`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn maxsim_avx2(
    qt: &[f32],
    stride: usize,
    lq: usize,
    dim: usize,
    doc: DocRef<'_>,
    ld: usize,
    buf: &mut [f32],
) -> f32 {
    let mut total = 0.0;
    let mut t = 0;
    while t < lq {
        // SAFETY: a 16-lane tile starting at `t < lq` fits in `stride` (a multiple of 16).
        total += unsafe { tile256::<2, NB256>(&qt[t..], stride, dim, doc, ld, (lq - t).min(16), buf) };
        t += 16;
    }
    total
}
