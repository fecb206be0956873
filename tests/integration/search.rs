use std::collections::HashMap;

use maxsimdb::scoring::scalar;
use maxsimdb::testing::Rng;
use maxsimdb::{CollectionSpec, Document, Dtype, Error, Filter, SearchRequest, Value, VectorSpec, MAX_LIMIT};

use crate::common::{doc, spec, tempdb, DIM};

/// Build a collection with segments, pending rows and tombstones; return the live docs.
pub fn mixed(db: &maxsimdb::Database, dtype: Dtype, rng: &mut Rng) -> Vec<Document> {
    db.create_collection(&spec("c", dtype)).unwrap();
    let docs: Vec<Document> =
        (0..60).map(|i| doc(rng, &format!("d{i}"), 1 + (i * 7) % 23, 1990 + i as i64 % 30)).collect();
    db.insert("c", &docs[..25]).unwrap();
    db.flush("c").unwrap();
    db.insert("c", &docs[25..45]).unwrap();
    db.flush("c").unwrap();
    db.insert("c", &docs[45..]).unwrap();
    let dead = ["d3", "d30", "d50"];
    db.delete("c", &dead.map(Into::into)).unwrap();
    docs.into_iter().filter(|d| !dead.contains(&d.id.to_string().as_str())).collect()
}

/// What the stored vectors are after the storage round trip.
pub fn stored(v: &[f32], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F32 => v.to_vec(),
        Dtype::F16 => v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect(),
    }
}

fn check_against_oracle(dtype: Dtype) {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(10);
    let live = mixed(&db, dtype, &mut rng);
    for qn in [1, 5, 32] {
        let q = rng.unit_vectors(qn, DIM);
        let hits = db.search("c", &SearchRequest::maxsim(q.clone()).limit(MAX_LIMIT)).unwrap();
        assert_eq!(hits.len(), live.len());
        let truth: HashMap<String, f32> = live
            .iter()
            .map(|d| (d.id.to_string(), scalar::maxsim(&q, &stored(&d.tokens, dtype), DIM)))
            .collect();
        for w in hits.windows(2) {
            assert!(w[0].score >= w[1].score, "hits sorted best first");
        }
        for h in &hits {
            let t = truth[&h.id.to_string()];
            assert!((h.score - t).abs() <= 1e-5 * qn as f32, "{}: {} vs oracle {t}", h.id, h.score);
        }
        let top = db.search("c", &SearchRequest::maxsim(q).limit(7)).unwrap();
        assert_eq!(top, hits[..7].to_vec(), "limit returns the same prefix");
    }
}

#[test]
fn exact_maxsim_matches_oracle_f32() {
    check_against_oracle(Dtype::F32);
}

#[test]
fn exact_maxsim_matches_oracle_f16() {
    check_against_oracle(Dtype::F16);
}

#[test]
fn dense_search_matches_brute_force() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(11);
    let live = mixed(&db, Dtype::F16, &mut rng);
    let q = rng.unit_vectors(1, DIM);
    let hits = db.search("c", &SearchRequest::dense("mean", q.clone()).limit(10)).unwrap();
    let mut truth: Vec<(f32, String)> = live
        .iter()
        .map(|d| (scalar::dot(&q, &stored(&d.pooled[0].1, Dtype::F16)), d.id.to_string()))
        .collect();
    truth.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (h, (s, id)) in hits.iter().zip(&truth) {
        assert_eq!(h.id.to_string(), *id);
        assert!((h.score - s).abs() < 1e-5);
    }
    assert!(matches!(
        db.search("c", &SearchRequest::dense("nope", q.clone())),
        Err(Error::NotFound { kind: "pooled vector", .. })
    ));
    assert!(matches!(
        db.search("c", &SearchRequest::dense("mean", q[..3].to_vec())),
        Err(Error::DimensionMismatch { .. })
    ));
}

