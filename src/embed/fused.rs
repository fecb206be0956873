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

/// Rotary position tables (GPT-NeoX `rotate_half` convention, ALGORITHMS.md-style notes in
/// `modernbert.rs`): `cos[pos·half + j]`, `sin[pos·half + j]` for `j < head_dim / 2`, computed in
/// f64 and rounded once.
pub(crate) struct Rope {
    half: usize,
    positions: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Tables for `positions` positions of a `head_dim`-wide head with base `theta`.
    pub(crate) fn new(head_dim: usize, positions: usize, theta: f64) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for p in 0..positions {
            for j in 0..half {
                let inv = theta.powf(-2.0 * j as f64 / head_dim as f64);
                let a = p as f64 * inv;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Self { half, positions, cos, sin }
    }

    /// Copy `rows` rows of `hd` values (source row stride `stride`) into `dst`, rotated:
    /// `x' = x·cos + rotate_half(x)·sin` with `rotate_half(x) = (−x[d/2:], x[:d/2])`.
    fn rotate_into(&self, src: &[f32], stride: usize, rows: usize, hd: usize, dst: &mut [f32]) {
        let h = self.half;
        for p in 0..rows {
            let (x, y) = (&src[p * stride..p * stride + hd], &mut dst[p * hd..(p + 1) * hd]);
            let (c, s) = (&self.cos[p * h..(p + 1) * h], &self.sin[p * h..(p + 1) * h]);
            for j in 0..h {
                let (a, b) = (x[j], x[j + h]);
                y[j] = a * c[j] - b * s[j];
                y[j + h] = b * c[j] + a * s[j];
            }
        }
    }
}

struct Attention<'a> {
    heads: usize,
    /// `batch × seq` key flags (`true` = attend), or `None` when every key is attended.
    keep: Option<Vec<bool>>,
    /// Rotary embedding of queries and keys (ModernBERT), or none (BERT).
    rope: Option<&'a Rope>,
    /// Sliding window: query `i` attends key `j` iff `|i − j| ≤ window` (ModernBERT local
    /// layers); `None` = full attention.
    window: Option<usize>,
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

/// Query rows per score block on windowed layers: a block scores only the keys its rows can
/// see (`block + 2·window`), so a local layer costs `O(seq · window)`, not `O(seq²)`.
const WINDOW_BLOCK: usize = 64;

/// Per-thread scratch of the attention tasks.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    mean_v: Vec<f32>,
    no_key: Vec<bool>,
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "msdb-attention"
    }

    #[expect(clippy::too_many_lines, reason = "one kernel: the two products and the masking between them")]
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
        if let Some(r) = self.rope {
            if r.half * 2 != hd || r.positions < seq {
                candle_core::bail!(
                    "rotary table for head size {} and {} positions, got head size {hd} and {seq} tokens",
                    r.half * 2,
                    r.positions
                );
            }
        }
        let window = self.window.filter(|&w| w + 1 < seq);
        let block = if window.is_some() { WINDOW_BLOCK.min(seq) } else { seq };
        let mut out = vec![0f32; b * seq * h];
        let dst = OutPtr(out.as_mut_ptr());
        (0..b * heads).into_par_iter().for_each_init(Scratch::default, |sc, task| {
            let (item, head) = (task / heads, task % heads);
            let base = item * seq * three_h + head * hd;
            let v = &qkv[base + 2 * h..];
            // Q and K: straight from the projection (row stride 3h), or rotated copies.
            let (q, q_stride, k, k_stride): (&[f32], usize, &[f32], usize) = match self.rope {
                Some(r) => {
                    sc.q.resize(seq * hd, 0.0);
                    sc.k.resize(seq * hd, 0.0);
                    r.rotate_into(&qkv[base..], three_h, seq, hd, &mut sc.q);
                    r.rotate_into(&qkv[base + h..], three_h, seq, hd, &mut sc.k);
                    (&sc.q, hd, &sc.k, hd)
                }
                None => (&qkv[base..], three_h, &qkv[base + h..], three_h),
            };
            let keep = self.keep.as_ref().map(|k| &k[item * seq..(item + 1) * seq]);
            let mut mean_ready = false;
            for q0 in (0..seq).step_by(block) {
                let q1 = (q0 + block).min(seq);
                let (k0, k1) = match window {
                    Some(w) => (q0.saturating_sub(w), (q1 + w).min(seq)),
                    None => (0, seq),
                };
                let (rows, span) = (q1 - q0, k1 - k0);
                sc.scores.resize(rows * span, 0.0);
                // SAFETY: Q rows q0..q1 (`hd` values, row stride q_stride) and K rows k0..k1
                // (row stride k_stride) lie inside their buffers (this item's rows of `qkv`,
                // or the `seq × hd` rotated copies); `scores` is `rows × span`.
                unsafe {
                    gemm::gemm(
                        rows,
                        span,
                        hd,
                        sc.scores.as_mut_ptr(),
                        1,
                        span as isize,
                        false,
                        q.as_ptr().add(q0 * q_stride),
                        1,
                        q_stride as isize,
                        k.as_ptr().add(k0 * k_stride),
                        k_stride as isize,
                        1,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
                sc.no_key.clear();
                if keep.is_some() || window.is_some() {
                    for (r, row) in sc.scores.chunks_exact_mut(span).enumerate() {
                        let i = q0 + r;
                        let mut any = false;
                        for (c, x) in row.iter_mut().enumerate() {
                            let j = k0 + c;
                            let on = keep.is_none_or(|k| k[j]) && window.is_none_or(|w| i.abs_diff(j) <= w);
                            if on {
                                any = true;
                            } else {
                                *x = f32::NEG_INFINITY;
                            }
                        }
                        sc.no_key.push(!any);
                    }
                }
                super::fastmath::softmax_in_place(&mut sc.scores, span);
                // SAFETY: P is `rows × span` contiguous; V rows k0..k1 (row stride 3h) are
                // inside this item's rows; the destination is this item's output rows q0..q1
                // (stride h) restricted to this head's `hd` columns, which no other task
                // writes, and `out` outlives the parallel loop.
                unsafe {
                    gemm::gemm(
                        rows,
                        hd,
                        span,
                        dst.at(item * seq * h + q0 * h + head * hd),
                        1,
                        h as isize,
                        false,
                        sc.scores.as_ptr(),
                        1,
                        span as isize,
                        v.as_ptr().add(k0 * three_h),
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
                // A row with no key it may attend to (a padding or expansion position
                // farther than the window from every attended token) gets the uniform
                // average of all values: what a large finite negative mask gives in
                // transformers (finfo.min), rather than NaN or zeros.
                for (r, _) in sc.no_key.iter().enumerate().filter(|(_, &n)| n) {
                    if !mean_ready {
                        sc.mean_v.clear();
                        sc.mean_v.resize(hd, 0.0);
                        for j in 0..seq {
                            for (m, x) in sc.mean_v.iter_mut().zip(&v[j * three_h..j * three_h + hd]) {
                                *m += x;
                            }
                        }
                        sc.mean_v.iter_mut().for_each(|m| *m /= seq as f32);
                        mean_ready = true;
                    }
                    for (c, m) in sc.mean_v.iter().enumerate() {
                        // SAFETY: element (q0 + r, head·hd + c) of this item's output rows,
                        // written by this task only.
                        unsafe { *dst.at(item * seq * h + (q0 + r) * h + head * hd + c) = *m };
                    }
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, seq, h))))
    }
}

/// Self-attention of a fused `(batch, seq, 3·hidden)` QKV projection (queries already
/// scaled by 1/√head_dim) into `(batch, seq, hidden)` context vectors, heads concatenated.
/// `keep` holds `batch × seq` key flags, or `None` when every key is attended.
pub(crate) fn attention(qkv: &Tensor, heads: usize, keep: Option<Vec<bool>>) -> candle_core::Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&Attention { heads, keep, rope: None, window: None })
}

