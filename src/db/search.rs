//! The read path: exact MaxSim and dense search over a consistent snapshot, and `get`.
//!
//! A search runs inside one catalog read transaction (a WAL snapshot): the manifest, the
//! tombstones, the filter's allowed rows, the pending vectors and the returned scalar
//! columns all come from the same committed state, while a writer keeps flushing or
//! compacting. Segment files named by that snapshot stay on disk for the retire grace
//! period, and once mapped they stay readable even if deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use super::candidates::{gather, CandidateSource, HnswSource, MuveraSource, Parts, PlaidSource};
use super::sidefile::IndexDef;
use super::Database;
use crate::catalog::{CollectionRow, DocLoc, Txn};
use crate::filter::Filter;
use crate::index::hopfield::{self, Memory};
use crate::index::plaid::{SearchParams, StageCounts};
use crate::scoring::{self, PreparedQuery, Scored, TopK};
use crate::storage::segment::{SegmentReader, VecRef};
use crate::types::{DocId, Hit, StoredDocument};
use crate::validate::Decoded;
use crate::{Error, Result};

/// Largest `limit` a search accepts.
pub const MAX_LIMIT: usize = 10_000;

/// What to score documents with.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Late interaction: `Σ_i max_j q_i·d_j` over the query's token vectors.
    MaxSim {
        /// Query token vectors, row-major (`n × token_dim`).
        tokens: Vec<f32>,
        /// Optional per-token mask; false tokens are left out of the sum.
        mask: Option<Vec<bool>>,
    },
    /// MaxSim with a text query embedded by the collection's model (feature `embed`).
    MaxSimText {
        /// Query text.
        text: String,
    },
    /// Dense search with a text query: the pooled vector `field` is computed for the query
    /// by the same operator (feature `embed`).
    DenseText {
        /// Name of the pooled vector.
        field: String,
        /// Query text.
        text: String,
    },
    /// Dot product with a stored pooled vector.
    Dense {
        /// Name of the pooled vector.
        field: String,
        /// Query vector.
        vector: Vec<f32>,
    },
    /// BM25 over the collection's full-text index (feature `fulltext`; see
    /// [`Database::create_fulltext_index`]). The text is analysed like the documents
    /// (tokenised, lowercased, stop words dropped, stemmed) and every remaining term is
    /// optional: no query syntax.
    Bm25 {
        /// Query text.
        text: String,
    },
    /// Several queries over the same snapshot and filter, each taking its best
    /// [`SearchRequest::candidates`] (default 100) documents, fused into one ranking.
    /// Scores are fused scores (not MaxSim or BM25 values).
    Hybrid {
        /// The parts (any query but another hybrid one), e.g. BM25 + MaxSim.
        parts: Vec<Query>,
        /// How the rankings are combined.
        fusion: Fusion,
    },
}

/// How [`Query::Hybrid`] combines rankings.
#[derive(Debug, Clone, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: `Σ_parts 1 / (k + rank)`, rank from 1 (Cormack et al.;
    /// `k = 60` is the usual choice). Needs no score calibration.
    Rrf {
        /// The rank offset `k`.
        k: f32,
    },
    /// Weighted sum of min–max normalised scores (each part's best → 1, its worst
    /// candidate → 0; a document a part did not return counts 0 there). One weight per
    /// part.
    Weighted {
        /// Weight of each part, in order.
        weights: Vec<f32>,
    },
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion::Rrf { k: 60.0 }
    }
}

/// Hopfield query refinement (ALGORITHMS.md §4.3 b) before the search: the query's top
/// `top_k` documents become a memory `X`, and the query is replaced by
/// `norm((1 − α) q + α X softmax(β Xᵀ q))` — for MaxSim, per query token against the
/// token vectors of those documents. Then the search runs again with the refined query.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Refine {
    /// Inverse temperature (default 20: towards the best-matching memory; β → 0 is
    /// Rocchio with the mean of the top documents).
    pub beta: f32,
    /// Interpolation weight of the retrieved pattern (default 0.5).
    pub alpha: f32,
    /// Documents whose vectors form the memory (default 10).
    pub top_k: usize,
    /// Also refine ColBERT's `[MASK]` expansion tokens of a text query (default false:
    /// they keep their encoder output).
    pub refine_mask_tokens: bool,
}

