//! Recall calibration: `Plan::Auto` uses an approximate plan only with parameters measured
//! (on queries drawn from the collection) to reach the recall target, and scores exactly
//! otherwise; EXPLAIN reports the target and the calibrated recall.

use maxsimdb::testing::Rng;
use maxsimdb::{
    CollectionSpec, Database, Document, Dtype, HnswParams, PlaidOptions, Plan, SearchRequest, VectorSpec,
};

const D: usize = 16;
const TOPICS: usize = 50;

fn near(rng: &mut Rng, c: &[f32], noise: f32) -> Vec<f32> {
    let s = noise / (D as f32).sqrt();
    let mut v: Vec<f32> = c.iter().map(|x| x + s * rng.normal()).collect();
    maxsimdb::testing::normalize(&mut v);
    v
}

/// Tokens drawn around two of the topics (`count` of them).
fn around_two_topics(rng: &mut Rng, topics: &[f32], count: usize) -> Vec<f32> {
    let pick = [rng.below(TOPICS as u64) as usize, rng.below(TOPICS as u64) as usize];
    (0..count).flat_map(|i| near(rng, &topics[pick[i % 2] * D..(pick[i % 2] + 1) * D], 0.4)).collect()
}

/// The low-dimensional case (16-d clustered unit vectors, 4–12 tokens per document
/// drawn around 2 of 50 topics), at `n` documents, with a mean pooled vector.
fn low_dim(n: usize, spec: CollectionSpec) -> (tempfile::TempDir, Database, Rng, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("cal.msdb")).unwrap();
    db.create_collection(&spec).unwrap();
    let mut rng = Rng::new(17);
    let topics = rng.unit_vectors(TOPICS, D);
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            let len = 4 + rng.below(9) as usize;
            let t = around_two_topics(&mut rng, &topics, len);
            let mut mean = vec![0f32; D];
            t.chunks_exact(D).for_each(|r| mean.iter_mut().zip(r).for_each(|(m, x)| *m += x));
            maxsimdb::testing::normalize(&mut mean);
            Document::new(format!("d{i}")).tokens(t).pooled("mean", mean)
        })
        .collect();
    for chunk in docs.chunks(1500) {
        db.insert("c", chunk).unwrap();
        db.flush("c").unwrap();
    }
    (dir, db, rng, topics)
}

fn spec() -> CollectionSpec {
    CollectionSpec::new("c", VectorSpec::new(D).pooled("mean", D).dtype(Dtype::F16))
}

fn ids(h: &[maxsimdb::Hit]) -> Vec<String> {
    h.iter().map(|h| h.id.to_string()).collect()
}

/// Mean recall@10 of `req(q)` against exact over fresh queries around two topics.
fn recall_of(
    db: &Database,
    rng: &mut Rng,
    topics: &[f32],
    req: impl Fn(Vec<f32>) -> SearchRequest,
) -> (f32, Vec<maxsimdb::SearchOutput>) {
    let (mut found, mut want, mut outs) = (0, 0, Vec::new());
    for _ in 0..20 {
        let q = around_two_topics(rng, topics, 6);
        let exact =
            ids(&db.search("c", &SearchRequest::maxsim(q.clone()).limit(10).plan(Plan::Exact)).unwrap());
        let out = db.search_explained("c", &req(q)).unwrap();
        want += exact.len();
        found += ids(&out.hits).iter().filter(|i| exact.contains(i)).count();
        outs.push(out);
    }
    (found as f32 / want as f32, outs)
}

