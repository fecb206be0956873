//! What a search asks for and what it answers: [`Query`], [`SearchRequest`] (with its
//! builder), [`Plan`], and the stage statistics behind `EXPLAIN`.

use crate::filter::Filter;
use crate::index::plaid::SearchParams;
use crate::types::Hit;

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
    /// PLAID candidates (one centroid probe per query, its approximate interaction per
    /// indexed segment, then one cut across segments by full centroid interaction);
    /// segments without the index and pending documents are scored exactly.
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
    /// counts centroids), `plaid_probe` (documents the probed lists hold), `plaid_pruned` (best
    /// `ndocs` by the probe's approximate interaction, across segments), `plaid_full` (full
    /// centroid interaction), `hnsw` / `muvera` (graph search results), `exact`
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
    /// For a calibrated approximate plan (or one the calibration ruled out): the recall
    /// target and the recall@10 its parameters reached on the calibration queries.
    pub recall: Option<PlanRecall>,
}

/// The recall an approximate plan was calibrated to (the data behind `EXPLAIN`'s recall
/// line).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanRecall {
    /// The target (the query's, else the collection's, else 0.95).
    pub target: f32,
    /// Recall@10 against exact on the calibration queries of the setting used — or of the
    /// best setting measured, when none reached the target and the search ran exactly.
    pub calibrated: f32,
    /// Whether the approximate plan ran (false: the calibration ruled it out, exact ran).
    pub used: bool,
}

/// A listing of documents without scoring ([`Database::list`](super::Database::list);
/// SQL `SELECT … FROM c [WHERE …] [ORDER BY column [DESC]] [LIMIT n [OFFSET m]]`).
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct ListRequest {
    /// Only documents passing this filter (`None`: all).
    pub filter: Option<Filter>,
    /// Order by this column (or `id`), descending when set; ties, and no order, in
    /// insertion order.
    pub order_by: Option<(String, bool)>,
    /// At most this many documents (`None`: all of them).
    pub limit: Option<usize>,
    /// Skip this many first.
    pub offset: usize,
}

impl ListRequest {
    /// Every document, in insertion order.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only documents passing `f`.
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = Some(f);
        self
    }

    /// Order by `column` (or `id`), descending when `desc`.
    pub fn order_by(mut self, column: impl Into<String>, desc: bool) -> Self {
        self.order_by = Some((column.into(), desc));
        self
    }

    /// At most `n` documents.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skip the first `n`.
    pub fn offset(mut self, n: usize) -> Self {
        self.offset = n;
        self
    }
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
    /// Recall target for `Plan::Auto` (`None` = the collection's): an approximate plan
    /// runs only with calibrated parameters that reach it.
    pub recall: Option<f32>,
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
            recall: None,
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

    /// Ask `Plan::Auto` for at least this recall@10 (calibrated; see [`PlanRecall`]).
    pub fn recall(mut self, target: f32) -> Self {
        self.recall = Some(target);
        self
    }

    /// Return at most `k` hits.
    pub fn limit(mut self, k: usize) -> Self {
        self.limit = k;
        self
    }
}