impl Default for Refine {
    fn default() -> Self {
        Self { beta: 20.0, alpha: 0.5, top_k: 10, refine_mask_tokens: false }
    }
}

/// How a MaxSim search finds its candidates. Every plan ends with exact MaxSim on the
/// stored vectors of the candidates, so scores are always exact; plans differ in which
/// documents they score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Plan {
    /// Let the planner choose: PLAID (else MUVERA) when the collection has that index and
    /// more than [`AUTO_EXACT_MAX_DOCS`] indexed documents pass the filter, exact otherwise.
    #[default]
    Auto,
    /// Score every live document that passes the filter.
    Exact,
    /// PLAID candidates (centroid probe, pruned and full centroid interaction) per
    /// indexed segment; segments without the index and pending documents are scored exactly.
    Plaid,
    /// HNSW over a pooled vector. For dense queries: the graph search on that vector (the
    /// default under [`Plan::Auto`] when an index exists, enough documents pass the filter
    /// and at least 10 % of them do). For MaxSim (only when asked for): the normalised mean
    /// of the query tokens finds [`SearchRequest::candidates`] documents by their pooled
    /// vector, which exact MaxSim then reranks — cheap, but only as good as mean pooling.
    Hnsw,
    /// MUVERA: the query's fixed-dimensional encoding finds [`SearchRequest::candidates`]
    /// documents per indexed segment through the HNSW graph over the document encodings;
    /// exact MaxSim reranks them. Chosen by [`Plan::Auto`] when the collection has a MUVERA
    /// index but no PLAID index and enough indexed documents pass the filter.
    Muvera,
    /// Reported for [`Query::Bm25`]: the full-text index ranked the documents.
    Bm25,
    /// Reported for [`Query::Hybrid`]: each part ran with its own plan (see the stages).
    Hybrid,
}

/// Below this many candidate documents (after the filter) [`Plan::Auto`] scores exactly:
/// a scan of a few thousand documents costs less than the centroid stages.
pub const AUTO_EXACT_MAX_DOCS: usize = 2_048;

/// One stage of an executed search (the data behind `EXPLAIN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageStats {
    /// `filter` (allowed live rows), `plaid_centroids` (query × centroid scores; `docs`
    /// counts centroids), `plaid_probe` (inverted-list union), `plaid_pruned`, `plaid_full`
    /// (centroid interaction), `hnsw` / `muvera` (graph search results), `exact`
    /// (documents scored on stored vectors).
    pub name: &'static str,
    /// Documents this stage produced (for `exact`: documents scored).
    pub docs: u64,
    /// Time spent, in microseconds (summed over segments).
    pub micros: u64,
}

/// Hits plus how they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutput {
    /// The hits, best first.
    pub hits: Vec<Hit>,
    /// The plan that ran (never [`Plan::Auto`]).
    pub plan: Plan,
    /// Live documents that passed the filter.
    pub docs: u64,
    /// Per-stage document counts and times, in execution order.
    pub stages: Vec<StageStats>,
}

/// A search: query, optional filter, limit, plan.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct SearchRequest {
    /// The query.
    pub query: Query,
    /// Only documents matching this filter are scored.
    pub filter: Option<Filter>,
    /// Number of hits (default 10, at most [`MAX_LIMIT`]).
    pub limit: usize,
    /// Candidate generation (default [`Plan::Auto`]).
    pub plan: Plan,
    /// PLAID knobs; `None` = [`SearchParams::for_k`] of the limit.
    pub plaid: Option<SearchParams>,
    /// HNSW beam width; `None` = the index's `ef_search`.
    pub ef: Option<usize>,
    /// Documents the graph stage hands to MaxSim per segment ([`Plan::Hnsw`],
    /// [`Plan::Muvera`]; `None` = max(200, limit)), and each part of a
    /// [`Query::Hybrid`] hands to fusion (`None` = max(100, limit)).
    pub candidates: Option<usize>,
    /// Hopfield query refinement (MaxSim and dense queries); `None` = off.
    pub refine: Option<Refine>,
}

