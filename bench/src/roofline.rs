//! The machine's f32 FMA peak on one thread: a register-resident loop of independent FMAs
//! at the widest SIMD width available, timed in the same run as the kernels.
#![allow(unsafe_code)]

use std::time::Instant;

/// Measured peak in GFLOP/s (2 flops per FMA lane) and the ISA used.
pub fn fma_peak_gflops() -> (f64, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected at runtime.
            return (time(|n| unsafe { avx512(n) }, 16), "avx512");
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected at runtime.
            return (time(|n| unsafe { avx2(n) }, 8), "avx2");
        }
    }
    (time(scalar, 1), "scalar")
}

/// Independent accumulators: enough to cover FMA latency × throughput (4–5 cycles × 2
/// pipes), few enough to stay in the 16 AVX2 registers beside the two constants.
const ACC: usize = 12;

fn time(f: impl Fn(u64) -> f32, lanes: usize) -> f64 {
    let iters = 20_000_000u64;
    std::hint::black_box(f(iters / 10));
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(f(std::hint::black_box(iters)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    (iters as f64 * ACC as f64 * lanes as f64 * 2.0) / best / 1e9
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512(n: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    let mut acc = [_mm512_set1_ps(1.0); ACC];
    for _ in 0..n {
        for r in &mut acc {
            *r = _mm512_fmadd_ps(*r, a, b);
        }
    }
    acc.iter().map(|r| _mm512_reduce_add_ps(*r)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(n: u64) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); ACC];
    for _ in 0..n {
        for r in &mut acc {
            *r = _mm256_fmadd_ps(*r, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut s = 0.0;
    for r in acc {
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), r) };
        s += out.iter().sum::<f32>();
    }
    s
}

fn scalar(n: u64) -> f32 {
    let mut acc = [1.0f32; ACC];
    for _ in 0..n {
        for r in &mut acc {
            *r = r.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}
