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

/// One approximate plan's per-segment candidate step.
pub(super) trait CandidateSource {
    /// The plan this source implements.
    fn plan(&self) -> Plan;
    /// Candidates among `docs` (ascending live local documents) of segment `r` from its
    /// index part.
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Vec<u32>;
    /// The source's stage statistics, pushed once after every segment.
    fn stages(&self, out: &mut Vec<StageStats>);
}

/// PLAID: centroid probe, pruned and full centroid interaction.
pub(super) struct PlaidSource<'a> {
    pub state: &'a PlaidState,
    pub scores: CentroidScores,
    pub params: SearchParams,
    pub k: usize,
    pub centroid_micros: u64,
    pub sum: StageCounts,
}

impl CandidateSource for PlaidSource<'_> {
    fn plan(&self) -> Plan {
        Plan::Plaid
    }
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Vec<u32> {
        // Validated when the part was opened.
        let Ok(view) = plaid::open_view(
            &self.state.codec,
            part.sections(),
            r.offsets(),
            super::sidefile::segment_codes(self.state, r),
            false,
        ) else {
            return docs.to_vec();
        };
        let mask = allowed_mask(docs, r.doc_count());
        let (cands, st) = view.candidates(&self.scores, self.k, self.params, mask.as_deref());
        for i in 0..3 {
            self.sum.docs[i] += st.docs[i];
            self.sum.micros[i] += st.micros[i];
        }
        cands
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
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Vec<u32> {
        let t = Instant::now();
        let dim = self.state.encoder.out_dim();
        let Ok(Some(view)) =
            muvera::open_view(part.sections(), self.state.id as u32, r.doc_count(), dim, false)
        else {
            return docs.to_vec();
        };
        let mask = allowed_mask(docs, r.doc_count());
        let (hits, _) = view.graph.search(self.kc, self.ef, mask.as_deref(), |i| view.dot(&self.query, i));
        self.found += hits.len() as u64;
        self.micros += t.elapsed().as_micros() as u64;
        hits.into_iter().map(|(_, d)| d).collect()
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
    fn candidates(&mut self, part: &IndexPart, r: &SegmentReader, docs: &[u32]) -> Vec<u32> {
        let t = Instant::now();
        let p = self.state.pooled;
        let graph = hnsw::open_graph(part.sections(), self.state.id as u32, r.doc_count(), false);
        let (Ok(Some(g)), Ok(())) = (graph, r.verify_pooled(p)) else { return docs.to_vec() };
        let mask = allowed_mask(docs, r.doc_count());
        let (hits, _) = g.search(self.kc, self.ef, mask.as_deref(), |i| {
            scoring::dot(&self.query, r.pooled(p, i as usize))
        });
        self.found += hits.len() as u64;
        self.micros += t.elapsed().as_micros() as u64;
        hits.into_iter().map(|(_, d)| d).collect()
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
    let mut unindexed = 0u64;
    for (si, (r, docs)) in readers.iter().zip(live).enumerate() {
        if docs.is_empty() {
            continue;
        }
        let cands = match &parts.parts[si] {
            Some(part) => src.candidates(part, r, docs),
            None => {
                unindexed += docs.len() as u64;
                docs.clone()
            }
        };
        work.extend(cands.into_iter().map(|d| (si as u32, d)));
    }
    src.stages(stages);
    if unindexed > 0 {
        stages.push(StageStats { name: "unindexed", docs: unindexed, micros: 0 });
    }
    if parts.damaged > 0 {
        stages.push(StageStats { name: "damaged_index", docs: parts.damaged as u64, micros: 0 });
    }
    work
}
