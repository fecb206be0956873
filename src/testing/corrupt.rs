//! Corruption sweep: damage every on-disk artefact of a database (the catalog, each
//! segment section — token vectors, pooled vectors, HNSW graphs, PLAID codes — and each
//! full-text index file) by single-byte flips and truncations, and classify what a
//! reader sees: the damage is detected (an error, or a CHECK problem), harmless (the same
//! answers, CHECK clean), silent (different answers without an error), or a panic. A
//! writable open then shows whether the damage is repaired (the full-text index is
//! rebuilt from the catalog). Used by the `corrupt` bench suite and, briefly, the tests.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[cfg(feature = "fulltext")]
use super::crash_body;
use super::{crash_doc, crash_setup, Rng};
use crate::storage::container::Container;
use crate::storage::format::{decode_footer, kind_name};
use crate::{Database, DocId, HnswParams, MuveraOptions, PlaidOptions, SearchRequest};

/// Outcomes for one kind of artefact.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// Damaged copies tried.
    pub trials: usize,
    /// Reported: an error on open, search or CHECK, or a CHECK problem.
    pub detected: usize,
    /// Same answers as the undamaged database and CHECK clean (e.g. a flip in free space).
    pub harmless: usize,
    /// Different answers without any error: undetected damage.
    pub silent: usize,
    /// Panics (never acceptable).
    pub panics: usize,
    /// Detected, then repaired by a writable open + CHECK (same answers again).
    pub repaired: usize,
}

/// Build the database the sweep damages: 240 documents in two segments plus pending
/// rows, deletes, an HNSW index on the pooled vectors, PLAID and MUVERA indexes (side
/// files per segment, and their state files) and (feature `fulltext`) a full-text index;
/// and a codes-only collection (`tokens = 'plaid2'`: codec file, two codes segments, a
/// PLAID index over the shared codes).
///
/// # Errors
/// Database errors.
pub fn build_base(path: &Path) -> crate::Result<()> {
    let db = Database::builder(path)
        .flush_threshold_tokens(1 << 20)
        .retire_grace(Duration::ZERO)
        .codec_min_tokens(256)
        .open()?;
    crash_setup(&db)?;
    // A codes-only collection (its codec file, codes segments, a PLAID index whose side
    // files hold inverted lists only).
    db.create_collection(
        &crate::CollectionSpec::new("k", crate::VectorSpec::new(super::CRASH_DIM).codes(2))
            .id_type(crate::IdType::Integer),
    )?;
    for (lo, hi) in [(1, 120), (121, 160)] {
        let docs: Vec<_> =
            (lo..=hi).map(|i| crate::Document::new(DocId::Int(i)).tokens(crash_doc(i, 0).tokens)).collect();
        db.insert("k", &docs)?;
        db.flush("k")?;
    }
    db.create_plaid_index("k", PlaidOptions::default())?;
    for (lo, hi) in [(1, 120), (121, 220)] {
        db.insert("c", &(lo..=hi).map(|i| crash_doc(i, 0)).collect::<Vec<_>>())?;
        db.flush("c")?;
    }
    db.create_hnsw_index("c", "mean", HnswParams::default())?;
    db.create_plaid_index("c", PlaidOptions { centroids: Some(32), ..PlaidOptions::default() })?;
    db.create_muvera_index("c", MuveraOptions { repetitions: 2, ..MuveraOptions::default() })?;
    db.insert("c", &(221..=240).map(|i| crash_doc(i, 0)).collect::<Vec<_>>())?;
    db.delete("c", &[DocId::Int(7), DocId::Int(130)])?;
    db.close()?;
    // Reopen once: the segments the index builds replaced are deleted at open.
    Database::builder(path).retire_grace(Duration::ZERO).open()?.close()
}

/// What the database answers: a few MaxSim, dense and BM25 searches, counts and reads.
fn fingerprint(db: &Database) -> crate::Result<String> {
    let mut out = String::new();
    for id in [3, 150, 233] {
        let d = crash_doc(id, 0);
        for req in [
            SearchRequest::maxsim(d.tokens.clone()).limit(5),
            SearchRequest::dense("mean", d.pooled[0].1.clone()).limit(5),
        ] {
            for h in db.search("c", &req)? {
                out += &format!("{} {:.4};", h.id, h.score);
            }
        }
        #[cfg(feature = "fulltext")]
        // Ids only: BM25 scores of a rebuilt index differ slightly (no deleted documents
        // left in its statistics).
        for h in db.search("c", &SearchRequest::bm25(crash_body(id, 0)).limit(3))? {
            out += &format!("{};", h.id);
        }
        out += &format!("get {:?};", db.get("c", &DocId::Int(id))?.map(|d| d.tokens.len()));
        if id <= 160 {
            for h in db.search("k", &SearchRequest::maxsim(d.tokens.clone()).limit(5))? {
                out += &format!("k {} {:.4};", h.id, h.score);
            }
            out +=
                &format!("k get {:?};", db.get("k", &DocId::Int(id))?.map(|d| d.tokens.iter().sum::<f32>()));
        }
    }
    out += &format!("docs {}", db.stats("c")?.docs);
    Ok(out)
}

