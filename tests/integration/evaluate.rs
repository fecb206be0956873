//! The pooling lab (`Database::evaluate`, SQL `EVALUATE`) on collections where the right
//! answer is known.

use std::fmt::Write as _;

use maxsimdb::eval::paired_test;
use maxsimdb::rng::Rng;
use maxsimdb::sql::Session;
use maxsimdb::{CollectionSpec, Database, Document, Dtype, Error, EvalOptions, Value, VectorSpec};

const DIM: usize = 64;
const QUERIES: usize = 40;

fn unit(rng: &mut Rng) -> Vec<f32> {
    rng.unit_vectors(1, DIM)
}

/// 200 documents of 8 random unit tokens; document i < 40 also holds one "signal" token
/// e_i (a basis vector), and query i is e_i plus a little noise whose only relevant
/// document is i. Max pooling keeps the signal channel at 1 while the mean dilutes it to
/// 1/9 of the vector; MaxSim finds the token exactly. Writes the BEIR files; returns
/// (dir, db).
fn signal_in_one_token() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("lab.msdb")).unwrap();
    db.create_collection(&CollectionSpec::new("c", VectorSpec::new(DIM).dtype(Dtype::F16))).unwrap();
    let mut rng = Rng::new(11);
    let docs: Vec<Document> = (0..200)
        .map(|i| {
            let mut t: Vec<f32> = (0..8).flat_map(|_| unit(&mut rng)).collect();
            if i < QUERIES {
                let mut e = vec![0.0; DIM];
                e[i] = 1.0;
                t.extend(e);
            }
            Document::new(format!("d{i}")).tokens(t)
        })
        .collect();
    db.insert("c", &docs).unwrap();
    db.flush("c").unwrap();
    let (mut q, mut r) = (String::new(), String::from("query-id\tcorpus-id\tscore\n"));
    for i in 0..QUERIES {
        let mut e: Vec<f32> = unit(&mut rng).iter().map(|x| 0.1 * x).collect();
        e[i] += 1.0;
        writeln!(q, "{}", serde_json::json!({"_id": format!("q{i}"), "tokens": [e]})).unwrap();
        writeln!(r, "q{i}\td{i}\t1").unwrap();
    }
    std::fs::write(dir.path().join("queries.jsonl"), q).unwrap();
    std::fs::write(dir.path().join("qrels.tsv"), r).unwrap();
    (dir, db)
}

fn opts(dir: &tempfile::TempDir) -> EvalOptions {
    EvalOptions {
        queries: Some(dir.path().join("queries.jsonl")),
        qrels: Some(dir.path().join("qrels.tsv")),
        permutations: 4000,
        bootstrap: 1000,
        ..EvalOptions::default()
    }
}

#[test]
fn max_pooling_beats_mean_when_the_signal_sits_in_one_token() {
    let (dir, db) = signal_in_one_token();
    let mut steps = Vec::new();
    let r = db
        .evaluate("c", &opts(&dir), &mut |s, done, total| steps.push((s.to_string(), done, total)))
        .unwrap();
    assert_eq!((r.docs, r.queries), (200, QUERIES));
    assert!(steps.iter().any(|(s, d, t)| s == "load" && d == t), "progress reports each phase");
    let row =
        |name: &str| r.rows.iter().find(|x| x.candidate == name).unwrap_or_else(|| panic!("no row {name}"));
    let (max, mean, maxsim) = (row("dense max"), row("dense mean"), row("maxsim"));
    assert!(maxsim.ndcg_at_10 > 0.95 && max.ndcg_at_10 > 0.9, "{} {}", maxsim.ndcg_at_10, max.ndcg_at_10);
    assert!(max.ndcg_at_10 > mean.ndcg_at_10 + 0.2, "max {} mean {}", max.ndcg_at_10, mean.ndcg_at_10);
    // The paired test on the rows' own per-query scores, and the report's verdicts.
    let t = paired_test(&max.per_query, &mean.per_query, 4000, 1000, 1);
    assert!(t.p_value < 0.05 && t.ci_low > 0.0, "{t:?}");
    assert_eq!(mean.verdict, "worse");
    assert!(mean.p_holm < 0.05 && mean.p_holm >= mean.p_value);
    assert_eq!(r.rows[0].verdict, "best");
    assert_eq!(r.rows.iter().filter(|x| x.verdict == "best").count(), 1);
    assert!(r.rows.windows(2).all(|w| w[0].ndcg_at_10 >= w[1].ndcg_at_10), "best first");
    // Token pooling: fewer bytes per document as the factor grows.
    let bytes: Vec<f64> =
        ["maxsim", "maxsim pool 2", "maxsim pool 4"].iter().map(|n| row(n).bytes_per_doc).collect();
    assert!(bytes[0] > bytes[1] && bytes[1] > bytes[2], "{bytes:?}");
    // The recommendation: the cheapest row not significantly worse, with a statement —
    // one pooled vector (64 f16 = 128 bytes) instead of ~8.2 tokens of 128 bytes.
    let rec = row(&r.recommended);
    assert_ne!(rec.verdict, "worse");
    assert!(rec.statement.is_some() && rec.bytes_per_doc < maxsim.bytes_per_doc / 4.0, "{rec:?}");
    assert!(r.recommendation.contains(&r.recommended), "{}", r.recommendation);
    assert!(r.judgments.contains("qrels.tsv"));
    assert!(r.notes.iter().any(|n| n.contains("BM25")), "says why BM25 is missing: {:?}", r.notes);
}

