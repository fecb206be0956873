//! Fusion: hybrid queries run each part over the same snapshot and combine the rankings
//! (reciprocal rank fusion or weighted min–max normalised scores).

use std::collections::HashMap;
use std::time::Instant;

use super::query::{Fusion, Plan, Query, SearchOutput, SearchRequest, StageStats, MAX_LIMIT};
use super::rerank::micros;
use super::Database;
use crate::catalog::{CollectionRow, Txn};
use crate::scoring::Scored;
use crate::{Error, Result};

pub(super) fn validate_fusion(parts: usize, fusion: &Fusion) -> Result<()> {
    if parts == 0 {
        return Err(Error::invalid("a hybrid query needs at least one part"));
    }
    match fusion {
        Fusion::Rrf { k } if !k.is_finite() || *k < 0.0 => {
            Err(Error::invalid("RRF k must be finite and >= 0"))
        }
        Fusion::Weighted { weights } if weights.len() != parts => Err(Error::invalid(format!(
            "weighted fusion needs one weight per part ({parts}), got {}",
            weights.len()
        ))),
        Fusion::Weighted { weights } if weights.iter().any(|w| !w.is_finite() || *w < 0.0) => {
            Err(Error::invalid("fusion weights must be finite and >= 0"))
        }
        _ => Ok(()),
    }
}

/// Fuse ranked lists (best first) into the best `limit` rows.
fn fuse(lists: &[Vec<Scored>], fusion: &Fusion, limit: usize) -> Vec<Scored> {
    let mut acc: HashMap<u64, f32> = HashMap::new();
    for (i, list) in lists.iter().enumerate() {
        match fusion {
            Fusion::Rrf { k } => {
                for (rank, s) in list.iter().enumerate() {
                    *acc.entry(s.row).or_default() += 1.0 / (k + rank as f32 + 1.0);
                }
            }
            Fusion::Weighted { weights } => {
                let (lo, hi) = list.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
                    (lo.min(s.score), hi.max(s.score))
                });
                for s in list {
                    let norm = if hi > lo { (s.score - lo) / (hi - lo) } else { 1.0 };
                    *acc.entry(s.row).or_default() += weights[i] * norm;
                }
                // Rows this part did not return add 0.
            }
        }
    }
    let mut out: Vec<Scored> = acc.into_iter().map(|(row, score)| Scored { score, row }).collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
    out.truncate(limit);
    out
}

impl Database {
    pub(super) fn hybrid_snapshot(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        parts: &[Query],
        fusion: &Fusion,
        req: &SearchRequest,
    ) -> Result<(Vec<Scored>, SearchOutput)> {
        let depth = req.candidates.unwrap_or(100).max(req.limit).min(MAX_LIMIT);
        let (mut lists, mut stages, mut docs) = (Vec::with_capacity(parts.len()), Vec::new(), 0);
        for part in parts {
            let sub = SearchRequest { query: part.clone(), limit: depth, refine: None, ..req.clone() };
            let t = Instant::now();
            let (mut top, out) = self.run_snapshot(tx, c, part, &sub)?;
            top.truncate(depth);
            docs = docs.max(out.docs);
            let name = match part {
                Query::Bm25 { .. } => "bm25",
                Query::Dense { .. } => "dense",
                _ => "maxsim",
            };
            stages.push(StageStats { name, docs: top.len() as u64, micros: micros(t) });
            lists.push(top);
        }
        let t = Instant::now();
        let fused = fuse(&lists, fusion, req.limit + 16);
        stages.push(StageStats { name: "fusion", docs: fused.len() as u64, micros: micros(t) });
        Ok((fused, SearchOutput { hits: Vec::new(), plan: Plan::Hybrid, docs, stages, recall: None }))
    }
}
