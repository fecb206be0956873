//! Modern continuous Hopfield associative memory (ALGORITHMS.md §4).
//!
//! Stored patterns `X = (x_1 … x_N)` (here: rows of an `N × d` matrix), state `ξ`, inverse
//! temperature `β`:
//! ```text
//! p      = softmax(β Xᵀ ξ)                      (weights: which memory)
//! ξ_new  = X p                                  (one CCCP step; the energy never rises)
//! E(ξ)   = −lse(β, Xᵀξ) + ½ ξᵀξ + β⁻¹ log N + ½ M²,   M = max_i ‖x_i‖
//! ```
//! Weights and energies are computed in f64 (a stable softmax: the max logit is
//! subtracted), states are returned in f32. `β = 0` is the limit β → 0: uniform weights
//! (the mean of the patterns) and `E = −mean(Xᵀξ) + ½ξᵀξ + ½M²`.
//!
//! The database uses it three ways (`Database::hopfield_recall`, `hopfield_complete` and
//! the `refine` option of a search): associative recall over the top-K candidates of an
//! index, completion of a partial cue, and pseudo-relevance query refinement.

use crate::{Error, Result};

/// Recall parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HopfieldParams {
    /// Inverse temperature. Default 20 (single-pattern recall among unit vectors wants
    /// β ∈ [20, 100]; β ≈ 1/√d averages everything).
    pub beta: f32,
    /// Most update steps (default 1: retrieval typically needs one; at most 16).
    pub steps: usize,
    /// Stop early when the weights move less than this (L2). Default 1e-4.
    pub eps: f32,
}

impl Default for HopfieldParams {
    fn default() -> Self {
        Self { beta: 20.0, steps: 1, eps: 1e-4 }
    }
}

impl HopfieldParams {
    /// Check the ranges.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative or non-finite β, `steps ∉ 1..=16`, or a
    /// negative `eps`.
    pub fn validate(&self) -> Result<()> {
        if !self.beta.is_finite() || self.beta < 0.0 {
            return Err(Error::invalid(format!("Hopfield beta must be finite and >= 0 (got {})", self.beta)));
        }
        if !(1..=16).contains(&self.steps) {
            return Err(Error::invalid(format!("Hopfield steps must be 1..=16 (got {})", self.steps)));
        }
        if self.eps.is_nan() || self.eps < 0.0 {
            return Err(Error::invalid("Hopfield eps must be >= 0"));
        }
        Ok(())
    }
}

/// The outcome of a recall.
#[derive(Debug, Clone, PartialEq)]
pub struct Recall {
    /// The retrieved state `ξ_T`.
    pub state: Vec<f32>,
    /// The weights `p` of the last step (sum 1), one per pattern.
    pub weights: Vec<f32>,
    /// `E(ξ_T)`.
    pub energy: f32,
    /// Steps taken.
    pub steps: usize,
    /// True when no pattern holds half the weight (`max p < 0.5`): the state averages
    /// several memories rather than retrieving one.
    pub metastable: bool,
}

/// `N` stored patterns of dimension `d`, row-major, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Memory<'a> {
    x: &'a [f32],
    d: usize,
}

impl<'a> Memory<'a> {
    /// Patterns `x` (`N × d`, row-major).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `d = 0`, a ragged matrix, no patterns, or a
    /// non-finite value.
    pub fn new(x: &'a [f32], d: usize) -> Result<Self> {
        if d == 0 || x.is_empty() || !x.len().is_multiple_of(d) {
            return Err(Error::invalid("a Hopfield memory needs at least one pattern of dimension >= 1"));
        }
        crate::validate::finite("Hopfield memory", x)?;
        Ok(Self { x, d })
    }

    /// Number of patterns `N`.
    #[must_use]
    pub fn len(&self) -> usize {
        self.x.len() / self.d
    }

    /// Always false (a memory has at least one pattern).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Dimension `d`.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.d
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// `M = max_i ‖x_i‖`.
    #[must_use]
    pub fn max_norm(&self) -> f64 {
        (0..self.len()).map(|i| norm2(self.row(i)).sqrt()).fold(0.0, f64::max)
    }

    /// `Xᵀξ` over the dimensions where `known` is true (all when `None`).
    fn logits(&self, xi: &[f32], known: Option<&[bool]>) -> Vec<f64> {
        (0..self.len())
            .map(|i| {
                let r = self.row(i);
                match known {
                    None => r.iter().zip(xi).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum(),
                    Some(k) => r
                        .iter()
                        .zip(xi)
                        .zip(k)
                        .filter(|(_, &on)| on)
                        .map(|((a, b), _)| f64::from(*a) * f64::from(*b))
                        .sum(),
                }
            })
            .collect()
    }

