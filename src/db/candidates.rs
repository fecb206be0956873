//! Candidate generation: one abstraction over the approximate plans. A
//! [`CandidateSource`] turns one segment's index part and live documents into the
//! documents exact scoring will see; [`gather`] runs it over every segment of the snapshot
//! and scores a segment exactly when it has no usable part (not indexed yet, or damaged).

use std::sync::Arc;
use std::time::Instant;

use super::index::{HnswState, MuveraState, PlaidState};
use super::query::{Plan, StageStats};
use super::sidefile::{self, IndexDef, IndexPart};
use super::Inner;
use crate::catalog::SideFileRow;
use crate::index::plaid::{self, CentroidScores, SearchParams, StageCounts};
use crate::index::{hnsw, muvera};
use crate::scoring;
use crate::storage::segment::SegmentReader;
use rayon::prelude::*;

/// A per-document mask of a segment of `n` documents allowing only `docs` (`None` when
/// every document is allowed).
fn allowed_mask(docs: &[u32], n: usize) -> Option<Vec<bool>> {
    (docs.len() < n).then(|| {
        let mut m = vec![false; n];
        docs.iter().for_each(|&d| m[d as usize] = true);
        m
    })
}

/// The usable part of index `ix` per segment (`None`: score that segment exactly), and how
/// many segments had a part that failed validation.
pub(super) struct Parts {
    pub parts: Vec<Option<Arc<IndexPart>>>,
    pub damaged: usize,
}

impl Parts {
    /// Open (and on first use validate) the parts of `ix` for `readers`, whose catalog
    /// side-file rows are `sides`.
    pub fn open(
        inner: &Inner,
        ix: &IndexDef,
        readers: &[Arc<SegmentReader>],
        seg_ids: &[i64],
        sides: &[SideFileRow],
    ) -> Self {
        let mut damaged = 0;
        let parts = readers
            .iter()
            .zip(seg_ids)
            .map(|(r, &sid)| {
                let side = sides.iter().find(|f| f.segment_id == sid && f.index_id == ix.id());
                match sidefile::open_part(inner, r, ix, side)? {
                    Ok(p) => {
                        let ok = p.validated.get_or_init(|| sidefile::validate(ix, p.sections(), r, false));
                        if ok.is_ok() {
                            Some(p)
                        } else {
                            damaged += 1;
                            None
                        }
                    }
                    Err(_) => {
                        damaged += 1;
                        None
                    }
                }
            })
            .collect();
        Self { parts, damaged }
    }

    /// Live documents in segments that have a usable part.
    pub fn indexed_live(&self, live: &[Vec<u32>]) -> usize {
        self.parts.iter().zip(live).filter(|(p, _)| p.is_some()).map(|(_, l)| l.len()).sum()
    }
}

/// One approximate plan's candidate step: per segment, then across segments.
pub(super) trait CandidateSource {
    /// The plan this source implements.
    fn plan(&self) -> Plan;
    /// Scored candidates `(score, local document)` among `docs` (ascending live local
    /// documents) of segment `r` from its index part; `None` when the part cannot be read
    /// after all (the segment is then scored exactly, as an unindexed one).
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Option<Vec<(f32, u32)>>;
    /// From every segment's scored candidates `(score, segment, document)`, the pairs to
    /// score exactly (by default all of them).
    fn finish(
        &mut self,
        scored: Vec<(f32, (u32, u32))>,
        _parts: &Parts,
        _readers: &[Arc<SegmentReader>],
    ) -> Vec<(u32, u32)> {
        scored.into_iter().map(|(_, sd)| sd).collect()
    }
    /// The source's stage statistics, pushed once after every segment.
    fn stages(&self, out: &mut Vec<StageStats>);
}

