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
