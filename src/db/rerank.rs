//! Rerank: exact MaxSim (or dot product) on the stored vectors of the candidates and of
//! the pending rows; every plan ends here, so returned scores are always exact.

use std::time::Instant;

use rayon::prelude::*;

use super::query::{Query, StageStats};
use crate::catalog::{CollectionRow, PendingRow};
use crate::scoring::{self, PreparedQuery, Scored, TopK};
use crate::storage::segment::{SegmentReader, VecRef};
use crate::validate::Decoded;
use crate::{Error, Result};

/// How one document is scored.
pub(crate) enum Scorer {
    /// The prepared query and the token vectors that count (mask applied), for PLAID.
    MaxSim(PreparedQuery, Vec<f32>),
    Dense(usize, Vec<f32>),
}

impl Scorer {
    pub(super) fn new(c: &CollectionRow, q: &Query) -> Result<Self> {
        let v = &c.spec.vectors;
        match q {
            Query::MaxSim { tokens, mask } => {
                let pq = PreparedQuery::new(tokens, v.token_dim, mask.as_deref())?;
                let kept: Vec<f32> = match mask {
                    None => tokens.clone(),
                    Some(m) => tokens
                        .chunks_exact(v.token_dim)
                        .zip(m)
                        .filter(|(_, &on)| on)
                        .flat_map(|(t, _)| t.iter().copied())
                        .collect(),
                };
                Ok(Scorer::MaxSim(pq, kept))
            }
            Query::MaxSimText { .. } | Query::DenseText { .. } => {
                Err(Error::NotAvailable("text queries need the `embed` cargo feature".into()))
            }
            Query::Bm25 { .. } | Query::Hybrid { .. } => {
                Err(Error::invalid("BM25 and hybrid queries are not scored per document"))
            }
            Query::Dense { field, vector } => {
                let p = v.pooled_index(field)?;
                if vector.len() != v.pooled[p].dim {
                    return Err(Error::DimensionMismatch {
                        what: format!("query for pooled vector '{field}'"),
                        expected: v.pooled[p].dim,
                        got: vector.len(),
                    });
                }
                crate::validate::finite("query vector", vector)?;
                Ok(Scorer::Dense(p, vector.clone()))
            }
        }
    }

    fn verify(&self, r: &SegmentReader, docs: &[u32]) -> Result<()> {
        match self {
            Scorer::MaxSim(..) => r.verify_doc_tokens(docs),
            Scorer::Dense(p, _) => r.verify_pooled(*p),
        }
    }

    /// Score document `doc` of `r` with every scorer (decoding its tokens once), offering
    /// each score to the scorer's collector.
    fn score_segment_all(scorers: &[&Scorer], r: &SegmentReader, doc: usize, tops: &mut [TopK]) {
        let row = r.row_ids()[doc];
        let tokens = scorers.iter().any(|s| matches!(s, Scorer::MaxSim(..))).then(|| r.doc_tokens(doc));
        for (s, top) in scorers.iter().zip(tops) {
            let score = match (s, &tokens) {
                (Scorer::MaxSim(q, _), Some(t)) => q.maxsim(t.as_ref()),
                (Scorer::Dense(p, v), _) => scoring::dot(v, r.pooled(*p, doc)),
                (Scorer::MaxSim(..), None) => unreachable!("tokens are decoded for MaxSim scorers"),
            };
            top.push(Scored { score, row });
        }
    }

    fn score_pending(&self, tokens: VecRef<'_>, pooled: &Decoded, offsets: &[usize]) -> f32 {
        match self {
            Scorer::MaxSim(q, _) => q.maxsim(tokens),
            Scorer::Dense(p, v) => scoring::dot(v, pooled.slice(offsets[*p]..offsets[*p + 1])),
        }
    }
}

pub(super) fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

/// Indices of `rows` (ascending) whose row id is in `keep` (ascending) — or, when
/// `invert`, not in it.
pub(super) fn select(rows: &[u64], keep: &[u64], invert: bool) -> Vec<u32> {
    let mut out = Vec::with_capacity(if invert { rows.len() } else { keep.len() });
    let mut k = 0;
    for (i, &r) in rows.iter().enumerate() {
        while k < keep.len() && keep[k] < r {
            k += 1;
        }
        let hit = k < keep.len() && keep[k] == r;
        if hit != invert {
            out.push(i as u32);
        }
    }
    out
}

