//! Recall calibration of approximate indexes: an approximate plan is never silently bad.
//!
//! After an index is built (and after compaction), the database draws sample queries from
//! its own documents — for MaxSim, alternately 32 tokens of one random document and 4–8
//! tokens of two, each moved by Gaussian noise of norm ≈ 0.5 and re-normalised (the
//! `scale` bench's generator, plus short queries between topics); for dense search, a
//! random document's pooled vector with the same noise — computes their exact top 10,
//! and measures recall@10 of the index (for MaxSim, the worse of the two query families)
//! for a ladder of settings in ascending cost (PLAID:
//! `ncells`, `ndocs`, centroid threshold; MUVERA: candidates per segment; HNSW: `ef`). The
//! measurements are stored with the index. [`Plan::Auto`] then uses the index only with
//! the cheapest setting whose recall reaches the target (the query's, else the
//! collection's, else 0.95) and scores exactly when none does; `EXPLAIN` shows the target
//! and the calibrated recall.

use std::time::Instant;

use super::query::{Plan, Query, SearchRequest};
use super::Database;
use crate::catalog::{Catalog, CollectionRow};
use crate::index::plaid::SearchParams;
use crate::rng::Rng;
use crate::{Error, Result};

/// Sample queries per calibration.
pub const CALIBRATION_QUERIES: usize = 32;

/// Calibration queries whose exact search is timed one by one.
const EXACT_TIMED: usize = 2;

/// Hits compared per query (recall@10).
const K: usize = 10;

/// One measured setting.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibratedSetting {
    /// PLAID: centroids probed per query token.
    pub ncells: usize,
    /// PLAID: candidates after the probe's approximate interaction.
    pub ndocs: usize,
    /// PLAID: centroid score under which a token's later cells are not probed.
    pub threshold: f32,
    /// MUVERA: candidates per segment.
    pub candidates: usize,
    /// HNSW / MUVERA: beam width.
    pub ef: usize,
    /// Recall@10 against exact on the calibration queries.
    pub recall: f32,
    /// Mean search time per query, µs.
    pub micros: f64,
}

impl CalibratedSetting {
    fn plaid(ncells: usize, ndocs: usize, threshold: f32) -> Self {
        Self { ncells, ndocs, threshold, candidates: 0, ef: 0, recall: 0.0, micros: 0.0 }
    }

    fn graph(candidates: usize, ef: usize) -> Self {
        Self { ncells: 0, ndocs: 0, threshold: 0.0, candidates, ef, recall: 0.0, micros: 0.0 }
    }

    /// The PLAID knobs of this setting.
    #[must_use]
    pub fn plaid_params(&self) -> SearchParams {
        SearchParams { ncells: self.ncells, centroid_threshold: self.threshold, ndocs: self.ndocs }
    }
}

/// The calibration of one index.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// Queries measured.
    pub queries: usize,
    /// Live documents when measured.
    pub docs: u64,
    /// Mean time of the exact search per calibration query, µs: `Plan::Auto` prefers exact
    /// when the setting that reaches the target is not faster.
    #[serde(default)]
    pub exact_micros: f64,
    /// Settings in ascending cost, as measured (the ladder stops once one reaches 0.995 or
    /// takes twice as long as exact search).
    pub settings: Vec<CalibratedSetting>,
}

impl Calibration {
    /// The cheapest setting reaching `target`; `Err(best recall measured)` when none does.
    ///
    /// # Errors
    /// The best recall any setting reached (the plan must not be used).
    pub fn choose(&self, target: f32) -> std::result::Result<&CalibratedSetting, f32> {
        self.settings
            .iter()
            .find(|s| s.recall >= target)
            .ok_or_else(|| self.settings.iter().map(|s| s.recall).fold(0.0, f32::max))
    }

    /// Whether `s` is faster than exact search was on the calibration queries (an
    /// uncalibrated time, from an older calibration, counts as faster).
    #[must_use]
    pub fn pays(&self, s: &CalibratedSetting) -> bool {
        self.exact_micros <= 0.0 || s.micros < self.exact_micros
    }
}

