//! Hopfield query refinement (ALGORITHMS.md §4.3 b): the query's top documents become a
//! memory, and the query moves towards what it retrieves from it before the real search.

use std::time::Instant;

use super::query::{Query, Refine, SearchRequest, StageStats};
use super::rerank::{micros, Scorer};
use super::Database;
use crate::catalog::{CollectionRow, Txn};
use crate::index::hopfield::{self, Memory};
use crate::{Error, Result};

impl Database {
    /// Hopfield refinement of a prepared MaxSim or dense query (see [`Refine`]).
    pub(super) fn refine_query(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        q: Query,
        expansion: Option<&[bool]>,
        r: Refine,
        req: &SearchRequest,
    ) -> Result<(Query, StageStats)> {
        if !r.beta.is_finite()
            || r.beta < 0.0
            || !(0.0..=1.0).contains(&r.alpha)
            || !(1..=1000).contains(&r.top_k)
        {
            return Err(Error::invalid("refine needs beta >= 0, 0 <= alpha <= 1 and 1 <= top_k <= 1000"));
        }
        let t = Instant::now();
        let sub = SearchRequest { query: q.clone(), limit: r.top_k, refine: None, ..req.clone() };
        let (top, _) = self.score_snapshot(tx, c, &Scorer::new(c, &q)?, &sub)?;
        let rows: Vec<u64> = top.iter().map(|s| s.row).collect();
        let dim = c.spec.vectors.token_dim;
        let out = match q {
            Query::MaxSim { tokens, mask } => {
                let memory: Vec<f32> = self.row_vectors(tx, c, &rows, None)?.concat();
                let refined = if memory.is_empty() {
                    tokens
                } else {
                    let mem = Memory::new(&memory, dim)?;
                    tokens
                        .chunks_exact(dim)
                        .enumerate()
                        .flat_map(|(i, t)| {
                            let skip = (!r.refine_mask_tokens
                                && expansion.is_some_and(|e| e.get(i) == Some(&true)))
                                || mask.as_ref().is_some_and(|m| !m[i]);
                            if skip {
                                t.to_vec()
                            } else {
                                hopfield::refine(t, &mem, r.beta, r.alpha)
                            }
                        })
                        .collect()
                };
                Query::MaxSim { tokens: refined, mask }
            }
            Query::Dense { field, vector } => {
                let p = c.spec.vectors.pooled_index(&field)?;
                let mut memory = self.row_vectors(tx, c, &rows, Some(p))?;
                memory.iter_mut().for_each(|v| crate::vector::normalize(v));
                let memory = memory.concat();
                let vector = if memory.is_empty() {
                    vector
                } else {
                    hopfield::refine(&vector, &Memory::new(&memory, vector.len())?, r.beta, r.alpha)
                };
                Query::Dense { field, vector }
            }
            other => other,
        };
        Ok((out, StageStats { name: "hopfield", docs: rows.len() as u64, micros: micros(t) }))
    }
}
