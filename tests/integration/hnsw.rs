//! HNSW graphs over pooled vectors inside collections: built at flush and compaction,
//! stored in the segments, chosen by the planner for dense search.

use maxsimdb::scoring::scalar;
use maxsimdb::testing::Rng;
use maxsimdb::{Database, Document, Dtype, Error, Filter, HnswParams, Plan, SearchRequest};

use crate::common::{doc, spec, DIM};

fn setup(n: usize) -> (tempfile::TempDir, Database, Vec<Document>, Rng) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("h.msdb")).unwrap();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let mut rng = Rng::new(21);
    let docs: Vec<Document> =
        (0..n).map(|i| doc(&mut rng, &format!("d{i}"), 2 + i % 5, 1990 + (i % 40) as i64)).collect();
    for chunk in docs.chunks(1000) {
        db.insert("c", chunk).unwrap();
        db.flush("c").unwrap();
    }
    (dir, db, docs, rng)
}

fn ids(h: &[maxsimdb::Hit]) -> Vec<String> {
    h.iter().map(|h| h.id.to_string()).collect()
}

#[test]
fn hnsw_index_serves_dense_search_and_stays_current() {
    let (dir, db, docs, mut rng) = setup(4000);
    assert!(matches!(
        db.search("c", &SearchRequest::dense("mean", rng.unit_vectors(1, DIM)).plan(Plan::Hnsw)),
        Err(Error::NotAvailable(_))
    ));
    let info = db.create_hnsw_index("c", "mean", HnswParams::default()).unwrap();
    assert_eq!(info.kind, "hnsw:mean");
    assert_eq!(info.segments_indexed, info.segments);
    assert!(matches!(db.create_hnsw_index("c", "nope", HnswParams::default()), Err(Error::NotFound { .. })));

    let mut hit = 0;
    for _ in 0..30 {
        let q = rng.unit_vectors(1, DIM);
        let exact = db.search("c", &SearchRequest::dense("mean", q.clone()).plan(Plan::Exact)).unwrap();
        let out = db.search_explained("c", &SearchRequest::dense("mean", q.clone())).unwrap();
        assert_eq!(out.plan, Plan::Hnsw, "4,000 indexed documents: the graph");
        let st: Vec<&str> = out.stages.iter().map(|s| s.name).collect();
        assert_eq!(st, ["filter", "hnsw", "exact"]);
        let want = ids(&exact);
        hit += ids(&out.hits).iter().filter(|i| want.contains(i)).count();
        // Scores are exact dot products with the stored (f16) vectors.
        for h in &out.hits {
            let d = docs.iter().find(|d| d.id == h.id).unwrap();
            let v: Vec<f32> = d.pooled[0].1.iter().map(|x| half::f16::from_f32(*x).to_f32()).collect();
            assert!((scalar::dot(&q, &v) - h.score).abs() < 1e-4);
        }
    }
    assert!(hit * 100 >= 30 * 10 * 95, "recall@10 vs exact {hit}/300");

    // Deleted documents never come back; a selective filter is planned exact, a broad one
    // walks the graph and still returns only allowed documents.
    let q = rng.unit_vectors(1, DIM);
    let top = db.search("c", &SearchRequest::dense("mean", q.clone())).unwrap();
    db.delete("c", &[top[0].id.clone()]).unwrap();
    assert!(!ids(&db.search("c", &SearchRequest::dense("mean", q.clone())).unwrap())
        .contains(&top[0].id.to_string()));
    let narrow = Filter::eq("year", 1995i64);
    let out = db.search_explained("c", &SearchRequest::dense("mean", q.clone()).filter(narrow)).unwrap();
    assert_eq!(out.plan, Plan::Exact);
    let broad = Filter::gte("year", 2000i64);
    let out = db.search_explained("c", &SearchRequest::dense("mean", q.clone()).filter(broad)).unwrap();
    assert_eq!(out.plan, Plan::Hnsw);
    let year_ok = |h: &maxsimdb::Hit| {
        h.values.iter().any(|(k, v)| k == "year" && matches!(v, maxsimdb::Value::Integer(y) if *y >= 2000))
    };
    assert!(!out.hits.is_empty() && out.hits.iter().all(year_ok));

    // MaxSim with HNSW candidates (asked for): exact MaxSim scores on what it finds.
    let qt = rng.unit_vectors(4, DIM);
    let out = db
        .search_explained("c", &SearchRequest::maxsim(qt.clone()).plan(Plan::Hnsw).candidates(300))
        .unwrap();
    assert_eq!(out.plan, Plan::Hnsw);
    let all = db.search("c", &SearchRequest::maxsim(qt).plan(Plan::Exact).limit(4000)).unwrap();
    for h in &out.hits {
        assert_eq!(all.iter().find(|a| a.id == h.id).unwrap().score, h.score);
    }

    // New segments get graphs; the index survives a reopen; dropping it returns to exact.
    let mut rng2 = Rng::new(5);
    let extra: Vec<Document> = (0..300).map(|i| doc(&mut rng2, &format!("n{i}"), 3, 2001)).collect();
    db.insert("c", &extra).unwrap();
    db.flush("c").unwrap();
    let info = db.indexes("c").unwrap().remove(0);
    assert_eq!(info.segments_indexed, info.segments);
    let own = extra[9].pooled[0].1.clone();
    assert_eq!(
        db.search("c", &SearchRequest::dense("mean", own).plan(Plan::Hnsw)).unwrap()[0].id.to_string(),
        "n9"
    );
    db.close().unwrap();
    let db = Database::open(dir.path().join("h.msdb")).unwrap();
    assert_eq!(db.search_explained("c", &SearchRequest::dense("mean", q.clone())).unwrap().plan, Plan::Hnsw);
    assert!(db.check().unwrap().problems.is_empty());
    assert!(db.drop_index("c", "hnsw:mean").unwrap());
    assert_eq!(db.search_explained("c", &SearchRequest::dense("mean", q)).unwrap().plan, Plan::Exact);
}