/// The ladder of settings for an index kind, cheapest first.
fn ladder(kind: &str) -> Vec<CalibratedSetting> {
    if kind == super::index::PLAID {
        [
            (1, 256, 0.5),
            (1, 512, 0.5),
            (2, 1024, 0.45),
            (4, 2048, 0.4),
            (8, 4096, 0.3),
            (16, 8192, 0.2),
            (64, 32_768, -2.0),
        ]
        .into_iter()
        .map(|(c, d, t)| CalibratedSetting::plaid(c, d, t))
        .collect()
    } else if kind == super::index::MUVERA {
        [100, 200, 400, 800, 1600, 3200].into_iter().map(|c| CalibratedSetting::graph(c, c)).collect()
    } else {
        [16, 32, 64, 128, 256, 512, 1024].into_iter().map(|ef| CalibratedSetting::graph(K, ef)).collect()
    }
}

/// A unit vector near `v` (Gaussian noise of norm ≈ `noise`).
fn near(rng: &mut Rng, v: &[f32], noise: f32) -> Vec<f32> {
    let s = noise / (v.len() as f32).sqrt();
    let mut out: Vec<f32> = v.iter().map(|x| x + s * rng.normal()).collect();
    crate::vector::normalize(&mut out);
    out
}

impl Database {
    /// Measure the recall of the index of kind `kind` (`plaid`, `muvera`, `hnsw:<field>`)
    /// on `collection` against exact search, store it with the index, and return it (see
    /// the module docs of `calibrate.rs` and [`crate::PlanRecall`]). Index builds and
    /// compactions do this themselves; call it after large changes to the data.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown collection or index, [`Error::ReadOnly`], and
    /// search errors.
    pub fn calibrate_index(&self, collection: &str, kind: &str) -> Result<Calibration> {
        let mut w = self.writer()?;
        self.calibrate_locked(&mut w, collection, kind)
    }

    /// [`Database::calibrate_index`] with the writer held.
    pub(super) fn calibrate_locked(
        &self,
        w: &mut Catalog,
        collection: &str,
        kind: &str,
    ) -> Result<Calibration> {
        let (c, id) = {
            let tx = w.read()?;
            let c = tx.collection(collection)?;
            let row = tx.index(c.id, kind)?.ok_or_else(|| Error::NotFound {
                kind: "index",
                name: format!("{kind} on '{collection}'"),
            })?;
            (c, row.id)
        };
        let cal = self.measure(&c, kind)?;
        let json = serde_json::to_string(&cal)?;
        let tx = w.write()?;
        tx.set_index_calibration(id, &json)?;
        tx.commit()?;
        Ok(cal)
    }

    /// Recalibrate every approximate index of `collection` (after compaction).
    pub(super) fn calibrate_all(&self, w: &mut Catalog, collection: &str) -> Result<()> {
        let kinds: Vec<String> = {
            let tx = w.read()?;
            let c = tx.collection(collection)?;
            tx.indexes(c.id)?.into_iter().map(|r| r.kind).filter(|k| k != "fulltext").collect()
        };
        kinds.iter().try_for_each(|k| self.calibrate_locked(w, collection, k).map(drop))
    }

