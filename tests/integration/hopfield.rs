//! Hopfield associative lookup over a collection (recall, completion) and Hopfield query
//! refinement before search.

use maxsimdb::testing::{normalize, Rng};
use maxsimdb::{
    CollectionSpec, Database, Document, Error, Filter, HopfieldLookup, HopfieldParams, Plan, Refine,
    SearchRequest, VectorSpec,
};

const D: usize = 64;

fn setup(n: usize) -> (tempfile::TempDir, Database, Vec<Vec<f32>>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("h.msdb")).unwrap();
    db.create_collection(
        &CollectionSpec::new("c", VectorSpec::new(D).pooled("v", D))
            .column("group", maxsimdb::ColumnType::Integer),
    )
    .unwrap();
    let mut rng = Rng::new(11);
    let vecs: Vec<Vec<f32>> = (0..n).map(|_| rng.unit_vectors(1, D)).collect();
    let docs: Vec<Document> = vecs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut toks = rng.unit_vectors(3, D);
            toks[..D].copy_from_slice(v);
            Document::new(format!("d{i}")).pooled("v", v.clone()).tokens(toks).set("group", (i % 4) as i64)
        })
        .collect();
    db.insert("c", &docs).unwrap();
    (dir, db, vecs)
}

fn dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

#[test]
fn recall_retrieves_the_stored_pattern_from_a_noisy_query() {
    let (_dir, db, vecs) = setup(500);
    let mut rng = Rng::new(3);
    let opts = HopfieldLookup {
        params: HopfieldParams { beta: 50.0, steps: 3, eps: 1e-4 },
        ..HopfieldLookup::default()
    };
    for i in [0usize, 42, 499] {
        let mut q: Vec<f32> = vecs[i].iter().map(|x| x + 0.1 * rng.normal() / (D as f32).sqrt()).collect();
        normalize(&mut q);
        let r = db.hopfield_recall("c", "v", &q, &opts).unwrap();
        assert_eq!(r.weights[0].0.to_string(), format!("d{i}"));
        assert!(r.weights[0].1 > 0.99, "{}", r.weights[0].1);
        assert!(!r.metastable);
        assert!(dist(&r.state, &vecs[i]) < 1e-3);
        assert!((r.weights.iter().map(|w| w.1).sum::<f32>() - 1.0).abs() < 1e-4);
        assert_eq!(r.weights.len(), 100, "top_k memories");
        assert!(r.energy >= 0.0);
    }
    // β = 0 averages the memories: a metastable state with uniform weights.
    let flat =
        HopfieldLookup { params: HopfieldParams { beta: 0.0, steps: 1, eps: 1e-4 }, top_k: 10, filter: None };
    let r = db.hopfield_recall("c", "v", &vecs[7], &flat).unwrap();
    assert!(r.metastable);
    assert!(r.weights.iter().all(|w| (w.1 - 0.1).abs() < 1e-5));
    // The filter restricts the memories.
    let f = HopfieldLookup { filter: Some(Filter::eq("group", 1i64)), ..opts.clone() };
    let r = db.hopfield_recall("c", "v", &vecs[42], &f).unwrap();
    assert!(r.weights.iter().all(|(id, _)| id.to_string()[1..].parse::<usize>().unwrap() % 4 == 1));
    // Errors.
    assert!(matches!(
        db.hopfield_recall("c", "v", &vecs[0][..10], &opts),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(db.hopfield_recall("c", "nope", &vecs[0], &opts), Err(Error::NotFound { .. })));
    let bad =
        HopfieldLookup { params: HopfieldParams { beta: -1.0, ..HopfieldParams::default() }, ..opts.clone() };
    assert!(matches!(db.hopfield_recall("c", "v", &vecs[0], &bad), Err(Error::InvalidArgument(_))));
    let none = HopfieldLookup { filter: Some(Filter::eq("group", 9i64)), ..opts };
    assert!(matches!(db.hopfield_recall("c", "v", &vecs[0], &none), Err(Error::InvalidArgument(_))));
}

#[test]
fn completion_fills_the_unknown_dimensions() {
    let (_dir, db, vecs) = setup(300);
    let known: Vec<bool> = (0..D).map(|j| j % 2 == 0).collect();
    let target = 123;
    let mut cue = vecs[target].clone();
    cue.iter_mut().zip(&known).for_each(|(v, &k)| {
        if !k {
            *v = 7.0; // ignored
        }
    });
    let opts = HopfieldLookup {
        params: HopfieldParams { beta: 80.0, steps: 1, eps: 1e-4 },
        ..HopfieldLookup::default()
    };
    let r = db.hopfield_complete("c", "v", &cue, &known, &opts).unwrap();
    assert_eq!(r.weights[0].0.to_string(), format!("d{target}"));
    assert!(dist(&r.state, &vecs[target]) < 1e-2, "completed: {}", dist(&r.state, &vecs[target]));
    assert!(matches!(
        db.hopfield_complete("c", "v", &cue, &[false; D], &opts),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        db.hopfield_complete("c", "v", &cue, &known[1..], &opts),
        Err(Error::DimensionMismatch { .. })
    ));
}

#[test]
fn refinement_rewrites_the_query_before_searching() {
    let (_dir, db, vecs) = setup(400);
    let q = vecs[5].clone();
    // α = 0 leaves the query unchanged: the same answer, plus a `hopfield` stage.
    let plain = db.search("c", &SearchRequest::dense("v", q.clone())).unwrap();
    let same = db
        .search_explained(
            "c",
            &SearchRequest::dense("v", q.clone()).refine(Refine { alpha: 0.0, ..Refine::default() }),
        )
        .unwrap();
    // (the refined query is re-normalised: scores agree to rounding)
    assert_eq!(
        same.hits.iter().map(|h| &h.id).collect::<Vec<_>>(),
        plain.iter().map(|h| &h.id).collect::<Vec<_>>()
    );
    assert!(same.hits.iter().zip(&plain).all(|(a, b)| (a.score - b.score).abs() < 1e-5));
    assert_eq!(same.stages[0].name, "hopfield");
    assert_eq!(same.stages[0].docs, 10);
    // α = 1, large β: the query becomes its best match, which then scores exactly 1.
    let hard = db
        .search(
            "c",
            &SearchRequest::dense("v", q.clone()).refine(Refine {
                alpha: 1.0,
                beta: 1e4,
                ..Refine::default()
            }),
        )
        .unwrap();
    assert_eq!(hard[0].id.to_string(), "d5");
    assert!((hard[0].score - 1.0).abs() < 1e-4);
    // MaxSim refinement runs per token; masked-out tokens are left alone, and the scores
    // are exact MaxSim scores of the refined query.
    // A query of noisy copies of d9's tokens: refinement pulls each token towards the
    // stored one, so d9 stays first and scores higher than before refinement.
    let d9 = db.get("c", &maxsimdb::DocId::from("d9")).unwrap().unwrap().tokens;
    let mut rng = Rng::new(9);
    let mut qt: Vec<f32> = d9.iter().map(|x| x + 0.3 * rng.normal() / (D as f32).sqrt()).collect();
    qt.chunks_exact_mut(D).for_each(normalize);
    let before = db.search("c", &SearchRequest::maxsim(qt.clone())).unwrap();
    let req = SearchRequest::maxsim(qt.clone()).refine(Refine::default()).plan(Plan::Exact);
    let out = db.search_explained("c", &req).unwrap();
    assert_eq!(out.stages.iter().map(|s| s.name).collect::<Vec<_>>(), ["hopfield", "filter", "exact"]);
    assert_eq!((before[0].id.to_string(), out.hits[0].id.to_string()), ("d9".into(), "d9".into()));
    assert!(out.hits[0].score > before[0].score + 0.05, "{} vs {}", out.hits[0].score, before[0].score);
    // Masked-out query tokens are not refined (and not scored).
    let mask = vec![true, false, false];
    let masked = maxsimdb::Query::MaxSim { tokens: qt.clone(), mask: Some(mask.clone()) };
    let one = db.search("c", &SearchRequest::new(masked).refine(Refine::default())).unwrap();
    assert!(one[0].score <= 1.0 + 1e-4, "one token counts: {}", one[0].score);
    let bad = Refine { alpha: 2.0, ..Refine::default() };
    assert!(matches!(
        db.search("c", &SearchRequest::dense("v", q).refine(bad)),
        Err(Error::InvalidArgument(_))
    ));
}
