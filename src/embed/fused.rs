//! Fused CPU operations of the encoder: dense layers with bias and residual folded into
//! the GEMM, and multi-head self-attention.
//!
//! **Dense.** candle's `Linear` runs a matmul into a zeroed buffer, then a second pass
//! adding the bias, then a third adding the residual. [`Dense`] fills the output with
//! `bias (+ residual)` and lets the GEMM accumulate into it: one pass over memory.
//!
//! **Attention**: `softmax(Q·Kᵀ + mask)·V` per (sequence, head), in parallel, straight
//! from the fused QKV projection. The unfused path (permute QKV into heads, a batched `Q·Kᵀ` into a `(b, heads, s, s)`
//! tensor, a softmax pass over it, a batched `P·V`, a transpose back) moves every
//! attention matrix through memory three times and allocates tens of megabytes per
//! layer. Here each task keeps its `s × s` score block in a per-thread scratch buffer
//! (256 KiB at s = 256: it stays in L2) and writes its head's slice of the output rows
//! directly. The products are single-threaded `gemm` calls; the parallelism is across the
//! `batch × heads` tasks, which keeps both cores busy even for short sequences.

#![expect(unsafe_code, reason = "raw-pointer gemm calls on disjoint output slices; see SAFETY")]

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::fastmath::contiguous_f32;

/// A dense layer `y = x·Wᵀ + b (+ residual)` over the last dimension of a contiguous f32
/// CPU tensor.
pub(crate) struct Dense {
    /// `out × inp`, row-major (the PyTorch `weight` layout).
    w: Vec<f32>,
    /// `out` values.
    b: Vec<f32>,
    inp: usize,
    out: usize,
}

impl Dense {
    /// From a `(out, inp)` weight and an optional `(out,)` bias.
    pub(crate) fn new(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let (out, inp) = weight.dims2()?;
        let b = match bias {
            Some(b) => b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
            None => vec![0.0; out],
        };
        if b.len() != out {
            candle_core::bail!("bias of {} values for {out} outputs", b.len());
        }
        let w = weight.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self { w, b, inp, out })
    }

    /// `x·Wᵀ + b`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(self)
    }

    /// `x·Wᵀ + b + residual` (`residual` has the output's shape).
    pub(crate) fn forward_add(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op2_no_bwd(&residual.contiguous()?, self)
    }

    fn run(
        &self,
        x: &[f32],
        l: &Layout,
        residual: Option<&[f32]>,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let dims = l.dims();
        if dims.last() != Some(&self.inp) {
            candle_core::bail!("dense layer expects {} inputs, got shape {dims:?}", self.inp);
        }
        let rows = x.len() / self.inp.max(1);
        let mut y: Vec<f32> = Vec::with_capacity(rows * self.out);
        match residual {
            Some(r) if r.len() == rows * self.out => {
                for rrow in r.chunks_exact(self.out) {
                    y.extend(rrow.iter().zip(&self.b).map(|(a, b)| a + b));
                }
            }
            Some(r) => candle_core::bail!("residual of {} values for {rows} × {} outputs", r.len(), self.out),
            None => (0..rows).for_each(|_| y.extend_from_slice(&self.b)),
        }
        let threads = rayon::current_num_threads();
        // SAFETY: `x` is `rows × inp` row-major; Wᵀ reads `w` (`out × inp`, row-major)
        // transposed; `y` is `rows × out` row-major and initialised (it is read: alpha 1).
        unsafe {
            gemm::gemm(
                rows,
                self.out,
                self.inp,
                y.as_mut_ptr(),
                1,
                self.out as isize,
                true,
                x.as_ptr(),
                1,
                self.inp as isize,
                self.w.as_ptr(),
                self.inp as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
            );
        }
        let mut shape = dims.to_vec();
        *shape.last_mut().expect("checked above") = self.out;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }
}

impl CustomOp1 for Dense {
    fn name(&self) -> &'static str {
        "msdb-dense"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(s, l)?, l, None)
    }
}

impl CustomOp2 for Dense {
    fn name(&self) -> &'static str {
        "msdb-dense-residual"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.run(contiguous_f32(s1, l1)?, l1, Some(contiguous_f32(s2, l2)?))
    }
}

struct Attention {
    heads: usize,
    /// `batch × seq` key flags (`true` = attend), or `None` when every key is attended.
    keep: Option<Vec<bool>>,
}