/// The PLAID view of segment `r` through its index part (validated when the part was
/// opened).
fn plaid_view<'v>(
    state: &'v PlaidState,
    part: &'v IndexPart,
    r: &'v SegmentReader,
) -> Option<plaid::PlaidView<'v>> {
    plaid::open_view(
        &state.codec,
        part.sections(),
        r.offsets(),
        super::sidefile::segment_codes(state, r),
        false,
    )
    .ok()
}

/// PLAID: one probe per query (the query tokens' best centroids), the approximate
/// interaction per segment over the lists it visits, then one cut across all segments —
/// the scores are comparable, every segment sharing the index's codec — to `ndocs` and,
/// by full centroid interaction, to `max(ndocs / 4, k)`. A collection of 50 segments thus
/// reranks as many documents as one of a single segment.
pub(super) struct PlaidSource<'a> {
    pub state: &'a PlaidState,
    pub scores: CentroidScores,
    pub probe: plaid::Probe,
    pub params: SearchParams,
    pub k: usize,
    pub centroid_micros: u64,
    pub sum: StageCounts,
}

impl<'a> PlaidSource<'a> {
    /// The source for query centroid scores `scores` (`centroid_micros`: the time they
    /// took) over segments of `codes_per_doc` tokens per document on average.
    pub fn new(
        state: &'a PlaidState,
        scores: CentroidScores,
        params: SearchParams,
        k: usize,
        centroid_micros: u64,
        codes_per_doc: f64,
    ) -> Self {
        let t = Instant::now();
        let rank = plaid::impute_rank(state.codec.num_centroids(), codes_per_doc);
        let probe = scores.probe(params.ncells, params.centroid_threshold, rank);
        let mut sum = StageCounts::default();
        sum.micros[0] = t.elapsed().as_micros() as u64;
        Self { state, scores, probe, params, k, centroid_micros, sum }
    }
}

impl CandidateSource for PlaidSource<'_> {
    fn plan(&self) -> Plan {
        Plan::Plaid
    }
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Option<Vec<(f32, u32)>> {
        let view = plaid_view(self.state, part, r)?;
        let t = Instant::now();
        let mask = allowed_mask(docs, r.doc_count());
        let (scored, visited) = view.probe_scores(&self.probe, self.params.ndocs, mask.as_deref());
        self.sum.docs[0] += visited;
        self.sum.micros[0] += t.elapsed().as_micros() as u64;
        Some(scored)
    }
    fn finish(
        &mut self,
        mut scored: Vec<(f32, (u32, u32))>,
        parts: &Parts,
        readers: &[Arc<SegmentReader>],
    ) -> Vec<(u32, u32)> {
        let t = Instant::now();
        plaid::top_scored(&mut scored, self.params.ndocs);
        self.sum.docs[1] = scored.len();
        let t1 = Instant::now();
        self.sum.micros[1] = (t1 - t).as_micros() as u64;
        let views: Vec<Option<plaid::PlaidView<'_>>> = readers
            .iter()
            .zip(&parts.parts)
            .map(|(r, p)| p.as_deref().and_then(|p| plaid_view(self.state, p, r)))
            .collect();
        let sc = &self.scores;
        let mut full: Vec<(f32, (u32, u32))> = scored
            .par_iter()
            .map(|&(s, (si, d))| match &views[si as usize] {
                Some(v) => (v.full_score(d, sc), (si, d)),
                None => (s, (si, d)),
            })
            .collect();
        plaid::top_scored(&mut full, self.params.full_keep(self.k));
        self.sum.docs[2] = full.len();
        self.sum.micros[2] = t1.elapsed().as_micros() as u64;
        full.into_iter().map(|(_, sd)| sd).collect()
    }
    fn stages(&self, out: &mut Vec<StageStats>) {
        let k = self.state.codec.num_centroids() as u64;
        out.push(StageStats { name: "plaid_centroids", docs: k, micros: self.centroid_micros });
        for (i, name) in ["plaid_probe", "plaid_pruned", "plaid_full"].into_iter().enumerate() {
            out.push(StageStats { name, docs: self.sum.docs[i] as u64, micros: self.sum.micros[i] });
        }
    }
}

