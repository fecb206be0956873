//! The pooling lab ([`Database::evaluate`], SQL `EVALUATE`): which representation answers
//! *this* collection's queries best, and at what cost, with paired significance tests.
//!
//! One pass over what the collection stores: every candidate is computed from the stored
//! token vectors (and stored pooled vectors), so nothing is re-encoded. Candidates:
//! - MaxSim over the token vectors, and over them token-pooled by factors 2, 3, 4
//!   (ALGORITHMS.md §1.4: hierarchical clustering, the first token kept);
//! - dense search over one vector pooled from the token vectors with each parameter-free
//!   operator (mean, max, CLS, last), GeM at p = 2, 3, 4, static Hopfield pooling at
//!   β = 1, 4, 16 (queries pooled the same way from their token vectors, `[MASK]`
//!   expansion rows left out), L2-normalised;
//! - dense search over each stored pooled vector (queries embedded by the model for it);
//! - BM25, when the collection has a full-text index and the queries are text;
//! - fusions of the best MaxSim row with BM25 and/or the best dense row: RRF (k = 60) and
//!   a weighted sum of min–max normalised scores whose weights are chosen by k-fold
//!   cross-validation over the queries — each query is scored with weights fitted on the
//!   other folds, never on itself.
//!
//! Each row has nDCG@10, recall@100, MRR@10 (means over queries), vector bytes per
//! document, p50 of brute-force scoring time per query over the evaluated documents
//! (relative cost; no index; documents scored in parallel), and a paired test against the best row by nDCG@10
//! ([`crate::eval::paired_test`]: randomisation p-value and a 95 % bootstrap interval of
//! the difference), with Holm's correction over all rows. The recommendation is the row
//! with the fewest bytes per document that is not significantly worse than the best.
//!
//! Judgments: a BEIR pair (`queries.jsonl` with `_id` and `text` — or `tokens`, a matrix,
//! for collections without a model — and `qrels.tsv`), or, without one, self-supervised:
//! one text column of each sampled document is the query whose only relevant document is
//! that document (inverse-cloze style). When that column is also embedded in the
//! document, self-supervised scores are optimistic: compare rows, not absolute values.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use rayon::prelude::*;

use super::Database;
use crate::embed::pooling::{l2_normalize, GemTransform, HopfieldInit, Pooling};
use crate::embed::token_pool::pool_tokens;
use crate::eval::{holm, mrr_at, ndcg_at, paired_test, read_qrels, recall_at};
use crate::rng::Rng;
use crate::scoring::{DocRef, PreparedQuery};
use crate::types::{CollectionSpec, Dtype, Value};
use crate::{Error, ListRequest, Result, SearchRequest};

/// Documents (and ranks) kept per query and candidate: recall@100 needs 100.
const DEPTH: usize = 100;

/// Options of [`Database::evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// BEIR `queries.jsonl` (`_id` + `text`, or `tokens` for collections without a model).
    pub queries: Option<PathBuf>,
    /// BEIR `qrels.tsv` (query id, document id, gain; a header line is skipped).
    pub qrels: Option<PathBuf>,
    /// Self-supervised judgments: the text column used as each document's query
    /// (default: the model's first text column).
    pub self_column: Option<String>,
    /// Evaluate over at most this many documents (with judgments: the relevant ones of the
    /// sampled queries, then random others).
    pub sample_docs: Option<usize>,
    /// At most this many queries (random sample); self-supervised default 500.
    pub sample_queries: Option<usize>,
    /// Seed of the samples, folds and tests.
    pub seed: u64,
    /// Random sign flips of the randomisation test (exact below 17 queries).
    pub permutations: usize,
    /// Bootstrap resamples for the intervals.
    pub bootstrap: usize,
    /// Family-wise significance level (after Holm's correction).
    pub alpha: f64,
    /// Cross-validation folds for the weighted fusion.
    pub folds: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            queries: None,
            qrels: None,
            self_column: None,
            sample_docs: None,
            sample_queries: None,
            seed: 1,
            permutations: 10_000,
            bootstrap: 2_000,
            alpha: 0.05,
            folds: 5,
        }
    }
}

/// One candidate of [`EvalReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// `maxsim`, `maxsim pool 2`, `dense max`, `dense gem p=4`, `dense:model`, `bm25`,
    /// `rrf(maxsim + bm25)`, `weighted-cv(maxsim + bm25)`, …
    pub candidate: String,
    /// `maxsim`, `dense`, `bm25` or `fusion`.
    pub kind: &'static str,
    /// Mean nDCG@10.
    pub ndcg_at_10: f64,
    /// Mean recall@100.
    pub recall_at_100: f64,
    /// Mean MRR@10.
    pub mrr_at_10: f64,
    /// Vector bytes stored per document for this representation.
    pub bytes_per_doc: f64,
    /// Median brute-force scoring time per query (ms) over the evaluated documents.
    pub p50_ms: f64,
    /// Mean nDCG@10 difference to the best row (≤ 0; 0 for the best).
    pub diff: f64,
    /// 95 % bootstrap interval of `diff`.
    pub ci: (f64, f64),
    /// Paired randomisation p-value against the best row (1 for the best).
    pub p_value: f64,
    /// `p_value` after Holm's correction over all comparisons.
    pub p_holm: f64,
    /// `best`, `not worse` (not significantly worse than the best) or `worse`.
    pub verdict: &'static str,
    /// What stores this representation (SQL), when one statement does.
    pub statement: Option<String>,
    /// nDCG@10 per query, in query order.
    pub per_query: Vec<f64>,
}