/// A pointer that may be shared across rayon tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes a disjoint set of elements (its own sequence and head).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element `offset` past the start (a method, so closures capture the whole
    /// `Send` wrapper rather than its raw-pointer field).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "msdb-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous_f32(s, l)?;
        let (b, seq, three_h) = l.shape().dims3()?;
        let h = three_h / 3;
        let heads = self.heads;
        if three_h != 3 * h || heads == 0 || h % heads != 0 {
            candle_core::bail!("qkv width {three_h} does not split into 3 × {heads} heads");
        }
        if let Some(keep) = &self.keep {
            if keep.len() != b * seq {
                candle_core::bail!("mask of {} flags for {b} × {seq} tokens", keep.len());
            }
        }
        let hd = h / heads;
        let mut out = vec![0f32; b * seq * h];
        let dst = OutPtr(out.as_mut_ptr());
        (0..b * heads).into_par_iter().for_each_init(
            || vec![0f32; seq * seq],
            |scores, task| {
                let (item, head) = (task / heads, task % heads);
                let base = item * seq * three_h + head * hd;
                let (q, k, v) = (&qkv[base..], &qkv[base + h..], &qkv[base + 2 * h..]);
                // SAFETY: Q is `seq × hd` with row stride 3h inside `qkv`; Kᵀ reads K
                // (`seq × hd`, row stride 3h) transposed; `scores` is `seq × seq`. All reads
                // stay inside this item's rows of `qkv` (base + (seq-1)·3h + 2h + hd ≤
                // (item+1)·seq·3h).
                unsafe {
                    gemm::gemm(
                        seq,
                        seq,
                        hd,
                        scores.as_mut_ptr(),
                        1,
                        seq as isize,
                        false,
                        q.as_ptr(),
                        1,
                        three_h as isize,
                        k.as_ptr(),
                        three_h as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                if let Some(keep) = &self.keep {
                    let keep = &keep[item * seq..(item + 1) * seq];
                    for row in scores.chunks_exact_mut(seq) {
                        for (x, &on) in row.iter_mut().zip(keep) {
                            if !on {
                                *x = f32::NEG_INFINITY;
                            }
                        }
                    }
                }
                super::fastmath::softmax_in_place(scores, seq);
                // SAFETY: P is `seq × seq` contiguous; V is `seq × hd` with row stride 3h
                // inside this item's rows; the destination is this item's `seq` output rows
                // (stride h) restricted to this head's `hd` columns, which no other task
                // writes, and `out` outlives the parallel loop.
                unsafe {
                    gemm::gemm(
                        seq,
                        hd,
                        seq,
                        dst.at(item * seq * h + head * hd),
                        1,
                        h as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        seq as isize,
                        v.as_ptr(),
                        1,
                        three_h as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((b, seq, h))))
    }
}

/// Self-attention of a fused `(batch, seq, 3·hidden)` QKV projection (queries already
/// scaled by 1/√head_dim) into `(batch, seq, hidden)` context vectors, heads concatenated.
/// `keep` holds `batch × seq` key flags, or `None` when every key is attended.
pub(crate) fn attention(qkv: &Tensor, heads: usize, keep: Option<Vec<bool>>) -> candle_core::Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&Attention { heads, keep })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// The fused dense layer equals candle's `Linear` plus the residual.
    #[test]
    fn fused_dense_matches_linear() -> candle_core::Result<()> {
        use candle_core::Module;
        let mut rng = crate::rng::Rng::new(3);
        let mut t = |shape: &[usize]| {
            let n = shape.iter().product();
            Tensor::from_vec((0..n).map(|_| rng.normal()).collect::<Vec<f32>>(), shape, &Device::Cpu)
        };
        let (w, b, x, r) = (t(&[5, 7])?, t(&[5])?, t(&[2, 3, 7])?, t(&[2, 3, 5])?);
        let dense = super::Dense::new(&w, Some(&b))?;
        let want = candle_nn::Linear::new(w, Some(b)).forward(&x)?;
        let diff = |a: &Tensor, b: &Tensor| -> candle_core::Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        assert!(diff(&dense.forward(&x)?, &want)? < 1e-5);
        assert!(diff(&dense.forward_add(&x, &r)?, &(want + &r)?)? < 1e-5);
        assert!(dense.forward(&r).is_err(), "a wrong input width is an error");
        Ok(())
    }

    /// The fused op equals the unfused candle computation, with and without a mask.
    #[test]
    fn fused_attention_matches_unfused() -> candle_core::Result<()> {
        let (b, s, heads, hd) = (3usize, 7usize, 4usize, 8usize);
        let h = heads * hd;
        let mut rng = crate::rng::Rng::new(7);
        let data: Vec<f32> = (0..b * s * 3 * h).map(|_| rng.normal()).collect();
        let qkv = Tensor::from_vec(data, (b, s, 3 * h), &Device::Cpu)?;
        let lens = [7usize, 3, 5];
        let keep: Vec<bool> = lens.iter().flat_map(|&n| (0..s).map(move |j| j < n)).collect();
        for mask in [None, Some(keep)] {
            let got = super::attention(&qkv, heads, mask.clone())?;
            let split = qkv.reshape((b, s, 3, heads, hd))?.permute((2, 0, 3, 1, 4))?.contiguous()?;
            let (q, k, v) = (split.get(0)?, split.get(1)?, split.get(2)?);
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(m) = &mask {
                let bias: Vec<f32> = m.iter().map(|&on| if on { 0.0 } else { -1e9 }).collect();
                let bias = Tensor::from_vec(bias, (b, 1, 1, s), &Device::Cpu)?;
                scores = scores.broadcast_add(&bias)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let want = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "fused attention differs by {diff} (mask: {})", mask.is_some());
        }
        Ok(())
    }
}
