//! Hopfield associative lookup over a collection's pooled vectors (ALGORITHMS.md §4.3):
//! recall from a noisy query and completion from a partial cue. The memory is the top-K
//! documents an ordinary dense search finds (HNSW when indexed, else exact), unit
//! normalised; the Hopfield update runs over those K patterns only, so the tail of the
//! collection beyond them carries no weight.

use super::rerank::Scorer;
use super::Database;
use crate::filter::Filter;
use crate::index::hopfield::{HopfieldParams, Memory, Recall};
use crate::types::DocId;
use crate::{Error, Result, SearchRequest};

/// Options of [`Database::hopfield_recall`] and [`Database::hopfield_complete`].
#[derive(Debug, Clone, PartialEq)]
pub struct HopfieldLookup {
    /// β, steps, early-stop threshold.
    pub params: HopfieldParams,
    /// Documents that form the memory (default 100, at most 10,000).
    pub top_k: usize,
    /// Only documents matching this filter are memories.
    pub filter: Option<Filter>,
}

impl Default for HopfieldLookup {
    fn default() -> Self {
        Self { params: HopfieldParams::default(), top_k: 100, filter: None }
    }
}

/// What an associative lookup returns.
#[derive(Debug, Clone, PartialEq)]
pub struct HopfieldResult {
    /// The retrieved (or completed) state, in the pooled vector's space.
    pub state: Vec<f32>,
    /// Weight of each memory document, highest first (they sum to 1).
    pub weights: Vec<(DocId, f32)>,
    /// Energy of the returned state (lower: a more stable, better-retrieved state).
    pub energy: f32,
    /// Update steps taken.
    pub steps: usize,
    /// True when no document holds half the weight: the state averages several memories
    /// (a metastable state) rather than retrieving one.
    pub metastable: bool,
}

impl Database {
    /// Associative recall: starting from `query` (a vector in the space of pooled vector
    /// `field`), iterate `ξ ← X softmax(β Xᵀ ξ)` over the `top_k` nearest documents and
    /// return the state, the weight of each document, the energy and a metastability flag.
    ///
    /// # Errors
    /// [`Error::NotFound`] (collection, field, filter column), [`Error::DimensionMismatch`],
    /// [`Error::InvalidArgument`] for bad parameters, a non-finite query, or when no
    /// document passes the filter.
    pub fn hopfield_recall(
        &self,
        collection: &str,
        field: &str,
        query: &[f32],
        opts: &HopfieldLookup,
    ) -> Result<HopfieldResult> {
        self.lookup(collection, field, query, None, opts)
    }

    /// Pattern completion: `cue` is known only where `known` is true (the other values are
    /// ignored). The memory is the `top_k` documents best matching the known dimensions,
    /// `p = softmax(β X_Oᵀ ξ_O)`, and the completion `X p` fills every dimension.
    ///
    /// # Errors
    /// As [`Database::hopfield_recall`], and [`Error::InvalidArgument`] when no dimension
    /// is known.
    pub fn hopfield_complete(
        &self,
        collection: &str,
        field: &str,
        cue: &[f32],
        known: &[bool],
        opts: &HopfieldLookup,
    ) -> Result<HopfieldResult> {
        if known.len() != cue.len() {
            return Err(Error::DimensionMismatch {
                what: "known mask".into(),
                expected: cue.len(),
                got: known.len(),
            });
        }
        self.lookup(collection, field, cue, Some(known), opts)
    }

    fn lookup(
        &self,
        collection: &str,
        field: &str,
        xi: &[f32],
        known: Option<&[bool]>,
        opts: &HopfieldLookup,
    ) -> Result<HopfieldResult> {
        opts.params.validate()?;
        if !(1..=crate::MAX_LIMIT).contains(&opts.top_k) {
            return Err(Error::invalid(format!("top_k must be 1..={}", crate::MAX_LIMIT)));
        }
        if let Some(k) = known {
            if !k.iter().any(|&b| b) {
                return Err(Error::invalid("a partial cue needs at least one known dimension"));
            }
        }
        // Unknown dimensions are zeroed: the dot product then reads only the known ones.
        let probe: Vec<f32> = match known {
            None => xi.to_vec(),
            Some(k) => xi.iter().zip(k).map(|(v, &on)| if on { *v } else { 0.0 }).collect(),
        };
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            let p = c.spec.vectors.pooled_index(field)?;
            let scorer =
                Scorer::new(&c, &crate::Query::Dense { field: field.to_string(), vector: probe.clone() })?;
            let mut req = SearchRequest::dense(field, probe.clone()).limit(opts.top_k);
            req.filter = opts.filter.clone();
            let (top, _) = self.score_snapshot(&tx, &c, &scorer, &req)?;
            let rows: Vec<u64> = top.iter().map(|s| s.row).collect();
            let mut vecs = self.row_vectors(&tx, &c, &rows, Some(p))?;
            if vecs.is_empty() || vecs.len() != rows.len() {
                return Err(Error::invalid(format!(
                    "no document of '{collection}' passes the filter: nothing to recall from"
                )));
            }
            vecs.iter_mut().for_each(|v| crate::vector::normalize(v));
            let flat = vecs.concat();
            let mem = Memory::new(&flat, xi.len())?;
            let r: Recall = match known {
                None => mem.retrieve(xi, opts.params),
                Some(k) => mem.complete(xi, k, opts.params.beta)?,
            };
            let ids = tx.fetch(&c, &rows)?;
            let mut weights: Vec<(DocId, f32)> = rows
                .iter()
                .zip(&r.weights)
                .filter_map(|(row, w)| ids.get(row).map(|(id, _)| (id.clone(), *w)))
                .collect();
            weights.sort_by(|a, b| b.1.total_cmp(&a.1));
            Ok(HopfieldResult {
                state: r.state,
                weights,
                energy: r.energy,
                steps: r.steps,
                metastable: r.metastable,
            })
        })
    }
}