#[test]
fn a_sampled_run_keeps_the_relevant_documents_and_is_reproducible() {
    let (dir, db) = signal_in_one_token();
    let o = EvalOptions { sample_docs: Some(60), sample_queries: Some(20), ..opts(&dir) };
    let a = db.evaluate("c", &o, &mut |_, _, _| {}).unwrap();
    assert_eq!((a.docs, a.queries), (60, 20));
    // Every sampled query's relevant document is among the 60: MaxSim still finds them.
    let maxsim = a.rows.iter().find(|x| x.candidate == "maxsim").unwrap();
    assert!(maxsim.ndcg_at_10 > 0.95, "{}", maxsim.ndcg_at_10);
    let b = db.evaluate("c", &o, &mut |_, _, _| {}).unwrap();
    let strip = |r: &maxsimdb::EvalReport| {
        r.rows.iter().map(|x| (x.candidate.clone(), x.per_query.clone(), x.p_value)).collect::<Vec<_>>()
    };
    assert_eq!(strip(&a), strip(&b), "same seed, same samples and tests");
    let c = db.evaluate("c", &EvalOptions { seed: 2, ..o }, &mut |_, _, _| {}).unwrap();
    assert_ne!(strip(&a), strip(&c), "another seed draws other queries");
}

#[test]
fn evaluate_statement_and_its_errors() {
    let (dir, db) = signal_in_one_token();
    let s = Session::new(db.clone());
    let q = dir.path().join("queries.jsonl").display().to_string();
    let r = dir.path().join("qrels.tsv").display().to_string();
    let out = s
        .execute(&format!(
            "EVALUATE c WITH (queries = '{q}', qrels = '{r}', permutations = 2000, bootstrap = 500)"
        ))
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(out.columns[..3], ["candidate", "kind", "ndcg_at_10"]);
    assert_eq!(out.rows[0][12], Value::Text("best".into()));
    let msg = out.message.unwrap();
    assert!(msg.contains("Recommended:") && msg.contains("40 queries"), "{msg}");
    // The chart: one point per row, the recommended row labelled on the Pareto front.
    let svg_path = dir.path().join("lab.svg");
    let out = s
        .execute(&format!(
            "EVALUATE c WITH (queries = '{q}', qrels = '{r}', permutations = 500, bootstrap = 200, chart = '{}')",
            svg_path.display()
        ))
        .unwrap()
        .pop()
        .unwrap();
    assert!(out.message.as_deref().unwrap().contains("Chart written"));
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.matches("<circle").count() >= out.rows.len(), "a point per row");
    assert!(svg.contains("← recommended") && svg.contains("Pareto front") && svg.contains("nDCG@10"));
    let err = s
        .execute(&format!(
            "EVALUATE c WITH (queries = '{q}', qrels = '{r}', chart = '{}')",
            svg_path.display()
        ))
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "an existing chart is not overwritten: {err}");
    for (sql, want) in [
        (format!("EVALUATE c WITH (queries = '{q}')"), "both queries"),
        ("EVALUATE c".to_string(), "self-supervised"),
        (format!("EVALUATE c WITH (queries = '{q}', qrels = '{r}', alpha = 2)"), "alpha"),
        (format!("EVALUATE c WITH (queries = '{q}', qrels = '{r}', bogus = 1)"), "unknown option 'bogus'"),
    ] {
        let err = s.execute(&sql).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{sql}: {err}");
        assert!(err.to_string().contains(want), "{sql}: {err}");
    }
    assert!(matches!(s.execute("EVALUATE nope").unwrap_err(), Error::NotFound { .. }));
    // Judgments naming no document of the collection are refused, not scored as zeros.
    std::fs::write(dir.path().join("bad.tsv"), "q1\tmissing\t1\n").unwrap();
    let bad = dir.path().join("bad.tsv").display().to_string();
    let err = s.execute(&format!("EVALUATE c WITH (queries = '{q}', qrels = '{bad}')")).unwrap_err();
    assert!(err.to_string().contains("no query"), "{err}");
}
