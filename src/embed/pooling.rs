//! Pooling operators: many token vectors → one vector (ALGORITHMS.md §3 and §4.4).
//!
//! All operators work on one sequence: `h` is `L × d` row-major f32, `mask[i]` says whether
//! token `i` takes part. A sequence with no valid token is an error, never NaN. Computation
//! is in f32 (f64 accumulation where sums are long).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How GeM treats non-positive activations before the power (ALGORITHMS.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GemTransform {
    /// `max(x, ε)` (upstream cirtorch).
    #[default]
    Clamp,
    /// `max(x, 0) + ε`.
    Relu,
    /// `x − min(x) + ε` per channel over the valid tokens.
    ShiftMin,
}

/// Where a Hopfield pooling state starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HopfieldInit {
    /// The masked mean of the tokens.
    #[default]
    Mean,
    /// The first token (CLS).
    Cls,
}

/// A pooling operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pooling {
    /// Masked mean.
    Mean,
    /// Masked sum divided by √(valid tokens).
    MeanSqrtLen,
    /// The first token (`h_0`).
    Cls,
    /// The last valid token (right or left padding).
    Last,
    /// Masked per-channel max.
    Max,
    /// Generalised mean with one exponent `p` (default 3) and `eps` (1e-6).
    Gem {
        /// Exponent.
        p: f32,
        /// Clamp floor.
        #[serde(default = "gem_eps")]
        eps: f32,
        /// Treatment of non-positive values.
        #[serde(default)]
        transform: GemTransform,
    },
    /// Grouped GeM: `p[g]` for channel group `g(c) = ⌊c·G/d⌋`.
    Ggem {
        /// One exponent per group.
        p: Vec<f32>,
        /// Clamp floor.
        #[serde(default = "gem_eps")]
        eps: f32,
    },
    /// AttSets: per-channel softmax over tokens of `W x + b` (`w` is `d × d` row-major).
    AttSets {
        /// `fc.weight`, `d × d`.
        w: Vec<f32>,
        /// `fc.bias`, `d`.
        b: Vec<f32>,
    },
    /// Training-free Hopfield pooling: `ξ ← Yᵀ softmax(β Y ξ)`, `steps` times.
    Hopfield {
        /// Inverse temperature β.
        beta: f32,
        /// Update steps (≥ 1).
        #[serde(default = "one")]
        steps: usize,
        /// Initial state.
        #[serde(default)]
        init: HopfieldInit,
    },
}

fn gem_eps() -> f32 {
    1e-6
}
fn one() -> usize {
    1
}

fn valid(mask: &[bool]) -> Result<usize> {
    let n = mask.iter().filter(|m| **m).count();
    if n == 0 {
        return Err(Error::invalid("pooling needs at least one unmasked token"));
    }
    Ok(n)
}

fn rows<'a>(h: &'a [f32], mask: &'a [bool], d: usize) -> impl Iterator<Item = &'a [f32]> + Clone {
    h.chunks_exact(d).zip(mask).filter(|(_, m)| **m).map(|(r, _)| r)
}

/// Masked mean of the rows.
pub fn masked_mean(h: &[f32], mask: &[bool], d: usize) -> Result<Vec<f32>> {
    let n = valid(mask)?;
    let mut acc = vec![0f64; d];
    for r in rows(h, mask, d) {
        acc.iter_mut().zip(r).for_each(|(a, x)| *a += f64::from(*x));
    }
    Ok(acc.into_iter().map(|a| (a / n as f64) as f32).collect())
}

