//! Databases written by earlier formats open, answer queries exactly as they did, and take
//! new writes. `tests/fixtures/format-v1.msdb` was written by the segment-format-v1 build
//! (catalog schema 2) with [`write_fixture`]; it is committed and never regenerated.

use std::collections::HashMap;
use std::path::Path;

use maxsimdb::index::plaid::SearchParams;
use maxsimdb::scoring::scalar;
use maxsimdb::testing::Rng;
use maxsimdb::{Database, Document, Dtype, PlaidOptions, Plan, SearchRequest, MAX_LIMIT};

use crate::common::{doc, DIM};
use crate::search::{mixed, stored};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1.msdb");

/// The live documents of the fixture (two segments, pending rows, three tombstones) and the
/// generator state after them, rebuilt on a scratch database.
fn fixture_docs() -> (Vec<Document>, Rng) {
    let scratch = tempfile::tempdir().unwrap();
    let db = Database::open(scratch.path().join("s.msdb")).unwrap();
    let mut rng = Rng::new(10);
    (mixed(&db, Dtype::F16, &mut rng), rng)
}

/// Writes the fixture with the current build: `MAXSIMDB_WRITE_FIXTURE=1 cargo test --test
/// integration write_fixture -- --ignored`. Only ever run by the build whose format the
/// fixture is named after.
#[test]
#[ignore = "writes tests/fixtures once per format: MAXSIMDB_WRITE_FIXTURE=1 cargo test --test integration write_fixture -- --ignored"]
fn write_fixture() {
    if std::env::var_os("MAXSIMDB_WRITE_FIXTURE").is_none() {
        return;
    }
    let path = Path::new(FIXTURE);
    assert!(!path.exists(), "{FIXTURE} exists: fixtures are written once");
    let db = Database::builder(path).flush_on_close(false).open().unwrap();
    let mut rng = Rng::new(10);
    mixed(&db, Dtype::F16, &mut rng);
    // Dropped, not closed: `close` flushes, and the fixture keeps its pending rows.
    drop(db);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn assert_exact(db: &Database, live: &[Document], q: &[f32]) {
    let hits = db.search("c", &SearchRequest::maxsim(q.to_vec()).limit(MAX_LIMIT)).unwrap();
    let truth: HashMap<String, f32> = live
        .iter()
        .map(|d| (d.id.to_string(), scalar::maxsim(q, &stored(&d.tokens, Dtype::F16), DIM)))
        .collect();
    assert_eq!(hits.len(), live.len(), "every live document, no deleted one");
    for h in &hits {
        let t = truth[&h.id.to_string()];
        assert!((h.score - t).abs() < 1e-4, "{}: {} vs oracle {t}", h.id, h.score);
    }
}

#[test]
fn format_v1_database_opens_searches_and_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.msdb");
    copy_dir(Path::new(FIXTURE), &path);
    let (mut live, mut rng) = fixture_docs();
    let q = rng.unit_vectors(6, DIM);

    // Read-only first: nothing may be written to an old database just by reading it.
    {
        let ro = Database::open_read_only(&path).unwrap();
        assert_exact(&ro, &live, &q);
    }
    let db = Database::open(&path).unwrap();
    assert!(db.check().unwrap().problems.is_empty(), "v1 files pass every checksum");
    assert_exact(&db, &live, &q);
    let old = db.stats("c").unwrap();
    assert_eq!(old.segments, 2);

    // New writes land in current-format segments beside the old ones.
    let extra: Vec<Document> = (0..5).map(|i| doc(&mut rng, &format!("n{i}"), 4, 2030)).collect();
    db.insert("c", &extra).unwrap();
    db.flush("c").unwrap();
    live.extend(extra);
    assert_exact(&db, &live, &q);
    // Compaction rewrites everything in the current format; ids and scores are unchanged.
    db.compact("c").unwrap();
    assert_eq!(db.stats("c").unwrap().segments, 1);
    assert_exact(&db, &live, &q);
    // A PLAID index on the upgraded data: exhaustive PLAID equals exact.
    db.create_plaid_index("c", PlaidOptions { centroids: Some(16), ..PlaidOptions::default() }).unwrap();
    let req = SearchRequest::maxsim(q.clone()).limit(MAX_LIMIT);
    let exhaustive = req.clone().plan(Plan::Plaid).plaid_params(SearchParams::exhaustive());
    assert_eq!(db.search("c", &exhaustive).unwrap(), db.search("c", &req.plan(Plan::Exact)).unwrap());
    db.close().unwrap();
    let db = Database::open(&path).unwrap();
    assert_exact(&db, &live, &q);
}

const FIXTURE_V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v2.msdb");