impl SearchRequest {
    /// Exact MaxSim with the given query token vectors (row-major).
    pub fn maxsim(tokens: Vec<f32>) -> Self {
        Self::new(Query::MaxSim { tokens, mask: None })
    }

    /// Exact dense search over the pooled vector `field`.
    pub fn dense(field: impl Into<String>, vector: Vec<f32>) -> Self {
        Self::new(Query::Dense { field: field.into(), vector })
    }

    /// Exact MaxSim with a text query (the collection embeds it).
    pub fn maxsim_text(text: impl Into<String>) -> Self {
        Self::new(Query::MaxSimText { text: text.into() })
    }

    /// Exact dense search over pooled vector `field` with a text query.
    pub fn dense_text(field: impl Into<String>, text: impl Into<String>) -> Self {
        Self::new(Query::DenseText { field: field.into(), text: text.into() })
    }

    /// A request for `query` with the defaults (no filter, limit 10, [`Plan::Auto`]).
    pub fn new(query: Query) -> Self {
        Self {
            query,
            filter: None,
            limit: 10,
            plan: Plan::Auto,
            plaid: None,
            ef: None,
            candidates: None,
            refine: None,
        }
    }

    /// BM25 with a text query.
    pub fn bm25(text: impl Into<String>) -> Self {
        Self::new(Query::Bm25 { text: text.into() })
    }

    /// Hybrid search: `parts` fused by `fusion`.
    pub fn hybrid(parts: Vec<Query>, fusion: Fusion) -> Self {
        Self::new(Query::Hybrid { parts, fusion })
    }

    /// Refine the query with a Hopfield update over its top documents first.
    pub fn refine(mut self, r: Refine) -> Self {
        self.refine = Some(r);
        self
    }

    /// Choose the candidate generation instead of letting the planner decide.
    pub fn plan(mut self, plan: Plan) -> Self {
        self.plan = plan;
        self
    }

    /// Override the PLAID knobs (more cells / candidates: higher recall, slower).
    pub fn plaid_params(mut self, p: SearchParams) -> Self {
        self.plaid = Some(p);
        self
    }

    /// HNSW beam width (larger: higher recall, slower).
    pub fn ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Candidates the graph stage passes to MaxSim under [`Plan::Hnsw`] / [`Plan::Muvera`].
    pub fn candidates(mut self, n: usize) -> Self {
        self.candidates = Some(n);
        self
    }

    /// Restrict to documents matching `filter`.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Return at most `k` hits.
    pub fn limit(mut self, k: usize) -> Self {
        self.limit = k;
        self
    }
}

/// How one document is scored.
pub(super) enum Scorer {
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

    fn score_segment(&self, r: &SegmentReader, doc: usize) -> f32 {
        match self {
            Scorer::MaxSim(q, _) => q.maxsim(r.doc_tokens(doc)),
            Scorer::Dense(p, v) => scoring::dot(v, r.pooled(*p, doc)),
        }
    }

