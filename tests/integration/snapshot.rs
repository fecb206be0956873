//! Readers see consistent snapshots while a writer inserts, flushes and compacts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use maxsimdb::testing::Rng;
use maxsimdb::{Database, Document, Dtype, SearchRequest, MAX_LIMIT};

use crate::common::{doc, spec, DIM};

#[test]
fn readers_never_see_torn_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path().join("db")).flush_threshold_tokens(50).open().unwrap();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let q = Rng::new(1).unit_vectors(2, DIM);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (db, stop, q) = (db.clone(), stop.clone(), q.clone());
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let hits = db.search("c", &SearchRequest::maxsim(q.clone()).limit(MAX_LIMIT)).unwrap();
                    // The writer inserts batches of 5 and deletes one whole batch at a time.
                    assert_eq!(hits.len() % 5, 0, "torn read: {} hits", hits.len());
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    let mut rng = Rng::new(2);
    for b in 0..40 {
        let docs: Vec<Document> = (0..5).map(|i| doc(&mut rng, &format!("b{b}_{i}"), 3, b)).collect();
        db.insert("c", &docs).unwrap();
        if b % 7 == 3 {
            db.delete_where("c", &maxsimdb::Filter::eq("year", b - 2)).unwrap();
        }
        if b % 10 == 9 {
            db.compact("c").unwrap();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn retired_files_stay_for_the_grace_period() {
    let mut rng = Rng::new(3);
    for (grace, kept) in [(Duration::from_secs(3600), true), (Duration::ZERO, false)] {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path().join("db")).retire_grace(grace).open().unwrap();
        db.create_collection(&spec("c", Dtype::F16)).unwrap();
        db.insert("c", &[doc(&mut rng, "a", 2, 1)]).unwrap();
        db.flush("c").unwrap();
        let old = dir.path().join("db/segments/1/1.seg");
        assert!(old.exists());
        // A read-only process-level handle holds the old snapshot's reader.
        let ro = Database::open_read_only(dir.path().join("db")).unwrap();
        assert_eq!(ro.search("c", &SearchRequest::maxsim(rng.unit_vectors(1, DIM))).unwrap().len(), 1);
        db.insert("c", &[doc(&mut rng, "b", 2, 1)]).unwrap();
        db.flush("c").unwrap();
        db.compact("c").unwrap();
        assert_eq!(old.exists(), kept, "grace {grace:?}");
        // Either way the reader keeps working (a mapped file stays readable once deleted).
        assert_eq!(ro.search("c", &SearchRequest::maxsim(rng.unit_vectors(1, DIM))).unwrap().len(), 2);
    }
}