/// Detected (`Err`) or the fingerprint of an undamaged-looking database.
fn probe(path: &Path, writable: bool) -> std::result::Result<String, String> {
    let db = if writable { Database::open(path) } else { Database::open_read_only(path) }
        .map_err(|e| e.to_string())?;
    let report = db.check().map_err(|e| e.to_string())?;
    if !report.problems.is_empty() && !writable {
        return Err(report.problems.join("; "));
    }
    fingerprint(&db).map_err(|e| e.to_string())
}

/// Every file of the database with the artefact kind its bytes belong to (segment files
/// are split by section).
/// Byte ranges of a file, each with the artefact kind it holds.
type Ranges = Vec<(usize, usize, String)>;

fn artefacts(base: &Path) -> Vec<(PathBuf, Ranges)> {
    let mut out = Vec::new();
    let mut walk = vec![base.to_path_buf()];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk.push(p);
                continue;
            }
            let rel = p.strip_prefix(base).unwrap_or(&p).to_path_buf();
            let name = rel.to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap_or_default();
            let ranges = if name.ends_with(".seg") {
                decode_footer(&p, &bytes)
                    .map(|es| {
                        es.iter()
                            .map(|e| {
                                (
                                    e.offset as usize,
                                    (e.offset + e.len) as usize,
                                    format!("segment {}", kind_name(e.kind)),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            } else if let Some(what) = side_kind(&name) {
                Container::open(&p)
                    .map(|c| {
                        c.regions()
                            .into_iter()
                            .map(|(region, r)| (r.start, r.end, format!("{what} {region}")))
                            .collect()
                    })
                    .unwrap_or_default()
            } else if name.starts_with("catalog") {
                vec![(0, bytes.len(), "catalog".to_string())]
            } else if name.starts_with("fulltext") {
                vec![(0, bytes.len(), "fulltext".to_string())]
            } else {
                continue; // LOCK
            };
            let ranges: Vec<_> = ranges.into_iter().filter(|r| r.1 > r.0).collect();
            if !ranges.is_empty() {
                out.push((rel, ranges));
            }
        }
    }
    out.sort();
    out
}

/// `side <kind>` for a segment's index side file (`<segment>-<index>.<kind>`), `state
/// <kind>` for an index's state file (`ix<n>.<kind>`).
fn side_kind(name: &str) -> Option<String> {
    let file = name.rsplit('/').next()?;
    let (stem, ext) = file.rsplit_once('.')?;
    if !name.starts_with("segments") || ext == "seg" || ext == "tmp" {
        return None;
    }
    // `ix<n>.<kind>`: an index's state; `codec<n>.tokens`: a codes-only collection's codec.
    Some(if stem.starts_with("ix") || stem.starts_with("codec") {
        format!("state {ext}")
    } else {
        format!("side {ext}")
    })
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// Damage copies of `base` (built by [`build_base`]) `flips` times per artefact range
/// (random byte, random non-zero XOR) plus one truncation per file, under `scratch`.
#[must_use]
pub fn sweep(base: &Path, scratch: &Path, flips: usize, seed: u64) -> BTreeMap<String, Outcomes> {
    let want = probe(base, false).expect("the undamaged database answers");
    let mut rng = Rng::new(seed);
    let mut out: BTreeMap<String, Outcomes> = BTreeMap::new();
    let mut n = 0;
    for (rel, ranges) in artefacts(base) {
        let original = std::fs::read(base.join(&rel)).expect("read artefact");
        let mut damages: Vec<(String, Vec<u8>)> = Vec::new();
        for (lo, hi, kind) in &ranges {
            for _ in 0..flips {
                let mut b = original.clone();
                let at = lo + rng.below((hi - lo) as u64) as usize;
                b[at] ^= 1 + rng.below(255) as u8;
                damages.push((kind.clone(), b));
            }
        }
        let kind =
            ranges.first().map(|r| r.2.split(' ').next().unwrap_or("").to_string()).unwrap_or_default();
        let cut = rng.below(original.len().max(1) as u64) as usize;
        damages.push((format!("{kind} truncated"), original[..cut].to_vec()));
        for (kind, bytes) in damages {
            n += 1;
            let dir = scratch.join(format!("t{n}"));
            copy_dir(base, &dir).expect("copy the base database");
            std::fs::write(dir.join(&rel), &bytes).expect("write the damage");
            let o = out.entry(kind).or_default();
            o.trials += 1;
            match catch_unwind(AssertUnwindSafe(|| probe(&dir, false))) {
                Err(_) => o.panics += 1,
                Ok(Ok(fp)) if fp == want => o.harmless += 1,
                Ok(Ok(_)) => o.silent += 1,
                Ok(Err(_)) => {
                    o.detected += 1;
                    let fixed = catch_unwind(AssertUnwindSafe(|| probe(&dir, true)));
                    o.repaired += usize::from(matches!(fixed, Ok(Ok(ref fp)) if *fp == want));
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    out
}
