//! AVX2 and AVX-512 MaxSim kernels.
//!
//! The query is prepared once as `Qᵀ` (`dim × stride`, zero-padded to a multiple of 32
//! query tokens). The document is streamed once, in blocks of `NB` tokens (f16 blocks are
//! widened with F16C into a small buffer that stays in L1). Each block is scored against
//! every query tile of `QV` SIMD registers: for every dimension `k`, one load of `Qᵀ[k]`
//! per register and one broadcast of `d_j[k]` per token feed `QV × NB` independent FMA
//! accumulators, so the loop is FMA-bound rather than load-bound; at the end of a block
//! the accumulators are folded into the tile's running per-query-token max. A short last
//! block is padded by repeating the document's last token, which cannot change a max.
//! This is the CPU kernel sketched in ALGORITHMS.md §1.1 (Q in L1, documents streamed),
//! with a GEMM-style register tile. Both ISAs are generated from one macro so they share
//! every line of logic; only register width and tile shape differ.
#![expect(unsafe_code, reason = "SIMD intrinsics; see SAFETY comments")]

use std::arch::x86_64::*;

use half::f16;

use super::DocRef;

/// Query tokens padded to a multiple of this (the widest tile).
pub(super) const STRIDE_MULTIPLE: usize = 32;
/// Scratch rows needed per thread (the largest `NB`).
pub(super) const MAX_NB: usize = 12;
/// Query tiles processed per document pass (longer queries take several passes).
const MAX_TILES: usize = 64;

/// Widen `src` to f32 with F16C, 8 lanes at a time.
#[target_feature(enable = "avx2,f16c")]
unsafe fn widen(src: &[f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: `i + 8 <= n` keeps both the 16-byte load and the 32-byte store in bounds;
        // f16 is a plain u16 so loading 8 of them as a 128-bit integer vector is valid.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast::<__m128i>());
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = src[j].to_f32();
    }
}

/// Copy (widening f16) `nb` rows of the document starting at token `j` into `buf`,
/// padding a short last block by repeating the last row, and prefetch the next block.
/// Reading each block contiguously keeps the hardware prefetcher streaming; the FMA loop
/// then reads only L1.
#[target_feature(enable = "avx2,f16c")]
unsafe fn block_rows(
    doc: DocRef<'_>,
    dim: usize,
    ld: usize,
    j: usize,
    nb: usize,
    buf: &mut [f32],
) -> *const f32 {
    let take = nb.min(ld - j);
    let out = &mut buf[..nb * dim];
    prefetch_next(doc, dim, ld, j + nb, nb);
    match doc {
        DocRef::F32(d) => out[..take * dim].copy_from_slice(&d[j * dim..(j + take) * dim]),
        // SAFETY: this function runs with AVX2 and F16C enabled (caller's contract).
        DocRef::F16(d) => unsafe { widen(&d[j * dim..(j + take) * dim], &mut out[..take * dim]) },
    }
    let last = (take - 1) * dim;
    for r in take..nb {
        out.copy_within(last..last + dim, r * dim);
    }
    out.as_ptr()
}

/// Hint the cache about the block after the current one.
#[inline]
fn prefetch_next(doc: DocRef<'_>, dim: usize, ld: usize, j: usize, nb: usize) {
    if j >= ld {
        return;
    }
    let (ptr, bytes) = match doc {
        DocRef::F32(d) => (d[j * dim..].as_ptr().cast::<i8>(), nb.min(ld - j) * dim * 4),
        DocRef::F16(d) => (d[j * dim..].as_ptr().cast::<i8>(), nb.min(ld - j) * dim * 2),
    };
    for off in (0..bytes).step_by(64) {
        // SAFETY: prefetching is a hint that never faults; `ptr + off` stays inside the
        // document's slice because `off < bytes`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.add(off)) };
    }
}

