//! Retrieval metrics and paired significance tests, for the pooling lab
//! ([`Database::evaluate`](crate::Database::evaluate)) and anyone comparing two systems on
//! the same queries.
//!
//! Metrics take a ranking (document ids, best first) and graded judgments (id → gain; a
//! gain ≤ 0 is not relevant). nDCG uses the gain itself (BEIR's `trec_eval` convention:
//! DCG = Σ gᵢ / log₂(i + 1) over ranks i = 1..k, divided by the DCG of the ideal order).
//!
//! [`paired_test`] compares per-query scores of two systems: the mean difference, a 95 %
//! percentile-bootstrap interval of it, and the two-sided p-value of a paired
//! randomisation (sign-flip) test — exact (all 2ⁿ sign patterns) for n ≤ 16 queries, else
//! Monte Carlo with the (1 + hits) / (1 + draws) estimate, which never reports p = 0.
//! [`holm`] adjusts a family of p-values (Holm–Bonferroni: controls the family-wise error
//! rate without assuming independence).

use std::collections::HashMap;

use crate::rng::Rng;
use crate::{Error, Result};

/// Judgments: query id → document id → gain.
pub type Qrels = HashMap<String, HashMap<String, f64>>;

/// A BEIR `qrels.tsv` (query id, document id, gain; a header line is skipped) or a TREC
/// qrels file (query, 0, document, gain): query id → document id → gain.
///
/// # Errors
/// I/O errors; [`Error::InvalidArgument`] naming the line for a malformed one.
pub fn read_qrels(path: &std::path::Path) -> Result<Qrels> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(['\t', ' ']).filter(|s| !s.is_empty()).collect();
        if f.is_empty() {
            continue;
        }
        // query, doc, gain — or TREC's query, 0, doc, gain.
        let (q, d, g) = match f.len() {
            3 => (f[0], f[1], f[2]),
            4 => (f[0], f[2], f[3]),
            _ => {
                return Err(Error::invalid(format!(
                    "{}:{}: a qrels line is 'query-id<TAB>corpus-id<TAB>score'",
                    path.display(),
                    n + 1
                )))
            }
        };
        match g.parse::<f64>() {
            Ok(g) => {
                out.entry(q.to_string()).or_default().insert(d.to_string(), g);
            }
            Err(_) if n == 0 => {} // the header
            Err(_) => {
                return Err(Error::invalid(format!(
                    "{}:{}: score '{g}' is not a number",
                    path.display(),
                    n + 1
                )))
            }
        }
    }
    Ok(out)
}

/// nDCG@k of `ranking` under `qrels` (0 when nothing is relevant).
#[must_use]
pub fn ndcg_at(ranking: &[String], qrels: &HashMap<String, f64>, k: usize) -> f64 {
    let gain = |id: &String| qrels.get(id).copied().filter(|g| *g > 0.0).unwrap_or(0.0);
    let dcg: f64 = ranking.iter().take(k).enumerate().map(|(i, id)| gain(id) / (i as f64 + 2.0).log2()).sum();
    let mut ideal: Vec<f64> = qrels.values().copied().filter(|g| *g > 0.0).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal.iter().take(k).enumerate().map(|(i, g)| g / (i as f64 + 2.0).log2()).sum();
    if idcg > 0.0 {
        dcg / idcg
    } else {
        0.0
    }
}

/// Recall@k: the share of relevant documents in the first `k` (0 when none is relevant).
#[must_use]
pub fn recall_at(ranking: &[String], qrels: &HashMap<String, f64>, k: usize) -> f64 {
    let relevant = qrels.values().filter(|g| **g > 0.0).count();
    if relevant == 0 {
        return 0.0;
    }
    let hit = ranking.iter().take(k).filter(|id| qrels.get(*id).is_some_and(|g| *g > 0.0)).count();
    hit as f64 / relevant as f64
}

/// MRR@k: 1 / rank of the first relevant document within the first `k`, else 0.
#[must_use]
pub fn mrr_at(ranking: &[String], qrels: &HashMap<String, f64>, k: usize) -> f64 {
    ranking
        .iter()
        .take(k)
        .position(|id| qrels.get(id).is_some_and(|g| *g > 0.0))
        .map_or(0.0, |i| 1.0 / (i as f64 + 1.0))
}

