//! Batch MaxSim on candle tensors: `S = D Qᵀ` as one batched matmul, a masked max over
//! document tokens and a sum over query tokens. Runs on `Device::Cpu` and, with the `cuda`
//! cargo feature, on an NVIDIA GPU (`TensorScorer::cuda(0)`). Same canonical masking as the
//! SIMD kernels (padding tokens excluded from the max).

use candle_core::{DType, Device, Tensor, D};

use super::DocRef;
use crate::embed::bert::cerr;
use crate::{Error, Result};

/// Scores documents in batches on a candle device.
#[derive(Debug, Clone)]
pub struct TensorScorer {
    device: Device,
    /// Documents per batched matmul.
    pub batch: usize,
}

impl TensorScorer {
    /// On the CPU.
    #[must_use]
    pub fn cpu() -> Self {
        Self { device: Device::Cpu, batch: 256 }
    }

    /// On CUDA device `ordinal` (feature `cuda`).
    ///
    /// # Errors
    /// [`Error::NotAvailable`] without the feature or without a usable GPU.
    pub fn cuda(ordinal: usize) -> Result<Self> {
        #[cfg(feature = "cuda")]
        {
            let device = Device::new_cuda(ordinal)
                .map_err(|e| Error::NotAvailable(format!("CUDA device {ordinal}: {e}")))?;
            Ok(Self { device, batch: 4096 })
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(Error::NotAvailable(format!("CUDA device {ordinal}: build with the `cuda` cargo feature")))
        }
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// MaxSim of query `q` (`lq × dim`) against each document (each `ld_i × dim`, `ld_i ≥ 1`).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] for ragged input; device errors.
    pub fn maxsim(&self, q: &[f32], docs: &[DocRef<'_>], dim: usize) -> Result<Vec<f32>> {
        if dim == 0 || !q.len().is_multiple_of(dim) {
            return Err(Error::DimensionMismatch {
                what: "query".into(),
                expected: dim,
                got: q.len() % dim.max(1),
            });
        }
        let lq = q.len() / dim;
        if lq == 0 {
            return Ok(vec![0.0; docs.len()]);
        }
        let qt = Tensor::from_slice(q, (lq, dim), &self.device).and_then(|t| t.t()).map_err(cerr)?;
        let mut out = Vec::with_capacity(docs.len());
        for chunk in docs.chunks(self.batch.max(1)) {
            let lmax = chunk.iter().map(|d| d.len() / dim).max().unwrap_or(1).max(1);
            let mut flat = vec![0f32; chunk.len() * lmax * dim];
            let mut bias = vec![f32::NEG_INFINITY; chunk.len() * lmax];
            for (i, d) in chunk.iter().enumerate() {
                let ld = d.len() / dim;
                if ld == 0 || d.len() % dim != 0 {
                    return Err(Error::invalid("every document needs a whole, non-empty token matrix"));
                }
                let v = d.to_f32();
                flat[i * lmax * dim..i * lmax * dim + v.len()].copy_from_slice(&v);
                bias[i * lmax..i * lmax + ld].iter_mut().for_each(|b| *b = 0.0);
            }
            let scores = (|| -> candle_core::Result<Vec<f32>> {
                let d = Tensor::from_vec(flat, (chunk.len(), lmax, dim), &self.device)?;
                let b = Tensor::from_vec(bias, (chunk.len(), lmax, 1), &self.device)?;
                // (n, lmax, dim) · (dim, lq) → (n, lmax, lq); padding rows get −∞ before the max.
                let s = d.broadcast_matmul(&qt)?.broadcast_add(&b)?;
                s.max(1)?.sum(D::Minus1)?.to_dtype(DType::F32)?.to_vec1()
            })()
            .map_err(cerr)?;
            out.extend(scores);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::scoring::PreparedQuery;

    #[test]
    fn tensor_backend_equals_the_simd_kernel() {
        let mut rng = Rng::new(5);
        let dim = 48;
        let q = rng.unit_vectors(32, dim);
        let docs: Vec<Vec<f32>> = (0..70)
            .map(|_| {
                let n = 1 + rng.below(200) as usize;
                rng.unit_vectors(n, dim)
            })
            .collect();
        let docs16: Vec<Vec<half::f16>> =
            docs.iter().map(|d| d.iter().map(|x| half::f16::from_f32(*x)).collect()).collect();
        let mut ts = TensorScorer::cpu();
        ts.batch = 16;
        let pq = PreparedQuery::new(&q, dim, None).unwrap();
        for refs in [
            docs.iter().map(|d| DocRef::F32(d)).collect::<Vec<_>>(),
            docs16.iter().map(|d| DocRef::F16(d)).collect(),
        ] {
            let got = ts.maxsim(&q, &refs, dim).unwrap();
            for (g, d) in got.iter().zip(&refs) {
                let want = pq.maxsim(*d);
                assert!((g - want).abs() <= 32.0 * 1e-5, "{g} vs {want}");
            }
        }
        assert!(ts.maxsim(&q[..5], &[DocRef::F32(&docs[0])], dim).is_err());
    }

    #[test]
    fn cuda_without_the_feature_says_what_to_do() {
        if cfg!(feature = "cuda") {
            return;
        }
        let e = TensorScorer::cuda(0).unwrap_err().to_string();
        assert!(e.contains("cuda"), "{e}");
    }
}
