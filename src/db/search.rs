//! The read path: exact MaxSim and dense search over a consistent snapshot, and `get`.
//!
//! A search runs inside one catalog read transaction (a WAL snapshot): the manifest, the
//! tombstones, the filter's allowed rows, the pending vectors and the returned scalar
//! columns all come from the same committed state, while a writer keeps flushing or
//! compacting. Segment files named by that snapshot stay on disk for the retire grace
//! period, and once mapped they stay readable even if deleted.

use std::collections::HashMap;
use std::time::Instant;

use super::fusion::validate_fusion;
use super::query::{Plan, Query, SearchOutput, SearchRequest, StageStats, MAX_LIMIT};
use super::rerank::{micros, pooled_offsets, rerank, rerank_many, Scorer};
use super::Database;
use crate::catalog::{CollectionRow, Txn};
use crate::scoring::Scored;
use crate::storage::segment::SegmentReader;
use crate::types::{DocId, Hit, StoredDocument};
use crate::validate::Decoded;
use crate::{Error, Result};

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
                return Ok(SearchOutput {
                    hits: Vec::new(),
                    plan: Plan::Exact,
                    docs: 0,
                    stages: Vec::new(),
                    recall: None,
                });
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
    pub(super) fn run_snapshot(
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
            Ok((top, SearchOutput { hits: Vec::new(), plan: Plan::Bm25, docs, stages, recall: None }))
        }
    }

    /// The stored vectors of `rows` in the snapshot: all token vectors (`pooled = None`)
    /// or pooled vector `p`, as f32, verified. Rows that do not exist are skipped.
    pub(super) fn score_snapshot(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        scorer: &Scorer,
        req: &SearchRequest,
    ) -> Result<(Vec<Scored>, SearchOutput)> {
        let snap = self.snapshot(tx, c, req)?;
        let mut stages = vec![snap.stage.clone()];
        let (work, plan, recall) = self.plan_candidates(tx, c, scorer, req, &snap, &mut stages)?;
        let top = rerank(c, scorer, &snap.readers, &work, &snap.pending, req.limit, &mut stages)?;
        Ok((top, SearchOutput { hits: Vec::new(), plan, docs: snap.docs as u64, stages, recall }))
    }

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

    /// Exact top-`k` ids of each of `queries` over the whole collection, in one pass over
    /// the stored vectors ([`rerank_many`]: each document is read or decoded once for all
    /// queries). The calibration's truth.
    pub(super) fn exact_top_ids(
        &self,
        collection: &str,
        queries: &[Query],
        k: usize,
    ) -> Result<Vec<Vec<String>>> {
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            let scorers = queries.iter().map(|q| Scorer::new(&c, q)).collect::<Result<Vec<_>>>()?;
            let Some(first) = queries.first() else { return Ok(Vec::new()) };
            let snap = self.snapshot(&tx, &c, &SearchRequest::new(first.clone()).limit(k))?;
            let work: Vec<(u32, u32)> = snap
                .live
                .iter()
                .enumerate()
                .flat_map(|(si, docs)| docs.iter().map(move |&d| (si as u32, d)))
                .collect();
            let refs: Vec<&Scorer> = scorers.iter().collect();
            let tops = rerank_many(&c, &refs, &snap.readers, &work, &snap.pending, k)?;
            let rows: Vec<u64> = tops.iter().flatten().map(|s| s.row).collect();
            let vals = tx.fetch(&c, &rows)?;
            Ok(tops
                .iter()
                .map(|top| {
                    top.iter().filter_map(|s| vals.get(&s.row).map(|(id, _)| id.to_string())).collect()
                })
                .collect())
        })
    }

    /// List documents without scoring: ids and scalar values of the documents passing
    /// the request's filter, in its order, after its offset, at most its limit (all when
    /// it has none). `Hit::score` is 0 (nothing is scored).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection or order column,
    /// [`Error::InvalidArgument`] for a filter that does not fit the collection.
    pub fn list(&self, collection: &str, req: &super::query::ListRequest) -> Result<Vec<Hit>> {
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            let order = req.order_by.as_ref().map(|(col, desc)| (col.as_str(), *desc));
            let rows = tx.list_rows(&c, req.filter.as_ref(), order, req.limit, req.offset)?;
            let mut vals = tx.fetch(&c, &rows)?;
            Ok(rows
                .iter()
                .filter_map(|r| vals.remove(r).map(|(id, values)| Hit { id, score: 0.0, values }))
                .collect())
        })
    }

    /// Number of documents of `collection` passing `filter` (all for `None`).
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection, [`Error::InvalidArgument`] for a
    /// filter that does not fit it.
    pub fn count(&self, collection: &str, filter: Option<&crate::Filter>) -> Result<u64> {
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let c = tx.collection(collection)?;
            tx.count_rows(&c, filter)
        })
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
    use super::super::query::{Plan, Query, SearchRequest};
    use crate::rng::Rng;
    use crate::{CollectionSpec, Database, Document, VectorSpec};

    /// The calibration's one-pass truth equals exact search run query by query, over
    /// segments and pending rows, for MaxSim and dense queries mixed.
    #[test]
    fn one_pass_exact_equals_exact_search_per_query() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path().join("x.msdb")).flush_threshold_tokens(300).open().unwrap();
        db.create_collection(&CollectionSpec::new("c", VectorSpec::new(8).pooled("m", 8))).unwrap();
        let mut rng = Rng::new(3);
        for b in 0..5 {
            let docs: Vec<Document> = (0..40)
                .map(|i| {
                    let n = 1 + rng.below(6) as usize;
                    Document::new(format!("d{b}_{i}"))
                        .tokens(rng.unit_vectors(n, 8))
                        .pooled("m", rng.unit_vectors(1, 8))
                })
                .collect();
            db.insert("c", &docs).unwrap();
        }
        let mut queries: Vec<Query> =
            (0..5).map(|i| Query::MaxSim { tokens: rng.unit_vectors(1 + i, 8), mask: None }).collect();
        queries.push(Query::Dense { field: "m".into(), vector: rng.unit_vectors(1, 8) });
        let got = db.exact_top_ids("c", &queries, 7).unwrap();
        assert_eq!(got.len(), queries.len());
        for (q, ids) in queries.iter().zip(&got) {
            let want: Vec<String> = db
                .search("c", &SearchRequest::new(q.clone()).limit(7).plan(Plan::Exact))
                .unwrap()
                .into_iter()
                .map(|h| h.id.to_string())
                .collect();
            assert_eq!(ids, &want);
        }
    }
}