macro_rules! kernel {
    (
        $name:ident, $feat:literal, $reg:ty, $lanes:literal, $qv:literal, $nb:literal,
        $zero:ident, $set1:ident, $load:ident, $fmadd:ident, $max:ident, $store:ident
    ) => {
        /// MaxSim of a prepared query against one document.
        ///
        /// # Safety
        /// The CPU must support the enabled features; `qt.len() >= dim * stride`, with
        /// `stride` a multiple of [`STRIDE_MULTIPLE`] and `lq <= stride`; `doc` holds
        /// `ld >= 1` rows of `dim`; `buf.len() >= MAX_NB * dim`.
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name(
            qt: &[f32],
            stride: usize,
            lq: usize,
            dim: usize,
            doc: DocRef<'_>,
            ld: usize,
            buf: &mut [f32],
        ) -> f32 {
            const TILE: usize = $qv * $lanes;
            let mut total = 0.0;
            let mut t0 = 0;
            while t0 < lq {
                let tiles = (lq - t0).div_ceil(TILE).min(MAX_TILES);
                let mut m: [[$reg; $qv]; MAX_TILES] = [[$set1(f32::NEG_INFINITY); $qv]; MAX_TILES];
                let mut j = 0;
                while j < ld {
                    // SAFETY: features enabled by this function; `j < ld`; `buf` holds
                    // MAX_NB >= $nb rows.
                    let rows = unsafe { block_rows(doc, dim, ld, j, $nb, buf) };
                    for (t, mt) in m.iter_mut().enumerate().take(tiles) {
                        let q = qt[t0 + t * TILE..].as_ptr();
                        let mut acc = [[$zero(); $qv]; $nb];
                        for k in 0..dim {
                            // SAFETY: row `k` of `Qᵀ` starts at `k * stride`; the tile reads
                            // lanes `t0 + t*TILE .. + TILE <= stride` (stride is a multiple
                            // of TILE and covers lq); `rows` holds $nb rows of `dim`.
                            unsafe {
                                let row = q.add(k * stride);
                                let qv: [$reg; $qv] = std::array::from_fn(|v| $load(row.add(v * $lanes)));
                                for (jj, a) in acc.iter_mut().enumerate() {
                                    let b = $set1(*rows.add(jj * dim + k));
                                    for v in 0..$qv {
                                        a[v] = $fmadd(qv[v], b, a[v]);
                                    }
                                }
                            }
                        }
                        for a in &acc {
                            for v in 0..$qv {
                                mt[v] = $max(mt[v], a[v]);
                            }
                        }
                    }
                    j += $nb;
                }
                let mut lanes = [0f32; TILE];
                for (t, mt) in m.iter().enumerate().take(tiles) {
                    for (v, r) in mt.iter().enumerate() {
                        // SAFETY: `lanes` holds TILE = $qv * $lanes floats.
                        unsafe { $store(lanes.as_mut_ptr().add(v * $lanes), *r) };
                    }
                    let valid = (lq - t0 - t * TILE).min(TILE);
                    total += lanes[..valid].iter().sum::<f32>();
                }
                t0 += tiles * TILE;
            }
            total
        }
    };
}

// AVX2: 16 ymm registers → 2 query registers × 6 tokens = 12 accumulators.
kernel!(
    maxsim_avx2,
    "avx2,fma,f16c",
    __m256,
    8,
    2,
    6,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_fmadd_ps,
    _mm256_max_ps,
    _mm256_storeu_ps
);

// AVX-512: 32 zmm registers → 2 query registers × 12 tokens = 24 accumulators.
kernel!(
    maxsim_avx512,
    "avx512f,avx2,fma,f16c",
    __m512,
    16,
    2,
    12,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    _mm512_max_ps,
    _mm512_storeu_ps
);

/// Decode one residual-coded token (PLAID's codec, ALGORITHMS.md §2.2):
/// `out = norm(c + weights[bucket_k])`, where bucket `k` is the `nbits`-bit field at bit
/// `k · nbits` of `bits` (little-endian). 16 components per step: their `16 · nbits` bits
/// are loaded as one integer, split into 16 lanes by a variable shift and a mask, and the
/// lanes index the (at most 16) bucket values with one permute; the squared norm is
/// accumulated alongside. `out.len()` (= `c.len()`) must be a multiple of 16 and
/// `nbits` one of 1, 2, 4.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn decode_residual_avx512(
    weights: &[f32; 16],
    nbits: u32,
    c: &[f32],
    bits: &[u8],
    out: &mut [f32],
) {
    let steps = out.len() / 16;
    let bytes = 2 * nbits as usize;
    assert!(c.len() >= steps * 16 && bits.len() >= steps * bytes, "decode: short centroid or residual");
    // SAFETY: AVX-512F is enabled by the caller's contract; every load and store stays
    // inside `c`, `out` (`steps · 16` floats, asserted) and `weights`.
    unsafe {
        let w = _mm512_loadu_ps(weights.as_ptr());
        let mask = _mm512_set1_epi32((1 << nbits) - 1);
        let shifts = if nbits == 4 {
            _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28)
        } else {
            let n = nbits as i32;
            _mm512_setr_epi32(
                0,
                n,
                2 * n,
                3 * n,
                4 * n,
                5 * n,
                6 * n,
                7 * n,
                8 * n,
                9 * n,
                10 * n,
                11 * n,
                12 * n,
                13 * n,
                14 * n,
                15 * n,
            )
        };
        let mut acc = _mm512_setzero_ps();
        for i in 0..steps {
            let mut raw = [0u8; 8];
            raw[..bytes].copy_from_slice(&bits[i * bytes..(i + 1) * bytes]);
            let v = u64::from_le_bytes(raw);
            let lo = _mm512_set1_epi32(v as u32 as i32);
            let lanes = if nbits == 4 {
                _mm512_inserti64x4::<1>(lo, _mm256_set1_epi32((v >> 32) as u32 as i32))
            } else {
                lo
            };
            let idx = _mm512_and_si512(_mm512_srlv_epi32(lanes, shifts), mask);
            let x = _mm512_add_ps(_mm512_loadu_ps(c.as_ptr().add(i * 16)), _mm512_permutexvar_ps(idx, w));
            _mm512_storeu_ps(out.as_mut_ptr().add(i * 16), x);
            acc = _mm512_fmadd_ps(x, x, acc);
        }
        let inv = _mm512_set1_ps(1.0 / _mm512_reduce_add_ps(acc).sqrt().max(1e-12));
        for i in 0..steps {
            let p = out.as_mut_ptr().add(i * 16);
            _mm512_storeu_ps(p, _mm512_mul_ps(_mm512_loadu_ps(p), inv));
        }
    }
}