/// The result of [`paired_test`]: `mean_diff` = mean(a − b) with its 95 % bootstrap
/// interval, and the two-sided p-value of H₀ "a and b are exchangeable per query".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Mean of the per-query differences a − b.
    pub mean_diff: f64,
    /// 2.5th percentile of the bootstrap distribution of the mean difference.
    pub ci_low: f64,
    /// 97.5th percentile.
    pub ci_high: f64,
    /// Two-sided paired randomisation p-value.
    pub p_value: f64,
    /// True when the p-value enumerated every sign pattern (n ≤ 16).
    pub exact: bool,
}

/// Paired comparison of per-query scores `a` and `b` (same queries, same order):
/// `permutations` random sign flips (ignored when n ≤ 16: exact), `bootstrap` resamples,
/// deterministic for a `seed`. Differences within 1e-12 of the observed one count as at
/// least as extreme (ties go against rejecting).
///
/// # Panics
/// When `a` and `b` differ in length.
#[must_use]
pub fn paired_test(a: &[f64], b: &[f64], permutations: usize, bootstrap: usize, seed: u64) -> Paired {
    assert_eq!(a.len(), b.len(), "paired scores need the same queries");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    if n == 0 {
        return Paired { mean_diff: 0.0, ci_low: 0.0, ci_high: 0.0, p_value: 1.0, exact: true };
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let observed = mean.abs() - 1e-12;
    let mut rng = Rng::new(seed);
    let (p_value, exact) = if n <= 16 {
        let patterns = 1u64 << n;
        let hits = (0..patterns)
            .filter(|mask| {
                let s: f64 =
                    d.iter().enumerate().map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x }).sum();
                (s / n as f64).abs() >= observed
            })
            .count();
        (hits as f64 / patterns as f64, true)
    } else {
        let draws = permutations.max(1);
        let hits = (0..draws)
            .filter(|_| {
                let s: f64 = d.iter().map(|x| if rng.next_u64() & 1 == 1 { -x } else { *x }).sum();
                (s / n as f64).abs() >= observed
            })
            .count();
        ((1 + hits) as f64 / (1 + draws) as f64, false)
    };
    let mut means: Vec<f64> = (0..bootstrap.max(1))
        .map(|_| (0..n).map(|_| d[rng.below(n as u64) as usize]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| means[((means.len() - 1) as f64 * p).round() as usize];
    Paired { mean_diff: mean, ci_low: q(0.025), ci_high: q(0.975), p_value, exact }
}

/// Holm–Bonferroni adjusted p-values, in the input's order: sort ascending, multiply the
/// i-th smallest (0-based) by m − i, make the sequence non-decreasing, cap at 1.
#[must_use]
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    }

    fn ids(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn graded_ndcg_and_recall_match_a_hand_checked_example() {
        // Relevant: a (2), b (1), z (1, never retrieved). Ranking: x a y b.
        let q = qrels(&[("a", 2.0), ("b", 1.0), ("z", 1.0), ("n", 0.0)]);
        let r = ids(&["x", "a", "y", "b"]);
        // DCG@4 = 2/log2(3) + 1/log2(5) = 1.26186 + 0.43068 = 1.69254
        // IDCG@4 = 2/log2(2) + 1/log2(3) + 1/log2(4) = 2 + 0.63093 + 0.5 = 3.13093
        let want = (2.0 / 3f64.log2() + 1.0 / 5f64.log2()) / (2.0 + 1.0 / 3f64.log2() + 0.5);
        assert!((ndcg_at(&r, &q, 4) - want).abs() < 1e-12);
        assert!((ndcg_at(&r, &q, 4) - 0.540_586).abs() < 1e-6);
        // @1: x is not relevant.
        assert_eq!(ndcg_at(&r, &q, 1), 0.0);
        assert!((recall_at(&r, &q, 4) - 2.0 / 3.0).abs() < 1e-12);
        assert!((recall_at(&r, &q, 2) - 1.0 / 3.0).abs() < 1e-12);
        // Perfect ranking scores 1.
        assert!((ndcg_at(&ids(&["a", "b", "z"]), &q, 10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn qrels_files_in_beir_and_trec_layout() {
        let dir = tempfile::tempdir().unwrap();
        let beir = dir.path().join("qrels.tsv");
        std::fs::write(&beir, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\nq2\td3\t0\n").unwrap();
        let q = read_qrels(&beir).unwrap();
        assert_eq!((q["q1"]["d2"], q["q2"]["d3"], q.len()), (2.0, 0.0, 2));
        let trec = dir.path().join("qrels.trec");
        std::fs::write(&trec, "q1 0 d1 1\n").unwrap();
        assert_eq!(read_qrels(&trec).unwrap()["q1"]["d1"], 1.0);
        std::fs::write(&trec, "q1 0 d1 1\nq2 d1\n").unwrap();
        let err = read_qrels(&trec).unwrap_err().to_string();
        assert!(err.contains(":2:"), "names the line: {err}");
    }

    #[test]
    fn metrics_match_hand_computed_values() {
        let q = qrels(&[("a", 1.0), ("c", 2.0), ("z", 0.0)]);
        let r = ids(&["b", "a", "c"]);
        // DCG = 1/log2(3) + 2/log2(4) = 0.63093 + 1; IDCG = 2/1 + 1/log2(3) = 2.63093.
        let want = (1.0 / 3f64.log2() + 1.0) / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&r, &q, 10) - want).abs() < 1e-12);
        assert!((ndcg_at(&r, &q, 1)).abs() < 1e-12, "b is not relevant");
        assert_eq!(recall_at(&r, &q, 2), 0.5);
        assert_eq!(recall_at(&r, &q, 100), 1.0);
        assert_eq!(mrr_at(&r, &q, 10), 0.5);
        assert_eq!(mrr_at(&r, &q, 1), 0.0);
        let none = qrels(&[("z", 0.0)]);
        assert_eq!(
            (ndcg_at(&r, &none, 10), recall_at(&r, &none, 10), mrr_at(&r, &none, 10)),
            (0.0, 0.0, 0.0)
        );
    }

    /// The exact randomisation test against a hand count: differences d = (0.3, 0.1,
    /// −0.1, 0.2) sum to 0.5. Flipping the signs of a subset S gives 0.5 − 2·Σ_S d, at
    /// least 0.5 in size iff Σ_S d ≤ 0 or ≥ 0.5: S = {}, {−0.1}, {0.1, −0.1}, {0.3, 0.2},
    /// {0.3, 0.1, 0.2} and all four — 6 of 16 patterns, p = 0.375.
    #[test]
    fn exact_randomisation_test_matches_a_hand_count() {
        let a = [0.8, 0.5, 0.4, 0.7];
        let b = [0.5, 0.4, 0.5, 0.5];
        let p = paired_test(&a, &b, 0, 1000, 1);
        assert!(p.exact);
        assert!((p.mean_diff - 0.125).abs() < 1e-12);
        // Brute force over the 16 patterns, written out independently of the code above.
        let d = [0.3, 0.1, -0.1, 0.2];
        let mut hits = 0;
        for s0 in [1.0, -1.0] {
            for s1 in [1.0, -1.0] {
                for s2 in [1.0, -1.0] {
                    for s3 in [1.0, -1.0] {
                        let m: f64 = (s0 * d[0] + s1 * d[1] + s2 * d[2] + s3 * d[3]) / 4.0;
                        if m.abs() >= 0.125 - 1e-12 {
                            hits += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(hits, 6);
        assert!((p.p_value - 0.375).abs() < 1e-12, "{p:?}");
        assert!(p.ci_low <= p.mean_diff && p.mean_diff <= p.ci_high && p.ci_low >= -0.1 && p.ci_high <= 0.3);
    }

    #[test]
    fn monte_carlo_test_separates_a_real_difference_from_none() {
        let mut rng = Rng::new(3);
        let base: Vec<f64> = (0..200).map(|_| f64::from(rng.unit())).collect();
        let better: Vec<f64> = base.iter().map(|x| x + 0.05 + 0.02 * f64::from(rng.normal())).collect();
        let same: Vec<f64> = base.iter().map(|x| x + 0.05 * f64::from(rng.normal())).collect();
        let p = paired_test(&better, &base, 2000, 1000, 7);
        assert!(!p.exact && p.p_value < 0.01 && p.ci_low > 0.0, "{p:?}");
        assert!(p.p_value >= 1.0 / 2001.0, "never p = 0");
        let q = paired_test(&same, &base, 2000, 1000, 7);
        assert!(q.p_value > 0.05 && q.ci_low < 0.0 && q.ci_high > 0.0, "{q:?}");
        assert_eq!(paired_test(&same, &base, 2000, 1000, 7), q, "deterministic for a seed");
    }

    #[test]
    fn holm_adjusts_like_the_textbook_example() {
        // m = 4: sorted 0.01, 0.02, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.04, 0.06, 0.06, 0.04
        // → non-decreasing: 0.04, 0.06, 0.06, 0.06.
        let got = holm(&[0.03, 0.01, 0.04, 0.02]);
        let want = [0.06, 0.04, 0.06, 0.06];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(holm(&[0.5, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }
}
