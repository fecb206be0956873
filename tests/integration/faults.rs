//! I/O faults at every step of the write path. For each operation (insert into the
//! pending table, insert large enough to write a segment directly, upsert, text update,
//! delete, flush, compaction — each followed by the full-text catch-up), the points it
//! passes (segment writes, fsyncs, renames, directory fsyncs, catalog commits, full-text
//! commits) are recorded; then, on a fresh database each time, the operation is run with
//! a failure injected at each point in turn: EIO at that point, or a disk that is full
//! from that point on. The operation must either succeed (its effect visible) or return
//! the I/O error (no effect at all); the database must stay consistent (the acknowledged
//! state exactly, CHECK clean, documents found by their vectors and their text), accept
//! the operation again and further writes once the fault is gone, and reopen to the same
//! state.

use std::path::Path;
use std::time::Duration;

use maxsimdb::testing::fault::{self, Fault};
use maxsimdb::testing::{crash_setup, run_op, CrashModel, InFlight};
use maxsimdb::{Database, Error};

/// Flush threshold 24 token vectors (the documents' sizes are fixed by their ids: see the
/// operations' comments).
fn open(path: &Path) -> Database {
    Database::builder(path).flush_threshold_tokens(24).retire_grace(Duration::ZERO).open().unwrap()
}

/// A database with flushed and pending documents, a text update and a delete.
fn setup(path: &Path) -> (Database, CrashModel) {
    let db = open(path);
    crash_setup(&db).unwrap();
    let mut model = CrashModel::default();
    let ops = [
        InFlight::Insert((1..=4).map(|i| (i, 0)).collect()),
        InFlight::Flush,
        InFlight::Insert(vec![(5, 0), (6, 0)]),
        InFlight::Update(2, 1500),
        InFlight::Delete(3),
    ];
    for op in &ops {
        run_op(&db, op).unwrap();
        model.apply(op);
    }
    (db, model)
}

/// The points to fail: every point, except that of a run of the same point (the many
/// writes of one segment) only the first and the last.
fn fault_sites(points: &[&str]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            i == 0 || i + 1 == points.len() || points[i - 1] != points[i] || points[i + 1] != points[i]
        })
        .collect()
}

fn verify(model: &mut CrashModel, db: &Database, what: &str) {
    if let Err(e) = model.verify(db, None) {
        panic!("{what}: {e}");
    }
}

#[test]
fn injected_io_faults_fail_cleanly_and_lose_nothing() {
    let ops = [
        // 11 token vectors: stays pending (9 pending before, threshold 24).
        InFlight::Insert(vec![(10, 0), (11, 0)]),
        // 17 token vectors: committed, then the pending 26 are flushed into a segment.
        InFlight::Insert(vec![(7, 0), (8, 0), (9, 0)]),
        // 81 token vectors: written straight to a segment.
        InFlight::Insert((20..32).map(|i| (i, 0)).collect()),
        InFlight::Upsert(1, 7),
        InFlight::Update(4, 1777),
        InFlight::Delete(2),
        InFlight::Flush,
        InFlight::Compact,
    ];
    let mut kinds_seen = std::collections::BTreeSet::new();
    for op in &ops {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = setup(&dir.path().join("trace.msdb"));
        fault::arm(None, Fault::Io);
        let traced = run_op(&db, op);
        let points = fault::disarm();
        traced.unwrap();
        assert!(!points.is_empty(), "{op:?} passes no fault point");
        let mut failed = 0;
        for kind in [Fault::Io, Fault::DiskFull] {
            for at in fault_sites(&points) {
                let what = format!("{op:?} with {kind:?} at point {at} ({})", points[at]);
                let path = dir.path().join(format!("{kind:?}-{at}.msdb"));
                let (db, mut model) = setup(&path);
                fault::arm(Some(at), kind);
                let r = run_op(&db, op);
                fault::disarm();
                match &r {
                    Ok(()) => model.apply(op),
                    Err(Error::Io { .. }) => failed += 1,
                    Err(e) => panic!("{what}: not an I/O error: {e}"),
                }
                kinds_seen.insert(points[at]);
                verify(&mut model, &db, &format!("{what}, right after"));
                if r.is_err() {
                    run_op(&db, op).unwrap_or_else(|e| panic!("{what}: retry failed: {e}"));
                    model.apply(op);
                }
                let more = InFlight::Insert(vec![(100, 0)]);
                run_op(&db, &more).unwrap_or_else(|e| panic!("{what}: next write failed: {e}"));
                model.apply(&more);
                verify(&mut model, &db, &format!("{what}, after the retry"));
                drop(db);
                verify(&mut model, &open(&path), &format!("{what}, reopened"));
            }
        }
        assert!(failed > 0, "no injected fault made {op:?} fail: points {points:?}");
    }
    for p in ["segment.write", "segment.fsync", "segment.rename", "dir.fsync", "catalog.commit"] {
        assert!(kinds_seen.contains(p), "no operation passed {p}: {kinds_seen:?}");
    }
    #[cfg(feature = "fulltext")]
    assert!(kinds_seen.contains("fulltext.commit"), "{kinds_seen:?}");
}
