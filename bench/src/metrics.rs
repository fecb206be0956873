//! Retrieval metrics with trec_eval conventions: nDCG@k with graded gains `rel` and
//! discount `log2(rank + 1)` (rank from 1), ideal DCG from the judged documents sorted by
//! relevance; recall@k = relevant retrieved in the top k / relevant judged. Documents with
//! relevance ≤ 0 count as non-relevant; queries without relevant judgments are skipped by
//! the caller.

use std::collections::HashMap;

/// nDCG@k of `ranking` (best first) against `qrels` (doc id → relevance).
pub fn ndcg_at(ranking: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| f64::from(qrels.get(d).copied().unwrap_or(0).max(0)) / (i as f64 + 2.0).log2())
        .sum();
    let mut ideal: Vec<i32> = qrels.values().copied().filter(|r| *r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 =
        ideal.iter().take(k).enumerate().map(|(i, r)| f64::from(*r) / (i as f64 + 2.0).log2()).sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// recall@k of `ranking` against `qrels`.
pub fn recall_at(ranking: &[String], qrels: &HashMap<String, i32>, k: usize) -> f64 {
    let relevant = qrels.values().filter(|r| **r > 0).count();
    if relevant == 0 {
        return 0.0;
    }
    let hit = ranking.iter().take(k).filter(|d| qrels.get(*d).is_some_and(|r| *r > 0)).count();
    hit as f64 / relevant as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn hand_checked_example() {
        // Relevant: a (2), b (1), z (1, never retrieved). Ranking: x a y b.
        let q: HashMap<String, i32> =
            [("a", 2), ("b", 1), ("z", 1), ("n", 0)].iter().map(|(k, v)| ((*k).to_string(), *v)).collect();
        let r = s(&["x", "a", "y", "b"]);
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
        assert!((ndcg_at(&s(&["a", "b", "z"]), &q, 10) - 1.0).abs() < 1e-12);
    }
}