#[test]
fn filters_restrict_results_exactly() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(12);
    let live = mixed(&db, Dtype::F32, &mut rng);
    let year = |d: &Document| match d.values[0].1 {
        Value::Integer(y) => y,
        _ => unreachable!(),
    };
    type Pred = Box<dyn Fn(&Document) -> bool>;
    let cases: Vec<(Filter, Pred)> = vec![
        (Filter::gte("year", 2010), Box::new(move |d| year(d) >= 2010)),
        (Filter::between("year", 1995, 1999), Box::new(move |d| (1995..=1999).contains(&year(d)))),
        (
            Filter::is_in("year", vec![1990.into(), 2001.into()]),
            Box::new(move |d| [1990, 2001].contains(&year(d))),
        ),
        (Filter::like("title", "title d1%"), Box::new(|d| d.id.to_string().starts_with("d1"))),
        (
            Filter::eq("year", 1992).or(Filter::eq("id", "d40")),
            Box::new(move |d| year(d) == 1992 || d.id.to_string() == "d40"),
        ),
        (Filter::lt("year", 2000).not(), Box::new(move |d| year(d) >= 2000)),
        (Filter::is_null("meta"), Box::new(|_| true)),
        (
            Filter::ids(&["d5".into(), "d47".into(), "d30".into()]),
            Box::new(|d| ["d5", "d47"].contains(&d.id.to_string().as_str())),
        ),
    ];
    let q = rng.unit_vectors(4, DIM);
    for (f, pred) in cases {
        let hits =
            db.search("c", &SearchRequest::maxsim(q.clone()).filter(f.clone()).limit(MAX_LIMIT)).unwrap();
        let mut want: Vec<String> = live.iter().filter(|d| pred(d)).map(|d| d.id.to_string()).collect();
        let mut got: Vec<String> = hits.iter().map(|h| h.id.to_string()).collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "filter {f:?}");
    }
    for bad in [Filter::eq("nope", 1), Filter::eq("year", "text"), Filter::is_in("year", vec![])] {
        let r = db.search("c", &SearchRequest::maxsim(q.clone()).filter(bad));
        assert!(matches!(r, Err(Error::NotFound { .. } | Error::InvalidArgument(_))), "{r:?}");
    }
}

/// `IN` lists far beyond SQLite's 32,766 parameters (the new-user issue's 100,000 ids),
/// for text ids, integer columns, negated, through search, listing, count and delete.
#[test]
fn in_lists_of_a_hundred_thousand_values_work() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(13);
    let live = mixed(&db, Dtype::F32, &mut rng);
    let mut ids: Vec<Value> = (0..100_000).map(|i| Value::Text(format!("x{i}"))).collect();
    ids.extend(["d5", "d47", "d30"].map(|s| Value::Text(s.into())));
    let q = rng.unit_vectors(4, DIM);
    let f = Filter::is_in("id", ids.clone());
    let hits = db.search("c", &SearchRequest::maxsim(q.clone()).filter(f.clone()).limit(MAX_LIMIT)).unwrap();
    let mut got: Vec<String> = hits.iter().map(|h| h.id.to_string()).collect();
    got.sort();
    assert_eq!(got, ["d47", "d5"], "d30 is deleted");
    assert_eq!(db.count("c", Some(&f)).unwrap(), 2);
    let not_in = Filter::In { column: "id".into(), values: ids, negated: true };
    assert_eq!(db.count("c", Some(&not_in)).unwrap(), live.len() as u64 - 2);
    let years: Vec<Value> = (0..50_000).map(|y| Value::Integer(y * 1000 + 1995)).collect();
    let by_year = db.list("c", &maxsimdb::ListRequest::new().filter(Filter::is_in("year", years))).unwrap();
    let want = live.iter().filter(|d| d.values[0].1 == Value::Integer(1995)).count();
    assert!(want > 0);
    assert_eq!(by_year.len(), want);
    // REAL lists keep exact binding and say where their limit is.
    let reals: Vec<Value> = (0..40_000).map(|i| Value::Real(f64::from(i))).collect();
    let err = db.count("c", Some(&Filter::is_in("year", reals))).unwrap_err();
    assert!(err.to_string().contains("at most 30000"), "{err}");
    assert_eq!(db.delete_where("c", &Filter::is_in("id", vec![Value::Text("d5".into()); 300])).unwrap(), 1);
}