/// What [`Database::evaluate`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Rows, best nDCG@10 first.
    pub rows: Vec<EvalRow>,
    /// Where the judgments came from (a qrels file, or self-supervised and how).
    pub judgments: String,
    /// Documents evaluated over.
    pub docs: usize,
    /// Queries scored.
    pub queries: usize,
    /// The best row's candidate.
    pub best: String,
    /// The recommended row's candidate (fewest bytes, not significantly worse).
    pub recommended: String,
    /// A sentence saying what to do, with the statement.
    pub recommendation: String,
    /// Caveats of this run (what was skipped and why).
    pub notes: Vec<String>,
    /// Wall time.
    pub seconds: f64,
}

struct Query {
    text: Option<String>,
    tokens: Vec<f32>,
    /// Token rows that are `[MASK]` expansion (left out of pooled query vectors).
    expansion: Vec<bool>,
    qrels: HashMap<String, f64>,
}

/// One candidate's result before the statistics: per query the top `DEPTH` (doc index,
/// score) and the metrics.
struct Run {
    name: String,
    kind: &'static str,
    bytes: f64,
    top: Vec<Vec<(usize, f32)>>,
    ms: Vec<f64>,
    statement: Option<String>,
}

fn top_k(scores: Vec<f32>, k: usize) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = scores.into_iter().enumerate().collect();
    let by = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if v.len() > k {
        v.select_nth_unstable_by(k - 1, by);
        v.truncate(k);
    }
    v.sort_by(by);
    v
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

fn storable_pooling(name: &str) -> Option<&'static str> {
    Some(match name {
        "mean" => "mean",
        "max" => "max",
        "cls" => "cls",
        "last" => "last",
        "gem p=3" => "gem",
        "hopfield β=1" => "hopfield",
        _ => return None,
    })
}

/// `CREATE COLLECTION <name>_v2 (…) WITH (…, extra)` for a collection like `spec`.
fn recreate_sql(spec: &CollectionSpec, extra: &str) -> String {
    let cols: Vec<String> =
        spec.columns.iter().map(|c| format!("{} {}", c.name, format!("{:?}", c.ty).to_uppercase())).collect();
    let mut with = Vec::new();
    match &spec.embedding {
        Some(e) => {
            with.push(format!("model = '{}'", e.model.replace('\'', "''")));
            with.push(format!("embed = '{}'", e.text_columns.join(",")));
        }
        None => with.push(format!("dim = {}", spec.vectors.token_dim)),
    }
    with.push(extra.to_string());
    let cols = if cols.is_empty() { String::new() } else { format!(" ({})", cols.join(", ")) };
    format!("CREATE COLLECTION {}_v2{cols} WITH ({})", spec.name, with.join(", "))
}

