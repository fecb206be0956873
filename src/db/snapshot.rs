//! Snapshot assembly: what one search sees of a collection inside its catalog read
//! transaction — the segments, each segment's live documents passing the filter (as local
//! document numbers), and the pending rows that pass it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::query::{SearchRequest, StageStats};
use super::rerank::{micros, select};
use super::Database;
use crate::catalog::{CollectionRow, DocLoc, PendingRow, Txn};
use crate::storage::segment::SegmentReader;
use crate::Result;

/// The documents a search may score.
pub(super) struct Snapshot {
    /// Manifest ids of the segments, in order.
    pub seg_ids: Vec<i64>,
    /// Their readers.
    pub readers: Vec<Arc<SegmentReader>>,
    /// Per segment: live local documents passing the filter, ascending.
    pub live: Vec<Vec<u32>>,
    /// Pending rows passing the filter.
    pub pending: Vec<PendingRow>,
    /// Documents in all (`live` + `pending`).
    pub docs: usize,
    /// The `filter` stage.
    pub stage: StageStats,
}

impl Database {
    /// Assemble the snapshot of `c` in `tx` for `req`'s filter.
    pub(super) fn snapshot(&self, tx: &Txn<'_>, c: &CollectionRow, req: &SearchRequest) -> Result<Snapshot> {
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
        let stage = StageStats { name: "filter", docs: docs as u64, micros: micros(t_filter) };
        Ok(Snapshot { seg_ids: segs.iter().map(|s| s.id).collect(), readers, live, pending, docs, stage })
    }
}