    fn score_pending(&self, tokens: VecRef<'_>, pooled: &Decoded, offsets: &[usize]) -> f32 {
        match self {
            Scorer::MaxSim(q, _) => q.maxsim(tokens),
            Scorer::Dense(p, v) => scoring::dot(v, pooled.slice(offsets[*p]..offsets[*p + 1])),
        }
    }
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

/// Indices of `rows` (ascending) whose row id is in `keep` (ascending) — or, when
/// `invert`, not in it.
fn select(rows: &[u64], keep: &[u64], invert: bool) -> Vec<u32> {
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

/// The token index behind `plan` (PLAID or MUVERA), loaded by `load`, when this search can
/// use it: a MaxSim query with tokens, `plan` asked for (or [`Plan::Auto`] while
/// `eligible`), and — under `Auto` — more than [`AUTO_EXACT_MAX_DOCS`] indexed documents
/// passing the filter (`indexed`). Asking for `plan` without the index is an error naming
/// `what` creates it.
fn choose_token_index<'q, S>(
    plan: Plan,
    req: &SearchRequest,
    scorer: &'q Scorer,
    eligible: bool,
    load: impl FnOnce() -> Result<Option<S>>,
    indexed: impl Fn(&S) -> usize,
    what: impl FnOnce() -> String,
) -> Result<Option<(S, &'q Vec<f32>)>> {
    let state = match scorer {
        Scorer::MaxSim(_, tokens)
            if (req.plan == plan || (eligible && req.plan == Plan::Auto)) && !tokens.is_empty() =>
        {
            load()?.map(|s| (s, tokens))
        }
        _ => None,
    };
    if req.plan == plan && state.is_none() {
        return Err(Error::NotAvailable(format!(
            "plan = '{}' needs a MaxSim query on a collection with a {}",
            format!("{plan:?}").to_lowercase(),
            what()
        )));
    }
    Ok(state.filter(|(s, _)| req.plan == plan || indexed(s) > AUTO_EXACT_MAX_DOCS))
}

fn validate_fusion(parts: usize, fusion: &Fusion) -> Result<()> {
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

/// The vectors of the document at row `row`, as f32: token matrix and all pooled vectors
/// concatenated in spec order. `seg` is its segment's reader, `None` while it is pending.
pub(super) fn doc_vectors(
    tx: &Txn<'_>,
    c: &CollectionRow,
    row: u64,
    seg: Option<&SegmentReader>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let dtype = c.spec.vectors.dtype;
    match seg {
        None => {
            let p = tx.pending_row(c.id, row)?.ok_or_else(|| {
                Error::invalid(format!("row {row} has no pending vectors (catalog inconsistent)"))
            })?;
            Ok((
                Decoded::from_bytes(&p.tokens, dtype).as_ref().to_f32(),
                Decoded::from_bytes(&p.pooled, dtype).as_ref().to_f32(),
            ))
        }
        Some(r) => {
            let d = r
                .row_ids()
                .binary_search(&row)
                .map_err(|_| Error::corruption(r.path(), format!("row {row} missing from segment")))?;
            let pooled = (0..c.spec.vectors.pooled.len()).flat_map(|p| r.pooled(p, d).to_f32()).collect();
            Ok((r.doc_tokens(d).to_f32(), pooled))
        }
    }
}

fn pooled_offsets(c: &CollectionRow) -> Vec<usize> {
    let mut offs = vec![0];
    for p in &c.spec.vectors.pooled {
        offs.push(offs.last().copied().unwrap_or(0) + p.dim);
    }
    offs
}

impl Database {
    /// Exact search: score every live document (or every document passing the filter)
    /// and return the best `limit`, best first, with their scalar columns.
    ///
    /// # Errors
    /// [`Error::NotFound`] (collection, pooled vector, filter column),
    /// [`Error::DimensionMismatch`], [`Error::InvalidArgument`] (NaN query, limit above
    /// [`MAX_LIMIT`]), [`Error::Corruption`] naming a damaged segment file.
    pub fn search(&self, collection: &str, req: &SearchRequest) -> Result<Vec<Hit>> {
        Ok(self.search_explained(collection, req)?.hits)
    }

    /// [`Database::search`], also returning the plan that ran and each stage's document
    /// count and time (the data behind `EXPLAIN`).
    ///
    /// # Errors
    /// As [`Database::search`].
    pub fn search_explained(&self, collection: &str, req: &SearchRequest) -> Result<SearchOutput> {
        if req.limit > MAX_LIMIT {
            return Err(Error::invalid(format!("limit {} is above the maximum {MAX_LIMIT}", req.limit)));
        }
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            let (query, refined) = self.prepare(&tx, &c, &req.query, req, true)?;
            if req.limit == 0 {
                return Ok(SearchOutput { hits: Vec::new(), plan: Plan::Exact, docs: 0, stages: Vec::new() });
            }
            let (top, mut out) = self.run_snapshot(&tx, &c, &query, req)?;
            out.stages.splice(0..0, refined);
            let rows: Vec<u64> = top.iter().map(|s| s.row).collect();
            let mut vals = tx.fetch(&c, &rows)?;
            // Rows the snapshot does not hold (a full-text hit deleted since) drop out here.
            out.hits = top
                .into_iter()
                .filter_map(|s| vals.remove(&s.row).map(|(id, values)| Hit { id, score: s.score, values }))
                .take(req.limit)
                .collect();
            Ok(out)
        })
    }