/// `Yᵀ softmax(β Y ξ)` over the valid rows; returns the new state and the weights (one per
/// row of `h`, 0 for masked rows).
pub fn hopfield_step(h: &[f32], mask: &[bool], d: usize, xi: &[f32], beta: f32) -> (Vec<f32>, Vec<f32>) {
    let logits: Vec<f32> =
        h.chunks_exact(d)
            .zip(mask)
            .map(|(r, m)| {
                if *m {
                    beta * r.iter().zip(xi).map(|(a, b)| a * b).sum::<f32>()
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
    let w = softmax(&logits);
    let mut out = vec![0f32; d];
    for (r, wi) in h.chunks_exact(d).zip(&w) {
        if *wi > 0.0 {
            out.iter_mut().zip(r).for_each(|(o, x)| *o += wi * x);
        }
    }
    (out, w)
}

/// Numerically stable softmax (`−∞` entries get weight 0).
#[must_use]
pub fn softmax(z: &[f32]) -> Vec<f32> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return vec![0.0; z.len()];
    }
    let e: Vec<f32> = z.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn gem(
    h: &[f32],
    mask: &[bool],
    d: usize,
    p_of: impl Fn(usize) -> f32,
    eps: f32,
    t: GemTransform,
) -> Result<Vec<f32>> {
    let n = valid(mask)? as f64;
    let mins: Vec<f32> =
        (0..d).map(|c| rows(h, mask, d).map(|r| r[c]).fold(f32::INFINITY, f32::min)).collect();
    let mut out = Vec::with_capacity(d);
    for (c, min) in mins.iter().enumerate() {
        let p = f64::from(p_of(c));
        let mut acc = 0f64;
        for r in rows(h, mask, d) {
            let x = match t {
                GemTransform::Clamp => r[c].max(eps),
                GemTransform::Relu => r[c].max(0.0) + eps,
                GemTransform::ShiftMin => r[c] - min + eps,
            };
            acc += (p * f64::from(x).ln()).exp();
        }
        out.push(((acc / n).ln() / p).exp() as f32);
    }
    Ok(out)
}

impl Pooling {
    /// Parse a short name (`mean`, `mean_sqrt_len`, `cls`, `last`, `max`, `gem`) with
    /// default parameters.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for other names (the parametrised operators are built
    /// with their variants).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "mean" => Pooling::Mean,
            "mean_sqrt_len" => Pooling::MeanSqrtLen,
            "cls" => Pooling::Cls,
            "last" | "eos" => Pooling::Last,
            "max" => Pooling::Max,
            "gem" => Pooling::Gem { p: 3.0, eps: 1e-6, transform: GemTransform::Clamp },
            "hopfield" => Pooling::Hopfield { beta: 1.0, steps: 1, init: HopfieldInit::Mean },
            other => {
                return Err(Error::invalid(format!(
                    "unknown pooling '{other}': use mean, mean_sqrt_len, cls, last, max, gem or hopfield"
                )))
            }
        })
    }

    /// Pool one sequence (`h`: `L × d`, `mask`: `L`) into one `d`-vector (not normalised).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no token is valid or parameters do not fit `d`.
    pub fn pool(&self, h: &[f32], mask: &[bool], d: usize) -> Result<Vec<f32>> {
        if d == 0 || h.len() != mask.len() * d {
            return Err(Error::invalid(format!(
                "pooling input is {} values for {} tokens of {d}",
                h.len(),
                mask.len()
            )));
        }
        let n = valid(mask)?;
        match self {
            Pooling::Mean => masked_mean(h, mask, d),
            Pooling::MeanSqrtLen => {
                let m = masked_mean(h, mask, d)?;
                let s = (n as f32).sqrt();
                Ok(m.into_iter().map(|x| x * n as f32 / s).collect())
            }
            Pooling::Cls => Ok(h[..d].to_vec()),
            Pooling::Last => {
                let last = mask.iter().rposition(|m| *m).unwrap_or(0);
                Ok(h[last * d..(last + 1) * d].to_vec())
            }
            Pooling::Max => {
                Ok((0..d).map(|c| rows(h, mask, d).map(|r| r[c]).fold(f32::NEG_INFINITY, f32::max)).collect())
            }
            Pooling::Gem { p, eps, transform } => gem(h, mask, d, |_| *p, *eps, *transform),
            Pooling::Ggem { p, eps } => {
                if p.is_empty() || p.len() > d {
                    return Err(Error::invalid(format!(
                        "GGeM needs 1..={d} group exponents, got {}",
                        p.len()
                    )));
                }
                let g = p.len();
                gem(h, mask, d, |c| p[c * g / d], *eps, GemTransform::Clamp)
            }
            Pooling::AttSets { w, b } => att_sets(h, mask, d, w, b),
            Pooling::Hopfield { beta, steps, init } => {
                let mut xi = match init {
                    HopfieldInit::Mean => masked_mean(h, mask, d)?,
                    HopfieldInit::Cls => h[..d].to_vec(),
                };
                for _ in 0..(*steps).max(1) {
                    xi = hopfield_step(h, mask, d, &xi, *beta).0;
                }
                Ok(xi)
            }
        }
    }
}

