//! Planning: which candidate source a MaxSim or dense search uses — PLAID, MUVERA, HNSW
//! or none (exact) — from the request, the collection's indexes and how many indexed
//! documents pass the filter; then the candidates it yields.

use std::time::Instant;

use super::calibrate::{CalibratedSetting, Calibration};
use super::candidates::{gather, CandidateSource, HnswSource, MuveraSource, Parts, PlaidSource};
use super::index::{MUVERA, PLAID};
use super::query::{Plan, PlanRecall, SearchRequest, StageStats, AUTO_EXACT_MAX_DOCS};
use super::rerank::{micros, Scorer};
use super::sidefile::IndexDef;
use super::snapshot::Snapshot;
use super::Database;
use crate::catalog::{CollectionRow, Txn};
use crate::index::plaid::SearchParams;
use crate::{Error, Result};

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

/// An index whose shared state (codec, matrices) is damaged is not used by `Plan::Auto`
/// (the search is exact; CHECK reports the file); a plan that names it gets the error.
fn usable<S>(req: &SearchRequest, state: Result<Option<S>>) -> Result<Option<S>> {
    match state {
        Err(Error::Corruption { .. }) if req.plan == Plan::Auto => Ok(None),
        other => other,
    }
}

/// Candidates ((segment, local document) pairs to score exactly), the plan that produced
/// them, and the recall its calibration promises (or that ruled it out).
pub(super) type Planned = (Vec<(u32, u32)>, Plan, Option<PlanRecall>);