#[test]
fn auto_uses_plaid_only_at_its_calibrated_recall() {
    let (_d, db, mut rng, topics) = low_dim(4500, spec());
    // Defaults, as a new user would: the centroid count follows the data size.
    let info = db.create_plaid_index("c", PlaidOptions::default()).unwrap();
    let cal = db.calibrate_index("c", "plaid").unwrap();
    assert_eq!(cal.queries, 32);
    assert!(
        cal.settings.windows(2).all(|w| w[0].ncells <= w[1].ncells && w[0].ndocs <= w[1].ndocs),
        "{cal:?}"
    );
    // The uncalibrated default (ColBERT's ncells 1) is the defect the planner must avoid.
    let (default_recall, _) = recall_of(&db, &mut rng, &topics, |q| {
        SearchRequest::maxsim(q)
            .limit(10)
            .plan(Plan::Plaid)
            .plaid_params(maxsimdb::index::plaid::SearchParams::for_k(10))
    });

    let (auto_recall, outs) = recall_of(&db, &mut rng, &topics, |q| SearchRequest::maxsim(q).limit(10));
    let plaid_runs = outs.iter().filter(|o| o.plan == Plan::Plaid).count();
    eprintln!("low-dim case: {} centroids; default PLAID recall@10 {default_recall}; Auto {auto_recall} ({plaid_runs}/20 via PLAID); {cal:?}", info.centroids);
    assert!(
        auto_recall >= 0.95,
        "Auto recall@10 {auto_recall} (default ncells-1 PLAID: {default_recall}, {} centroids, {cal:?})",
        info.centroids
    );
    for out in &outs {
        let r = out.recall.expect("EXPLAIN reports the calibration");
        assert_eq!(r.target, maxsimdb::DEFAULT_RECALL_TARGET);
        if out.plan == Plan::Plaid {
            assert!(r.used && r.calibrated >= 0.95, "{r:?}");
        } else {
            // Ruled out: below the target, or not faster than exact here.
            assert_eq!(out.plan, Plan::Exact);
            assert!(!r.used, "{r:?}");
        }
    }
    // A query that asks for more than any setting reached is answered exactly.
    let best = cal.settings.iter().map(|s| s.recall).fold(0.0, f32::max);
    if best < 1.0 {
        let q = around_two_topics(&mut rng, &topics, 6);
        let out = db.search_explained("c", &SearchRequest::maxsim(q).limit(10).recall(1.0)).unwrap();
        assert_eq!(out.plan, Plan::Exact, "target 1.0 is above the best calibrated recall {best}");
    }
}

#[test]
fn a_lower_target_buys_a_cheaper_setting_and_the_calibration_survives_reopen() {
    let (dir, db, mut rng, topics) = low_dim(3000, spec().recall_target(0.5));
    db.create_plaid_index("c", PlaidOptions { centroids: Some(256), ..PlaidOptions::default() }).unwrap();
    let q = around_two_topics(&mut rng, &topics, 6);
    let out = db.search_explained("c", &SearchRequest::maxsim(q.clone()).limit(10)).unwrap();
    let r = out.recall.unwrap();
    assert_eq!((out.plan, r.target, r.used), (Plan::Plaid, 0.5, true), "{out:?}");
    let cal = db.calibrate_index("c", "plaid").unwrap();
    assert_eq!(r.calibrated, cal.choose(0.5).unwrap().recall, "the cheapest setting reaching 0.5");
    drop(db);
    let db = Database::open(dir.path().join("cal.msdb")).unwrap();
    let again = db.search_explained("c", &SearchRequest::maxsim(q).limit(10)).unwrap();
    assert_eq!(again.recall, out.recall, "stored with the index");
}

#[test]
fn dense_hnsw_is_calibrated_too() {
    let (_d, db, mut rng, topics) = low_dim(3000, spec());
    db.create_hnsw_index("c", "mean", HnswParams::default()).unwrap();
    let (mut found, mut want) = (0, 0);
    for _ in 0..20 {
        let q = near(&mut rng, &topics[..D], 0.8);
        let exact = ids(&db
            .search("c", &SearchRequest::dense("mean", q.clone()).limit(10).plan(Plan::Exact))
            .unwrap());
        let out = db.search_explained("c", &SearchRequest::dense("mean", q).limit(10)).unwrap();
        let r = out.recall.expect("calibrated");
        assert!(out.plan != Plan::Hnsw || (r.used && r.calibrated >= 0.95), "{out:?}");
        want += exact.len();
        found += ids(&out.hits).iter().filter(|i| exact.contains(i)).count();
    }
    assert!(found as f32 / want as f32 >= 0.95, "dense Auto recall {found}/{want}");
}
