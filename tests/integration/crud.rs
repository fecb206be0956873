use maxsimdb::testing::Rng;
use maxsimdb::{
    CollectionSpec, ColumnType, Database, DocId, Document, Dtype, Error, Filter, SearchRequest, Value,
    VectorSpec,
};

use crate::common::{doc, spec, tempdb, DIM};

#[test]
fn collections_create_list_describe_drop() {
    let (_d, db) = tempdb();
    let s = spec("papers", Dtype::F16);
    db.create_collection(&s).unwrap();
    db.create_collection(&spec("notes", Dtype::F32)).unwrap();
    let names: Vec<String> = db.collections().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec!["notes", "papers"]);
    assert_eq!(db.describe("PAPERS").unwrap(), s, "names are case-insensitive");
    assert!(matches!(db.create_collection(&s), Err(Error::AlreadyExists { .. })));
    db.drop_collection("notes").unwrap();
    assert!(matches!(db.describe("notes"), Err(Error::NotFound { .. })));
    assert_eq!(db.collections().unwrap().len(), 1);
}

#[test]
fn insert_get_roundtrip_f32_exact_and_f16_close() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(1);
    for (name, dtype, tol) in [("a", Dtype::F32, 0.0), ("b", Dtype::F16, 1e-3)] {
        db.create_collection(&spec(name, dtype)).unwrap();
        let d = doc(&mut rng, "x", 5, 2021).set("meta", serde_json::json!({"k": [1, 2]}));
        db.insert(name, std::slice::from_ref(&d)).unwrap();
        for flushed in [false, true] {
            let got = db.get(name, &"x".into()).unwrap().expect("document present");
            assert_eq!(got.tokens.len(), d.tokens.len(), "flushed={flushed}");
            let err = got.tokens.iter().zip(&d.tokens).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err <= tol, "{name} flushed={flushed}: max error {err}");
            assert_eq!(got.pooled[0].0, "mean");
            assert_eq!(got.values[0], ("year".to_string(), Value::Integer(2021)));
            assert_eq!(got.values[3].1, Value::Json(serde_json::json!({"k": [1, 2]})));
            db.flush(name).unwrap();
        }
    }
    assert!(db.get("a", &"nope".into()).unwrap().is_none());
}

#[test]
fn upsert_replaces_vectors_and_values() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(2);
    db.create_collection(&spec("c", Dtype::F32)).unwrap();
    db.insert("c", &[doc(&mut rng, "a", 3, 2000), doc(&mut rng, "b", 3, 2000)]).unwrap();
    db.flush("c").unwrap();
    let new = doc(&mut rng, "a", 4, 2024);
    db.upsert("c", std::slice::from_ref(&new)).unwrap();
    let got = db.get("c", &"a".into()).unwrap().unwrap();
    assert_eq!(got.tokens, new.tokens);
    assert_eq!(got.values[0].1, Value::Integer(2024));
    let st = db.stats("c").unwrap();
    assert_eq!((st.docs, st.tombstones, st.pending_docs), (2, 1, 1));
    // The new vectors win a search with themselves; the old ones are gone.
    let hits = db.search("c", &SearchRequest::maxsim(new.tokens.clone()).limit(5)).unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, DocId::from("a"));
    assert!((hits[0].score - 4.0).abs() < 1e-4);
    // Upserting a pending document replaces its pending row.
    db.upsert("c", &[doc(&mut rng, "a", 2, 2025)]).unwrap();
    assert_eq!(db.stats("c").unwrap().pending_docs, 1);
}

#[test]
fn delete_by_id_and_filter_in_pending_and_segments() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(3);
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let docs: Vec<Document> = (0..20).map(|i| doc(&mut rng, &format!("d{i}"), 4, 2000 + i)).collect();
    db.insert("c", &docs[..10]).unwrap();
    db.flush("c").unwrap();
    db.insert("c", &docs[10..]).unwrap();
    assert_eq!(db.delete("c", &["d1".into(), "d15".into(), "missing".into()]).unwrap(), 2);
    assert_eq!(db.delete_where("c", &Filter::gte("year", 2017)).unwrap(), 3);
    let st = db.stats("c").unwrap();
    assert_eq!(st.docs, 15);
    assert_eq!(st.tombstones, 1);
    let all = db.search("c", &SearchRequest::maxsim(docs[0].tokens.clone()).limit(100)).unwrap();
    let ids: Vec<String> = all.iter().map(|h| h.id.to_string()).collect();
    assert_eq!(ids.len(), 15);
    for gone in ["d1", "d15", "d17", "d18", "d19"] {
        assert!(!ids.contains(&gone.to_string()), "{gone} still found");
        assert!(db.get("c", &gone.into()).unwrap().is_none());
    }
}