impl Database {
    /// Choose the plan for `scorer` over `snap` and generate its candidates: (segment,
    /// local document) pairs for exact scoring, the plan that ran, and the recall its
    /// calibration promises (or that ruled it out). Stages are appended to `stages`.
    pub(super) fn plan_candidates(
        &self,
        tx: &Txn<'_>,
        c: &CollectionRow,
        scorer: &Scorer,
        req: &SearchRequest,
        snap: &Snapshot,
        stages: &mut Vec<StageStats>,
    ) -> Result<Planned> {
        // The plan. PLAID needs a MaxSim query and a PLAID index; HNSW a graph over the
        // queried pooled vector (or, for MaxSim, any pooled vector of the token dimension).
        // Auto also wants enough indexed documents for the index to pay.
        let k = req.limit;
        // The side-file manifest is read only when an index is about to be used.
        let sides = std::cell::OnceCell::new();
        let parts_of = |d: &IndexDef| -> Result<Parts> {
            let sides = match sides.get() {
                Some(s) => s,
                None => {
                    let rows = tx.side_files(c.id)?;
                    sides.get_or_init(|| rows)
                }
            };
            Ok(Parts::open(&self.inner, d, &snap.readers, &snap.seg_ids, sides))
        };
        let total_live: usize = snap.readers.iter().map(|r| r.doc_count()).sum();
        let live = &snap.live;
        let plaid = choose_token_index(
            Plan::Plaid,
            req,
            scorer,
            true,
            || {
                let st = usable(req, super::index::plaid_state(&self.inner, tx, c))?;
                st.map(|p| Ok((p.clone(), parts_of(&IndexDef::Plaid(p))?))).transpose()
            },
            |(_, parts)| parts.indexed_live(live),
            || format!("PLAID index (CREATE INDEX ON {} USING plaid)", c.spec.name),
        )?;
        // Calibration: under Auto an index runs only with a setting measured to reach the
        // recall target; a plan that was asked for uses the calibrated setting when there
        // is one (explicit knobs in the request win).
        let target = req.recall.unwrap_or_else(|| c.spec.target_recall());
        let mut recall: Option<PlanRecall> = None;
        // The index rows (for their calibrations) are read once, and only when an index
        // is in play.
        let index_rows = std::cell::OnceCell::new();
        let mut gate = |kind: &str, present: bool, forced: bool| -> Result<Option<CalibratedSetting>> {
            if !present {
                return Ok(None);
            }
            let cal: Option<Calibration> = match index_rows.get() {
                Some(rows) => rows,
                None => {
                    let rows = tx.indexes(c.id)?;
                    index_rows.get_or_init(|| rows)
                }
            }
            .iter()
            .find(|r| r.kind == kind)
            .and_then(|r| r.calibration.as_deref())
            .and_then(|j| serde_json::from_str(j).ok());
            let Some(cal) = cal else {
                recall = Some(PlanRecall { target, calibrated: 0.0, used: forced });
                return Ok(None);
            };
            Ok(match cal.choose(target) {
                // Reaching the target is not enough under Auto: it must also beat exact.
                Ok(s) if !forced && !cal.pays(s) => {
                    recall = Some(PlanRecall { target, calibrated: s.recall, used: false });
                    None
                }
                Ok(s) => {
                    recall = Some(PlanRecall { target, calibrated: s.recall, used: true });
                    Some(*s)
                }
                Err(best) => {
                    recall = Some(PlanRecall { target, calibrated: best, used: forced });
                    None
                }
            })
        };
        let plaid_setting = gate(PLAID, plaid.is_some(), req.plan == Plan::Plaid)?;
        let plaid = plaid.filter(|_| req.plan == Plan::Plaid || plaid_setting.is_some());
        let muvera = choose_token_index(
            Plan::Muvera,
            req,
            scorer,
            plaid.is_none(),
            || {
                let st = usable(req, super::index::muvera_state(&self.inner, tx, c))?;
                st.map(|m| Ok((m.clone(), parts_of(&IndexDef::Muvera(m))?))).transpose()
            },
            |(_, parts)| parts.indexed_live(live),
            || format!("MUVERA index (CREATE INDEX ON {} USING muvera)", c.spec.name),
        )?;
        let muvera_setting =
            if plaid.is_none() { gate(MUVERA, muvera.is_some(), req.plan == Plan::Muvera)? } else { None };
        let muvera = muvera.filter(|_| req.plan == Plan::Muvera || muvera_setting.is_some());
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
        let hnsw = match hnsw {
            Some((h, q, kc)) => Some((h.clone(), q, kc, parts_of(&IndexDef::Hnsw(h))?)),
            None => None,
        };
        let hnsw = hnsw.filter(|(_, _, _, parts)| {
            let n = parts.indexed_live(live);
            req.plan == Plan::Hnsw || (n > AUTO_EXACT_MAX_DOCS && n * 10 >= total_live)
        });
        let hnsw_setting = match &hnsw {
            Some((h, ..)) if plaid.is_none() && muvera.is_none() => {
                let kind = super::index::hnsw_kind(&c.spec.vectors.pooled[h.pooled].name);
                gate(&kind, true, req.plan == Plan::Hnsw)?
            }
            _ => None,
        };
        let hnsw = hnsw.filter(|_| req.plan == Plan::Hnsw || hnsw_setting.is_some());
        if plaid.is_none() && muvera.is_none() && hnsw.is_none() && recall.is_some_and(|r| r.used) {
            recall = None;
        }
        let (work, plan) = if let Some(((p, parts), tokens)) = &plaid {
            let t = Instant::now();
            let scores = p.codec.query_scores(tokens);
            let params = req
                .plaid
                .or(plaid_setting.map(|s| s.plaid_params()))
                .unwrap_or_else(|| SearchParams::for_k(k));
            let (tokens, docs) = snap
                .readers
                .iter()
                .fold((0u64, 0usize), |(t, d), r| (t + r.token_count(), d + r.doc_count()));
            let codes_per_doc = tokens as f64 / docs.max(1) as f64;
            let mut src = PlaidSource::new(p, scores, params, k, micros(t), codes_per_doc);
            (gather(&mut src, parts, &snap.readers, live, stages), src.plan())
        } else if let Some(((m, parts), tokens)) = &muvera {
            let mut query = m.encoder.encode_query(tokens);
            crate::vector::normalize(&mut query);
            let kc = req.candidates.or(muvera_setting.map(|s| s.candidates)).unwrap_or(200).max(k);
            let ef = req.ef.or(muvera_setting.map(|s| s.ef)).unwrap_or(m.hnsw.ef_search).max(kc);
            let mut src = MuveraSource { state: m, query, kc, ef, found: 0, micros: 0 };
            (gather(&mut src, parts, &snap.readers, live, stages), src.plan())
        } else if let Some((h, query, kc, parts)) = hnsw {
            let ef = req.ef.or(hnsw_setting.map(|s| s.ef)).unwrap_or(h.params.ef_search).max(kc);
            let mut src = HnswSource { state: &h, query, kc, ef, found: 0, micros: 0 };
            (gather(&mut src, &parts, &snap.readers, live, stages), src.plan())
        } else {
            let work =
                live.iter().enumerate().flat_map(|(si, docs)| docs.iter().map(move |&d| (si as u32, d)));
            (work.collect(), Plan::Exact)
        };
        Ok((work, plan, recall))
    }
}