    /// Sample queries of collection `c` for an index of kind `kind`: MaxSim token matrices,
    /// or pooled vectors for an HNSW index.
    fn calibration_queries(&self, c: &CollectionRow, kind: &str) -> Result<(Vec<Query>, u64)> {
        let field = kind.strip_prefix("hnsw:");
        let pooled = field.map(|f| c.spec.vectors.pooled_index(f)).transpose()?;
        self.with_reader(|cat| {
            let tx = cat.read()?;
            let segs = tx.segments(c.id)?;
            let readers = segs.iter().map(|s| self.segment(c, s)).collect::<Result<Vec<_>>>()?;
            let total: usize = readers.iter().map(|r| r.doc_count()).sum();
            let mut rng = Rng::new(0xCA11_B8A7 ^ total as u64);
            let dim = c.spec.vectors.token_dim;
            let mut out = Vec::new();
            for _ in 0..if total == 0 { 0 } else { CALIBRATION_QUERIES } {
                let (mut at, mut ri) = (rng.below(total as u64) as usize, 0);
                while at >= readers[ri].doc_count() {
                    at -= readers[ri].doc_count();
                    ri += 1;
                }
                let r = &readers[ri];
                out.push(match (pooled, field) {
                    (Some(p), Some(f)) => {
                        r.verify_pooled(p)?;
                        Query::Dense {
                            field: f.to_string(),
                            vector: near(&mut rng, &r.pooled(p, at).to_f32(), 0.5),
                        }
                    }
                    _ => {
                        // Two families, alternating: 32 noisy tokens of one document (a
                        // long query about one document), and 4–8 noisy tokens from two
                        // documents (a short query between topics, where near-ties make
                        // recall hard).
                        let mut docs = vec![(r.clone(), at)];
                        if out.len() % 2 == 1 {
                            let (mut at2, mut ri2) = (rng.below(total as u64) as usize, 0);
                            while at2 >= readers[ri2].doc_count() {
                                at2 -= readers[ri2].doc_count();
                                ri2 += 1;
                            }
                            docs.push((readers[ri2].clone(), at2));
                        }
                        let count = if docs.len() == 1 { 32 } else { 4 + rng.below(5) as usize };
                        let mut tokens = Vec::with_capacity(count * dim);
                        for i in 0..count {
                            let (r, at) = &docs[i % docs.len()];
                            r.verify_doc_tokens(&[*at as u32])?;
                            let d = r.doc_tokens(*at).to_f32();
                            let t = rng.below((d.len() / dim) as u64) as usize;
                            tokens.extend(near(&mut rng, &d[t * dim..(t + 1) * dim], 0.5));
                        }
                        Query::MaxSim { tokens, mask: None }
                    }
                });
            }
            Ok((out, tx.doc_count(c.id)?))
        })
    }

    fn measure(&self, c: &CollectionRow, kind: &str) -> Result<Calibration> {
        let (queries, docs) = self.calibration_queries(c, kind)?;
        let name = &c.spec.name;
        let req = |q: &Query| SearchRequest::new(q.clone()).limit(K);
        // The truth in one pass over the collection (every document read or decoded once
        // for all queries); exact search's time per query, which `Plan::Auto` weighs the
        // index against, from the first few queries run as a user runs them.
        let truth = self.exact_top_ids(name, &queries, K)?;
        let timed = queries.len().min(EXACT_TIMED);
        let t = Instant::now();
        for q in &queries[..timed] {
            self.search(name, &req(q).plan(Plan::Exact))?;
        }
        let exact_micros = t.elapsed().as_secs_f64() * 1e6 / timed.max(1) as f64;
        let plan = match kind {
            k if k == super::index::PLAID => Plan::Plaid,
            k if k == super::index::MUVERA => Plan::Muvera,
            _ => Plan::Hnsw,
        };
        let mut settings = Vec::new();
        for mut s in ladder(kind) {
            let t = Instant::now();
            // Recall per family (even / odd queries: see `calibration_queries`); the
            // setting is worth the worse of the two.
            let (mut found, mut wanted) = ([0usize; 2], [0usize; 2]);
            for (i, (q, want)) in queries.iter().zip(&truth).enumerate() {
                let mut r = req(q).plan(plan);
                match plan {
                    Plan::Plaid => r = r.plaid_params(s.plaid_params()),
                    Plan::Muvera => r = r.candidates(s.candidates).ef(s.ef),
                    _ => r = r.candidates(s.candidates).ef(s.ef),
                }
                let got = self.search(name, &r)?;
                wanted[i % 2] += want.len();
                found[i % 2] += got.iter().filter(|h| want.contains(&h.id.to_string())).count();
            }
            s.recall = (0..2)
                .map(|f| if wanted[f] == 0 { 1.0 } else { found[f] as f32 / wanted[f] as f32 })
                .fold(1.0, f32::min);
            s.micros = t.elapsed().as_secs_f64() * 1e6 / queries.len().max(1) as f64;
            settings.push(s);
            // Enough recall, or already slower than exact: higher settings cannot be
            // chosen by `Plan::Auto` (and only cost build time to measure).
            if s.recall >= 0.995 || s.micros > 2.0 * exact_micros {
                break;
            }
        }
        Ok(Calibration { queries: queries.len(), docs, exact_micros, settings })
    }
}