    /// Make `q` executable: embed text queries, validate, and apply Hopfield refinement
    /// (returning its stage). Hybrid parts are prepared one by one.
    fn prepare(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        q: &Query,
        req: &SearchRequest,
        top_level: bool,
    ) -> Result<(Query, Vec<StageStats>)> {
        #[cfg_attr(not(feature = "embed"), allow(unused_mut))]
        let mut expansion: Option<Vec<bool>> = None;
        let q = match q {
            Query::Hybrid { parts, fusion } => {
                if !top_level {
                    return Err(Error::invalid("a hybrid query cannot contain another hybrid query"));
                }
                validate_fusion(parts.len(), fusion)?;
                let mut out = Vec::with_capacity(parts.len());
                let mut stages = Vec::new();
                for p in parts {
                    let (p, st) = self.prepare(tx, c, p, req, false)?;
                    out.push(p);
                    stages.extend(st);
                }
                return Ok((Query::Hybrid { parts: out, fusion: fusion.clone() }, stages));
            }
            Query::Bm25 { text } => {
                if !cfg!(feature = "fulltext") {
                    return Err(Error::NotAvailable("BM25 needs the `fulltext` cargo feature".into()));
                }
                return Ok((Query::Bm25 { text: text.clone() }, Vec::new()));
            }
            #[cfg(feature = "embed")]
            Query::MaxSimText { text } => {
                let (tokens, exp) = self.embed_query_marked(c, text)?;
                expansion = Some(exp);
                Query::MaxSim { tokens, mask: None }
            }
            #[cfg(feature = "embed")]
            Query::DenseText { field, text } => {
                c.spec.vectors.pooled_index(field)?;
                Query::Dense { field: field.clone(), vector: self.embed_query(c, text, Some(field))? }
            }
            other => other.clone(),
        };
        // Validates dimensions and values.
        Scorer::new(c, &q)?;
        match req.refine {
            Some(r) if req.limit > 0 => {
                let (q, stage) = self.refine_query(tx, c, q, expansion.as_deref(), r, req)?;
                Ok((q, vec![stage]))
            }
            _ => Ok((q, Vec::new())),
        }
    }

    /// Run a prepared query over the snapshot: the best rows with their scores.
    fn run_snapshot(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        q: &Query,
        req: &SearchRequest,
    ) -> Result<(Vec<Scored>, SearchOutput)> {
        match q {
            Query::Bm25 { text } => self.bm25_snapshot(tx, c, text, req),
            Query::Hybrid { parts, fusion } => self.hybrid_snapshot(tx, c, parts, fusion, req),
            _ => self.score_snapshot(tx, c, &Scorer::new(c, q)?, req),
        }
    }

    #[cfg_attr(not(feature = "fulltext"), allow(unused_variables))]
    fn bm25_snapshot(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        text: &str,
        req: &SearchRequest,
    ) -> Result<(Vec<Scored>, SearchOutput)> {
        #[cfg(not(feature = "fulltext"))]
        return Err(Error::NotAvailable("BM25 needs the `fulltext` cargo feature".into()));
        #[cfg(feature = "fulltext")]
        {
            let t = Instant::now();
            let allowed: Option<std::collections::HashSet<u64>> = match &req.filter {
                None => None,
                Some(f) => Some(tx.filter_rows(c, f)?.into_iter().map(|l| l.row).collect()),
            };
            let docs = allowed.as_ref().map_or(tx.doc_count(c.id)?, |a| a.len() as u64);
            let mut stages = vec![StageStats { name: "filter", docs, micros: micros(t) }];
            let t = Instant::now();
            let found = self.fulltext_search(tx, c, text, req.limit, allowed)?;
            stages.push(StageStats { name: "bm25", docs: found.len() as u64, micros: micros(t) });
            let top = found.into_iter().map(|(row, score)| Scored { score, row }).collect();
            Ok((top, SearchOutput { hits: Vec::new(), plan: Plan::Bm25, docs, stages }))
        }
    }