fn att_sets(h: &[f32], mask: &[bool], d: usize, w: &[f32], b: &[f32]) -> Result<Vec<f32>> {
    if w.len() != d * d || b.len() != d {
        return Err(Error::DimensionMismatch {
            what: "AttSets fc weights".into(),
            expected: d * d + d,
            got: w.len() + b.len(),
        });
    }
    let logits: Vec<Vec<f32>> = rows(h, mask, d)
        .map(|x| {
            (0..d)
                .map(|c| b[c] + w[c * d..(c + 1) * d].iter().zip(x).map(|(a, v)| a * v).sum::<f32>())
                .collect()
        })
        .collect();
    let mut out = vec![0f32; d];
    for (c, o) in out.iter_mut().enumerate() {
        let col: Vec<f32> = logits.iter().map(|l| l[c]).collect();
        let a = softmax(&col);
        *o = rows(h, mask, d).zip(&a).map(|(x, ai)| ai * x[c]).sum();
    }
    Ok(out)
}

/// L2-normalise (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt().max(1e-12) as f32;
    v.iter_mut().for_each(|x| *x /= n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    fn all() -> Vec<Pooling> {
        vec![
            Pooling::Mean,
            Pooling::MeanSqrtLen,
            Pooling::Cls,
            Pooling::Last,
            Pooling::Max,
            Pooling::Gem { p: 3.0, eps: 1e-6, transform: GemTransform::Clamp },
            Pooling::Ggem { p: vec![1.0, 2.0, 3.0, 4.0], eps: 1e-6 },
            Pooling::AttSets { w: vec![0.1; 64], b: vec![0.0; 8] },
            Pooling::Hopfield { beta: 2.0, steps: 2, init: HopfieldInit::Mean },
        ]
    }

    #[test]
    fn mean_of_identical_rows_is_that_row() {
        let row = [0.3f32, -1.0, 2.0, 0.5, 0.1, 0.2, 0.3, 0.9];
        let h: Vec<f32> = row.iter().copied().cycle().take(8 * 5).collect();
        let mask = [true; 5];
        for p in [
            Pooling::Mean,
            Pooling::Max,
            Pooling::Cls,
            Pooling::Last,
            Pooling::AttSets { w: vec![0.3; 64], b: vec![0.1; 8] },
        ] {
            assert!(close(&p.pool(&h, &mask, 8).unwrap(), &row, 1e-6), "{p:?}");
        }
    }

    #[test]
    fn appending_masked_junk_changes_nothing() {
        let mut rng = Rng::new(1);
        let h = rng.unit_vectors(5, 8);
        let mut junk = h.clone();
        junk.extend(vec![1e6f32; 8 * 3]);
        let mask = vec![true; 5];
        let mut mask2 = mask.clone();
        mask2.extend([false; 3]);
        for p in all() {
            let a = p.pool(&h, &mask, 8).unwrap();
            let b = p.pool(&junk, &mask2, 8).unwrap();
            assert!(close(&a, &b, 1e-6), "{p:?}");
        }
    }

    #[test]
    fn last_token_with_left_and_right_padding() {
        let mut rng = Rng::new(2);
        let h = rng.unit_vectors(4, 8);
        let mut right = h.clone();
        right.extend(vec![9.0f32; 16]);
        let mut left = vec![9.0f32; 16];
        left.extend(&h);
        let r = Pooling::Last.pool(&right, &[true, true, true, true, false, false], 8).unwrap();
        let l = Pooling::Last.pool(&left, &[false, false, true, true, true, true], 8).unwrap();
        assert_eq!(r, l);
        assert_eq!(r, h[24..32].to_vec());
    }

    #[test]
    fn max_dominates_mean_and_gem_limits() {
        let mut rng = Rng::new(3);
        let h: Vec<f32> = (0..8 * 6).map(|_| rng.unit() + 0.01).collect();
        let mask = [true; 6];
        let max = Pooling::Max.pool(&h, &mask, 8).unwrap();
        let mean = Pooling::Mean.pool(&h, &mask, 8).unwrap();
        assert!(max.iter().zip(&mean).all(|(a, b)| a >= b));
        let gem = |p: f32| {
            Pooling::Gem { p, eps: 1e-6, transform: GemTransform::Clamp }.pool(&h, &mask, 8).unwrap()
        };
        assert!(close(&gem(1.0), &mean, 1e-5), "p=1 is the mean for positive inputs");
        // Large p approaches the max: max·n^(−1/p) ≤ GeM_p ≤ max, so with p = 50 and 6 tokens
        // GeM is within 3.6 % of the max (the spec's "within 1e-2 at p = 50" holds only for
        // a single token; at p = 200 it holds for 6: 6^(−1/200) = 0.991).
        let g50 = gem(50.0);
        for (g, m) in g50.iter().zip(&max) {
            assert!(*g <= m + 1e-5 && *g >= m * 6f32.powf(-1.0 / 50.0) - 1e-5, "{g} vs max {m}");
        }
        let p200 =
            Pooling::Gem { p: 200.0, eps: 1e-6, transform: GemTransform::Clamp }.pool(&h, &mask, 8).unwrap();
        assert!(close(&p200, &max, 1e-2), "p = 200 is within 1e-2 of the max");
        // GGeM with one group is GeM; with d groups it is per-channel p.
        let g1 = Pooling::Ggem { p: vec![3.0], eps: 1e-6 }.pool(&h, &mask, 8).unwrap();
        assert!(close(&g1, &gem(3.0), 1e-6));
        let ps: Vec<f32> = (1..=8).map(|i| i as f32).collect();
        let gd = Pooling::Ggem { p: ps.clone(), eps: 1e-6 }.pool(&h, &mask, 8).unwrap();
        for (c, &p) in ps.iter().enumerate() {
            assert!((gd[c] - gem(p)[c]).abs() < 1e-5);
        }
    }

    #[test]
    fn attsets_zero_weights_is_mean_and_large_diagonal_is_max() {
        let mut rng = Rng::new(4);
        let h = rng.unit_vectors(6, 8);
        let mask = [true; 6];
        let zero = Pooling::AttSets { w: vec![0.0; 64], b: vec![0.0; 8] }.pool(&h, &mask, 8).unwrap();
        assert!(close(&zero, &Pooling::Mean.pool(&h, &mask, 8).unwrap(), 1e-6));
        let mut diag = vec![0.0; 64];
        (0..8).for_each(|i| diag[i * 9] = 1e4);
        let big = Pooling::AttSets { w: diag, b: vec![0.0; 8] }.pool(&h, &mask, 8).unwrap();
        assert!(close(&big, &Pooling::Max.pool(&h, &mask, 8).unwrap(), 1e-4));
        // Permutation invariance.
        let rev: Vec<f32> = h.chunks_exact(8).rev().flatten().copied().collect();
        let p = Pooling::AttSets { w: vec![0.05; 64], b: vec![0.1; 8] };
        assert!(close(&p.pool(&h, &mask, 8).unwrap(), &p.pool(&rev, &mask, 8).unwrap(), 1e-6));
    }

    #[test]
    fn hopfield_static_pooling_is_a_weighted_sum_with_zero_weight_on_padding() {
        let mut rng = Rng::new(5);
        let h = rng.unit_vectors(5, 8);
        let mask = [true, true, false, true, true];
        let xi = masked_mean(&h, &mask, 8).unwrap();
        let (z, w) = hopfield_step(&h, &mask, 8, &xi, 3.0);
        assert_eq!(w[2], 0.0);
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Hand computation.
        let logits: Vec<f32> =
            h.chunks_exact(8).map(|r| 3.0 * r.iter().zip(&xi).map(|(a, b)| a * b).sum::<f32>()).collect();
        let valid: Vec<usize> = vec![0, 1, 3, 4];
        let m = valid.iter().map(|&i| logits[i]).fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = valid.iter().map(|&i| (logits[i] - m).exp()).sum();
        let mut want = vec![0f32; 8];
        for &i in &valid {
            let wi = (logits[i] - m).exp() / s;
            want.iter_mut().zip(&h[i * 8..(i + 1) * 8]).for_each(|(o, x)| *o += wi * x);
        }
        assert!(close(&z, &want, 1e-6));
        let p = Pooling::Hopfield { beta: 3.0, steps: 1, init: HopfieldInit::Mean };
        assert!(close(&p.pool(&h, &mask, 8).unwrap(), &want, 1e-6));
        // β = 0 gives the mean exactly.
        let (z0, _) = hopfield_step(&h, &mask, 8, &xi, 0.0);
        assert!(close(&z0, &xi, 1e-6));
    }

    #[test]
    fn all_masked_is_an_error_not_nan() {
        for p in all() {
            assert!(p.pool(&[1.0; 16], &[false, false], 8).is_err(), "{p:?}");
        }
    }
}