    /// `softmax(β Xᵀξ)`.
    #[must_use]
    pub fn weights(&self, xi: &[f32], beta: f32) -> Vec<f64> {
        softmax(&self.logits(xi, None), f64::from(beta))
    }

    /// `X p`.
    #[must_use]
    pub fn combine(&self, p: &[f64]) -> Vec<f32> {
        let mut out = vec![0f64; self.d];
        for (i, &w) in p.iter().enumerate() {
            out.iter_mut().zip(self.row(i)).for_each(|(o, x)| *o += w * f64::from(*x));
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    /// One update `ξ ← X softmax(β Xᵀξ)`; returns the new state and the weights.
    #[must_use]
    pub fn step(&self, xi: &[f32], beta: f32) -> (Vec<f32>, Vec<f64>) {
        let p = self.weights(xi, beta);
        (self.combine(&p), p)
    }

    /// `E(ξ) = −lse(β, Xᵀξ) + ½ξᵀξ + β⁻¹ log N + ½M²` (≥ 0).
    #[must_use]
    pub fn energy(&self, xi: &[f32], beta: f32) -> f64 {
        let z = self.logits(xi, None);
        let n = z.len() as f64;
        let m = self.max_norm();
        let b = f64::from(beta);
        // −lse(β, z) + β⁻¹ log N = −β⁻¹ log( (1/N) Σ exp(β z) ), → −mean(z) as β → 0.
        let neg_lse = if b == 0.0 {
            -z.iter().sum::<f64>() / n
        } else {
            let zmax = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|v| (b * (v - zmax)).exp()).sum();
            -(zmax + (s / n).ln() / b)
        };
        neg_lse + 0.5 * norm2(xi) + 0.5 * m * m
    }

    /// Iterate from `xi` (at most `params.steps` updates, stopping when the weights move
    /// less than `params.eps`).
    #[must_use]
    pub fn retrieve(&self, xi: &[f32], params: HopfieldParams) -> Recall {
        let mut state = xi.to_vec();
        let mut prev: Option<Vec<f64>> = None;
        let mut steps = 0;
        let mut p = Vec::new();
        for _ in 0..params.steps.max(1) {
            let (next, w) = self.step(&state, params.beta);
            state = next;
            steps += 1;
            let moved =
                prev.as_ref().map(|q| q.iter().zip(&w).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt());
            p = w;
            if moved.is_some_and(|m| m <= f64::from(params.eps)) {
                break;
            }
            prev = Some(p.clone());
        }
        self.recall(state, &p, params.beta, steps)
    }

    /// Complete a partial cue: only the dimensions where `known` is true are read,
    /// `p = softmax(β X_Oᵀ ξ_O)`, and the state `X p` fills every dimension.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] when `cue` or `known` is not `d` long,
    /// [`Error::InvalidArgument`] when no dimension is known.
    pub fn complete(&self, cue: &[f32], known: &[bool], beta: f32) -> Result<Recall> {
        if cue.len() != self.d || known.len() != self.d {
            return Err(Error::DimensionMismatch {
                what: "Hopfield cue".into(),
                expected: self.d,
                got: cue.len(),
            });
        }
        if !known.iter().any(|&k| k) {
            return Err(Error::invalid("a partial cue needs at least one known dimension"));
        }
        let p = softmax(&self.logits(cue, Some(known)), f64::from(beta));
        let state = self.combine(&p);
        Ok(self.recall(state, &p, beta, 1))
    }

    fn recall(&self, state: Vec<f32>, p: &[f64], beta: f32, steps: usize) -> Recall {
        let energy = self.energy(&state, beta) as f32;
        let top = p.iter().copied().fold(0.0, f64::max);
        Recall { state, weights: p.iter().map(|&v| v as f32).collect(), energy, steps, metastable: top < 0.5 }
    }
}

/// Hopfield query refinement (pseudo-relevance feedback, ALGORITHMS.md §4.3 b):
/// `q' = norm((1 − α) q + α X softmax(β Xᵀ q))`.
#[must_use]
pub fn refine(q: &[f32], memory: &Memory<'_>, beta: f32, alpha: f32) -> Vec<f32> {
    let (retrieved, _) = memory.step(q, beta);
    let mut out: Vec<f32> = q.iter().zip(&retrieved).map(|(a, r)| (1.0 - alpha) * a + alpha * r).collect();
    crate::vector::normalize(&mut out);
    out
}

fn norm2(v: &[f32]) -> f64 {
    v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum()
}

/// Stable `softmax(β z)` (uniform for β = 0).
fn softmax(z: &[f64], beta: f64) -> Vec<f64> {
    let zmax = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (beta * (v - zmax)).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn dist(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn beta_zero_gives_the_mean() {
        let mut rng = Rng::new(1);
        let x = rng.unit_vectors(17, 32);
        let m = Memory::new(&x, 32).unwrap();
        let mean: Vec<f32> = (0..32).map(|j| (0..17).map(|i| x[i * 32 + j]).sum::<f32>() / 17.0).collect();
        for _ in 0..3 {
            let xi: Vec<f32> = (0..32).map(|_| rng.normal()).collect();
            let (f, p) = m.step(&xi, 0.0);
            assert!(dist(&f, &mean) < 1e-6);
            assert!(p.iter().all(|w| (w - 1.0 / 17.0).abs() < 1e-12));
        }
    }

    #[test]
    fn noisy_pattern_is_retrieved_in_one_step() {
        let (n, d) = (100, 128);
        let mut rng = Rng::new(2);
        let x = rng.unit_vectors(n, d);
        let m = Memory::new(&x, d).unwrap();
        for i in [0, 17, 99] {
            let noise: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
            let scale = 0.1 / norm2(&noise).sqrt() as f32;
            let xi: Vec<f32> = x[i * d..(i + 1) * d].iter().zip(&noise).map(|(a, g)| a + scale * g).collect();
            let r = m.retrieve(&xi, HopfieldParams { beta: 50.0, steps: 1, eps: 1e-4 });
            assert!(dist(&r.state, &x[i * d..(i + 1) * d]) < 1e-4, "pattern {i}");
            assert!(!r.metastable);
            assert_eq!(r.weights.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0, i);
        }
    }

    #[test]
    fn energy_never_rises_and_is_bounded() {
        let mut rng = Rng::new(3);
        for &beta in &[0.1f32, 1.0, 10.0, 100.0] {
            for _ in 0..5 {
                let x: Vec<f32> = (0..40 * 16).map(|_| rng.normal() * 0.5).collect();
                let m = Memory::new(&x, 16).unwrap();
                let big_m = m.max_norm();
                let xi: Vec<f32> = (0..16).map(|_| rng.normal()).collect();
                let (f, p) = m.step(&xi, beta);
                let (e0, e1) = (m.energy(&xi, beta), m.energy(&f, beta));
                assert!(e1 <= e0 + 1e-6, "beta {beta}: {e1} > {e0}");
                assert!(e0 >= 0.0 && e1 >= 0.0);
                // After one step the state is in conv(X): ‖ξ‖ ≤ M, so E ≤ 2M².
                assert!(norm2(&f).sqrt() <= big_m + 1e-5);
                assert!(e1 <= 2.0 * big_m * big_m + 1e-6);
                assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn near_duplicate_patterns_give_a_metastable_average() {
        let (n, d) = (100, 128);
        let mut rng = Rng::new(5);
        let mut x = rng.unit_vectors(n, d);
        let mut x1: Vec<f32> = (0..d).map(|j| x[d + j] + 0.01 * rng.normal() / (d as f32).sqrt()).collect();
        crate::vector::normalize(&mut x1);
        x[..d].copy_from_slice(&x1);
        let m = Memory::new(&x, d).unwrap();
        let r = m.retrieve(&x1, HopfieldParams { beta: 20.0, steps: 1, eps: 1e-4 });
        assert!(
            (0.4..=0.6).contains(&r.weights[0]) && (0.4..=0.6).contains(&r.weights[1]),
            "{:?}",
            &r.weights[..2]
        );
        assert!(r.weights[2..].iter().map(|&w| f64::from(w)).sum::<f64>() < 1e-3);
        let avg: Vec<f32> = (0..d).map(|j| (x[j] + x[d + j]) / 2.0).collect();
        assert!(dist(&r.state, &avg) < 0.05);
        // Three near-duplicates: no memory holds half the weight, which is flagged.
        let mut x2: Vec<f32> = (0..d).map(|j| x[d + j] + 0.01 * rng.normal() / (d as f32).sqrt()).collect();
        crate::vector::normalize(&mut x2);
        x[2 * d..3 * d].copy_from_slice(&x2);
        let r = Memory::new(&x, d).unwrap().retrieve(&x1, HopfieldParams { beta: 20.0, steps: 1, eps: 1e-4 });
        assert!(r.metastable, "{:?}", &r.weights[..3]);
    }

    #[test]
    fn contraction_converges_to_one_point() {
        let (n, d) = (10, 8);
        let mut rng = Rng::new(6);
        let x = rng.unit_vectors(n, d);
        let m = Memory::new(&x, d).unwrap();
        let beta = 0.15; // β N M² = 1.5 < 2
        let mut ends: Vec<Vec<f32>> = Vec::new();
        for _ in 0..10 {
            let mut xi: Vec<f32> = (0..d).map(|_| rng.normal() * 3.0).collect();
            for _ in 0..200 {
                xi = m.step(&xi, beta).0;
            }
            ends.push(xi);
        }
        for e in &ends[1..] {
            assert!(dist(e, &ends[0]) < 1e-6);
        }
    }

    #[test]
    fn one_step_is_scaled_dot_product_attention() {
        let (n, d) = (12, 16);
        let mut rng = Rng::new(7);
        let x: Vec<f32> = (0..n * d).map(|_| rng.normal()).collect();
        let q: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
        let m = Memory::new(&x, d).unwrap();
        let (f, _) = m.step(&q, 1.0 / (d as f32).sqrt());
        // Reference: softmax(q Kᵀ / √d) V with K = V = X, written out naively.
        let scores: Vec<f64> = (0..n)
            .map(|i| {
                (0..d).map(|j| f64::from(q[j]) * f64::from(x[i * d + j])).sum::<f64>() / (d as f64).sqrt()
            })
            .collect();
        let z: f64 = scores.iter().map(|s| s.exp()).sum();
        let want: Vec<f32> = (0..d)
            .map(|j| (0..n).map(|i| scores[i].exp() / z * f64::from(x[i * d + j])).sum::<f64>() as f32)
            .collect();
        assert!(dist(&f, &want) < 1e-5);
    }

    #[test]
    fn permuting_patterns_changes_nothing() {
        let (n, d) = (30, 16);
        let mut rng = Rng::new(8);
        let x = rng.unit_vectors(n, d);
        let perm: Vec<usize> = (0..n).rev().collect();
        let y: Vec<f32> = perm.iter().flat_map(|&i| x[i * d..(i + 1) * d].to_vec()).collect();
        let xi: Vec<f32> = (0..d).map(|_| rng.normal()).collect();
        let p = HopfieldParams { beta: 8.0, steps: 3, eps: 0.0 };
        let a = Memory::new(&x, d).unwrap().retrieve(&xi, p);
        let b = Memory::new(&y, d).unwrap().retrieve(&xi, p);
        assert!(dist(&a.state, &b.state) < 1e-6);
        assert!((a.energy - b.energy).abs() < 1e-6);
        for (k, &i) in perm.iter().enumerate() {
            assert!((b.weights[k] - a.weights[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn partial_cue_is_completed_from_the_known_dimensions() {
        let (n, d) = (50, 64);
        let mut rng = Rng::new(9);
        let x = rng.unit_vectors(n, d);
        let m = Memory::new(&x, d).unwrap();
        let target = 23;
        let known: Vec<bool> = (0..d).map(|j| j < d / 2).collect();
        // Unknown half zeroed out (its values must not matter).
        let mut cue: Vec<f32> = x[target * d..(target + 1) * d].to_vec();
        cue[d / 2..].iter_mut().for_each(|v| *v = rng.normal() * 100.0);
        let r = m.complete(&cue, &known, 100.0).unwrap();
        assert!(dist(&r.state[d / 2..], &x[target * d + d / 2..(target + 1) * d]) < 1e-3);
        assert!(r.weights[target] > 0.99);
        assert!(m.complete(&cue, &vec![false; d], 1.0).is_err());
        assert!(m.complete(&cue[1..], &known[1..], 1.0).is_err());
    }

    #[test]
    fn refinement_interpolates_between_query_and_memories() {
        let d = 16;
        let mut rng = Rng::new(10);
        let x = rng.unit_vectors(5, d);
        let m = Memory::new(&x, d).unwrap();
        let q = rng.unit_vectors(1, d);
        // α = 0: the query itself; large β: towards the best-matching memory.
        assert!(dist(&refine(&q, &m, 20.0, 0.0), &q) < 1e-6);
        let best = (0..5).max_by(|&a, &b| {
            let s = |i: usize| crate::scoring::scalar::dot(&q, &x[i * d..(i + 1) * d]);
            s(a).total_cmp(&s(b))
        });
        let top = best.unwrap();
        assert!(dist(&refine(&q, &m, 1e4, 1.0), &x[top * d..(top + 1) * d]) < 1e-4);
        assert!(HopfieldParams { beta: -1.0, ..HopfieldParams::default() }.validate().is_err());
        assert!(HopfieldParams { steps: 0, ..HopfieldParams::default() }.validate().is_err());
    }
}