/// As [`attention`], with rotary embeddings on queries and keys and an optional sliding
/// window of `window` keys on each side (ModernBERT).
pub(crate) fn attention_rope(
    qkv: &Tensor,
    heads: usize,
    keep: Option<Vec<bool>>,
    rope: &Rope,
    window: Option<usize>,
) -> candle_core::Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&Attention { heads, keep, rope: Some(rope), window })
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

    /// Rotary + sliding-window attention across several score blocks (seq 150 > the
    /// 64-row block, padding included) equals a direct per-row computation: RoPE by its
    /// formula, `|i − j| ≤ w` keys, and a row with no allowed key averaging all values.
    #[test]
    fn windowed_rope_attention_matches_direct() -> candle_core::Result<()> {
        let (b, s, heads, hd, w) = (2usize, 150usize, 2usize, 8usize, 5usize);
        let h = heads * hd;
        let mut rng = crate::rng::Rng::new(11);
        let data: Vec<f32> = (0..b * s * 3 * h).map(|_| rng.normal()).collect();
        let qkv = Tensor::from_vec(data.clone(), (b, s, 3 * h), &Device::Cpu)?;
        let rope = super::Rope::new(hd, 200, 1000.0);
        // Item 1: the last 40 positions are padding (rows 110 + w + 1 .. have no key).
        let keep: Vec<bool> = (0..b * s).map(|i| i < s || i - s < 110).collect();
        for window in [Some(w), None] {
            let got = super::attention_rope(&qkv, heads, Some(keep.clone()), &rope, window)?;
            let got: Vec<f32> = got.flatten_all()?.to_vec1()?;
            let mut worst = 0f32;
            for item in 0..b {
                for head in 0..heads {
                    let at =
                        |p: usize, part: usize| &data[(item * s + p) * 3 * h + part * h + head * hd..][..hd];
                    let rot = |x: &[f32], p: usize| -> Vec<f32> {
                        let half = hd / 2;
                        (0..hd)
                            .map(|j| {
                                let a = p as f64 * 1000f64.powf(-2.0 * (j % half) as f64 / hd as f64);
                                let (c, sn) = (a.cos() as f32, a.sin() as f32);
                                if j < half {
                                    x[j] * c - x[j + half] * sn
                                } else {
                                    x[j] * c + x[j - half] * sn
                                }
                            })
                            .collect()
                    };
                    for i in 0..s {
                        let q = rot(at(i, 0), i);
                        let allowed: Vec<usize> = (0..s)
                            .filter(|&j| keep[item * s + j] && window.is_none_or(|w| i.abs_diff(j) <= w))
                            .collect();
                        let mut want = vec![0f32; hd];
                        if allowed.is_empty() {
                            for j in 0..s {
                                want.iter_mut().zip(at(j, 2)).for_each(|(o, v)| *o += v / s as f32);
                            }
                        } else {
                            let sc: Vec<f32> = allowed
                                .iter()
                                .map(|&j| q.iter().zip(rot(at(j, 1), j)).map(|(a, b)| a * b).sum())
                                .collect();
                            let m = sc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            let e: Vec<f32> = sc.iter().map(|x| (x - m).exp()).collect();
                            let z: f32 = e.iter().sum();
                            for (&j, e) in allowed.iter().zip(&e) {
                                want.iter_mut().zip(at(j, 2)).for_each(|(o, v)| *o += e / z * v);
                            }
                        }
                        let g = &got[(item * s + i) * h + head * hd..][..hd];
                        worst = g.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
                    }
                }
            }
            assert!(worst < 1e-4, "windowed attention differs by {worst} (window {window:?})");
        }
        Ok(())
    }
}