    fn hybrid_snapshot(
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
        Ok((fused, SearchOutput { hits: Vec::new(), plan: Plan::Hybrid, docs, stages }))
    }

    /// Hopfield refinement of a prepared MaxSim or dense query (see [`Refine`]).
    fn refine_query(
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

    /// The stored vectors of `rows` in the snapshot: all token vectors (`pooled = None`)
    /// or pooled vector `p`, as f32, verified. Rows that do not exist are skipped.
    pub(super) fn row_vectors(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        rows: &[u64],
        pooled: Option<usize>,
    ) -> Result<Vec<Vec<f32>>> {
        let segs: HashMap<i64, crate::catalog::SegmentRow> =
            tx.segments(c.id)?.into_iter().map(|s| (s.id, s)).collect();
        let offsets = pooled_offsets(c);
        let dtype = c.spec.vectors.dtype;
        let mut out = Vec::with_capacity(rows.len());
        for &row in rows {
            match tx.row_segment(c.id, row)? {
                None => {}
                Some(None) => {
                    let Some(p) = tx.pending_row(c.id, row)? else { continue };
                    out.push(match pooled {
                        None => Decoded::from_bytes(&p.tokens, dtype).as_ref().to_f32(),
                        Some(i) => {
                            Decoded::from_bytes(&p.pooled, dtype).slice(offsets[i]..offsets[i + 1]).to_f32()
                        }
                    });
                }
                Some(Some(seg)) => {
                    let s = segs
                        .get(&seg)
                        .ok_or_else(|| Error::NotFound { kind: "segment", name: seg.to_string() })?;
                    let r = self.segment(c, s)?;
                    let d = r.row_ids().binary_search(&row).map_err(|_| {
                        Error::corruption(r.path(), format!("row {row} missing from segment"))
                    })?;
                    out.push(match pooled {
                        None => {
                            r.verify_doc_tokens(&[d as u32])?;
                            r.doc_tokens(d).to_f32()
                        }
                        Some(i) => {
                            r.verify_pooled(i)?;
                            r.pooled(i, d).to_f32()
                        }
                    });
                }
            }
        }
        Ok(out)
    }

    pub(super) fn score_snapshot(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        scorer: &Scorer,
        req: &SearchRequest,
    ) -> Result<(Vec<Scored>, SearchOutput)> {
        let t_filter = Instant::now();
        let segs = tx.segments(c.id)?;
        let readers: Vec<Arc<SegmentReader>> =
            segs.iter().map(|s| self.segment(c, s)).collect::<Result<_>>()?;
        let allowed: Option<HashMap<Option<i64>, Vec<u64>>> = match &req.filter {
            None => None,
            Some(f) => {
                let mut m: HashMap<Option<i64>, Vec<u64>> = HashMap::new();
                for DocLoc { row, seg } in tx.filter_rows(c, f)? {
                    m.entry(seg).or_default().push(row);
                }
                Some(m)
            }
        };
        // Live documents passing the filter, per segment.
        let mut live: Vec<Vec<u32>> = Vec::with_capacity(segs.len());
        for (s, r) in segs.iter().zip(&readers) {
            live.push(match &allowed {
                Some(m) => m.get(&Some(s.id)).map_or_else(Vec::new, |keep| select(r.row_ids(), keep, false)),
                None => select(r.row_ids(), &tx.tombstones(c.id, s.id)?, true),
            });
        }
        let pending = tx.pending(c.id)?;
        let pending_allowed = allowed.as_ref().map(|m| m.get(&None).cloned().unwrap_or_default());
        let pending: Vec<_> = pending
            .into_iter()
            .filter(|p| pending_allowed.as_ref().is_none_or(|a| a.binary_search(&p.row).is_ok()))
            .collect();
        let docs = live.iter().map(Vec::len).sum::<usize>() + pending.len();
        let mut stages = vec![StageStats { name: "filter", docs: docs as u64, micros: micros(t_filter) }];

        // The plan. PLAID needs a MaxSim query and a PLAID index; HNSW a graph over the
        // queried pooled vector (or, for MaxSim, any pooled vector of the token dimension).
        // Auto also wants enough indexed documents for the index to pay.
        let k = req.limit;
        let seg_ids: Vec<i64> = segs.iter().map(|s| s.id).collect();
        let sides = tx.side_files(c.id)?;
        let parts_of = |d: &IndexDef| Parts::open(&self.inner, d, &readers, &seg_ids, &sides);
        let total_live: usize = readers.iter().map(|r| r.doc_count()).sum();
        let plaid = choose_token_index(
            Plan::Plaid,
            req,
            scorer,
            true,
            || {
                let st = super::index::plaid_state(&self.inner, tx, c)?;
                Ok(st.map(|p| {
                    let parts = parts_of(&IndexDef::Plaid(p.clone()));
                    (p, parts)
                }))
            },
            |(_, parts)| parts.indexed_live(&live),
            || format!("PLAID index (CREATE INDEX ON {} USING plaid)", c.spec.name),
        )?;
        let muvera = choose_token_index(
            Plan::Muvera,
            req,
            scorer,
            plaid.is_none(),
            || {
                let st = super::index::muvera_state(&self.inner, tx, c)?;
                Ok(st.map(|m| {
                    let parts = parts_of(&IndexDef::Muvera(m.clone()));
                    (m, parts)
                }))
            },
            |(_, parts)| parts.indexed_live(&live),
            || format!("MUVERA index (CREATE INDEX ON {} USING muvera)", c.spec.name),
        )?;
        let hnsw = if plaid.is_some() || muvera.is_some() || matches!(req.plan, Plan::Exact | Plan::Plaid) {
            None
        } else {
            let states = super::index::hnsw_states(tx, c)?;
            match scorer {
                Scorer::Dense(p, v) => states.into_iter().find(|h| h.pooled == *p).map(|h| (h, v.clone(), k)),
                Scorer::MaxSim(_, tokens) if req.plan == Plan::Hnsw && !tokens.is_empty() => {
                    let dim = c.spec.vectors.token_dim;
                    states.into_iter().find(|h| c.spec.vectors.pooled[h.pooled].dim == dim).map(|h| {
                        let mut m = vec![0f32; dim];
                        tokens.chunks_exact(dim).for_each(|t| m.iter_mut().zip(t).for_each(|(a, b)| *a += b));
                        crate::vector::normalize(&mut m);
                        (h, m, req.candidates.unwrap_or(200).max(k))
                    })
                }
                _ => None,
            }
        };
        if req.plan == Plan::Hnsw && hnsw.is_none() {
            return Err(Error::NotAvailable(format!(
                "plan = 'hnsw' needs an HNSW index on the queried pooled vector of '{}' \
                 (CREATE INDEX ON {} USING hnsw (<pooled vector>))",
                c.spec.name, c.spec.name
            )));
        }
        let hnsw = hnsw.map(|(h, q, kc)| {
            let parts = parts_of(&IndexDef::Hnsw(h.clone()));
            (h, q, kc, parts)
        });
        let hnsw = hnsw.filter(|(_, _, _, parts)| {
            let n = parts.indexed_live(&live);
            req.plan == Plan::Hnsw || (n > AUTO_EXACT_MAX_DOCS && n * 10 >= total_live)
        });
        let (work, plan) = if let Some(((p, parts), tokens)) = &plaid {
            let t = Instant::now();
            let scores = p.codec.query_scores(tokens);
            let mut src = PlaidSource {
                state: p,
                scores,
                params: req.plaid.unwrap_or_else(|| SearchParams::for_k(k)),
                k,
                centroid_micros: micros(t),
                sum: StageCounts::default(),
            };
            (gather(&mut src, parts, &readers, &live, &mut stages), src.plan())
        } else if let Some(((m, parts), tokens)) = &muvera {
            let mut query = m.encoder.encode_query(tokens);
            crate::vector::normalize(&mut query);
            let kc = req.candidates.unwrap_or(200).max(k);
            let ef = req.ef.unwrap_or(m.hnsw.ef_search).max(kc);
            let mut src = MuveraSource { state: m, query, kc, ef, found: 0, micros: 0 };
            (gather(&mut src, parts, &readers, &live, &mut stages), src.plan())
        } else if let Some((h, query, kc, parts)) = hnsw {
            let ef = req.ef.unwrap_or(h.params.ef_search).max(kc);
            let mut src = HnswSource { state: &h, query, kc, ef, found: 0, micros: 0 };
            (gather(&mut src, &parts, &readers, &live, &mut stages), src.plan())
        } else {
            let work =
                live.iter().enumerate().flat_map(|(si, docs)| docs.iter().map(move |&d| (si as u32, d)));
            (work.collect(), Plan::Exact)
        };

        let t_exact = Instant::now();
        // Verify what this search reads: for MaxSim the token blocks of the documents it
        // scores (the whole section only for v1 segments), for dense the pooled section.
        let mut per_segment: Vec<Vec<u32>> = vec![Vec::new(); readers.len()];
        for &(si, d) in &work {
            per_segment[si as usize].push(d);
        }
        for (r, docs) in readers.iter().zip(&per_segment) {
            if !docs.is_empty() {
                scorer.verify(r, docs)?;
            }
        }
        let seg_top = work
            .par_chunks(64)
            .fold(
                || TopK::new(k),
                |mut top, chunk| {
                    for &(si, d) in chunk {
                        let r = &readers[si as usize];
                        let row = r.row_ids()[d as usize];
                        top.push(Scored { score: scorer.score_segment(r, d as usize), row });
                    }
                    top
                },
            )
            .reduce(|| TopK::new(k), TopK::merge);
        let mut top = TopK::new(k);
        let offsets = pooled_offsets(c);
        let dtype = c.spec.vectors.dtype;
        for p in &pending {
            let tokens = Decoded::from_bytes(&p.tokens, dtype);
            let pooled = Decoded::from_bytes(&p.pooled, dtype);
            top.push(Scored { score: scorer.score_pending(tokens.as_ref(), &pooled, &offsets), row: p.row });
        }
        stages.push(StageStats {
            name: "exact",
            docs: (work.len() + pending.len()) as u64,
            micros: micros(t_exact),
        });
        let out = SearchOutput { hits: Vec::new(), plan, docs: docs as u64, stages };
        Ok((top.merge(seg_top).into_sorted(), out))
    }

    /// Read back a document: scalar values and its vectors (as f32).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection, [`Error::Corruption`] for a damaged
    /// segment.
    pub fn get(&self, collection: &str, id: &DocId) -> Result<Option<StoredDocument>> {
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            crate::validate::id(&c.spec, id)?;
            let Some(loc) = tx.locate(c.id, id)? else { return Ok(None) };
            let reader = match loc.seg {
                None => None,
                Some(seg) => {
                    let s = tx
                        .segments(c.id)?
                        .into_iter()
                        .find(|s| s.id == seg)
                        .ok_or_else(|| Error::NotFound { kind: "segment", name: seg.to_string() })?;
                    let r = self.segment(&c, &s)?;
                    r.verify_all()?;
                    Some(r)
                }
            };
            let (tokens, pooled) = doc_vectors(&tx, &c, loc.row, reader.as_deref())?;
            let offs = pooled_offsets(&c);
            let pooled = c
                .spec
                .vectors
                .pooled
                .iter()
                .enumerate()
                .map(|(i, p)| (p.name.clone(), pooled[offs[i]..offs[i + 1]].to_vec()))
                .collect();
            let (id, values) = tx
                .fetch(&c, &[loc.row])?
                .remove(&loc.row)
                .ok_or_else(|| Error::NotFound { kind: "document", name: id.to_string() })?;
            Ok(Some(StoredDocument { id, values, tokens, pooled }))
        })
    }
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