/// MUVERA: one graph search per segment with the query's encoding.
pub(super) struct MuveraSource<'a> {
    pub state: &'a MuveraState,
    pub query: Vec<f32>,
    pub kc: usize,
    pub ef: usize,
    pub found: u64,
    pub micros: u64,
}

impl CandidateSource for MuveraSource<'_> {
    fn plan(&self) -> Plan {
        Plan::Muvera
    }
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Option<Vec<(f32, u32)>> {
        let t = Instant::now();
        let dim = self.state.encoder.out_dim();
        let Ok(Some(view)) =
            muvera::open_view(part.sections(), self.state.id as u32, r.doc_count(), dim, false)
        else {
            return None;
        };
        let mask = allowed_mask(docs, r.doc_count());
        let (hits, _) = view.graph.search(self.kc, self.ef, mask.as_deref(), |i| view.dot(&self.query, i));
        self.found += hits.len() as u64;
        self.micros += t.elapsed().as_micros() as u64;
        Some(hits)
    }
    fn stages(&self, out: &mut Vec<StageStats>) {
        out.push(StageStats { name: "muvera", docs: self.found, micros: self.micros });
    }
}

/// HNSW over a pooled vector (dense search, or MaxSim candidates by the mean query token).
pub(super) struct HnswSource<'a> {
    pub state: &'a HnswState,
    pub query: Vec<f32>,
    pub kc: usize,
    pub ef: usize,
    pub found: u64,
    pub micros: u64,
}

impl CandidateSource for HnswSource<'_> {
    fn plan(&self) -> Plan {
        Plan::Hnsw
    }
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Option<Vec<(f32, u32)>> {
        let t = Instant::now();
        let p = self.state.pooled;
        let graph = hnsw::open_graph(part.sections(), self.state.id as u32, r.doc_count(), false);
        let (Ok(Some(g)), Ok(())) = (graph, r.verify_pooled(p)) else {
            return None;
        };
        let mask = allowed_mask(docs, r.doc_count());
        let (hits, _) = g.search(self.kc, self.ef, mask.as_deref(), |i| {
            scoring::dot(&self.query, r.pooled(p, i as usize))
        });
        self.found += hits.len() as u64;
        self.micros += t.elapsed().as_micros() as u64;
        Some(hits)
    }
    fn stages(&self, out: &mut Vec<StageStats>) {
        out.push(StageStats { name: "hnsw", docs: self.found, micros: self.micros });
    }
}

/// Run `src` over every segment with live documents: (segment, local document) pairs to
/// score exactly. Segments without a usable part contribute all their live documents;
/// the stage `unindexed` counts those documents (EXPLAIN shows it), `damaged_index` the
/// segments whose part failed validation.
pub(super) fn gather(
    src: &mut dyn CandidateSource,
    parts: &Parts,
    readers: &[Arc<SegmentReader>],
    live: &[Vec<u32>],
    stages: &mut Vec<StageStats>,
) -> Vec<(u32, u32)> {
    let mut work = Vec::new();
    let mut scored = Vec::new();
    let mut unindexed = 0u64;
    for (si, (r, docs)) in readers.iter().zip(live).enumerate() {
        if docs.is_empty() {
            continue;
        }
        match parts.parts[si].as_deref().and_then(|part| src.candidates(part, r, docs)) {
            Some(found) => scored.extend(found.into_iter().map(|(s, d)| (s, (si as u32, d)))),
            None => {
                unindexed += docs.len() as u64;
                work.extend(docs.iter().map(|&d| (si as u32, d)));
            }
        }
    }
    work.extend(src.finish(scored, parts, readers));
    src.stages(stages);
    if unindexed > 0 {
        stages.push(StageStats { name: "unindexed", docs: unindexed, micros: 0 });
    }
    if parts.damaged > 0 {
        stages.push(StageStats { name: "damaged_index", docs: parts.damaged as u64, micros: 0 });
    }
    work
}