#[test]
fn update_sets_scalar_columns_only() {
    let (_d, db) = tempdb();
    let mut rng = Rng::new(4);
    db.create_collection(&spec("c", Dtype::F32)).unwrap();
    let d = doc(&mut rng, "a", 3, 2000);
    db.insert("c", std::slice::from_ref(&d)).unwrap();
    db.update(
        "c",
        &"a".into(),
        &[("YEAR".into(), Value::Integer(1999)), ("rating".into(), Value::Integer(3))],
    )
    .unwrap();
    let got = db.get("c", &"a".into()).unwrap().unwrap();
    assert_eq!(got.values[0].1, Value::Integer(1999));
    assert_eq!(got.values[2].1, Value::Real(3.0), "integers stored into REAL columns become reals");
    assert_eq!(got.tokens, d.tokens);
    assert!(matches!(
        db.update("c", &"zz".into(), &[("year".into(), Value::Integer(1))]),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn ids_survive_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut rng = Rng::new(5);
    let docs: Vec<Document> =
        (0..30).map(|i| doc(&mut rng, &format!("k{i}"), 2 + i as usize % 5, i)).collect();
    {
        let db = Database::open(&path).unwrap();
        db.create_collection(&spec("c", Dtype::F16)).unwrap();
        for chunk in docs.chunks(10) {
            db.insert("c", chunk).unwrap();
            db.flush("c").unwrap();
        }
        db.delete("c", &["k3".into(), "k12".into(), "k25".into()]).unwrap();
        assert!(db.compact("c").unwrap());
        assert!(!db.compact("c").unwrap(), "nothing left to compact");
        let st = db.stats("c").unwrap();
        assert_eq!((st.segments, st.tombstones, st.docs), (1, 0, 27));
        db.close().unwrap();
    }
    let db = Database::open(&path).unwrap();
    for (i, d) in docs.iter().enumerate() {
        let got = db.get("c", &d.id).unwrap();
        assert_eq!(got.is_some(), ![3, 12, 25].contains(&i), "doc {i}");
        if let Some(g) = got {
            assert_eq!(g.values[0].1, Value::Integer(i as i64));
            let hits = db.search("c", &SearchRequest::maxsim(d.tokens.clone()).limit(1)).unwrap();
            assert_eq!(hits[0].id, d.id);
        }
    }
}

#[test]
fn pending_writes_survive_reopen_without_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut rng = Rng::new(6);
    let d = doc(&mut rng, "p", 3, 1);
    {
        let db = Database::builder(&path).flush_on_close(false).open().unwrap();
        db.create_collection(&spec("c", Dtype::F32)).unwrap();
        db.insert("c", std::slice::from_ref(&d)).unwrap();
    }
    let db = Database::open(&path).unwrap();
    let st = db.stats("c").unwrap();
    assert_eq!((st.docs, st.pending_docs, st.segments), (1, 1, 0));
    assert_eq!(db.get("c", &"p".into()).unwrap().unwrap().tokens, d.tokens);
}

#[test]
fn threshold_flush_and_direct_bulk_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::builder(dir.path().join("db")).flush_threshold_tokens(40).open().unwrap();
    db.create_collection(&spec("c", Dtype::F16)).unwrap();
    let mut rng = Rng::new(7);
    // 4 docs × 4 tokens per insert: the third insert crosses 40 pending tokens.
    for b in 0..3 {
        let docs: Vec<Document> = (0..4).map(|i| doc(&mut rng, &format!("s{b}_{i}"), 4, 0)).collect();
        db.insert("c", &docs).unwrap();
    }
    let st = db.stats("c").unwrap();
    assert_eq!((st.segments, st.pending_docs), (1, 0), "auto flush at the threshold");
    // One batch of ≥ 40 tokens goes straight to its own segment.
    let big: Vec<Document> = (0..10).map(|i| doc(&mut rng, &format!("b{i}"), 5, 0)).collect();
    db.insert("c", &big).unwrap();
    let st = db.stats("c").unwrap();
    assert_eq!((st.segments, st.pending_docs, st.docs), (2, 0, 22));
    assert!(matches!(db.insert("c", &big[..9]), Err(Error::AlreadyExists { .. })));
    assert_eq!(db.stats("c").unwrap().segments, 2, "a failed bulk insert leaves no segment");
    let hits = db.search("c", &SearchRequest::maxsim(big[7].tokens.clone()).limit(1)).unwrap();
    assert_eq!(hits[0].id, big[7].id);
    assert_eq!(std::fs::read_dir(dir.path().join("db/segments/1")).unwrap().count(), 2, "no stray files");
}