#[test]
fn filter_literals_are_bound_not_spliced() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(13);
    db.create_collection(&spec("c", Dtype::F32)).unwrap();
    let mut d = doc(&mut rng, "a", 2, 1);
    d.values = vec![("title".into(), "x' OR '1'='1".into())];
    db.insert("c", &[d]).unwrap();
    let q = rng.unit_vectors(1, DIM);
    let hostile = Filter::eq("title", "nothing' OR '1'='1");
    assert!(db.search("c", &SearchRequest::maxsim(q.clone()).filter(hostile)).unwrap().is_empty());
    let exact = Filter::eq("title", "x' OR '1'='1");
    assert_eq!(db.search("c", &SearchRequest::maxsim(q).filter(exact)).unwrap().len(), 1);
}

#[test]
fn canonical_masking_through_the_database() {
    // ALGORITHMS.md §1.1: Q=[[1]], D=[[-0.5],[pad]] scores −0.5 (pads are never stored).
    let (_d, db) = tempdb();
    db.create_collection(&CollectionSpec::new("m", VectorSpec::new(1).dtype(Dtype::F32))).unwrap();
    db.insert("m", &[Document::new("d").tokens(vec![-0.5])]).unwrap();
    let hits = db.search("m", &SearchRequest::maxsim(vec![1.0])).unwrap();
    assert_eq!(hits[0].score, -0.5);
    // Masked query tokens are left out of the sum; zero valid query tokens score 0.
    let mut req = SearchRequest::maxsim(vec![1.0, 2.0]);
    req.query = maxsimdb::Query::MaxSim { tokens: vec![1.0, 2.0], mask: Some(vec![true, false]) };
    assert_eq!(db.search("m", &req).unwrap()[0].score, -0.5);
    req.query = maxsimdb::Query::MaxSim { tokens: vec![1.0, 2.0], mask: Some(vec![false, false]) };
    assert_eq!(db.search("m", &req).unwrap()[0].score, 0.0);
}

#[test]
fn limits() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(14);
    mixed(&db, Dtype::F16, &mut rng);
    let q = rng.unit_vectors(2, DIM);
    assert!(db.search("c", &SearchRequest::maxsim(q.clone()).limit(0)).unwrap().is_empty());
    assert!(matches!(
        db.search("c", &SearchRequest::maxsim(q).limit(MAX_LIMIT + 1)),
        Err(Error::InvalidArgument(_))
    ));
}

/// `SELECT tokens, <pooled>` returns the stored vectors as JSON arrays, exactly (f32
/// collections) — in listings and in searches; a scalar column of the same name wins.
#[test]
fn select_returns_vector_columns_exactly() {
    let (_dir, db) = tempdb();
    let spec =
        CollectionSpec::new("v", VectorSpec::new(2).pooled("mean", 2).pooled("title", 2).dtype(Dtype::F32))
            .column("title", maxsimdb::ColumnType::Text);
    db.create_collection(&spec).unwrap();
    let tokens = vec![0.1f32, 0.2, 1.0 / 3.0, -7.25];
    db.insert(
        "v",
        &[Document::new("a")
            .tokens(tokens.clone())
            .pooled("mean", vec![0.3, 0.4])
            .pooled("title", vec![1.0, 0.0])
            .set("title", "A")],
    )
    .unwrap();
    let s = maxsimdb::sql::Session::new(db.clone());
    let floats = |v: &Value| -> Vec<f32> {
        let Value::Json(j) = v else { panic!("{v:?} is not JSON") };
        let mut out = Vec::new();
        for x in j.as_array().unwrap() {
            match x.as_array() {
                Some(row) => out.extend(row.iter().map(|y| y.as_f64().unwrap() as f32)),
                None => out.push(x.as_f64().unwrap() as f32),
            }
        }
        out
    };
    for sql in [
        "SELECT id, tokens, mean, title FROM v",
        "SELECT id, tokens, mean, title FROM v ORDER BY maxsim('[[1,0]]')",
    ] {
        let r = s.execute(sql).unwrap().remove(0);
        assert_eq!(r.columns, ["id", "tokens", "mean", "title"], "{sql}");
        let row = &r.rows[0];
        assert_eq!(
            floats(&row[1]).iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            tokens.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(floats(&row[2]), [0.3, 0.4]);
        assert_eq!(row[3], Value::Text("A".into()), "the scalar column named like a pooled vector wins");
    }
    assert!(s.execute("SELECT id, nope FROM v").is_err());
}