impl Database {
    /// The pooling lab: score every candidate representation of `collection` on its own
    /// queries (module docs), with paired significance tests against the best and a
    /// recommendation. `progress(step, done, total)` reports each phase.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection or file, [`Error::InvalidArgument`]
    /// for judgments that do not fit (no query with a relevant document in the
    /// collection, text queries without a model, a bad qrels line), encoder errors.
    pub fn evaluate(
        &self,
        collection: &str,
        opts: &EvalOptions,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<EvalReport> {
        let started = Instant::now();
        let spec = self.describe(collection)?;
        let dim = spec.vectors.token_dim;
        let c = self.with_reader(|cat| cat.read()?.collection(collection))?;
        let mut rng = Rng::new(opts.seed);
        let mut notes = Vec::new();
        let all: Vec<String> =
            self.list(collection, &ListRequest::new())?.into_iter().map(|h| h.id.to_string()).collect();
        if all.is_empty() {
            return Err(Error::invalid(format!("EVALUATE {collection}: the collection is empty")));
        }
        let exists: HashSet<&str> = all.iter().map(String::as_str).collect();

        // 1. Judgments and the documents to rank.
        let (judgments, mut queries, doc_ids) = match (&opts.queries, &opts.qrels) {
            (Some(qp), Some(rp)) => {
                let qrels = read_qrels(rp)?;
                let text = std::fs::read_to_string(qp).map_err(|e| Error::io(qp, e))?;
                let mut qs = Vec::new();
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                        Error::invalid(format!("{}:{}: not a JSON object: {e}", qp.display(), n + 1))
                    })?;
                    let id = match &v["_id"] {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(x) => x.to_string(),
                        _ => return Err(Error::invalid(format!("{}:{}: no \"_id\"", qp.display(), n + 1))),
                    };
                    let Some(rel) = qrels.get(&id) else { continue };
                    let rel: HashMap<String, f64> =
                        rel.iter().filter(|(d, _)| exists.contains(d.as_str())).map(|(d, g)| (d.clone(), *g)).collect();
                    if !rel.values().any(|g| *g > 0.0) {
                        continue;
                    }
                    let tokens = match v.get("tokens") {
                        Some(t) => {
                            let rows: Vec<Vec<f32>> = serde_json::from_value(t.clone()).map_err(|e| {
                                Error::invalid(format!("{}:{}: \"tokens\" is not a matrix: {e}", qp.display(), n + 1))
                            })?;
                            if rows.is_empty() || rows.iter().any(|r| r.len() != dim) {
                                return Err(Error::DimensionMismatch {
                                    what: format!("{}:{}: query tokens", qp.display(), n + 1),
                                    expected: dim,
                                    got: rows.iter().map(Vec::len).find(|l| *l != dim).unwrap_or(0),
                                });
                            }
                            rows.into_iter().flatten().collect()
                        }
                        None => Vec::new(),
                    };
                    let text = v["text"].as_str().map(str::to_string);
                    if text.is_none() && tokens.is_empty() {
                        return Err(Error::invalid(format!(
                            "{}:{}: a query needs \"text\" or \"tokens\"",
                            qp.display(),
                            n + 1
                        )));
                    }
                    qs.push(Query { text, tokens, expansion: Vec::new(), qrels: rel });
                }
                if qs.is_empty() {
                    return Err(Error::invalid(format!(
                        "EVALUATE {collection}: no query of {} has a relevant document (qrels score > 0) in the collection",
                        qp.display()
                    )));
                }
                shuffle(&mut qs, &mut rng);
                qs.truncate(opts.sample_queries.unwrap_or(usize::MAX).max(1));
                let docs = match opts.sample_docs {
                    Some(n) if n < all.len() => {
                        let mut keep: Vec<String> = Vec::new();
                        let mut seen = HashSet::new();
                        for q in &qs {
                            for (d, g) in &q.qrels {
                                if *g > 0.0 && seen.insert(d.clone()) {
                                    keep.push(d.clone());
                                }
                            }
                        }
                        let mut rest: Vec<&String> = all.iter().filter(|d| !seen.contains(*d)).collect();
                        shuffle(&mut rest, &mut rng);
                        let room = n.saturating_sub(keep.len());
                        keep.extend(rest.into_iter().take(room).cloned());
                        keep
                    }
                    _ => all.clone(),
                };
                (format!("judgments from {} and {}", qp.display(), rp.display()), qs, docs)
            }
            (None, None) => {
                let e = spec.embedding.as_ref().ok_or_else(|| {
                    Error::invalid(format!(
                        "EVALUATE {collection}: without queries and qrels the judgments are self-supervised, which \
                         needs a collection with a model and a text column: give WITH (queries = 'queries.jsonl', \
                         qrels = 'qrels.tsv')"
                    ))
                })?;
                let col = opts.self_column.clone().or_else(|| e.text_columns.first().cloned()).ok_or_else(|| {
                    Error::invalid(format!("EVALUATE {collection}: name the pseudo-query column, self_column = '…'"))
                })?;
                if !spec.columns.iter().any(|c| c.name.eq_ignore_ascii_case(&col)) {
                    return Err(Error::NotFound { kind: "column", name: col });
                }
                let mut docs = all.clone();
                shuffle(&mut docs, &mut rng);
                docs.truncate(opts.sample_docs.unwrap_or(usize::MAX).max(1));
                let want = opts.sample_queries.unwrap_or(500);
                let mut qs = Vec::new();
                for d in &docs {
                    if qs.len() >= want {
                        break;
                    }
                    let Some(doc) = self.get(collection, &crate::DocId::from(d.as_str()))? else { continue };
                    let text = doc.values.iter().find(|(n, _)| n.eq_ignore_ascii_case(&col)).and_then(|(_, v)| match v {
                        Value::Text(t) if !t.trim().is_empty() => Some(t.clone()),
                        _ => None,
                    });
                    if let Some(t) = text {
                        qs.push(Query {
                            text: Some(t),
                            tokens: Vec::new(),
                            expansion: Vec::new(),
                            qrels: HashMap::from([(d.clone(), 1.0)]),
                        });
                    }
                }
                if qs.is_empty() {
                    return Err(Error::invalid(format!(
                        "EVALUATE {collection}: no sampled document has text in column '{col}'"
                    )));
                }
                let embedded = e.text_columns.iter().any(|t| t.eq_ignore_ascii_case(&col));
                let mut j = format!(
                    "self-supervised judgments: column '{col}' of {} sampled documents is the query for its own document",
                    qs.len()
                );
                if embedded {
                    j.push_str(" (that column is also embedded in the document: scores are optimistic; compare rows)");
                }
                (j, qs, docs)
            }
            _ => {
                return Err(Error::invalid(
                    "EVALUATE takes both queries = 'queries.jsonl' and qrels = 'qrels.tsv', or neither (self-supervised)",
                ))
            }
        };

        // 2. The documents' stored vectors.
        let n = doc_ids.len();
        let mut tokens: Vec<Vec<f32>> = Vec::with_capacity(n);
        let mut pooled: Vec<Vec<(String, Vec<f32>)>> = Vec::with_capacity(n);
        for (i, id) in doc_ids.iter().enumerate() {
            let d = self
                .get(collection, &crate::DocId::from(id.as_str()))?
                .ok_or_else(|| Error::NotFound { kind: "document", name: id.clone() })?;
            tokens.push(d.tokens);
            pooled.push(d.pooled);
            if i % 1000 == 999 || i + 1 == n {
                progress("load", i + 1, n);
            }
        }

        // 3. The queries' vectors.
        let text_queries = queries.iter().all(|q| q.text.is_some());
        let mut stored_pooled_queries: Vec<(String, Vec<Vec<f32>>)> = Vec::new();
        if spec.embedding.is_some() {
            let nq = queries.len();
            for (i, q) in queries.iter_mut().enumerate() {
                if q.tokens.is_empty() {
                    let text = q.text.as_deref().unwrap_or_default();
                    let (t, exp) = self.embed_query_marked(&c, text)?;
                    q.tokens = t;
                    q.expansion = exp;
                }
                progress("embed queries", i + 1, nq);
            }
            if text_queries {
                for p in &spec.vectors.pooled {
                    let v: Vec<Vec<f32>> = queries
                        .iter()
                        .map(|q| self.embed_query(&c, q.text.as_deref().unwrap_or_default(), Some(&p.name)))
                        .collect::<Result<_>>()?;
                    stored_pooled_queries.push((p.name.clone(), v));
                }
            }
        } else if queries.iter().any(|q| q.tokens.is_empty()) {
            return Err(Error::invalid(format!(
                "EVALUATE {collection}: the collection has no model, so queries need \"tokens\" (a matrix of {dim} columns)"
            )));
        } else if !spec.vectors.pooled.is_empty() {
            notes.push("stored pooled vectors skipped: the queries have no pooled vectors and the collection no model".into());
        }
        for q in &mut queries {
            q.expansion.resize(q.tokens.len() / dim.max(1), false);
        }
        let nq = queries.len();

        // 4. Candidates.
        let stats = self.stats(collection)?;
        let token_bytes = if stats.segment_tokens > 0 {
            let pooled_bytes: f64 = spec.vectors.pooled.iter().map(|p| p.dim as f64).sum::<f64>()
                * if spec.vectors.dtype == Dtype::F16 { 2.0 } else { 4.0 }
                * stats.docs as f64;
            ((stats.segment_bytes as f64 - pooled_bytes) / stats.segment_tokens as f64).max(1.0)
        } else {
            (dim * if spec.vectors.dtype == Dtype::F16 { 2 } else { 4 }) as f64
        };
        let elem = if spec.vectors.dtype == Dtype::F16 { 2.0 } else { 4.0 };
        let mut runs: Vec<Run> = Vec::new();
        for f in [1usize, 2, 3, 4] {
            let docs: Vec<Vec<f32>> = if f == 1 {
                tokens.clone()
            } else {
                let mut out = Vec::with_capacity(n);
                for (i, chunk) in tokens.chunks(1000).enumerate() {
                    out.extend(chunk.par_iter().map(|t| pool_tokens(t, dim, f, 1)).collect::<Vec<_>>());
                    progress(&format!("token pooling ×{f}"), (i * 1000 + chunk.len()).min(n), n);
                }
                out
            };
            let avg_tokens = docs.iter().map(|d| (d.len() / dim) as f64).sum::<f64>() / n as f64;
            let mut top = Vec::with_capacity(nq);
            let mut ms = Vec::with_capacity(nq);
            for (qi, q) in queries.iter().enumerate() {
                let t = Instant::now();
                let pq = PreparedQuery::new(&q.tokens, dim, None)?;
                let scores: Vec<f32> = docs.par_iter().map(|d| pq.maxsim(DocRef::F32(d))).collect();
                top.push(top_k(scores, DEPTH));
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                if qi % 50 == 49 || qi + 1 == nq {
                    progress(&format!("maxsim ×{f}"), qi + 1, nq);
                }
            }
            let (name, statement) = if f == 1 {
                ("maxsim".to_string(), Some(format!("SELECT id, score FROM {collection} ORDER BY maxsim(…)")))
            } else {
                let st =
                    spec.embedding.as_ref().map(|_| recreate_sql(&spec, &format!("token_pool_factor = {f}")));
                (format!("maxsim pool {f}"), st)
            };
            runs.push(Run { name, kind: "maxsim", bytes: avg_tokens * token_bytes, top, ms, statement });
        }
        let gem = |p: f32| Pooling::Gem { p, eps: 1e-6, transform: GemTransform::Clamp };
        let hop = |beta: f32| Pooling::Hopfield { beta, steps: 1, init: HopfieldInit::Mean };
        let ops: Vec<(&str, Pooling)> = vec![
            ("mean", Pooling::Mean),
            ("max", Pooling::Max),
            ("cls", Pooling::Cls),
            ("last", Pooling::Last),
            ("gem p=2", gem(2.0)),
            ("gem p=3", gem(3.0)),
            ("gem p=4", gem(4.0)),
            ("hopfield β=1", hop(1.0)),
            ("hopfield β=4", hop(4.0)),
            ("hopfield β=16", hop(16.0)),
        ];
        let pool = |op: &Pooling, t: &[f32], mask: &[bool]| -> Result<Vec<f32>> {
            let mut v = op.pool(t, mask, dim)?;
            l2_normalize(&mut v);
            Ok(v)
        };
        let dense_run = |name: String, docs: &[Vec<f32>], qv: &[Vec<f32>], statement: Option<String>| {
            let d = docs.first().map_or(0, Vec::len);
            let mut top = Vec::with_capacity(qv.len());
            let mut ms = Vec::with_capacity(qv.len());
            for q in qv {
                let t = Instant::now();
                let scores: Vec<f32> =
                    docs.par_iter().map(|x| x.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()).collect();
                top.push(top_k(scores, DEPTH));
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Run { name, kind: "dense", bytes: d as f64 * elem, top, ms, statement }
        };
        for (i, (name, op)) in ops.iter().enumerate() {
            let docs: Vec<Vec<f32>> =
                tokens.iter().map(|t| pool(op, t, &vec![true; t.len() / dim])).collect::<Result<_>>()?;
            let qv: Vec<Vec<f32>> = queries
                .iter()
                .map(|q| {
                    let mask: Vec<bool> = q.expansion.iter().map(|e| !e).collect();
                    if mask.iter().any(|m| *m) {
                        pool(op, &q.tokens, &mask)
                    } else {
                        pool(op, &q.tokens, &vec![true; mask.len()])
                    }
                })
                .collect::<Result<_>>()?;
            let statement = storable_pooling(name).map(|s| {
                if spec.embedding.is_some() {
                    recreate_sql(&spec, &format!("pooled = '{s}'"))
                } else {
                    format!(
                        "store a '{s}' pooled vector (pooled = '{s}:{dim}') computed from your token vectors"
                    )
                }
            });
            runs.push(dense_run(format!("dense {name}"), &docs, &qv, statement));
            progress("dense pooling", i + 1, ops.len());
        }
        for (name, qv) in &stored_pooled_queries {
            let docs: Vec<Vec<f32>> = pooled
                .iter()
                .map(|p| p.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default())
                .collect();
            let st = Some(format!("SELECT id, score FROM {collection} ORDER BY dense({name}, …)"));
            runs.push(dense_run(format!("dense:{name}"), &docs, qv, st));
        }
        let position: HashMap<&str, usize> =
            doc_ids.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
        let has_fulltext = self.indexes(collection)?.iter().any(|i| i.kind == "fulltext");
        if has_fulltext && text_queries {
            let bytes = stats.index_bytes.iter().find(|(k, _)| k == "fulltext").map_or(0, |(_, b)| *b) as f64
                / stats.docs.max(1) as f64;
            let limit = if n < all.len() { (DEPTH * all.len() / n).clamp(DEPTH, 10_000) } else { DEPTH };
            let mut top = Vec::with_capacity(nq);
            let mut ms = Vec::with_capacity(nq);
            for q in &queries {
                let t = Instant::now();
                let hits = self.search(
                    collection,
                    &SearchRequest::bm25(q.text.clone().unwrap_or_default()).limit(limit),
                )?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                top.push(
                    hits.iter()
                        .filter_map(|h| position.get(h.id.to_string().as_str()).map(|&i| (i, h.score)))
                        .take(DEPTH)
                        .collect(),
                );
            }
            let st = Some(format!("CREATE INDEX ON {collection} USING fulltext; … ORDER BY bm25(…)"));
            runs.push(Run { name: "bm25".into(), kind: "bm25", bytes, top, ms, statement: st });
        } else if !has_fulltext {
            notes.push(format!("BM25 and its fusions skipped: no full-text index (CREATE INDEX ON {collection} USING fulltext)"));
        }

        // 5. Metrics of the single candidates, then fusions of the best of them.
        let metrics = |r: &Run| -> Vec<[f64; 3]> {
            r.top
                .iter()
                .zip(&queries)
                .map(|(top, q)| {
                    let ranking: Vec<String> = top.iter().map(|(i, _)| doc_ids[*i].clone()).collect();
                    [
                        ndcg_at(&ranking, &q.qrels, 10),
                        recall_at(&ranking, &q.qrels, DEPTH),
                        mrr_at(&ranking, &q.qrels, 10),
                    ]
                })
                .collect()
        };
        let mean_ndcg = |r: &Run| metrics(r).iter().map(|m| m[0]).sum::<f64>() / nq as f64;
        let best_of = |kind: &str| {
            runs.iter()
                .enumerate()
                .filter(|(_, r)| r.kind == kind)
                .max_by(|a, b| mean_ndcg(a.1).total_cmp(&mean_ndcg(b.1)))
                .map(|(i, _)| i)
        };
        let (bm, bd, bb) = (best_of("maxsim"), best_of("dense"), best_of("bm25"));
        let mut sets: Vec<Vec<usize>> = Vec::new();
        if let Some(m) = bm {
            if let Some(b) = bb {
                sets.push(vec![m, b]);
            }
            if let Some(d) = bd {
                sets.push(vec![m, d]);
            }
            if let (Some(b), Some(d)) = (bb, bd) {
                sets.push(vec![m, b, d]);
            }
        }
        let mut fused = Vec::new();
        for set in &sets {
            let label = set.iter().map(|&i| runs[i].name.as_str()).collect::<Vec<_>>().join(" + ");
            let bytes: f64 = set.iter().map(|&i| runs[i].bytes).sum();
            let ms: Vec<f64> = (0..nq).map(|q| set.iter().map(|&i| runs[i].ms[q]).sum()).collect();
            // RRF.
            let rrf: Vec<Vec<(usize, f32)>> = (0..nq)
                .map(|q| {
                    let mut s: HashMap<usize, f32> = HashMap::new();
                    for &i in set {
                        for (rank, (d, _)) in runs[i].top[q].iter().enumerate() {
                            *s.entry(*d).or_default() += 1.0 / (60.0 + rank as f32 + 1.0);
                        }
                    }
                    let mut v: Vec<(usize, f32)> = s.into_iter().collect();
                    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    v.truncate(DEPTH);
                    v
                })
                .collect();
            let sql_parts: Vec<String> = set
                .iter()
                .map(|&i| match runs[i].name.as_str() {
                    "maxsim" => "maxsim".to_string(),
                    "bm25" => "bm25".to_string(),
                    other => other
                        .strip_prefix("dense:")
                        .map_or_else(|| other.to_string(), |f| format!("dense:{f}")),
                })
                .collect();
            let sql_ok = sql_parts.iter().all(|p| p == "maxsim" || p == "bm25" || p.starts_with("dense:"));
            let st = sql_ok.then(|| {
                format!("SELECT id, score FROM {collection} ORDER BY hybrid(…, '{}')", sql_parts.join(","))
            });
            fused.push(Run {
                name: format!("rrf({label})"),
                kind: "fusion",
                bytes,
                top: rrf,
                ms: ms.clone(),
                statement: st,
            });
            // Weighted sum of min–max normalised scores, weights by cross-validation.
            let norm: Vec<Vec<HashMap<usize, f32>>> = set
                .iter()
                .map(|&i| {
                    runs[i]
                        .top
                        .iter()
                        .map(|t| {
                            let (lo, hi) = t.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), x| {
                                (a.min(x.1), b.max(x.1))
                            });
                            let span = (hi - lo).max(1e-9);
                            t.iter().map(|(d, s)| (*d, (s - lo) / span)).collect()
                        })
                        .collect()
                })
                .collect();
            let grid: Vec<Vec<f32>> = if set.len() == 2 {
                (0..=10).map(|k| vec![k as f32 / 10.0, 1.0 - k as f32 / 10.0]).collect()
            } else {
                let mut g = Vec::new();
                for a in 0..=4 {
                    for b in 0..=(4 - a) {
                        g.push(vec![a as f32 / 4.0, b as f32 / 4.0, (4 - a - b) as f32 / 4.0]);
                    }
                }
                g
            };
            let fuse = |q: usize, w: &[f32]| -> Vec<(usize, f32)> {
                let mut s: HashMap<usize, f32> = HashMap::new();
                for (p, wp) in w.iter().enumerate() {
                    for (d, x) in &norm[p][q] {
                        *s.entry(*d).or_default() += wp * x;
                    }
                }
                let mut v: Vec<(usize, f32)> = s.into_iter().collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                v.truncate(DEPTH);
                v
            };
            let ndcg_q = |q: usize, top: &[(usize, f32)]| {
                let ranking: Vec<String> = top.iter().map(|(i, _)| doc_ids[*i].clone()).collect();
                ndcg_at(&ranking, &queries[q].qrels, 10)
            };
            let folds = opts.folds.clamp(2, nq.max(2));
            let mut order: Vec<usize> = (0..nq).collect();
            shuffle(&mut order, &mut Rng::new(opts.seed ^ 0x5eed));
            let fold_of: Vec<usize> = {
                let mut f = vec![0; nq];
                for (k, &q) in order.iter().enumerate() {
                    f[q] = k % folds;
                }
                f
            };
            let mut wtop = vec![Vec::new(); nq];
            let mut chosen = Vec::new();
            for fold in 0..folds {
                let train: Vec<usize> = (0..nq).filter(|&q| fold_of[q] != fold).collect();
                let best_w = grid
                    .iter()
                    .max_by(|a, b| {
                        let s = |w: &[f32]| train.iter().map(|&q| ndcg_q(q, &fuse(q, w))).sum::<f64>();
                        s(a).total_cmp(&s(b))
                    })
                    .cloned()
                    .unwrap_or_default();
                for q in (0..nq).filter(|&q| fold_of[q] == fold) {
                    wtop[q] = fuse(q, &best_w);
                }
                chosen.push(best_w);
            }
            let shown: Vec<String> = chosen
                .iter()
                .map(|w| format!("[{}]", w.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")))
                .collect();
            fused.push(Run {
                name: format!("weighted-cv({label})"),
                kind: "fusion",
                bytes,
                top: wtop,
                ms,
                statement: Some(format!(
                    "Rust: SearchRequest::hybrid(parts, Fusion::Weighted {{ weights }}) over min-max normalised scores; \
                     weights per fold: {}",
                    shown.join(" ")
                )),
            });
        }
        runs.extend(fused);

        // 6. Statistics against the best row.
        let per: Vec<Vec<[f64; 3]>> = runs.iter().map(&metrics).collect();
        let ndcg: Vec<Vec<f64>> = per.iter().map(|m| m.iter().map(|x| x[0]).collect()).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let best = (0..runs.len())
            .max_by(|&a, &b| mean(&ndcg[a]).total_cmp(&mean(&ndcg[b])).then(b.cmp(&a)))
            .unwrap_or(0);
        let tests: Vec<Option<crate::eval::Paired>> = (0..runs.len())
            .map(|i| {
                (i != best).then(|| {
                    paired_test(
                        &ndcg[i],
                        &ndcg[best],
                        opts.permutations,
                        opts.bootstrap,
                        opts.seed + i as u64,
                    )
                })
            })
            .collect();
        let raw: Vec<f64> = tests.iter().flatten().map(|t| t.p_value).collect();
        let adjusted = holm(&raw);
        let mut adj = adjusted.into_iter();
        let mut rows: Vec<EvalRow> = runs
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let m = &per[i];
                let avg = |k: usize| m.iter().map(|x| x[k]).sum::<f64>() / nq as f64;
                let mut ms = r.ms.clone();
                ms.sort_by(f64::total_cmp);
                let (diff, ci, p, ph, verdict) = match tests[i] {
                    None => (0.0, (0.0, 0.0), 1.0, 1.0, "best"),
                    Some(t) => {
                        let ph = adj.next().unwrap_or(1.0);
                        let v = if ph < opts.alpha && t.mean_diff < 0.0 { "worse" } else { "not worse" };
                        (t.mean_diff, (t.ci_low, t.ci_high), t.p_value, ph, v)
                    }
                };
                EvalRow {
                    candidate: r.name,
                    kind: r.kind,
                    ndcg_at_10: avg(0),
                    recall_at_100: avg(1),
                    mrr_at_10: avg(2),
                    bytes_per_doc: r.bytes,
                    p50_ms: ms.get(ms.len() / 2).copied().unwrap_or(0.0),
                    diff,
                    ci,
                    p_value: p,
                    p_holm: ph,
                    verdict,
                    statement: r.statement,
                    per_query: ndcg[i].clone(),
                }
            })
            .collect();
        rows.sort_by(|a, b| b.ndcg_at_10.total_cmp(&a.ndcg_at_10));
        let best_name = rows[0].candidate.clone();
        let pick = rows
            .iter()
            .filter(|r| r.verdict != "worse" && r.statement.is_some())
            .min_by(|a, b| {
                a.bytes_per_doc.total_cmp(&b.bytes_per_doc).then(b.ndcg_at_10.total_cmp(&a.ndcg_at_10))
            })
            .unwrap_or(&rows[0]);
        let recommendation = format!(
            "{} (nDCG@10 {:.4}, {:.0} vector bytes per document{}) is the cheapest representation not significantly \
             worse than the best, {} ({:.4}; Holm-corrected paired randomisation test, α = {}): {}",
            pick.candidate,
            pick.ndcg_at_10,
            pick.bytes_per_doc,
            if pick.candidate == best_name { ", and the best" } else { "" },
            best_name,
            rows[0].ndcg_at_10,
            opts.alpha,
            pick.statement.as_deref().unwrap_or("keep what is stored"),
        );
        notes.push(
            "dense candidates pool the stored token vectors (after the model's head and normalisation), not the \
             encoder's hidden states: a stored pooled vector of that name can differ slightly"
                .into(),
        );
        notes.push("p50_ms is brute-force scoring over the evaluated documents (no index): compare rows, not systems".into());
        Ok(EvalReport {
            judgments,
            docs: n,
            queries: nq,
            best: best_name,
            recommended: pick.candidate.clone(),
            recommendation,
            rows,
            notes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(feature = "charts")]
impl EvalReport {
    /// The rows as an SVG chart: nDCG@10 against vector bytes per document (log scale),
    /// one point per row coloured by kind, error bars = the row's 95 % interval (the
    /// interval of its difference to the best, moved to its own mean), and the Pareto
    /// front — rows no other row beats with fewer bytes — joined and labelled.
    ///
    /// # Errors
    /// [`Error::Internal`] when plotters fails (it does not on valid rows).
    pub fn chart_svg(&self, title: &str) -> Result<String> {
        use plotters::prelude::*;
        let fail = |e: &dyn std::fmt::Display| Error::Internal(format!("chart: {e}"));
        let rows: Vec<&EvalRow> = self.rows.iter().filter(|r| r.bytes_per_doc > 0.0).collect();
        if rows.is_empty() {
            return Err(Error::invalid("nothing to chart: no row"));
        }
        let band = |r: &EvalRow| (r.ndcg_at_10 + r.ci.0 - r.diff, r.ndcg_at_10 + r.ci.1 - r.diff);
        let (xmin, xmax) =
            rows.iter().fold((f64::MAX, 0f64), |(a, b), r| (a.min(r.bytes_per_doc), b.max(r.bytes_per_doc)));
        let (ymin, ymax) = rows.iter().fold((f64::MAX, f64::MIN), |(a, b), r| {
            let (lo, hi) = band(r);
            (a.min(lo.min(r.ndcg_at_10)), b.max(hi.max(r.ndcg_at_10)))
        });
        let mut front: Vec<&EvalRow> = Vec::new();
        let mut by_bytes = rows.clone();
        by_bytes.sort_by(|a, b| {
            a.bytes_per_doc.total_cmp(&b.bytes_per_doc).then(b.ndcg_at_10.total_cmp(&a.ndcg_at_10))
        });
        for r in by_bytes {
            if front.last().is_none_or(|l| r.ndcg_at_10 > l.ndcg_at_10) {
                front.push(r);
            }
        }
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (960, 600)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| fail(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(20)
                .x_label_area_size(50)
                .y_label_area_size(60)
                .build_cartesian_2d(
                    ((xmin / 2.0).max(1.0)..xmax * 2.0).log_scale(),
                    (ymin - 0.02).max(0.0)..(ymax + 0.02).min(1.0),
                )
                .map_err(|e| fail(&e))?;
            chart
                .configure_mesh()
                .x_desc("vector bytes stored per document (log scale)")
                .y_desc("nDCG@10 (95 % interval)")
                .x_label_formatter(&|b: &f64| match *b {
                    b if b >= 1e6 => format!("{:.0} MB", b / 1e6),
                    b if b >= 1e3 => format!("{:.0} kB", b / 1e3),
                    b => format!("{b:.0} B"),
                })
                .light_line_style(WHITE)
                .draw()
                .map_err(|e| fail(&e))?;
            let kinds = [("maxsim", BLUE), ("dense", GREEN), ("bm25", MAGENTA), ("fusion", RED)];
            for (kind, colour) in kinds {
                let pts: Vec<&&EvalRow> = rows.iter().filter(|r| r.kind == kind).collect();
                if pts.is_empty() {
                    continue;
                }
                chart
                    .draw_series(pts.iter().map(|r| {
                        let (lo, hi) = band(r);
                        ErrorBar::new_vertical(
                            r.bytes_per_doc,
                            lo,
                            r.ndcg_at_10,
                            hi,
                            colour.mix(0.6).stroke_width(1),
                            6,
                        )
                    }))
                    .map_err(|e| fail(&e))?;
                chart
                    .draw_series(
                        pts.iter().map(|r| Circle::new((r.bytes_per_doc, r.ndcg_at_10), 4, colour.filled())),
                    )
                    .map_err(|e| fail(&e))?
                    .label(kind)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], colour.filled()));
            }
            chart
                .draw_series(LineSeries::new(
                    front.iter().map(|r| (r.bytes_per_doc, r.ndcg_at_10)),
                    BLACK.mix(0.5),
                ))
                .map_err(|e| fail(&e))?
                .label("Pareto front")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], BLACK));
            // Labels: the front, and the recommended and best rows wherever they are, in a
            // column (best first) with a leader line to each point, so that rows close in
            // bytes and quality never print over each other.
            let mut labelled: Vec<&&EvalRow> = rows
                .iter()
                .filter(|r| {
                    r.candidate == self.recommended
                        || r.candidate == self.best
                        || front.iter().any(|f| f.candidate == r.candidate)
                })
                .collect();
            labelled.sort_by(|a, b| b.ndcg_at_10.total_cmp(&a.ndcg_at_10));
            for (i, r) in labelled.iter().enumerate() {
                let (px, py) = chart.backend_coord(&(r.bytes_per_doc, r.ndcg_at_10));
                let (lx, ly) = (300, 80 + 16 * i as i32);
                let mark = if r.candidate == self.recommended { "  ← recommended" } else { "" };
                let text = format!("{} ({:.4}){mark}", r.candidate, r.ndcg_at_10);
                // ~6.5 px per character at 12 px: the line leaves the label on the point's side.
                let end = if px > lx { lx + (6.5 * text.chars().count() as f64) as i32 + 4 } else { lx - 4 };
                root.draw(&PathElement::new(vec![(end, ly + 6), (px, py)], BLACK.mix(0.25)))
                    .map_err(|e| fail(&e))?;
                root.draw(&Text::new(text, (lx, ly), ("sans-serif", 12))).map_err(|e| fail(&e))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| fail(&e))?;
            root.present().map_err(|e| fail(&e))?;
        }
        Ok(svg)
    }
}