/// Builds the v2 fixture's content on `db` and returns its live documents and the generator
/// state after them: `mixed`, then PLAID, HNSW (over `mean`) and MUVERA indexes (format v2
/// keeps them as sections inside the segments), then a flushed batch (a second segment
/// written with the index sections), a pending batch and more tombstones.
fn fill_v2(db: &Database) -> (Vec<Document>, Rng) {
    let mut rng = Rng::new(20);
    let mut live = mixed(db, Dtype::F16, &mut rng);
    db.create_plaid_index("c", PlaidOptions { centroids: Some(16), ..PlaidOptions::default() }).unwrap();
    db.create_hnsw_index("c", "mean", maxsimdb::HnswParams::default()).unwrap();
    db.create_muvera_index("c", maxsimdb::MuveraOptions::default()).unwrap();
    let flushed: Vec<Document> = (0..30).map(|i| doc(&mut rng, &format!("f{i}"), 1 + i % 9, 2000)).collect();
    db.insert("c", &flushed).unwrap();
    db.flush("c").unwrap();
    let pending: Vec<Document> = (0..7).map(|i| doc(&mut rng, &format!("p{i}"), 3, 2010)).collect();
    db.insert("c", &pending).unwrap();
    live.extend(flushed);
    live.extend(pending);
    let dead = ["d7", "f3", "p1"];
    db.delete("c", &dead.map(Into::into)).unwrap();
    live.retain(|d| !dead.contains(&d.id.to_string().as_str()));
    (live, rng)
}

/// Writes the v2 fixture: `MAXSIMDB_WRITE_FIXTURE=1 cargo test --test integration
/// write_fixture_v2 -- --ignored`, run once by the last segment-format-v2 build (commit
/// before format v3).
#[test]
#[ignore = "writes tests/fixtures/format-v2.msdb once: MAXSIMDB_WRITE_FIXTURE=1 cargo test --test integration write_fixture_v2 -- --ignored"]
fn write_fixture_v2() {
    if std::env::var_os("MAXSIMDB_WRITE_FIXTURE").is_none() {
        return;
    }
    let path = Path::new(FIXTURE_V2);
    assert!(!path.exists(), "{FIXTURE_V2} exists: fixtures are written once");
    let db = Database::builder(path).flush_on_close(false).open().unwrap();
    fill_v2(&db);
    drop(db);
}

fn stage(out: &maxsimdb::SearchOutput, name: &str) -> Option<u64> {
    out.stages.iter().find(|s| s.name == name).map(|s| s.docs)
}

/// The plans that read the v2 segments' embedded index sections: exhaustive PLAID equals
/// exact, MUVERA and HNSW run on every segment (nothing scored as unindexed).
fn assert_indexes_serve(db: &Database, live: &[Document], q: &[f32], segments: u64) {
    assert_exact(db, live, q);
    let req = SearchRequest::maxsim(q.to_vec()).limit(MAX_LIMIT);
    let exhaustive = req.clone().plan(Plan::Plaid).plaid_params(SearchParams::exhaustive());
    let out = db.search_explained("c", &exhaustive).unwrap();
    assert_eq!(out.hits, db.search("c", &req.clone().plan(Plan::Exact)).unwrap());
    assert_eq!(stage(&out, "unindexed"), None, "{:?}", out.stages);
    let out = db.search_explained("c", &req.plan(Plan::Muvera)).unwrap();
    assert!(
        stage(&out, "muvera").is_some_and(|n| n > 0) && stage(&out, "unindexed").is_none(),
        "{:?}",
        out.stages
    );
    let dense = SearchRequest::dense("mean", live[0].pooled[0].1.clone()).limit(5).plan(Plan::Hnsw);
    let out = db.search_explained("c", &dense).unwrap();
    assert_eq!(out.hits[0].id, live[0].id, "a document finds itself by its pooled vector");
    assert!(stage(&out, "unindexed").is_none(), "{:?}", out.stages);
    for i in db.indexes("c").unwrap().into_iter().filter(|i| i.kind != "fulltext") {
        assert_eq!((i.segments_indexed, i.segments), (segments, segments), "{i:?}");
    }
}

#[test]
fn format_v2_database_keeps_its_embedded_indexes_until_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.msdb");
    copy_dir(Path::new(FIXTURE_V2), &path);
    let (mut live, mut rng) = {
        let scratch = tempfile::tempdir().unwrap();
        fill_v2(&Database::open(scratch.path().join("s.msdb")).unwrap())
    };
    let q = rng.unit_vectors(5, DIM);
    {
        let ro = Database::open_read_only(&path).unwrap();
        assert_indexes_serve(&ro, &live, &q, 2);
    }
    let db = Database::builder(&path).retire_grace(std::time::Duration::ZERO).open().unwrap();
    assert!(db.check().unwrap().problems.is_empty(), "v2 files pass every checksum");
    assert_indexes_serve(&db, &live, &q, 2);

    // A new segment is written in format v3 with a side file per index.
    let extra: Vec<Document> = (0..6).map(|i| doc(&mut rng, &format!("n{i}"), 4, 2030)).collect();
    db.insert("c", &extra).unwrap();
    db.flush("c").unwrap();
    live.extend(extra);
    assert_indexes_serve(&db, &live, &q, 3);
    let seg_dir = path.join("segments/1");
    let count = |ext: &str| {
        std::fs::read_dir(&seg_dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == ext))
            .count()
    };
    assert_eq!((count("plaid"), count("hnsw"), count("muvera")), (1, 1, 1));

    // Compaction is the upgrade: one v3 segment, every index in side files, same answers.
    assert!(db.compact("c").unwrap());
    assert_eq!(count("seg"), 1);
    assert_eq!((count("plaid"), count("hnsw"), count("muvera")), (1, 1, 1), "old parts deleted (grace 0)");
    assert_indexes_serve(&db, &live, &q, 1);
    assert!(db.check().unwrap().problems.is_empty());
    db.close().unwrap();
    let db = Database::open(&path).unwrap();
    assert_indexes_serve(&db, &live, &q, 1);
}