#[test]
fn read_only_handles_and_the_writer_lock() {
    let (dir, db) = tempdb();
    let path = dir.path().join("t.msdb");
    db.create_collection(&CollectionSpec::new("c", VectorSpec::new(DIM))).unwrap();
    assert!(matches!(Database::open(&path), Err(Error::Locked { .. })), "second writer must be refused");
    let ro = Database::open_read_only(&path).unwrap();
    assert_eq!(ro.collections().unwrap().len(), 1);
    let mut rng = Rng::new(8);
    let d = Document::new("x").tokens(rng.unit_vectors(2, DIM));
    assert!(matches!(ro.insert("c", std::slice::from_ref(&d)), Err(Error::ReadOnly)));
    db.insert("c", &[d]).unwrap();
    assert_eq!(ro.stats("c").unwrap().docs, 1, "a reader sees committed writes");
    drop(db);
    Database::open(&path).expect("the lock is released on close");
    assert!(matches!(Database::open_read_only(dir.path().join("absent")), Err(Error::NotFound { .. })));
}

#[test]
fn integer_ids_and_schema_without_pooled_vectors() {
    let (_d, db) = tempdb();
    let s = CollectionSpec::new("n", VectorSpec::new(4).dtype(Dtype::F32))
        .id_type(maxsimdb::IdType::Integer)
        .column("tag", ColumnType::Text);
    db.create_collection(&s).unwrap();
    db.insert("n", &[Document::new(7).tokens(vec![1.0, 0.0, 0.0, 0.0]).set("tag", "x")]).unwrap();
    assert!(matches!(
        db.insert("n", &[Document::new("7").tokens(vec![1.0; 4])]),
        Err(Error::InvalidArgument(_))
    ));
    let hits = db.search("n", &SearchRequest::maxsim(vec![0.5, 0.0, 0.0, 0.0])).unwrap();
    assert_eq!(hits[0].id, DocId::Int(7));
    assert_eq!(hits[0].get("tag"), Some(&Value::Text("x".into())));
}

/// `Database::interrupt` during an import stops it after the batch it is in: the batches
/// committed stay, the error says how many and how to finish, and the same import with
/// `OnConflict::Skip` adds exactly the rest.
#[test]
fn an_interrupted_import_keeps_its_committed_batches_and_resumes() {
    let (dir, db) = tempdb();
    db.create_collection(&spec("c", Dtype::F32)).unwrap();
    let mut rng = Rng::new(5);
    let path = dir.path().join("docs.jsonl");
    let mut text = String::new();
    for i in 0..3500 {
        let t = rng.unit_vectors(2, DIM);
        let rows: Vec<Vec<f32>> = t.chunks(DIM).map(<[f32]>::to_vec).collect();
        let line =
            serde_json::json!({"id": format!("d{i}"), "year": 2000 + i % 7, "mean": rows[0], "tokens": rows});
        text.push_str(&format!("{line}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let err = db
        .import_file("c", &path, |done| {
            if done == 1000 {
                db.interrupt();
            }
        })
        .unwrap_err();
    assert!(matches!(err, Error::Interrupted(_)), "{err}");
    assert_eq!(err.code(), maxsimdb::ErrorCode::Interrupted);
    assert!(err.to_string().contains("1000 of 3500 documents are committed"), "{err}");
    assert!(err.to_string().contains("ON CONFLICT SKIP"), "{err}");
    assert_eq!(db.count("c", None).unwrap(), 1000);
    // An interrupt sent while nothing long runs does not stop the next import.
    db.interrupt();
    let n = db.import_file_with("c", &path, maxsimdb::OnConflict::Skip, |_| {}).unwrap();
    assert_eq!(n, 2500);
    assert_eq!(db.count("c", None).unwrap(), 3500);
}