/// Score `work` ((segment, local document) pairs of `readers`) and `pending` with
/// `scorer`; the best `k`. Verifies what it reads first: for MaxSim the token blocks of
/// the documents it scores (the whole section only for v1 segments), for dense the pooled
/// section. Appends the `exact` stage.
pub(super) fn rerank(
    c: &CollectionRow,
    scorer: &Scorer,
    readers: &[std::sync::Arc<SegmentReader>],
    work: &[(u32, u32)],
    pending: &[PendingRow],
    k: usize,
    stages: &mut Vec<StageStats>,
) -> Result<Vec<Scored>> {
    let t_exact = Instant::now();
    let top = rerank_many(c, &[scorer], readers, work, pending, k)?.pop().unwrap_or_default();
    stages.push(StageStats {
        name: "exact",
        docs: (work.len() + pending.len()) as u64,
        micros: micros(t_exact),
    });
    Ok(top)
}

/// [`rerank`] for several queries over the same documents in one pass: each document's
/// tokens are read (for codes-only storage: decoded) once for all of them. The best `k`
/// of each scorer, in order.
pub(super) fn rerank_many(
    c: &CollectionRow,
    scorers: &[&Scorer],
    readers: &[std::sync::Arc<SegmentReader>],
    work: &[(u32, u32)],
    pending: &[PendingRow],
    k: usize,
) -> Result<Vec<Vec<Scored>>> {
    let mut per_segment: Vec<Vec<u32>> = vec![Vec::new(); readers.len()];
    for &(si, d) in work {
        per_segment[si as usize].push(d);
    }
    for (r, docs) in readers.iter().zip(&per_segment) {
        if !docs.is_empty() {
            // Token blocks once for all MaxSim scorers; each dense scorer's pooled section.
            let first_maxsim = scorers.iter().position(|s| matches!(s, Scorer::MaxSim(..)));
            for (i, s) in scorers.iter().enumerate() {
                if matches!(s, Scorer::Dense(..)) || Some(i) == first_maxsim {
                    s.verify(r, docs)?;
                }
            }
        }
    }
    let fresh = || scorers.iter().map(|_| TopK::new(k)).collect::<Vec<_>>();
    let merge = |a: Vec<TopK>, b: Vec<TopK>| a.into_iter().zip(b).map(|(a, b)| a.merge(b)).collect();
    let seg_tops = work
        .par_chunks(64)
        .fold(fresh, |mut tops, chunk| {
            for &(si, d) in chunk {
                Scorer::score_segment_all(scorers, &readers[si as usize], d as usize, &mut tops);
            }
            tops
        })
        .reduce(fresh, merge);
    let mut tops = fresh();
    let offsets = pooled_offsets(c);
    let dtype = c.spec.vectors.dtype;
    for p in pending {
        let tokens = Decoded::from_bytes(&p.tokens, dtype);
        let pooled = Decoded::from_bytes(&p.pooled, dtype);
        for (s, top) in scorers.iter().zip(&mut tops) {
            top.push(Scored { score: s.score_pending(tokens.as_ref(), &pooled, &offsets), row: p.row });
        }
    }
    Ok(merge(tops, seg_tops).into_iter().map(TopK::into_sorted).collect())
}

/// Where each pooled vector starts in a document's concatenated pooled vectors.
pub(super) fn pooled_offsets(c: &CollectionRow) -> Vec<usize> {
    let mut offs = vec![0];
    for p in &c.spec.vectors.pooled {
        offs.push(offs.last().copied().unwrap_or(0) + p.dim);
    }
    offs
}

#[cfg(test)]
mod tests {
    use super::select;

    #[test]
    fn select_keeps_or_drops_listed_rows() {
        let rows = [2, 4, 6, 8, 10];
        assert_eq!(select(&rows, &[4, 5, 10], false), vec![1, 4]);
        assert_eq!(select(&rows, &[4, 5, 10], true), vec![0, 2, 3]);
        assert_eq!(select(&rows, &[], true), vec![0, 1, 2, 3, 4]);
    }
}
