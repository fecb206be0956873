//! Fast, vectorisable f32 `exp`, `erf`-GELU (a candle custom op) and row softmax.
//!
//! candle's CPU backend evaluates `gelu_erf` and softmax with scalar libm calls, which cost
//! as much as a third of a MiniLM forward pass. These branch-free versions let LLVM
//! vectorise them and run them in parallel over rows. Accuracy: `exp` relative error
//! < 3e-7 on [-87, 88]; `erf` absolute error < 5e-7 (Abramowitz–Stegun 7.1.26 with this
//! `exp`); both are far inside the encoder's 1e-3 hidden-state tolerance (and are checked
//! end to end against the float64 reference).

#![expect(unsafe_code, reason = "calls #[target_feature] copies of the loops; see SAFETY")]

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Whether the AVX2 + FMA copies of the loops may run (detected once).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Instantiate `$portable` (a function from a source chunk to a destination chunk) twice:
/// portable, and compiled for AVX2 + FMA so that LLVM vectorises the branch-free math
/// 8 lanes wide.
macro_rules! dispatch {
    ($name:ident, $portable:ident) => {
        fn $name(src: &[f32], dst: &mut [f32], n: usize) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide(src: &[f32], dst: &mut [f32], n: usize) {
                    $portable(src, dst, n);
                }
                if avx2() {
                    // SAFETY: AVX2 and FMA were detected at runtime.
                    unsafe { wide(src, dst, n) };
                    return;
                }
            }
            $portable(src, dst, n);
        }
    };
}

/// `e^x`, branch-free (Cody–Waite range reduction + degree-6 polynomial); 0 below −87.
#[inline(always)]
#[must_use]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting rounds to an integer
    let under = x < -87.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_452 + r * 0.001_388_893)))));
    let v = f32::from_bits(((k as i32 + 127) << 23) as u32) * p;
    // Below e^-87 the result underflows to 0 (so masked scores get exactly zero weight).
    if under {
        0.0
    } else {
        v
    }
}

/// `erf(x)` (Abramowitz–Stegun 7.1.26).
#[inline(always)]
#[must_use]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))))
            * exp(-a * a);
    y.copysign(x)
}

#[inline(always)]
fn gelu_chunk(src: &[f32], dst: &mut [f32], _n: usize) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[inline(always)]
fn softmax_chunk(_unused: &[f32], dst: &mut [f32], n: usize) {
    for row in dst.chunks_exact_mut(n) {
        // Eight partial maxima / sums so the reductions vectorise.
        let mut m8 = [f32::NEG_INFINITY; 8];
        let mut it = row.chunks_exact(8);
        for c in &mut it {
            for i in 0..8 {
                m8[i] = m8[i].max(c[i]);
            }
        }
        let m = it
            .remainder()
            .iter()
            .copied()
            .fold(m8.iter().copied().fold(f32::NEG_INFINITY, f32::max), f32::max);
        if m == f32::NEG_INFINITY {
            // Every key masked: no weight anywhere (instead of NaN).
            row.fill(0.0);
            continue;
        }
        for x in row.iter_mut() {
            *x = exp(*x - m);
        }
        let mut s8 = [0f32; 8];
        let mut it = row.chunks_exact(8);
        for c in &mut it {
            for i in 0..8 {
                s8[i] += c[i];
            }
        }
        let s: f32 = s8.iter().sum::<f32>() + it.remainder().iter().sum::<f32>();
        let inv = 1.0 / s;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// Softmax of each row of `n` values of `row`, in place; a row whose values are all −∞
/// (every key masked) becomes all zeros.
pub(crate) fn softmax_in_place(row: &mut [f32], n: usize) {
    softmax_dispatch(&[], row, n);
}

dispatch!(gelu_dispatch, gelu_chunk);
dispatch!(softmax_dispatch, softmax_chunk);

/// Exact (erf) GELU of `src` into a new vector.
#[must_use]
pub fn gelu_vec(src: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    out.par_chunks_mut(8192).zip(src.par_chunks(8192)).for_each(|(d, s)| gelu_dispatch(s, d, 0));
    out
}

struct Gelu;

/// The f32 values of a contiguous CPU tensor's storage (the input of every custom op here
/// and in `fused.rs`).
pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("fast ops need f32") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("fast ops need contiguous tensors"),
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "msdb-gelu-erf"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(gelu_vec(contiguous_f32(s, l)?)), l.shape().clone()))
    }
}

struct Geglu;

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "msdb-geglu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let u = contiguous_f32(s, l)?;
        let dims = l.dims();
        let two_i = *dims.last().unwrap_or(&0);
        if !two_i.is_multiple_of(2) {
            candle_core::bail!("GeGLU input width {two_i} is odd");
        }
        let i = two_i / 2;
        let mut out = vec![0f32; u.len() / 2];
        if i > 0 {
            out.par_chunks_mut(i).zip(u.par_chunks(two_i)).for_each(|(d, row)| {
                gelu_dispatch(&row[..i], d, 0);
                d.iter_mut().zip(&row[i..]).for_each(|(x, g)| *x *= g);
            });
        }
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = i;
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// GeGLU of the last dimension: `gelu(u[.., :I]) · u[.., I:]` (exact GELU; f32, CPU).
pub(crate) fn geglu(t: &Tensor) -> candle_core::Result<Tensor> {
    t.contiguous()?.apply_op1_no_bwd(&Geglu)
}

/// Exact GELU of a tensor (f32, CPU).
pub(crate) fn gelu(t: &Tensor) -> candle_core::Result<Tensor> {
    t.contiguous()?.apply_op1_no_bwd(&Gelu)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_and_erf_are_accurate() {
        let mut worst_exp = 0f64;
        let mut worst_erf = 0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0;
            let want = f64::from(x).exp();
            worst_exp = worst_exp.max((f64::from(super::exp(x)) - want).abs() / want);
        }
        for i in -6000..6000 {
            let x = i as f32 / 1000.0;
            let want = libm_erf(f64::from(x));
            worst_erf = worst_erf.max((f64::from(super::erf(x)) - want).abs());
        }
        assert!(worst_exp < 3e-7, "exp relative error {worst_exp}");
        assert!(worst_erf < 5e-7, "erf absolute error {worst_erf}");
        let mut row = [1.0f32, 2.0, 3.0, f32::NEG_INFINITY];
        super::softmax_in_place(&mut row, 4);
        assert_eq!(row[3], 0.0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    /// erf by its Taylor series (converges well for |x| ≤ 6 in f64 with enough terms).
    fn libm_erf(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let (mut sum, mut term) = (0.0, x);
        for n in 0..200 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
