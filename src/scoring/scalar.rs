//! Scalar reference kernels: the oracle every SIMD kernel is tested against, and the
//! "naive loop" of the kernel benchmark.

/// Exact MaxSim with the canonical masking of ALGORITHMS.md §1.1: masked document tokens
/// are excluded from the max (−∞), masked query tokens from the sum. `q` is `lq × dim`,
/// `d` is `ld × dim`, both row-major; `None` masks mean "all valid".
///
/// Returns 0 when no query token is valid and −∞ contributions are never produced: a
/// query token facing zero valid document tokens contributes nothing (documents without
/// valid tokens are rejected at insert).
#[must_use]
pub fn maxsim_masked(
    q: &[f32],
    qmask: Option<&[bool]>,
    d: &[f32],
    dmask: Option<&[bool]>,
    dim: usize,
) -> f32 {
    let (lq, ld) = (q.len() / dim, d.len() / dim);
    let mut total = 0.0f32;
    for i in 0..lq {
        if qmask.is_some_and(|m| !m[i]) {
            continue;
        }
        let qi = &q[i * dim..(i + 1) * dim];
        let mut best = f32::NEG_INFINITY;
        for j in 0..ld {
            if dmask.is_some_and(|m| !m[j]) {
                continue;
            }
            let dj = &d[j * dim..(j + 1) * dim];
            let s: f32 = qi.iter().zip(dj).map(|(a, b)| a * b).sum();
            best = best.max(s);
        }
        if best > f32::NEG_INFINITY {
            total += best;
        }
    }
    total
}

/// Unmasked naive MaxSim (the benchmark's scalar baseline).
#[must_use]
pub fn maxsim(q: &[f32], d: &[f32], dim: usize) -> f32 {
    maxsim_masked(q, None, d, None, dim)
}

/// Plain dot product.
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
